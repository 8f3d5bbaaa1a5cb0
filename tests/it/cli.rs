//! The operator commands: the real `courier` binary run against a test server, read as a
//! person (tables) and as a script (`--json`) would, plus its errors and exit codes.

use std::process::Output;
use std::time::Duration;

use courier::proto::RejectRequest;
use serde_json::Value;
use tokio::process::Command;

use crate::harness::{PRODUCER, TestServer, fast_subscription, subscription};
use crate::process::{courier_command, free_port};

const TOPIC: &str = "cli-orders";

/// Runs `courier ARGS` to completion, without the test's own COURIER_* variables.
async fn courier(args: &[&str]) -> Output {
    let run = Command::from(courier_command())
        .args(args)
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the command ends within 60 s")
        .expect("run the courier binary")
}

/// Runs an operator command against `server` and expects success; returns stdout.
async fn ok(server: &TestServer, args: &[&str]) -> String {
    let output = courier(&with_addr(server, args)).await;
    assert!(
        output.status.success(),
        "courier {args:?} failed with {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// Like [`ok`] with `--json`, parsed.
async fn json(server: &TestServer, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.push("--json");
    let stdout = ok(server, &args).await;
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}): {stdout}"))
}

/// Runs a command expected to fail; returns its exit code and stderr.
async fn fails(server: &TestServer, args: &[&str]) -> (Option<i32>, String) {
    let output = courier(&with_addr(server, args)).await;
    assert!(
        !output.status.success(),
        "courier {args:?} should fail; printed {}",
        String::from_utf8_lossy(&output.stdout)
    );
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn with_addr<'a>(server: &'a TestServer, args: &[&'a str]) -> Vec<&'a str> {
    let mut all = args.to_vec();
    // host:port, without a scheme: the CLI must accept it as is.
    all.extend(["--addr", server.config.listen.as_str()]);
    all
}

#[tokio::test]
async fn subscriptions_are_created_listed_shown_and_deleted() {
    let server = TestServer::start().await;

    let created = json(
        &server,
        &[
            "subscriptions",
            "create",
            "cli-billing",
            "--topic",
            TOPIC,
            "--ack-deadline",
            "5s",
            "--max-attempts",
            "3",
        ],
    )
    .await;
    assert_eq!(created["name"], "cli-billing");
    assert_eq!(created["topic"], TOPIC);
    assert_eq!(created["ack_deadline_seconds"], 5.0);
    assert_eq!(created["retry_policy"]["max_attempts"], 3);
    assert_eq!(created["push_endpoint"], Value::Null);
    assert!(created["created_at"].is_string());

    let shown = ok(
        &server,
        &[
            "subscriptions",
            "create",
            "cli-audit",
            "--topic",
            TOPIC,
            "--push-endpoint",
            "http://127.0.0.1:9",
        ],
    )
    .await;
    assert!(shown.contains("push to http://127.0.0.1:9"), "{shown}");

    let table = ok(&server, &["subscriptions", "list"]).await;
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("NAME"), "a header row first: {table}");
    assert_eq!(lines.len(), 3, "a header and two rows: {table}");
    assert!(
        lines[1].starts_with("cli-audit") && lines[1].contains("push"),
        "{table}"
    );
    assert!(
        lines[2].starts_with("cli-billing") && lines[2].contains("5s"),
        "{table}"
    );

    let listed = json(&server, &["subscriptions", "list", "--topic", TOPIC]).await;
    let names: Vec<&str> = listed["subscriptions"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|s| s["name"].as_str().expect("a name"))
        .collect();
    assert_eq!(names, ["cli-audit", "cli-billing"]);

    let got = json(&server, &["subscriptions", "get", "cli-billing"]).await;
    assert_eq!(got, created);

    let deleted = json(&server, &["subscriptions", "delete", "cli-audit"]).await;
    assert_eq!(deleted["deleted"], "cli-audit");

    let (code, stderr) = fails(&server, &["subscriptions", "get", "cli-audit"]).await;
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("NOT_FOUND") && stderr.contains("cli-audit"),
        "the server's code and message: {stderr}"
    );

    let (code, stderr) = fails(
        &server,
        &["subscriptions", "create", "bad name", "--topic", TOPIC],
    )
    .await;
    assert_eq!(code, Some(1));
    assert!(stderr.contains("INVALID_ARGUMENT"), "{stderr}");
}

#[tokio::test]
async fn messages_are_inspected_resolved_and_counted() {
    let server = TestServer::start().await;
    server
        .create_subscription(subscription("cli-billing", TOPIC))
        .await;
    let prepared = server.prepare(TOPIC, "order-1").await;
    let published = server.publish(TOPIC, "order-2").await;

    let status = json(&server, &["messages", "status", &prepared]).await;
    assert_eq!(status["message_id"], prepared.as_str());
    assert_eq!(status["state"], "PREPARED");
    assert_eq!(status["outcome"], "PREPARED");
    assert_eq!(status["producer"], PRODUCER);
    assert_eq!(status["key"], "order-1");

    let by_key = json(
        &server,
        &[
            "messages",
            "status",
            "--producer",
            PRODUCER,
            "--key",
            "order-2",
        ],
    )
    .await;
    assert_eq!(by_key["message_id"], published.as_str());
    assert_eq!(by_key["outcome"], "DELIVERING");
    assert_eq!(by_key["deliveries"][0]["subscription"], "cli-billing");
    assert_eq!(by_key["deliveries"][0]["state"], "PENDING");

    let text = ok(&server, &["messages", "status", &published]).await;
    assert!(text.contains("DELIVERING"), "{text}");
    assert!(
        text.contains("SUBSCRIPTION") && text.contains("cli-billing"),
        "{text}"
    );

    let listed = json(&server, &["messages", "list", "--state", "prepared"]).await;
    let ids: Vec<&str> = listed["messages"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|m| m["message_id"].as_str().expect("an id"))
        .collect();
    assert_eq!(ids, [prepared.as_str()]);
    assert_eq!(listed["next_page_token"], Value::Null);

    let first_page = json(&server, &["messages", "list", "--limit", "1"]).await;
    assert_eq!(first_page["messages"].as_array().expect("a list").len(), 1);
    let token = first_page["next_page_token"]
        .as_str()
        .expect("a token for the rest");
    let rest = json(&server, &["messages", "list", "--page-token", token]).await;
    assert_eq!(rest["messages"].as_array().expect("a list").len(), 1);

    let resolved = json(&server, &["resolve", &prepared, "--commit"]).await;
    assert_eq!(resolved["state"], "CONFIRMED");
    assert_eq!(resolved["message"]["message_id"], prepared.as_str());
    // Resolve is idempotent; a contradicting one names the current state.
    let again = ok(&server, &["resolve", &prepared, "--commit"]).await;
    assert_eq!(again.trim(), "message is CONFIRMED");
    let (code, stderr) = fails(&server, &["resolve", &prepared, "--rollback"]).await;
    assert_eq!(code, Some(1));
    assert!(stderr.contains("FAILED_PRECONDITION"), "{stderr}");

    let stats = json(&server, &["stats"]).await;
    assert_eq!(stats["topics"][0]["topic"], TOPIC);
    assert_eq!(stats["topics"][0]["confirmed"], 2);
    assert_eq!(stats["topics"][0]["prepared"], 0);
    assert_eq!(stats["subscriptions"][0]["subscription"], "cli-billing");
    assert_eq!(stats["subscriptions"][0]["pending"], 2);
    assert!(stats["subscriptions"][0]["oldest_pending_age_seconds"].is_number());
    let table = ok(&server, &["stats"]).await;
    assert!(table.contains("TOPIC") && table.contains(TOPIC), "{table}");
    assert!(
        table.contains("SUBSCRIPTION") && table.contains("cli-billing"),
        "{table}"
    );
}

#[tokio::test]
async fn dead_letters_are_listed_and_redriven() {
    let server = TestServer::start().await;
    server
        .create_subscription(fast_subscription("cli-billing", TOPIC, 3))
        .await;
    let message_id = server.publish(TOPIC, "order-1").await;
    let delivery = server
        .receive_one("cli-billing", Duration::from_secs(5))
        .await;
    server
        .consumer()
        .reject(RejectRequest {
            subscription: "cli-billing".into(),
            receipt: delivery.receipt,
            reason: "malformed order".into(),
        })
        .await
        .expect("Reject");

    let dead = json(&server, &["dead-letters", "list", "cli-billing"]).await;
    let letters = dead["dead_letters"].as_array().expect("a list");
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0]["message_id"], message_id.as_str());
    assert_eq!(letters[0]["state"], "DEAD");
    assert_eq!(letters[0]["attempts"], 1);
    assert!(
        letters[0]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("malformed order")),
        "{dead}"
    );
    let table = ok(&server, &["dead-letters", "list", "cli-billing"]).await;
    assert!(
        table.contains(&message_id) && table.contains("malformed order"),
        "{table}"
    );

    // Redriving everything takes an explicit --all (or a filter).
    let (code, _) = fails(&server, &["dead-letters", "redrive", "cli-billing"]).await;
    assert_eq!(code, Some(2), "a usage error");
    let args = ["dead-letters", "redrive", "cli-billing", "--dry-run"];
    let dry = ok(
        &server,
        &[&args[..], &["--error-contains", "MALFORMED"]].concat(),
    )
    .await;
    assert_eq!(
        dry.trim(),
        "would redrive 1 dead delivery of subscription cli-billing"
    );
    let none = json(&server, &[&args[..], &["--key", "order-2"]].concat()).await;
    assert_eq!(
        (none["matched"].clone(), none["redriven"].clone()),
        (0.into(), 0.into())
    );
    let (code, stderr) = fails(&server, &[&args[..], &["--all", "--rate=-1"]].concat()).await;
    assert_eq!(code, Some(1));
    assert!(stderr.contains("rate"), "{stderr}");

    let redriven = json(
        &server,
        &["dead-letters", "redrive", "cli-billing", "--all"],
    )
    .await;
    assert_eq!(redriven["redriven"], 1);
    let text = ok(
        &server,
        &["dead-letters", "redrive", "cli-billing", &message_id],
    )
    .await;
    assert_eq!(
        text.trim(),
        "redrove 0 dead deliveries of subscription cli-billing"
    );
    let dead = json(&server, &["dead-letters", "list", "cli-billing"]).await;
    assert_eq!(dead["dead_letters"], Value::Array(Vec::new()));
    assert_eq!(
        server
            .delivery_status(&message_id, "cli-billing")
            .await
            .state(),
        courier::proto::DeliveryState::Pending
    );

    let (code, stderr) = fails(&server, &["dead-letters", "list", "nope"]).await;
    assert_eq!(code, Some(1));
    assert!(stderr.contains("NOT_FOUND"), "{stderr}");
}

#[tokio::test]
async fn an_unreachable_server_is_a_clear_error() {
    let addr = free_port();
    let output = courier(&["stats", "--addr", &addr.to_string()]).await;
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "cannot reach courier at http://{addr}: connection refused"
        )),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());

    let output = courier(&["subscriptions", "list", "--addr", "http://[::1"]).await;
    assert_eq!(
        output.status.code(),
        Some(2),
        "a malformed --addr is a usage error"
    );
}
