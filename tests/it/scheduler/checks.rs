//! Check-back: the scheduler asks a silent producer's Checker about a PREPARED message and
//! applies its answer, retries with backoff, and parks the message as UNRESOLVED after
//! `checks.max_attempts` answers that decide nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use courier::proto::{AckStatus, Decision, MessageOutcome, MessageState, ResolveRequest};
use courier::scheduler::{CheckCounts, PassReport};

use super::fakes::{CheckBack, always, closed_endpoint};
use super::{after, checks, first_check};
use crate::harness::*;

#[tokio::test]
async fn a_check_answered_commit_confirms_and_delivers() {
    let (server, checker) = CheckBack::default().checker(always(Decision::Commit)).await;
    let id = server.prepare(TOPIC, "order-1").await;
    // A message that asks for its first check later is not due yet.
    let mut later = prepare_request(PRODUCER, TOPIC, "order-2");
    later.check_after = secs(60);
    server.producer().prepare(later).await.expect("Prepare");

    let report = server.pass(first_check()).await;
    assert_eq!(report, checks(|c| c.confirmed = 1));
    let calls = checker.calls();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.message_id, id);
    assert_eq!(
        (
            call.producer.as_str(),
            call.topic.as_str(),
            call.key.as_str()
        ),
        (PRODUCER, TOPIC, "order-1")
    );
    assert_eq!(call.headers, headers_of("order-1"));
    assert_eq!(call.check_attempt, 1);
    assert!(call.prepared_at.is_some());

    let message = server.status(&id).await;
    assert_eq!(message.state(), MessageState::Confirmed);
    assert_eq!(message.check_attempts, 1);
    let deliveries = server.receive(SUB, 10, Duration::from_secs(2)).await;
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].message_id, id);
    assert_eq!(deliveries[0].payload, payload_of("order-1"));
}

#[tokio::test]
async fn a_check_answered_rollback_cancels() {
    let (server, checker) = CheckBack::default()
        .checker(always(Decision::Rollback))
        .await;
    let id = server.prepare(TOPIC, "order-1").await;

    let report = server.pass(first_check()).await;
    assert_eq!(report, checks(|c| c.cancelled = 1));
    assert_eq!(checker.calls().len(), 1);
    let message = server.status(&id).await;
    assert_eq!(message.state(), MessageState::Cancelled);
    assert!(message.deliveries.is_empty());
    assert!(server.receive(SUB, 10, Duration::ZERO).await.is_empty());
    // Final: a later Confirm contradicts it.
    assert_precondition_names(server.confirm(&id).await, "CANCELLED");
}

#[tokio::test]
async fn unknown_answers_make_the_message_unresolved_after_exactly_max_attempts() {
    let (server, checker) = CheckBack::default()
        .max_attempts(3)
        .checker(always(Decision::Unknown))
        .await;
    let id = server.prepare(TOPIC, "order-1").await;

    // Each pass an hour apart is past any backoff (at most checks.max_backoff, 10 min).
    let rescheduled = checks(|c| c.rescheduled = 1);
    assert_eq!(server.pass(first_check()).await, rescheduled);
    let message = server.status(&id).await;
    assert_eq!(message.state(), MessageState::Prepared);
    assert_eq!(message.check_attempts, 1);
    assert!(
        message.last_check_error.contains("UNKNOWN"),
        "{}",
        message.last_check_error
    );
    // The next check waits for the backoff: 10 s ± 20 % after this one.
    let next = to_system_time(&message.next_check_at);
    let wait = next
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    assert!(
        wait > Duration::from_secs(5) && wait < Duration::from_secs(30),
        "{wait:?}"
    );

    assert_eq!(server.pass(after(3600)).await, rescheduled);
    assert_eq!(server.pass(after(7200)).await, checks(|c| c.unresolved = 1));
    let message = server.status(&id).await;
    assert_eq!(message.state(), MessageState::Unresolved);
    assert_eq!(message.outcome(), MessageOutcome::Unresolved);
    assert_eq!(message.check_attempts, 3);
    assert!(message.last_check_error.contains("UNKNOWN"));

    // Held: never checked again, never cancelled by itself.
    assert_eq!(server.pass(after(86_400)).await, PassReport::default());
    let attempts: Vec<u32> = checker.calls().iter().map(|c| c.check_attempt).collect();
    assert_eq!(attempts, [1, 2, 3]);
    assert_eq!(server.status(&id).await.state(), MessageState::Unresolved);
}

#[tokio::test]
async fn a_producer_confirm_wins_over_a_slow_check_answering_rollback() {
    let release = Arc::new(tokio::sync::Notify::new());
    let (server, checker) = CheckBack::default()
        .timeout(Duration::from_secs(30))
        .checker({
            let release = release.clone();
            move |_| {
                let release = release.clone();
                Box::pin(async move {
                    release.notified().await;
                    Ok(Decision::Rollback)
                })
            }
        })
        .await;
    let id = server.prepare(TOPIC, "order-1").await;

    let pass = tokio::spawn({
        let scheduler = server.scheduler.clone();
        async move { scheduler.pass(first_check()).await }
    });
    eventually(Duration::from_secs(5), "the check is in flight", || async {
        (!checker.calls().is_empty()).then_some(())
    })
    .await;
    // The producer's own decision lands while the checker is still thinking.
    assert_eq!(
        server.confirm(&id).await.expect("Confirm"),
        MessageState::Confirmed
    );
    release.notify_waiters();

    let report = pass.await.expect("the pass does not panic");
    assert_eq!(report, checks(|c| c.stale = 1));
    let message = server.status(&id).await;
    assert_eq!(message.state(), MessageState::Confirmed);
    let deliveries = server.receive(SUB, 10, Duration::from_secs(2)).await;
    assert_eq!(deliveries.len(), 1, "the confirmed message is delivered");
    assert_eq!(
        server.ack(SUB, &[deliveries[0].receipt.as_str()]).await,
        [AckStatus::Ok]
    );
    assert_eq!(
        server.status(&id).await.outcome(),
        MessageOutcome::Delivered
    );
}

#[tokio::test]
async fn an_unreachable_checker_is_asked_again_later() {
    let server = CheckBack::default()
        .endpoint(&closed_endpoint().await)
        .await;
    let id = server.prepare(TOPIC, "order-1").await;

    let report = server.pass(first_check()).await;
    assert_eq!(report, checks(|c| c.rescheduled = 1));
    let message = server.status(&id).await;
    assert_eq!(message.state(), MessageState::Prepared);
    assert_eq!(message.check_attempts, 1);
    assert!(
        message.last_check_error.contains("UNAVAILABLE"),
        "the error says the checker could not be reached: {}",
        message.last_check_error
    );
    assert!(message.next_check_at.is_some());
}

#[tokio::test]
async fn a_checker_that_does_not_answer_in_time_counts_as_no_answer() {
    let (server, checker) = CheckBack::default()
        .timeout(Duration::from_millis(200))
        .checker(|_| {
            Box::pin(async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok(Decision::Commit)
            })
        })
        .await;
    let id = server.prepare(TOPIC, "order-1").await;

    let started = Instant::now();
    let report = server.pass(first_check()).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the check gave up at its timeout"
    );
    assert_eq!(report, checks(|c| c.rescheduled = 1));
    assert_eq!(checker.calls().len(), 1);
    let message = server.status(&id).await;
    assert_eq!(
        message.state(),
        MessageState::Prepared,
        "the late COMMIT is not applied"
    );
    assert!(
        message.last_check_error.contains("no answer within 200ms"),
        "{}",
        message.last_check_error
    );
}

#[tokio::test]
async fn a_producer_without_a_checker_is_retried_then_unresolved() {
    let server = CheckBack::default().max_attempts(2).without_checker().await;
    let id = server.prepare(TOPIC, "order-1").await;

    let report = server.pass(first_check()).await;
    assert_eq!(report, checks(|c| c.rescheduled = 1));
    let message = server.status(&id).await;
    assert!(
        message
            .last_check_error
            .contains("no checker registered for producer shop"),
        "{}",
        message.last_check_error
    );
    let report = server.pass(after(3600)).await;
    assert_eq!(report, checks(|c| c.unresolved = 1));
    assert_eq!(server.status(&id).await.state(), MessageState::Unresolved);
}

#[tokio::test]
async fn unresolved_messages_take_a_resolve_or_the_producers_late_decision() {
    let (server, checker) = CheckBack::default()
        .max_attempts(1)
        .checker(always(Decision::Unknown))
        .await;
    let resolved = server.prepare(TOPIC, "order-1").await;
    let confirmed = server.prepare(TOPIC, "order-2").await;
    let cancelled = server.prepare(TOPIC, "order-3").await;

    let report = server.pass(first_check()).await;
    assert_eq!(report, checks(|c| c.unresolved = 3));

    let mut admin = server.admin();
    let state = admin
        .resolve(ResolveRequest {
            message: by_id(&resolved),
            decision: Decision::Commit as i32,
        })
        .await
        .expect("Resolve")
        .into_inner()
        .state();
    assert_eq!(state, MessageState::Confirmed);
    assert_eq!(
        server.confirm(&confirmed).await.expect("a late Confirm"),
        MessageState::Confirmed
    );
    assert_eq!(
        server.cancel(&cancelled).await.expect("Cancel"),
        MessageState::Cancelled
    );

    assert_eq!(
        server.receive(SUB, 10, Duration::from_secs(2)).await.len(),
        2
    );
    assert_eq!(
        server.pass(after(86_400)).await.checks,
        CheckCounts::default()
    );
    assert_eq!(
        checker.calls().len(),
        3,
        "one check each, none after the decisions"
    );
}

#[tokio::test]
async fn schedulers_sharing_a_store_ask_about_each_message_once() {
    let (server, checker) = CheckBack::default()
        .checker(|_| {
            Box::pin(async {
                tokio::time::sleep(Duration::from_millis(200)).await;
                Ok(Decision::Commit)
            })
        })
        .await;
    for key in ["a", "b", "c", "d", "e"] {
        server.prepare(TOPIC, key).await;
    }
    // A second scheduler over the same store, like a second replica.
    let other = server.scheduler.clone();
    let now = first_check();
    let (one, two) = tokio::join!(server.pass(now), other.pass(now));
    assert_eq!(one.checks.confirmed + two.checks.confirmed, 5);
    let mut asked: Vec<String> = checker.calls().into_iter().map(|c| c.key).collect();
    asked.sort();
    assert_eq!(
        asked,
        ["a", "b", "c", "d", "e"],
        "each message is claimed by one scheduler"
    );
}
