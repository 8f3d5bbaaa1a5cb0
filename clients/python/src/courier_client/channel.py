"""Opening a channel to Courier: plaintext, or TLS with a CA file and a bearer token."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Tuple

import grpc


def connect(
    address: str,
    *,
    ca_file: Optional[str] = None,
    token: Optional[str] = None,
    options: Sequence[Tuple[str, object]] = (),
) -> grpc.Channel:
    """A channel to Courier at `address` (`host:port`, `http://host:port` or `https://host:port`).

    Plaintext unless `ca_file` is given or the address starts with `https://`: then TLS, trusting
    `ca_file` (PEM) or, without it, the system's CA certificates. `token` is sent as
    `authorization: Bearer <token>` on every call, and only over TLS.
    """
    tls = bool(ca_file) or address.startswith("https://")
    target = address.split("://", 1)[-1]
    if not tls:
        if token:
            raise ValueError("a token is only sent over TLS: give ca_file or an https:// address")
        return grpc.insecure_channel(target, options=list(options))
    root = Path(ca_file).read_bytes() if ca_file else None
    credentials = grpc.ssl_channel_credentials(root_certificates=root)
    if token:
        credentials = grpc.composite_channel_credentials(
            credentials, grpc.access_token_call_credentials(token)
        )
    return grpc.secure_channel(target, credentials, options=list(options))
