"""W3C trace context between the client and Courier, when opentelemetry-api is installed.

Outgoing: the current context is injected as `traceparent`/`tracestate` gRPC metadata on
Prepare and Publish, so Courier stores it with the message. Incoming: a delivery's
`traceparent`/`tracestate` (and the metadata of Courier's calls to a Checker or Receiver)
become the current context while the handler runs, so its spans join the producer's trace.
Without opentelemetry-api every function here does nothing.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, List, Mapping, Tuple

try:
    from opentelemetry import context as _otel_context
    from opentelemetry import propagate as _otel_propagate
except ImportError:  # the `otel` extra is not installed
    _otel_context = None
    _otel_propagate = None

TRACE_KEYS = ("traceparent", "tracestate")


def enabled() -> bool:
    return _otel_propagate is not None


def outgoing_metadata() -> List[Tuple[str, str]]:
    """The current trace context as gRPC metadata (empty without a context or without otel)."""
    if _otel_propagate is None:
        return []
    carrier: dict = {}
    _otel_propagate.inject(carrier)
    return [(key, carrier[key]) for key in TRACE_KEYS if carrier.get(key)]


@contextlib.contextmanager
def attached(carrier: Mapping[str, str]) -> Iterator[None]:
    """Makes the trace context in `carrier` (traceparent/tracestate) current inside the block."""
    fields = {key: carrier[key] for key in TRACE_KEYS if carrier.get(key)}
    if _otel_propagate is None or "traceparent" not in fields:
        yield
        return
    token = _otel_context.attach(_otel_propagate.extract(fields))
    try:
        yield
    finally:
        _otel_context.detach(token)


def delivery_context(delivery) -> "contextlib.AbstractContextManager[None]":
    """The producer's trace context, carried by a Delivery, current inside the block."""
    return attached({"traceparent": delivery.traceparent, "tracestate": delivery.tracestate})


def call_context(grpc_context) -> "contextlib.AbstractContextManager[None]":
    """The trace context of a call from Courier (its metadata) current inside the block."""
    return attached(dict(grpc_context.invocation_metadata()))
