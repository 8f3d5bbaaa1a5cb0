"""Conversions from Python values to the protobuf types Courier's requests take."""

from __future__ import annotations

import datetime
import time
from typing import Mapping, Optional, Union

from google.protobuf.duration_pb2 import Duration

Seconds = Union[float, int, datetime.timedelta]

# Courier keeps free text (Nack and Reject reasons) up to this many bytes.
MAX_REASON_BYTES = 1024


def duration(value: Optional[Seconds]) -> Optional[Duration]:
    """Seconds (or a timedelta) as a normalized google.protobuf.Duration; None stays unset."""
    if value is None:
        return None
    if isinstance(value, datetime.timedelta):
        value = value.total_seconds()
    whole = int(value)
    nanos = int(round((value - whole) * 1_000_000_000))
    if nanos >= 1_000_000_000:
        whole, nanos = whole + 1, nanos - 1_000_000_000
    return Duration(seconds=whole, nanos=nanos)


def payload_bytes(payload: Union[bytes, str]) -> bytes:
    return payload.encode() if isinstance(payload, str) else bytes(payload)


def headers_map(headers: Optional[Mapping[str, str]]) -> dict:
    return dict(headers or {})


def reason_text(error: BaseException) -> str:
    """An exception as a Nack or Reject reason: no NUL, at most MAX_REASON_BYTES of UTF-8."""
    text = f"{type(error).__name__}: {error}".replace("\x00", "")
    encoded = text.encode()[:MAX_REASON_BYTES]
    return encoded.decode(errors="ignore")


def now_ms() -> int:
    """Wall-clock milliseconds since the epoch, as the outbox and inbox tables store times."""
    return int(time.time() * 1000)
