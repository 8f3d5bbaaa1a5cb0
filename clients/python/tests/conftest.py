"""Fixtures: a live Courier (the debug binary) on a free port with a temporary SQLite database,
the client's own databases (sqlite3 and PostgreSQL), and names unique to each test."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from courier_client import CallbackVerifier, Database, connect
from courier_client._values import duration
from courier_client.v1 import admin_pb2, admin_pb2_grpc, common_pb2

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/test"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout: float = 15.0, interval: float = 0.05):
    """Polls until `predicate()` is truthy; returns its value, or fails the test."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"not true within {timeout}s: {getattr(predicate, '__name__', predicate)}")
        time.sleep(interval)


@dataclass
class Courier:
    address: str
    jwks_url: str
    log_path: Path

    def channel(self) -> grpc.Channel:
        return connect(self.address)


@pytest.fixture(scope="session")
def courier(tmp_path_factory):
    """One Courier for the session, started like .ci/ops-checks starts it: no COURIER_* variable
    but the ones set here (it refuses unknown ones), fast check-backs, JWKS on a free port."""
    binary = Path(os.environ.get("COURIER_BIN", REPO_ROOT / "target" / "debug" / "courier"))
    if not binary.exists():
        pytest.fail(f"no courier binary at {binary} (cargo build, or set COURIER_BIN)")
    workdir = tmp_path_factory.mktemp("courier")
    port, metrics_port = free_port(), free_port()
    env = {name: value for name, value in os.environ.items() if not name.startswith("COURIER_")}
    env.update(
        RUST_LOG="info",
        COURIER_CHECKS__FIRST_AFTER="1s",
        COURIER_CHECKS__INITIAL_BACKOFF="1s",
        COURIER_CHECKS__MAX_BACKOFF="1s",
        COURIER_CHECKS__TIMEOUT="2s",
        COURIER_METRICS_LISTEN=f"127.0.0.1:{metrics_port}",
    )
    log_path = workdir / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                str(binary),
                "serve",
                "--listen",
                f"127.0.0.1:{port}",
                "--database-url",
                f"sqlite://{workdir}/courier.db",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = Courier(
        f"127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}/.well-known/jwks.json", log_path
    )
    try:
        channel = server.channel()
        admin = admin_pb2_grpc.AdminStub(channel)

        def serving():
            if process.poll() is not None:
                pytest.fail(f"courier exited: {log_path.read_text()[-2000:]}")
            try:
                admin.ListSubscriptions(admin_pb2.ListSubscriptionsRequest(), timeout=1)
                return True
            except grpc.RpcError:
                return False

        wait_for(serving, timeout=60, interval=0.2)
        channel.close()
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def channel(courier):
    channel = courier.channel()
    yield channel
    channel.close()


@pytest.fixture(scope="session")
def verifier(courier):
    return CallbackVerifier(courier.jwks_url)


@dataclass
class Names:
    producer: str
    topic: str
    subscription: str
    suffix: str

    def key(self, n: int = 1) -> str:
        return f"order-{self.suffix}-{n}"


@pytest.fixture
def names():
    suffix = uuid.uuid4().hex[:12]
    return Names(f"py-shop-{suffix}", f"py-orders-{suffix}", f"py-billing-{suffix}", suffix)


class Admin:
    def __init__(self, channel):
        self.stub = admin_pb2_grpc.AdminStub(channel)

    def subscribe(
        self, name, topic, *, ack_deadline=30, max_attempts=16, backoff=0.2, push_endpoint=""
    ):
        subscription = common_pb2.Subscription(
            name=name,
            topic=topic,
            ack_deadline=duration(ack_deadline),
            retry_policy=common_pb2.RetryPolicy(
                max_attempts=max_attempts,
                initial_backoff=duration(backoff),
                max_backoff=duration(backoff),
            ),
            push_endpoint=push_endpoint,
        )
        return self.stub.CreateSubscription(
            admin_pb2.CreateSubscriptionRequest(subscription=subscription), timeout=10
        )

    def deliveries(self, subscription):
        return self.stub.ListDeliveries(
            admin_pb2.ListDeliveriesRequest(subscription=subscription), timeout=10
        ).deliveries


@pytest.fixture
def admin(channel):
    return Admin(channel)


# ---- the client's own databases ------------------------------------------------------------


def postgres_url() -> str:
    return os.environ.get("COURIER_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)


@dataclass
class AppDatabase:
    """The producer's or consumer's database, with table names unique to the test."""

    kind: str
    database: Database
    suffix: str

    def table(self, name: str) -> str:
        return f"{name}_{self.suffix}"

    def query(self, sql: str, params: tuple = ()):
        with self.database.transaction() as connection:
            return self.database.execute(connection, sql, params).fetchall()

    def execute(self, sql: str, params: tuple = ()) -> None:
        with self.database.transaction() as connection:
            self.database.execute(connection, sql, params)


def _postgres_database() -> Database:
    import psycopg

    url = postgres_url()
    try:
        psycopg.connect(url, connect_timeout=3).close()
    except psycopg.OperationalError as error:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at {url} is unreachable on CI: {error}")
        pytest.skip(f"PostgreSQL at {url} is unreachable: {error}")
    return Database.postgres(url)


@pytest.fixture(params=["sqlite", "postgres"])
def app_db(request, tmp_path):
    """The application's database, once on sqlite3 and once on PostgreSQL."""
    suffix = uuid.uuid4().hex[:10]
    if request.param == "sqlite":
        yield AppDatabase("sqlite", Database.sqlite(str(tmp_path / "app.db")), suffix)
        return
    db = AppDatabase("postgres", _postgres_database(), suffix)
    yield db
    with db.database.transaction() as connection:
        rows = connection.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE %s",
            (f"%\\_{suffix}",),
        ).fetchall()
        for (table,) in rows:
            connection.execute(f'DROP TABLE IF EXISTS "{table}"')


def receive(channel, subscription: str, *, wait: float = 5.0, max_messages: int = 10):
    """One raw long poll (no library code), for checking what Courier holds."""
    from courier_client.v1 import consumer_pb2, consumer_pb2_grpc

    stub = consumer_pb2_grpc.ConsumerStub(channel)
    request = consumer_pb2.ReceiveRequest(
        subscription=subscription, max_messages=max_messages, wait=duration(wait)
    )
    return list(stub.Receive(request, timeout=wait + 10).deliveries)


def state_name(state: int) -> str:
    return common_pb2.MessageState.Name(state)


def outcome_name(outcome: int) -> str:
    return common_pb2.MessageOutcome.Name(outcome)
