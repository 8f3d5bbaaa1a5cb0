#!/usr/bin/env python3
"""The console in a real browser: headless Chromium driven through WebDriver (chromedriver).

    python .ci/ops/console_check.py --courier target/debug/courier --out target/console-screenshots

Starts its own Courier (temporary SQLite, console open on a loopback HTTP listener, one
check-back attempt), makes real data over gRPC (a delivered message, two dead letters, an
unresolved message), then in the browser: the overview shows its counts, a dead letter is found
by filter, the dry run counts it, Redrive moves it, the unresolved message is committed from
its page. Each page is saved as a PNG under --out and checked not to be blank. Exits non-zero
on the first failure.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import grpc
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT / "examples" / "python"))
import demo  # noqa: E402  (generates the gRPC client from proto/)

SUB, TOPIC, PRODUCER = "billing", "orders", "shop"


class CheckFailed(Exception):
    pass


def expect(condition: bool, problem: str) -> None:
    if not condition:
        raise CheckFailed(problem)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def not_blank(path: Path) -> None:
    """A screenshot with content: a PNG whose pixel data holds many different byte values."""
    data = path.read_bytes()
    expect(data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG")
    pos, idat = 8, b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        if kind == b"IDAT":
            idat += data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    distinct = len(set(zlib.decompress(idat)))
    expect(distinct > 32, f"{path} looks blank ({distinct} distinct byte values)")
    print(f"    ok: {path.name} ({len(data)} bytes, {distinct} distinct byte values)", flush=True)


class Seed:
    """Real data, made over gRPC."""

    def __init__(self, addr: str) -> None:
        demo.generate_client()
        from courier.v1 import admin_pb2, admin_pb2_grpc, common_pb2, consumer_pb2, consumer_pb2_grpc
        from courier.v1 import producer_pb2, producer_pb2_grpc
        from google.protobuf.duration_pb2 import Duration

        self.pb = (admin_pb2, common_pb2, consumer_pb2, producer_pb2, Duration)
        channel = grpc.insecure_channel(addr)
        grpc.channel_ready_future(channel).result(timeout=30)
        self.admin = admin_pb2_grpc.AdminStub(channel)
        self.producer = producer_pb2_grpc.ProducerStub(channel)
        self.consumer = consumer_pb2_grpc.ConsumerStub(channel)

    def run(self) -> dict[str, str]:
        admin_pb2, common_pb2, consumer_pb2, producer_pb2, Duration = self.pb
        policy = common_pb2.RetryPolicy(max_attempts=1)
        self.admin.CreateSubscription(
            admin_pb2.CreateSubscriptionRequest(
                subscription=common_pb2.Subscription(name=SUB, topic=TOPIC, retry_policy=policy)
            )
        )
        ids = {}
        for key, body in [
            ("order-1001", {"order_no": 1001, "total": 42}),
            ("order-1002", {"order_no": 1002, "total": 7}),
            ("order-1003", {"order_no": 1003, "total": "seven"}),
        ]:
            answer = self.producer.Publish(
                producer_pb2.PublishRequest(
                    producer=PRODUCER, topic=TOPIC, key=key, payload=json.dumps(body).encode(),
                    headers={"content-type": "application/json"},
                )
            )
            ids[key] = answer.message_id
        reasons = {"order-1002": "timeout talking to the ledger", "order-1003": "bad JSON: total is not a number"}
        got = self.consumer.Receive(
            consumer_pb2.ReceiveRequest(subscription=SUB, max_messages=3, wait=Duration(seconds=5))
        ).deliveries
        expect(len(got) == 3, f"received {len(got)} deliveries, not 3")
        for delivery in got:
            if delivery.key in reasons:
                self.consumer.Reject(
                    consumer_pb2.RejectRequest(subscription=SUB, receipt=delivery.receipt, reason=reasons[delivery.key])
                )
            else:
                self.consumer.Ack(consumer_pb2.AckRequest(subscription=SUB, receipts=[delivery.receipt]))
        # No checker is registered and one attempt is allowed: check-back gives up at once.
        stuck = self.producer.Prepare(
            producer_pb2.PrepareRequest(
                producer=PRODUCER, topic=TOPIC, key="order-1004", payload=b'{"order_no": 1004}',
                check_after=Duration(seconds=1),
            )
        ).message_id
        ids["order-1004"] = stuck
        deadline = time.monotonic() + 30
        while self.state(stuck) != common_pb2.MESSAGE_STATE_UNRESOLVED:
            expect(time.monotonic() < deadline, "the prepared message did not become UNRESOLVED in 30 s")
            time.sleep(0.2)
        return ids

    def state(self, message_id: str) -> int:
        _, common_pb2, _, producer_pb2, _ = self.pb
        ref = common_pb2.MessageRef(message_id=message_id)
        return self.producer.CheckStatus(producer_pb2.CheckStatusRequest(message=ref)).message.state

    def delivery_state(self, message_id: str) -> int:
        _, common_pb2, _, producer_pb2, _ = self.pb
        ref = common_pb2.MessageRef(message_id=message_id)
        message = self.producer.CheckStatus(producer_pb2.CheckStatusRequest(message=ref)).message
        return message.deliveries[0].state


def browse(base: str, seed: Seed, ids: dict[str, str], out: Path) -> None:
    _, common_pb2, _, _, _ = seed.pb
    options = webdriver.ChromeOptions()
    for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900"]:
        options.add_argument(flag)
    binary = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    if Path(binary).exists():
        options.binary_location = binary
    driver = webdriver.Chrome(options=options, service=Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")))
    driver.set_page_load_timeout(30)
    try:
        def shot(name: str) -> None:
            path = out / f"{name}.png"
            driver.save_screenshot(str(path))
            not_blank(path)

        def text() -> str:
            """The page's text; read again if the page was replaced meanwhile (a reload)."""
            for _ in range(5):
                try:
                    return driver.find_element(By.TAG_NAME, "body").text
                except StaleElementReferenceException:
                    time.sleep(0.1)
            return driver.find_element(By.TAG_NAME, "body").text

        def submit(xpath: str) -> None:
            """Clicks a form's button and waits for the page it answers with."""
            old = driver.find_element(By.TAG_NAME, "html")
            driver.find_element(By.XPATH, xpath).click()

            def replaced(_driver) -> bool:
                try:
                    old.is_enabled()
                    return False
                except StaleElementReferenceException:
                    return True
                except WebDriverException as error:
                    # Chromium 156 may answer for a node the new page just replaced with an
                    # inspector error instead of a stale reference; it means the same.
                    if "does not belong to the document" in str(error):
                        return True
                    raise

            WebDriverWait(driver, 15).until(replaced)


        print("==> overview", flush=True)
        driver.get(base + "/")
        expect("1 unresolved" in text(), "the overview does not show 1 unresolved message")
        expect("2 dead letters" in text(), "the overview does not show 2 dead letters")
        expect(driver.find_elements(By.CSS_SELECTOR, "div.chart svg"), "the overview has no charts")
        shot("overview")
        driver.find_element(By.LINK_TEXT, "Count the retained messages too").click()
        expect("Confirmed" in text() and "Acked" in text(), "the overview's totals lack the retained counts")
        expect(not driver.find_elements(By.CSS_SELECTOR, "meta[http-equiv=refresh]"), "the totals page reloads itself")

        print("==> a dead letter found by filter, its dry-run count, Redrive", flush=True)
        driver.get(f"{base}/dead-letters?subscription={SUB}")
        field = driver.find_element(By.NAME, "error")
        field.send_keys("TIMEOUT")
        submit("//button[text()='Filter']")
        expect("Dry run: 1 dead letter match" in text(), f"the dry run does not count 1: {text()[:400]}")
        expect(ids["order-1002"] in text() and ids["order-1003"] not in text(), "the filter chose the wrong dead letter")
        shot("dead-letters")
        submit("//button[starts-with(text(), 'Redrive all')]")
        expect("Redrove 1." in text(), f"no 'Redrove 1.' after Redrive: {text()[:400]}")
        expect(seed.delivery_state(ids["order-1002"]) == common_pb2.DELIVERY_STATE_PENDING, "the redriven delivery is not PENDING")
        expect(seed.delivery_state(ids["order-1003"]) == common_pb2.DELIVERY_STATE_DEAD, "the other dead letter moved")

        print("==> a message's timeline", flush=True)
        driver.get(f"{base}/messages/{ids['order-1003']}")
        expect("Rejected by the consumer" in text(), "the timeline lacks the Reject")
        expect("Shown as JSON" in text(), "the JSON payload is not pretty-printed")
        shot("message")

        print("==> the unresolved message, committed from its page", flush=True)
        driver.get(f"{base}/unresolved")
        expect(ids["order-1004"] in text(), "the unresolved message is not listed")
        shot("unresolved")
        submit("//button[text()='Commit']")
        expect("No unresolved messages" in text(), "the message is still listed after Commit")
        expect(seed.state(ids["order-1004"]) == common_pb2.MESSAGE_STATE_CONFIRMED, "Commit did not confirm it")

        print("==> messages and subscriptions", flush=True)
        driver.get(f"{base}/messages?topic={TOPIC}")
        expect(ids["order-1001"] in text(), "the message list lacks a message")
        shot("messages")
        driver.get(f"{base}/subscriptions")
        expect(SUB in text(), "the subscription is not listed")
        shot("subscriptions")
    finally:
        driver.quit()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--courier", default="target/debug/courier")
    parser.add_argument("--out", default="target/console-screenshots")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    grpc_port, http_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as workdir:
        env = {k: v for k, v in os.environ.items() if not k.startswith("COURIER_")}
        env.update(
            RUST_LOG="warn",
            COURIER_DATABASE_URL=f"sqlite://{workdir}/console.db",
            COURIER_LISTEN=f"127.0.0.1:{grpc_port}",
            COURIER_METRICS_LISTEN=f"127.0.0.1:{http_port}",
            COURIER_CHECKS__MAX_ATTEMPTS="1",
        )
        log = open(Path(workdir) / "server.log", "w")
        server = subprocess.Popen([args.courier, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            seed = Seed(f"127.0.0.1:{grpc_port}")
            ids = seed.run()
            print(f"    ok: data made: {', '.join(ids)}", flush=True)
            browse(f"http://127.0.0.1:{http_port}", seed, ids, out)
        except (CheckFailed, grpc.RpcError) as problem:
            print(f"console check failed: {problem}", file=sys.stderr)
            print((Path(workdir) / "server.log").read_text()[-3000:], file=sys.stderr)
            return 1
        finally:
            server.terminate()
            server.wait(timeout=20)
    print(f"console: every check passed; screenshots in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
