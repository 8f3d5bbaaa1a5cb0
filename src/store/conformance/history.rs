//! Conformance: a message's history (check answers, failed attempts, who decided) and the
//! dead-letter filters, dry-run counts and paced redrives.

use std::time::Duration;

use super::TestStore;
use super::helpers::*;
use crate::domain::{Decision, DeliveryState, MessageState, Timestamp};
use crate::store::history::EVENTS_PER_MESSAGE;
use crate::store::{
    Batch, CheckVerdict, DeadLetters, DecidedBy, EventKind, MessageEvent, StoreError,
};

/// The kind, outcome and detail of each event, oldest first.
fn summary(events: &[MessageEvent]) -> Vec<(EventKind, Option<&str>, Option<&str>)> {
    events
        .iter()
        .map(|e| (e.kind, e.outcome.as_deref(), e.detail.as_deref()))
        .collect()
}

pub async fn history_keeps_check_answers_failures_and_the_decider(t: &TestStore) {
    let store = t.store.as_ref();
    let now = Timestamp::from_millis(1_000_000);
    let sub = subscribe(store, 5, now).await;
    let id = prepare(store, "checked", now).await;
    let unknown = CheckVerdict::RetryAt {
        at: later(now, 10_000),
        error: "the checker answered UNKNOWN".into(),
    };
    store
        .record_check(id, 1, unknown, later(now, 1))
        .await
        .unwrap();
    let commit = CheckVerdict::Decided(Decision::Commit);
    store
        .record_check(id, 2, commit, later(now, 2))
        .await
        .unwrap();

    // Every way an attempt can fail, in turn.
    let at = later(now, 3);
    let receipt = lease_one(store, &sub, at).await;
    store
        .nack(&receipt, Some(Duration::ZERO), None, at)
        .await
        .unwrap();
    lease_one(store, &sub, at).await;
    store.expire_leases(at.plus(ACK_DEADLINE)).await.unwrap();
    let at = later(at.plus(ACK_DEADLINE), 60_000);
    let receipt = lease_one(store, &sub, at).await;
    store
        .fail_delivery(&sub, &receipt, "receiver said UNAVAILABLE", at)
        .await
        .unwrap();
    let at = later(at, 60_000);
    let receipt = lease_one(store, &sub, at).await;
    store
        .reject(&receipt, "no such customer", at)
        .await
        .unwrap();

    let history = store.message_history(id).await.unwrap();
    assert_eq!(history.decided, Some((later(now, 2), DecidedBy::Checker)));
    assert_eq!(
        summary(&history.events),
        vec![
            (
                EventKind::Check,
                Some("RETRY"),
                Some("the checker answered UNKNOWN")
            ),
            (EventKind::Check, Some("COMMIT"), None),
            (
                EventKind::Nacked,
                Some("RETRY"),
                Some("nacked by the consumer")
            ),
            (
                EventKind::LeaseExpired,
                Some("RETRY"),
                Some("lease expired before an ack")
            ),
            (
                EventKind::PushFailed,
                Some("RETRY"),
                Some("receiver said UNAVAILABLE")
            ),
            (
                EventKind::Rejected,
                Some("DEAD"),
                Some("rejected by the consumer: no such customer")
            ),
        ]
    );
    let attempts: Vec<Option<u32>> = history.events.iter().map(|e| e.attempt).collect();
    assert_eq!(
        attempts,
        [Some(1), Some(2), Some(1), Some(2), Some(3), Some(4)]
    );
    assert!(
        history.events[2..]
            .iter()
            .all(|e| e.subscription.as_ref() == Some(&sub.name))
    );
    assert_eq!(history.events[0].at, later(now, 1));

    // The happy path writes no event; the producer decided.
    let easy = publish(store, "easy", now).await;
    let receipt = lease_one(store, &sub, now).await;
    assert_eq!(receipt.message_id, easy);
    store.ack(&[receipt], now).await.unwrap();
    let history = store.message_history(easy).await.unwrap();
    assert_eq!(history.decided, Some((now, DecidedBy::Producer)));
    assert!(history.events.is_empty());
    assert_eq!(history.delivery_changes, vec![(sub.name.clone(), now)]);
    assert_eq!(history.payload_head, b"payload of easy");

    let open = prepare(store, "open", now).await;
    assert_eq!(store.message_history(open).await.unwrap().decided, None);
    assert!(matches!(
        store.message_history(crate::domain::MessageId::new()).await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn resolve_records_the_operator_once(t: &TestStore) {
    let store = t.store.as_ref();
    let now = Timestamp::from_millis(1_000_000);
    subscribe(store, 5, now).await;
    let id = prepare(store, "stuck", now).await;
    let give_up = CheckVerdict::GiveUp {
        error: "checker http://10.0.0.7:7001: timed out".into(),
    };
    store.record_check(id, 1, give_up, now).await.unwrap();
    let at = later(now, 5);
    let state = store
        .resolve(&by_id(id), Decision::Rollback, "alice", at)
        .await;
    assert_eq!(state.unwrap(), MessageState::Cancelled);
    // A repeat changes nothing and records nothing.
    let again = store
        .resolve(&by_id(id), Decision::Rollback, "bob", later(at, 1))
        .await;
    assert_eq!(again.unwrap(), MessageState::Cancelled);
    let history = store.message_history(id).await.unwrap();
    assert_eq!(history.decided, Some((at, DecidedBy::Operator)));
    assert_eq!(
        summary(&history.events),
        vec![
            (
                EventKind::Check,
                Some("GAVE_UP"),
                Some("checker http://10.0.0.7:7001: timed out")
            ),
            (EventKind::Resolved, Some("ROLLBACK"), Some("alice")),
        ]
    );
}

pub async fn history_keeps_only_the_newest_events(t: &TestStore) {
    let store = t.store.as_ref();
    let now = Timestamp::from_millis(1_000_000);
    let sub = subscribe(store, 1_000, now).await;
    publish(store, "flaky", now).await;
    let rounds = EVENTS_PER_MESSAGE as u32 + 5;
    let mut id = None;
    // Nacks and expired leases in turn: the single-event and the bulk (sweep) paths both trim.
    for round in 0..rounds {
        let at = later(now, u64::from(round) * 200_000);
        let receipt = lease_one(store, &sub, at).await;
        id = Some(receipt.message_id);
        if round % 2 == 0 {
            store
                .nack(&receipt, Some(Duration::ZERO), None, at)
                .await
                .unwrap();
        } else {
            assert_eq!(
                store
                    .expire_leases(at.plus(ACK_DEADLINE))
                    .await
                    .unwrap()
                    .ended,
                1
            );
        }
    }
    let history = store.message_history(id.unwrap()).await.unwrap();
    assert_eq!(history.events.len() as i64, EVENTS_PER_MESSAGE);
    assert_eq!(history.events.first().unwrap().attempt, Some(6));
    assert_eq!(history.events.last().unwrap().attempt, Some(rounds));
}

/// Kills the deliveries of four messages to `SUB` one by one, 10 s apart, with these reasons.
async fn four_dead_letters(
    store: &dyn crate::store::Store,
    now: Timestamp,
) -> Vec<crate::domain::MessageId> {
    let sub = subscribe(store, 1, now).await;
    let reasons = [
        "Timeout talking to db",
        "bad JSON",
        "timeout again",
        "bad JSON",
    ];
    let mut ids = Vec::new();
    for (i, reason) in reasons.iter().enumerate() {
        let at = later(now, 10_000 * i as u64);
        let id = publish(store, &format!("order-{i}"), at).await;
        let receipt = lease_one(store, &sub, at).await;
        assert_eq!(receipt.message_id, id);
        store.reject(&receipt, reason, at).await.unwrap();
        ids.push(id);
    }
    ids
}

pub async fn dead_letter_filters_choose_what_is_counted_and_acted_on(t: &TestStore) {
    let store = t.store.as_ref();
    let now = Timestamp::from_millis(1_000_000);
    let ids = four_dead_letters(store, now).await;
    let count =
        |chosen: DeadLetters| async move { store.count_dead_letters(&chosen).await.unwrap() };

    assert_eq!(count(dead_of(SUB, &[])).await, 4);
    let mut by_error = dead_of(SUB, &[]);
    by_error.error_contains = Some("TIMEOUT".into());
    assert_eq!(count(by_error.clone()).await, 2);
    let mut by_time = dead_of(SUB, &[]);
    by_time.dead_from = Some(later(now, 10_000));
    by_time.dead_until = Some(later(now, 30_000));
    assert_eq!(count(by_time).await, 2);
    let mut by_key = dead_of(SUB, &[]);
    by_key.key = Some(key("order-3"));
    assert_eq!(count(by_key).await, 1);
    let mut both = dead_of(SUB, &[ids[0], ids[1]]);
    both.error_contains = Some("json".into());
    assert_eq!(count(both).await, 1);
    assert!(matches!(
        store.count_dead_letters(&dead_of("nobody", &[])).await,
        Err(StoreError::NotFound(_))
    ));

    // A paced redrive of the two timeouts: the second is due half a second after the first.
    let at = later(now, 60_000);
    assert_eq!(store.redrive(&by_error, 2.0, at).await.unwrap(), 2);
    let first = delivery(store, ids[0]).await;
    let third = delivery(store, ids[2]).await;
    assert_eq!(
        (first.state, first.next_attempt_at),
        (DeliveryState::Pending, Some(at))
    );
    assert_eq!(third.next_attempt_at, Some(later(at, 500)));
    assert_eq!(
        store
            .lease(&subscription(SUB, TOPIC, 1, now), Batch::messages(10), at)
            .await
            .unwrap()
            .len(),
        1
    );
    let history = store.message_history(ids[2]).await.unwrap();
    assert_eq!(history.events.last().unwrap().kind, EventKind::Redriven);

    // Discard what is left by filter; what it did not choose stays dead.
    let mut json = dead_of(SUB, &[]);
    json.error_contains = Some("bad json".into());
    json.key = Some(key("order-1"));
    assert_eq!(store.discard_dead_letters(&json, at).await.unwrap(), 1);
    assert_eq!(
        delivery(store, ids[1]).await.state,
        DeliveryState::Discarded
    );
    assert_eq!(delivery(store, ids[3]).await.state, DeliveryState::Dead);
    let history = store.message_history(ids[1]).await.unwrap();
    assert_eq!(history.events.last().unwrap().kind, EventKind::Discarded);
    assert_eq!(count(dead_of(SUB, &[])).await, 1);
}
