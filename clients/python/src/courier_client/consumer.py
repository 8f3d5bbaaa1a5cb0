"""The pull consumer: Receive (long poll), run a handler per delivery on a bounded thread pool,
keep leases alive while handlers run, and settle each delivery by the handler's result."""

from __future__ import annotations

import logging
import threading
from concurrent import futures
from typing import Callable, Optional, Tuple, Type

import grpc

from . import tracing
from ._values import Seconds, duration, reason_text
from .errors import PermanentError
from .leases import LeaseKeeper
from .v1 import common_pb2, consumer_pb2, consumer_pb2_grpc

log = logging.getLogger("courier_client.consumer")

Handler = Callable[[common_pb2.Delivery], None]  # the Delivery message itself

DEFAULT_TIMEOUT = 10.0  # seconds per call, besides the long poll's wait
MAX_RECEIVE_BACKOFF = 5.0  # seconds between Receive attempts while Courier does not answer


class Consumer:
    """Runs `handler` for each delivery of `subscription`, at most `concurrency` at a time.

    The handler returns: Ack. It raises one of `permanent_errors` (PermanentError by default):
    Reject, the delivery is DEAD at once with the exception's text as its reason. It raises
    anything else: Nack, redelivered after `nack_delay` (the subscription's backoff when None);
    the exception's text is the Nack's reason. While a handler runs its lease is extended.

    `run()` blocks until `stop()`; `start()` runs it on a thread. On stop the consumer receives
    no more, lets running handlers finish for `shutdown_grace` seconds, then gives the rest back
    (Nack with no delay) and returns; their handlers' results are ignored.
    """

    def __init__(
        self,
        channel: grpc.Channel,
        subscription: str,
        handler: Handler,
        *,
        concurrency: int = 8,
        wait: float = 5.0,
        permanent_errors: Tuple[Type[BaseException], ...] = (PermanentError,),
        nack_delay: Optional[Seconds] = None,
        lease_extension: Optional[float] = None,
        shutdown_grace: float = 10.0,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.subscription = subscription
        self.handler = handler
        self.concurrency = concurrency
        self.wait = wait
        self.permanent_errors = permanent_errors
        self.nack_delay = nack_delay
        self.lease_extension = lease_extension
        self.shutdown_grace = shutdown_grace
        self.timeout = timeout
        self._stub = consumer_pb2_grpc.ConsumerStub(channel)
        self._free = threading.Semaphore(concurrency)
        self._stopping = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._leases: Optional[LeaseKeeper] = None
        self._in_flight: "set[futures.Future]" = set()  # handlers running, for the shutdown
        self._in_flight_lock = threading.Lock()  # done callbacks run on the handlers' threads

    # ---- running ---------------------------------------------------------------------------

    def start(self) -> "Consumer":
        self._thread = threading.Thread(target=self.run, name=f"courier-{self.subscription}")
        self._thread.start()
        return self

    def stop(self, *, join: bool = True) -> None:
        """Stops receiving; with `join`, waits until in-flight work finished or was given back."""
        self._stopping.set()
        if join and self._thread is not None:
            self._thread.join()

    def run(self) -> None:
        self._leases = LeaseKeeper(
            self._stub, self.subscription, extension=self.lease_extension, timeout=self.timeout
        )
        pool = futures.ThreadPoolExecutor(self.concurrency, thread_name_prefix="courier-handler")
        try:
            self._receive_loop(pool)
            self._drain()
        finally:
            pool.shutdown(wait=False)
            self._leases.stop()

    def _receive_loop(self, pool) -> None:
        backoff = 0.1
        while not self._stopping.is_set():
            slots = self._take_slots()
            if slots == 0:
                continue
            try:
                deliveries = self._receive(slots)
            except grpc.RpcError as error:
                self._give_slots(slots)
                log.warning("receive on %s failed: %s; retrying", self.subscription, error.code())
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, MAX_RECEIVE_BACKOFF)
                continue
            backoff = 0.1
            self._give_slots(slots - len(deliveries))
            for delivery in deliveries:
                if self._stopping.is_set():  # received during the last poll: not started
                    self._nack(delivery.receipt, delay=0)
                    self._free.release()
                    continue
                self._leases.hold(delivery)
                future = pool.submit(self._process, delivery)
                with self._in_flight_lock:
                    self._in_flight.add(future)
                future.add_done_callback(self._finished)

    def _finished(self, future: futures.Future) -> None:
        with self._in_flight_lock:
            self._in_flight.discard(future)

    def _take_slots(self) -> int:
        """Waits for a free handler slot (or stop), then takes every other free one."""
        if not self._free.acquire(timeout=0.2):
            return 0
        if self._stopping.is_set():
            self._free.release()
            return 0
        slots = 1
        while slots < self.concurrency and self._free.acquire(blocking=False):
            slots += 1
        return slots

    def _give_slots(self, count: int) -> None:
        for _ in range(count):
            self._free.release()

    def _receive(self, max_messages: int):
        request = consumer_pb2.ReceiveRequest(
            subscription=self.subscription, max_messages=max_messages, wait=duration(self.wait)
        )
        return self._stub.Receive(request, timeout=self.wait + self.timeout).deliveries

    def _drain(self) -> None:
        """After stop: give running handlers the grace period, then give their deliveries back."""
        with self._in_flight_lock:
            running = list(self._in_flight)
        futures.wait(running, timeout=self.shutdown_grace)
        given_back = self._leases.release_all()
        for receipt in given_back:
            self._nack(receipt, delay=0)
        if given_back:
            log.info("gave back %d deliveries still in progress at shutdown", len(given_back))

    # ---- one delivery ----------------------------------------------------------------------

    def _process(self, delivery) -> None:
        settle = False
        try:
            with tracing.delivery_context(delivery):
                try:
                    self.handler(delivery)
                except self.permanent_errors as error:
                    outcome = ("reject", error)
                except Exception as error:
                    outcome = ("nack", error)
                else:
                    outcome = ("ack", None)
            settle = True
        finally:
            # Stop extending in any case (even a BaseException from the handler); a lease
            # given back at shutdown may be someone else's now: do not settle it.
            held = self._leases.drop(delivery.receipt)
            if not (settle and held):
                self._free.release()
        try:
            self._settle(delivery, *outcome)
        except grpc.RpcError as error:
            log.warning(
                "settling %s failed: %s; the lease will expire", delivery.message_id, error.code()
            )
        except Exception:
            log.exception("settling %s failed; the lease will expire", delivery.message_id)
        finally:
            self._free.release()

    def _settle(self, delivery, outcome: str, error: Optional[BaseException]) -> None:
        if outcome == "ack":
            self._ack(delivery)
        elif outcome == "reject":
            log.warning("rejecting %s: %s", delivery.message_id, reason_text(error))
            request = consumer_pb2.RejectRequest(
                subscription=self.subscription, receipt=delivery.receipt, reason=reason_text(error)
            )
            self._stub.Reject(request, timeout=self.timeout)
        else:
            log.warning(
                "handler failed on %s (attempt %d): %s; nack",
                delivery.message_id,
                delivery.attempt,
                reason_text(error),
            )
            self._nack(delivery.receipt, delay=self.nack_delay, reason=reason_text(error))

    def _ack(self, delivery) -> None:
        request = consumer_pb2.AckRequest(
            subscription=self.subscription, receipts=[delivery.receipt]
        )
        result = self._stub.Ack(request, timeout=self.timeout).results[0]
        if result.status != consumer_pb2.ACK_STATUS_OK:
            log.warning(
                "ack of %s answered %s: the work may be done twice",
                delivery.message_id,
                consumer_pb2.AckStatus.Name(result.status),
            )

    def _nack(self, receipt: str, *, delay: Optional[Seconds], reason: str = "") -> None:
        request = consumer_pb2.NackRequest(
            subscription=self.subscription, receipt=receipt, delay=duration(delay), reason=reason
        )
        try:
            self._stub.Nack(request, timeout=self.timeout)
        except grpc.RpcError as error:
            log.warning("nack failed: %s; the lease will expire", error.code())
