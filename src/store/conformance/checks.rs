//! Conformance: claiming and recording check-backs.

use std::collections::HashSet;
use std::time::Duration;

use super::TestStore;
use super::helpers::*;
use crate::domain::{
    CheckerRegistration, Decision, MessageId, MessageOutcome, MessageState, Timestamp,
};
use crate::store::{CheckRecorded, CheckVerdict, NewMessage, StoreError};

pub async fn check_claims_take_due_messages_and_hold_them(t: &TestStore) {
    let store = t.store.as_ref();
    let now = Timestamp::now();
    subscribe(store, 5, now).await;
    let checker = CheckerRegistration {
        producer: name(PRODUCER),
        endpoint: "http://10.0.0.7:7001".into(),
        timeout: Duration::from_secs(3),
    };
    store.register_checker(checker.clone()).await.unwrap();
    let ids = [
        prepare(store, "c0", now).await,
        prepare(store, "c1", later(now, 1)).await,
        prepare(store, "c2", later(now, 2)).await,
    ];
    let other = NewMessage {
        producer: name("warehouse"),
        ..message(TOPIC, "no-checker", false, later(now, 3))
    };
    let without_checker = store.insert_message(other).await.unwrap().message_id;
    publish(store, "published", now).await; // never checked
    assert_eq!(
        store.next_check_due().await.unwrap(),
        Some(now.plus(CHECK_AFTER))
    );

    assert!(
        store
            .claim_due_checks(later(now, 9_999), 10, HOLD)
            .await
            .unwrap()
            .is_empty()
    );
    let due = now.plus(CHECK_AFTER);
    let claimed = store
        .claim_due_checks(later(due, 1), 2, HOLD)
        .await
        .unwrap();
    let claimed_ids: Vec<MessageId> = claimed.iter().map(|c| c.message_id).collect();
    assert_eq!(claimed_ids, [ids[0], ids[1]], "earliest first");
    let first = &claimed[0];
    assert_eq!(first.attempt, 1);
    assert_eq!(first.producer.as_str(), PRODUCER);
    assert_eq!(first.topic.as_str(), TOPIC);
    assert_eq!(first.key.as_str(), "c0");
    assert_eq!(first.prepared_at, now);
    assert_eq!(first.headers, message(TOPIC, "c0", false, now).headers);
    assert_eq!(first.checker, Some(checker));
    // Held: not claimed again until the hold ends, whoever asks.
    let rest = store
        .claim_due_checks(later(due, 100), 10, HOLD)
        .await
        .unwrap();
    let rest_ids: Vec<MessageId> = rest.iter().map(|c| c.message_id).collect();
    assert_eq!(rest_ids, [ids[2], without_checker]);
    assert_eq!(rest[1].checker, None);
    let record = store.get_message(&by_id(ids[0])).await.unwrap();
    assert_eq!(record.next_check_at, Some(later(due, 1).plus(HOLD)));
    assert_eq!(record.state, MessageState::Prepared);
    assert_eq!(record.check_attempts, 0, "a claim counts no attempt");
    assert_eq!(
        store.next_check_due().await.unwrap(),
        Some(later(due, 1).plus(HOLD))
    );
    // A check lost with its scheduler is claimed again after the hold, as the same attempt.
    let again = store
        .claim_due_checks(later(due, 1).plus(HOLD), 10, HOLD)
        .await
        .unwrap();
    assert_eq!(again.len(), 2);
    assert!(again.iter().all(|c| c.attempt == 1));
}

pub async fn record_check_applies_once_and_never_undoes_a_decision(t: &TestStore) {
    let store = t.store.as_ref();
    let now = Timestamp::now();
    subscribe(store, 5, now).await;
    let id = prepare(store, "checked", now).await;
    let retry_at = later(now, 60_000);
    let unknown = CheckVerdict::RetryAt {
        at: retry_at,
        error: "checker answered UNKNOWN".into(),
    };
    assert_eq!(
        store
            .record_check(id, 1, unknown.clone(), now)
            .await
            .unwrap(),
        CheckRecorded::Applied(MessageState::Prepared)
    );
    // The same attempt again (another replica, a retried call): counted once.
    assert_eq!(
        store.record_check(id, 1, unknown, now).await.unwrap(),
        CheckRecorded::Stale(MessageState::Prepared)
    );
    let record = store.get_message(&by_id(id)).await.unwrap();
    assert_eq!(record.check_attempts, 1);
    assert_eq!(record.next_check_at, Some(retry_at));
    assert_eq!(
        record.last_check_error.as_deref(),
        Some("checker answered UNKNOWN")
    );
    let commit = CheckVerdict::Decided(Decision::Commit);
    assert_eq!(
        store
            .record_check(id, 2, commit.clone(), now)
            .await
            .unwrap(),
        CheckRecorded::Applied(MessageState::Confirmed)
    );
    let record = store.get_message(&by_id(id)).await.unwrap();
    assert_eq!(record.state, MessageState::Confirmed);
    assert_eq!(record.check_attempts, 2);
    assert_eq!(record.last_check_error, None);
    assert_eq!(record.next_check_at, None);
    assert_eq!(record.deliveries.len(), 1, "routed as a Confirm is");

    // The producer decided while the check was in flight: the late answer changes nothing.
    let cancelled = prepare(store, "cancelled-meanwhile", now).await;
    store
        .decide(&by_id(cancelled), Decision::Rollback, now)
        .await
        .unwrap();
    assert_eq!(
        store.record_check(cancelled, 1, commit, now).await.unwrap(),
        CheckRecorded::Stale(MessageState::Cancelled)
    );
    assert_eq!(
        store.get_message(&by_id(cancelled)).await.unwrap().state,
        MessageState::Cancelled
    );

    let rolled_back = prepare(store, "rolled-back", now).await;
    assert_eq!(
        store
            .record_check(
                rolled_back,
                1,
                CheckVerdict::Decided(Decision::Rollback),
                now
            )
            .await
            .unwrap(),
        CheckRecorded::Applied(MessageState::Cancelled)
    );

    let given_up = prepare(store, "given-up", now).await;
    let give_up = CheckVerdict::GiveUp {
        error: "no checker registered".into(),
    };
    assert_eq!(
        store.record_check(given_up, 1, give_up, now).await.unwrap(),
        CheckRecorded::Applied(MessageState::Unresolved)
    );
    let record = store.get_message(&by_id(given_up)).await.unwrap();
    assert_eq!(record.state, MessageState::Unresolved);
    assert_eq!(record.next_check_at, None);
    assert_eq!(record.outcome(), MessageOutcome::Unresolved);
    // Held for a person, or the producer's own late Confirm.
    assert_eq!(
        store
            .decide(&by_id(given_up), Decision::Commit, now)
            .await
            .unwrap(),
        MessageState::Confirmed
    );
    assert!(
        store
            .claim_due_checks(later(now, 3_600_000), 10, HOLD)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        store
            .record_check(
                MessageId::new(),
                1,
                CheckVerdict::Decided(Decision::Commit),
                now
            )
            .await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn concurrent_check_claims_never_share_a_message(t: &TestStore) {
    const MESSAGES: usize = 200;
    let now = Timestamp::now();
    subscribe(t.store.as_ref(), 5, now).await;
    for i in 0..MESSAGES {
        prepare(t.store.as_ref(), &format!("p{i}"), now).await;
    }
    let (replica, _) = t.replica().await;
    let due = now.plus(CHECK_AFTER);
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let store = if worker % 2 == 0 {
            t.store.clone()
        } else {
            replica.clone()
        };
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let claimed = store.claim_due_checks(due, 7, HOLD).await.unwrap();
                if claimed.is_empty() {
                    return mine;
                }
                mine.extend(claimed.into_iter().map(|c| c.message_id));
            }
        }));
    }
    let mut seen = HashSet::new();
    for task in tasks {
        for id in task.await.unwrap() {
            assert!(seen.insert(id), "message {id} claimed twice");
        }
    }
    assert_eq!(seen.len(), MESSAGES);
}
