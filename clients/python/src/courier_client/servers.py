"""A small gRPC server for the services Courier calls (Checker, Receiver)."""

from __future__ import annotations

from concurrent import futures
from typing import Callable, Optional

import grpc


class CallbackServer:
    """A started gRPC server on `host:port` (port 0 picks a free one); `endpoint` is the URL to
    register with Courier (`http://host:port` unless `advertise` gives another)."""

    def __init__(
        self,
        add_servicer: Callable[[grpc.Server], None],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_workers: int = 8,
        advertise: Optional[str] = None,
    ) -> None:
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers))
        add_servicer(self._server)
        self.port = self._server.add_insecure_port(f"{host}:{port}")
        if self.port == 0:
            raise OSError(f"cannot listen on {host}:{port}")
        self.endpoint = advertise or f"http://{host}:{self.port}"
        self._server.start()

    def stop(self, grace: Optional[float] = None) -> None:
        self._server.stop(grace).wait()

    def wait(self) -> None:
        """Blocks until the server stops."""
        self._server.wait_for_termination()

    def __enter__(self) -> "CallbackServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
