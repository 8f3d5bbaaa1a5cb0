"""Conversions into Courier's request types (no server needed)."""

from __future__ import annotations

import datetime

import pytest

from courier_client import connect
from courier_client._values import MAX_REASON_BYTES, duration, reason_text


def test_durations_are_normalized():
    assert duration(None) is None
    assert (duration(1.5).seconds, duration(1.5).nanos) == (1, 500_000_000)
    assert (duration(0).seconds, duration(0).nanos) == (0, 0)
    assert duration(datetime.timedelta(milliseconds=250)).nanos == 250_000_000
    almost = duration(0.9999999999)
    assert (almost.seconds, almost.nanos) == (1, 0)


def test_reject_reasons_fit_courier_rules():
    assert reason_text(ValueError("bad total")) == "ValueError: bad total"
    assert "\x00" not in reason_text(ValueError("a\x00b"))
    long = reason_text(ValueError("é" * 2000))
    assert len(long.encode()) <= MAX_REASON_BYTES
    long.encode().decode()  # still valid UTF-8 after the cut


def test_a_token_is_never_sent_in_plaintext():
    with pytest.raises(ValueError):
        connect("127.0.0.1:50051", token="secret")
