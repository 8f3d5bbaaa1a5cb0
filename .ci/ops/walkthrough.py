#!/usr/bin/env python3
"""Runs the README's grpcurl walkthrough against a live Courier, verbatim.

The commands are taken from the first ```sh block under "## Walkthrough with grpcurl" in
README.md (or, with --variant tls, the block under its "### Over TLS with a token") and run with
bash as written, with these substitutions only: the address 127.0.0.1:50051 becomes --addr, the
placeholder RECEIPT becomes the receipt that the Receive step returned, and (TLS) the file name
ca.pem becomes --ca-file; the token reaches the commands as $COURIER_TOKEN, as the README has
it. Each step's JSON output is checked (by the RPC it calls), then the `list` and `describe`
commands the README names after the block. Exit status 0 only if every step passed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

README_ADDR = "127.0.0.1:50051"
RECEIPT_PLACEHOLDER = "RECEIPT"
# The RPCs the walkthrough must call, in this order.
EXPECTED_RPCS = [
    "courier.v1.Admin/CreateSubscription",
    "courier.v1.Producer/Prepare",
    "courier.v1.Producer/Confirm",
    "courier.v1.Consumer/Receive",
    "courier.v1.Consumer/Ack",
    "courier.v1.Producer/CheckStatus",
]


class WalkthroughFailure(Exception):
    pass


def expect(condition: bool, problem: str) -> None:
    if not condition:
        raise WalkthroughFailure(problem)


TLS_HEADING = "### Over TLS with a token"
README_CA = "ca.pem"


def walkthrough_block(readme: str, variant: str) -> tuple[str, str]:
    """The sh block of the walkthrough section (plain) or of its TLS subsection, and the text
    after it up to the next heading."""
    section = re.search(r"^## Walkthrough with grpcurl\n(.*?)(?=^## |\Z)", readme, re.S | re.M)
    expect(section is not None, "README.md has no '## Walkthrough with grpcurl' section")
    text = section.group(1)
    if variant == "tls":
        start = text.find(TLS_HEADING)
        expect(start >= 0, f"the walkthrough section has no '{TLS_HEADING}'")
        text = text[start:]
    block = re.search(r"^```sh\n(.*?)^```", text, re.S | re.M)
    expect(block is not None, "the walkthrough section has no ```sh block")
    after = text[block.end():]
    return block.group(1), after.split("\n### ")[0]


def split_commands(block: str) -> list[tuple[str, str]]:
    """(step title, command) pairs: a command runs over continuation lines until its quotes
    balance and it no longer ends in a backslash; `# N. title` comments name the steps."""
    commands: list[tuple[str, str]] = []
    title, pending = "", []
    for line in block.splitlines():
        if not pending:
            stripped = line.strip()
            if not stripped:
                continue
            if stripped.startswith("#"):
                numbered = re.match(r"#\s*(\d+\.\s.*)", stripped)
                if numbered:
                    title = numbered.group(1)
                continue
        pending.append(line)
        text = "\n".join(pending)
        if text.rstrip().endswith("\\"):
            continue
        try:
            shlex.split(text)
        except ValueError:  # an open quote: the command goes on
            continue
        commands.append((title, text))
        pending = []
    expect(not pending, f"an unfinished command at the end of the block: {pending}")
    return commands


def run(command: str, env: dict[str, str]) -> str:
    print(f"$ {command}", flush=True)
    result = subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True, timeout=60)
    print(result.stdout, end="")
    if result.stderr:
        print(result.stderr, end="", file=sys.stderr)
    expect(result.returncode == 0, f"the command exited with {result.returncode}")
    return result.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--addr", required=True, help="the live Courier, HOST:PORT")
    parser.add_argument("--grpcurl", required=True, help="the grpcurl binary to run the commands with")
    parser.add_argument("--readme", type=Path, default=Path(__file__).resolve().parents[2] / "README.md")
    parser.add_argument("--variant", choices=["plain", "tls"], default="plain")
    parser.add_argument("--ca-file", help="TLS: the CA certificate that stands for the README's ca.pem")
    parser.add_argument("--token", help="TLS: the token the README's $COURIER_TOKEN holds")
    args = parser.parse_args()
    if args.variant == "tls" and not (args.ca_file and args.token):
        parser.error("--variant tls needs --ca-file and --token")

    # The README says `grpcurl`: put the given one first on PATH for bash.
    grpcurl = Path(args.grpcurl).resolve()
    env = dict(os.environ, PATH=f"{grpcurl.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if args.token:
        env["COURIER_TOKEN"] = args.token

    def localize(command: str) -> str:
        command = command.replace(README_ADDR, args.addr)
        if args.variant == "tls":
            command = re.sub(rf"(?<=-cacert ){re.escape(README_CA)}\b", args.ca_file, command)
        return command

    try:
        expect(grpcurl.name == "grpcurl", f"--grpcurl must name a file called grpcurl, not {grpcurl}")
        block, after = walkthrough_block(args.readme.read_text(), args.variant)
        commands = split_commands(block)
        rpcs = [next((word for word in shlex.split(cmd) if "/" in word and word.startswith("courier.")), "")
                for _, cmd in commands]
        expect(rpcs == EXPECTED_RPCS, f"the walkthrough calls {rpcs}; this check knows {EXPECTED_RPCS}")

        state: dict[str, str] = {}
        for (title, command), rpc in zip(commands, rpcs):
            print(f"== walkthrough {title}")
            expect(README_ADDR in command, f"the command does not name {README_ADDR}")
            if args.variant == "tls":
                expect(f"-cacert {README_CA}" in command and "$COURIER_TOKEN" in command,
                       "a TLS step without -cacert ca.pem and the token")
            command = localize(command)
            if RECEIPT_PLACEHOLDER in command:
                expect("receipt" in state, "RECEIPT is used before a Receive returned one")
                command = command.replace(RECEIPT_PLACEHOLDER, state["receipt"])
            output = json.loads(run(command, env) or "{}")
            check_step(rpc, output, state)

        print("== walkthrough: the commands named after the block")
        listing = re.search(r"`(grpcurl [^`]*\blist)`", after)
        expect(listing is not None, "the README names no `grpcurl ... list` after the block")
        output = run(localize(listing.group(1)), env)
        for service in ("courier.v1.Producer", "courier.v1.Consumer", "courier.v1.Admin"):
            expect(service in output, f"list does not name {service}")
        print("    ok: lists Producer, Consumer and Admin")
        describe = re.search(r"`describe ([\w.]+)`", after)
        if describe and args.variant == "plain":
            output = run(f"grpcurl -plaintext {args.addr} describe {describe.group(1)}", env)
            expect("rpc Prepare" in output, "describe does not show rpc Prepare")
            print("    ok: describe shows the documented contract")
    except WalkthroughFailure as failure:
        print(f"walkthrough FAILED: {failure}", file=sys.stderr)
        return 1
    except (subprocess.TimeoutExpired, json.JSONDecodeError) as error:
        print(f"walkthrough FAILED: {error}", file=sys.stderr)
        return 1
    print("walkthrough passed: every step gave the expected answer")
    return 0


def check_step(rpc: str, output: dict, state: dict[str, str]) -> None:
    if rpc.endswith("/CreateSubscription"):
        expect(output.get("name") and output.get("topic"), f"no subscription in {output}")
        print(f"    ok: subscription {output['name']} on topic {output['topic']} created")
    elif rpc.endswith("/Prepare"):
        expect(output.get("state") == "MESSAGE_STATE_PREPARED", f"state is {output.get('state')}")
        expect(bool(output.get("messageId")), "no messageId")
        state["message_id"] = output["messageId"]
        print(f"    ok: MESSAGE_STATE_PREPARED, messageId {output['messageId']}")
    elif rpc.endswith("/Confirm"):
        expect(output.get("state") == "MESSAGE_STATE_CONFIRMED", f"state is {output.get('state')}")
        print("    ok: MESSAGE_STATE_CONFIRMED")
    elif rpc.endswith("/Receive"):
        deliveries = output.get("deliveries", [])
        expect(len(deliveries) == 1, f"expected one delivery, got {len(deliveries)}")
        delivery = deliveries[0]
        expect(delivery.get("messageId") == state.get("message_id"), "the delivery is of another message")
        expect(bool(delivery.get("receipt")), "the delivery has no receipt")
        state["receipt"] = delivery["receipt"]
        print(f"    ok: a delivery of {delivery.get('key')}, attempt {delivery.get('attempt')}, receipt kept")
    elif rpc.endswith("/Ack"):
        statuses = [result.get("status") for result in output.get("results", [])]
        expect(statuses == ["ACK_STATUS_OK"], f"Ack answered {statuses}")
        print("    ok: ACK_STATUS_OK")
    elif rpc.endswith("/CheckStatus"):
        message = output.get("message", {})
        expect(message.get("outcome") == "MESSAGE_OUTCOME_DELIVERED", f"outcome is {message.get('outcome')}")
        print("    ok: MESSAGE_OUTCOME_DELIVERED")


if __name__ == "__main__":
    sys.exit(main())
