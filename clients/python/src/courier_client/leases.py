"""Keeps the leases of deliveries in progress alive while their handlers run."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Dict, List, Optional

import grpc

from ._values import duration
from .v1 import consumer_pb2

log = logging.getLogger("courier_client.leases")

MIN_EXTENSION = 1.0  # seconds; Courier's ExtendLease takes 1 s to 12 h


@dataclass
class _Lease:
    receipt: str
    message_id: str
    extension: float  # seconds each ExtendLease asks for
    expires_at: float  # time.monotonic() when the current lease ends
    released: bool = False  # given back by a shutdown: the handler's result is ignored
    lost: bool = False  # ExtendLease said the lease is gone: no more extending

    @property
    def renew_at(self) -> float:
        # A third of the lease ahead of its end leaves time for a slow call or two.
        return self.expires_at - self.extension / 3


class LeaseKeeper:
    """One thread that calls ExtendLease for every held delivery a third of a lease before it
    ends. The lease length is taken from the delivery (`lease_expires_at` at receipt, that is
    the subscription's ack deadline) unless `extension` fixes it."""

    def __init__(self, stub, subscription: str, *, extension: Optional[float], timeout: float):
        self._stub = stub
        self._subscription = subscription
        self._fixed_extension = extension
        self._timeout = timeout
        self._held: Dict[str, _Lease] = {}
        self._changed = threading.Condition()
        self._stopped = False
        self.extensions = 0  # ExtendLease calls that succeeded, for logs and tests
        self._thread = threading.Thread(target=self._run, name="courier-leases", daemon=True)
        self._thread.start()

    def hold(self, delivery) -> None:
        remaining = delivery.lease_expires_at.ToNanoseconds() / 1e9 - time.time()
        extension = self._fixed_extension or max(MIN_EXTENSION, round(remaining))
        lease = _Lease(
            delivery.receipt, delivery.message_id, extension, time.monotonic() + remaining
        )
        with self._changed:
            self._held[delivery.receipt] = lease
            self._changed.notify()

    def drop(self, receipt: str) -> bool:
        """Stops extending; False when the lease was released meanwhile (do not settle it)."""
        with self._changed:
            lease = self._held.pop(receipt, None)
        return lease is not None and not lease.released

    def release_all(self) -> List[str]:
        """Marks every held lease released (their handlers' results are ignored) and returns
        their receipts, for the consumer to give back."""
        with self._changed:
            receipts = []
            for lease in self._held.values():
                lease.released = True
                receipts.append(lease.receipt)
            self._held.clear()
            self._changed.notify()
        return receipts

    def stop(self) -> None:
        with self._changed:
            self._stopped = True
            self._changed.notify()
        self._thread.join()

    def _run(self) -> None:
        while True:
            with self._changed:
                due = self._wait_for_due()
                if due is None:
                    return
            for lease in due:
                self._extend(lease)

    def _wait_for_due(self) -> Optional[List[_Lease]]:
        """Sleeps until some lease needs renewing (or a change, or stop); None on stop."""
        while not self._stopped:
            now = time.monotonic()
            live = [lease for lease in self._held.values() if not lease.lost]
            due = [lease for lease in live if lease.renew_at <= now]
            if due:
                return due
            next_at = min((lease.renew_at for lease in live), default=None)
            self._changed.wait(None if next_at is None else next_at - now)
        return None

    def _extend(self, lease: _Lease) -> None:
        request = consumer_pb2.ExtendLeaseRequest(
            subscription=self._subscription,
            receipt=lease.receipt,
            extension=duration(lease.extension),
        )
        asked_at = time.monotonic()
        try:
            self._stub.ExtendLease(request, timeout=self._timeout)
        except grpc.RpcError as error:
            if error.code() in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND):
                # The Ack may still succeed (nobody leased it since); the consumer tries it.
                log.warning("lease of %s lost: %s", lease.message_id, error.details())
                with self._changed:
                    lease.lost = True
                return
            log.warning("extending the lease of %s failed: %s", lease.message_id, error.details())
            retry_at = min(asked_at + 1.0, lease.expires_at)
            with self._changed:
                lease.expires_at = retry_at + lease.extension / 3  # renew_at becomes retry_at
            return
        with self._changed:
            lease.expires_at = asked_at + lease.extension
            self.extensions += 1
