//! Conformance: Prepare, Publish, Confirm, Cancel and Resolve.

use std::collections::HashSet;
use std::time::Duration;

use super::TestStore;
use super::helpers::*;
use crate::domain::{
    Decision, DeliveryState, MessageId, MessageOutcome, MessageRef, MessageState, Timestamp,
};
use crate::store::{Batch, NewMessage, StoreError};

pub async fn insert_requires_a_subscription(t: &TestStore) {
    let store = t.store.as_ref();
    let now = Timestamp::now();
    for publish in [false, true] {
        assert!(matches!(
            store
                .insert_message(message(TOPIC, "k1", publish, now))
                .await,
            Err(StoreError::FailedPrecondition(_))
        ));
    }
    assert!(matches!(
        store
            .get_message(&MessageRef::ProducerKey {
                producer: name(PRODUCER),
                key: key("k1")
            })
            .await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn insert_dedups_on_producer_key_and_rejects_other_content(t: &TestStore) {
    let store = t.store.as_ref();
    let now = Timestamp::now();
    subscribe(store, 5, now).await;
    let first = message(TOPIC, "order-1", false, now);
    let inserted = store.insert_message(first.clone()).await.unwrap();
    assert!(inserted.created);
    assert_eq!(inserted.message_id, first.id);
    assert_eq!(inserted.state, MessageState::Prepared);

    // The same content again (a retried Prepare): the existing message.
    let retry = NewMessage {
        id: MessageId::new(),
        now: later(now, 1_000),
        ..first.clone()
    };
    let repeated = store.insert_message(retry.clone()).await.unwrap();
    assert!(!repeated.created);
    assert_eq!(repeated.message_id, first.id);
    assert_eq!(repeated.state, MessageState::Prepared);
    // Publish with the same content also answers with the existing message and its state.
    let as_publish = NewMessage {
        publish: true,
        ..retry.clone()
    };
    assert_eq!(
        store.insert_message(as_publish).await.unwrap().message_id,
        first.id
    );

    // Other content under the same key.
    let other_payload = NewMessage {
        payload: b"else".to_vec(),
        ..retry.clone()
    };
    let mut other_headers = retry.clone();
    other_headers.headers.insert("extra".into(), "1".into());
    store
        .create_subscription(subscription("ledger", "payments", 5, now))
        .await
        .unwrap();
    let other_topic = NewMessage {
        topic: name("payments"),
        ..retry.clone()
    };
    for conflicting in [other_payload, other_headers, other_topic] {
        match store.insert_message(conflicting).await {
            Err(StoreError::AlreadyExists(text)) => assert!(text.contains(&first.id.to_string())),
            other => panic!("expected AlreadyExists, got {other:?}"),
        }
    }

    // The key belongs to the producer: another producer may use it.
    let other_producer = NewMessage {
        id: MessageId::new(),
        producer: name("warehouse"),
        ..first.clone()
    };
    assert!(store.insert_message(other_producer).await.unwrap().created);

    let record = store.get_message(&by_id(first.id)).await.unwrap();
    assert_eq!(record.producer.as_str(), PRODUCER);
    assert_eq!(record.topic.as_str(), TOPIC);
    assert_eq!(record.key.as_str(), "order-1");
    assert_eq!(record.headers, first.headers);
    assert_eq!(record.payload_bytes, first.payload.len() as u64);
    assert_eq!(record.state, MessageState::Prepared);
    assert_eq!(record.created_at, now);
    assert_eq!(record.next_check_at, Some(now.plus(first.check_after)));
    assert!(record.deliveries.is_empty());
    assert_eq!(record.outcome(), MessageOutcome::Prepared);
    let by_key = MessageRef::ProducerKey {
        producer: name(PRODUCER),
        key: key("order-1"),
    };
    assert_eq!(store.get_message(&by_key).await.unwrap(), record);
}

pub async fn publish_routes_to_every_subscription(t: &TestStore) {
    let store = t.store.as_ref();
    let now = Timestamp::now();
    subscribe(store, 5, now).await;
    store
        .create_subscription(subscription("audit", TOPIC, 5, now))
        .await
        .unwrap();
    let published = store
        .insert_message(message(TOPIC, "k", true, now))
        .await
        .unwrap();
    assert!(published.created);
    assert_eq!(published.state, MessageState::Confirmed);
    let record = store
        .get_message(&by_id(published.message_id))
        .await
        .unwrap();
    let deliveries: Vec<(String, DeliveryState, u32, Option<Timestamp>)> = record
        .deliveries
        .iter()
        .map(|d| {
            (
                d.subscription.to_string(),
                d.state,
                d.attempts,
                d.next_attempt_at,
            )
        })
        .collect();
    assert_eq!(
        deliveries,
        [
            ("audit".into(), DeliveryState::Pending, 0, Some(now)),
            ("billing".into(), DeliveryState::Pending, 0, Some(now)),
        ]
    );
    assert_eq!(record.next_check_at, None);
    assert_eq!(record.outcome(), MessageOutcome::Delivering);
}

pub async fn concurrent_inserts_of_one_key_create_one_message(t: &TestStore) {
    let now = Timestamp::now();
    subscribe(t.store.as_ref(), 5, now).await;
    let (replica, _) = t.replica().await;
    let template = message(TOPIC, "contended", false, now);
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = if i % 2 == 0 {
            t.store.clone()
        } else {
            replica.clone()
        };
        let attempt = NewMessage {
            id: MessageId::new(),
            ..template.clone()
        };
        tasks.push(tokio::spawn(
            async move { store.insert_message(attempt).await },
        ));
    }
    let mut ids = HashSet::new();
    let mut created = 0;
    for task in tasks {
        let outcome = task.await.unwrap().unwrap();
        ids.insert(outcome.message_id);
        created += usize::from(outcome.created);
    }
    assert_eq!(created, 1);
    assert_eq!(ids.len(), 1);
}

pub async fn decide_moves_open_messages_and_repeats_idempotently(t: &TestStore) {
    let store = t.store.as_ref();
    let now = Timestamp::now();
    subscribe(store, 5, now).await;
    let confirmed = store
        .insert_message(message(TOPIC, "to-confirm", false, now))
        .await
        .unwrap()
        .message_id;
    let at = later(now, 2_000);
    for _ in 0..2 {
        let state = store
            .decide(&by_id(confirmed), Decision::Commit, at)
            .await
            .unwrap();
        assert_eq!(state, MessageState::Confirmed);
    }
    let record = store.get_message(&by_id(confirmed)).await.unwrap();
    assert_eq!(record.state, MessageState::Confirmed);
    assert_eq!(record.updated_at, at);
    assert_eq!(record.next_check_at, None);
    assert_eq!(record.deliveries.len(), 1, "a repeated confirm routes once");
    assert_eq!(record.deliveries[0].next_attempt_at, Some(at));

    let cancelled = store
        .insert_message(message(TOPIC, "to-cancel", false, now))
        .await
        .unwrap()
        .message_id;
    let by_key = MessageRef::ProducerKey {
        producer: name(PRODUCER),
        key: key("to-cancel"),
    };
    for _ in 0..2 {
        let state = store.decide(&by_key, Decision::Rollback, at).await.unwrap();
        assert_eq!(state, MessageState::Cancelled);
    }
    let record = store.get_message(&by_id(cancelled)).await.unwrap();
    assert_eq!(record.state, MessageState::Cancelled);
    assert!(record.deliveries.is_empty());
    assert_eq!(record.outcome(), MessageOutcome::Cancelled);
}

pub async fn decide_rejects_contradictions_and_unknown_messages(t: &TestStore) {
    let store = t.store.as_ref();
    let now = Timestamp::now();
    subscribe(store, 5, now).await;
    let confirmed = publish(store, "confirmed", now).await;
    assert!(matches!(
        store
            .decide(&by_id(confirmed), Decision::Rollback, now)
            .await,
        Err(StoreError::MessageConflict {
            current: MessageState::Confirmed
        })
    ));
    let cancelled = store
        .insert_message(message(TOPIC, "cancelled", false, now))
        .await
        .unwrap()
        .message_id;
    store
        .decide(&by_id(cancelled), Decision::Rollback, now)
        .await
        .unwrap();
    assert!(matches!(
        store.decide(&by_id(cancelled), Decision::Commit, now).await,
        Err(StoreError::MessageConflict {
            current: MessageState::Cancelled
        })
    ));
    assert!(matches!(
        store
            .decide(&by_id(MessageId::new()), Decision::Commit, now)
            .await,
        Err(StoreError::NotFound(_))
    ));
    let unknown_key = MessageRef::ProducerKey {
        producer: name(PRODUCER),
        key: key("never-prepared"),
    };
    assert!(matches!(
        store.decide(&unknown_key, Decision::Rollback, now).await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn concurrent_decisions_have_one_winner(t: &TestStore) {
    let now = Timestamp::now();
    subscribe(t.store.as_ref(), 5, now).await;
    let (replica, _) = t.replica().await;
    for round in 0..10 {
        let id = t
            .store
            .insert_message(message(TOPIC, &format!("race-{round}"), false, now))
            .await
            .unwrap()
            .message_id;
        let commit = {
            let store = t.store.clone();
            tokio::spawn(async move { store.decide(&by_id(id), Decision::Commit, now).await })
        };
        let rollback = {
            let store = replica.clone();
            tokio::spawn(async move { store.decide(&by_id(id), Decision::Rollback, now).await })
        };
        let (commit, rollback) = (commit.await.unwrap(), rollback.await.unwrap());
        let record = t.store.get_message(&by_id(id)).await.unwrap();
        match record.state {
            MessageState::Confirmed => {
                assert_eq!(commit.unwrap(), MessageState::Confirmed);
                assert!(matches!(rollback, Err(StoreError::MessageConflict { .. })));
                assert_eq!(record.deliveries.len(), 1);
            }
            MessageState::Cancelled => {
                assert_eq!(rollback.unwrap(), MessageState::Cancelled);
                assert!(matches!(commit, Err(StoreError::MessageConflict { .. })));
                assert!(record.deliveries.is_empty());
            }
            other => panic!("message left {other}"),
        }
    }
}

/// Many Prepares and Confirms at once, as a busy server sees them (the PostgreSQL store
/// writes such calls in shared batches): new keys, repeated keys, a topic without
/// subscription, repeated and unknown Confirms. Every caller gets its own answer.
pub async fn concurrent_calls_of_every_kind_each_get_their_own_answer(t: &TestStore) {
    let now = Timestamp::now();
    subscribe(t.store.as_ref(), 5, now).await;
    let prepares: Vec<_> = (0..48)
        .map(|i| {
            let store = t.store.clone();
            // Keys 0..16 come three times each; the last eight calls repeat a key for a topic
            // without subscription.
            let topic = if i >= 40 { "nobody-listens" } else { TOPIC };
            let message = message(topic, &format!("k{}", i % 16), false, now);
            tokio::spawn(async move { (message.clone(), store.insert_message(message).await) })
        })
        .collect();
    let mut ids_by_key = std::collections::HashMap::new();
    for prepare in prepares {
        let (sent, answer) = prepare.await.unwrap();
        match answer {
            Ok(outcome) => {
                assert_eq!(outcome.state, MessageState::Prepared);
                let id = *ids_by_key
                    .entry(sent.key.clone())
                    .or_insert(outcome.message_id);
                assert_eq!(outcome.message_id, id, "one message per key");
                assert_eq!(outcome.created, outcome.message_id == sent.id);
            }
            Err(StoreError::FailedPrecondition(_)) => {
                assert_eq!(sent.topic.as_str(), "nobody-listens")
            }
            // The same key with other content (the other topic) was stored first.
            Err(StoreError::AlreadyExists(_)) => {}
            Err(other) => panic!("{}: {other}", sent.key),
        }
    }
    assert_eq!(ids_by_key.len(), 16);

    let unknown = MessageId::new();
    let ids: Vec<MessageId> = ids_by_key.values().copied().collect();
    let confirms: Vec<_> = ids
        .iter()
        .chain(ids.iter())
        .chain([&unknown])
        .map(|&id| {
            let store = t.store.clone();
            tokio::spawn(async move { (id, store.decide(&by_id(id), Decision::Commit, now).await) })
        })
        .collect();
    for confirm in confirms {
        let (id, answer) = confirm.await.unwrap();
        if id == unknown {
            assert!(matches!(answer, Err(StoreError::NotFound(_))), "{answer:?}");
        } else {
            assert_eq!(answer.unwrap(), MessageState::Confirmed);
        }
    }
    for id in ids {
        let record = t.store.get_message(&by_id(id)).await.unwrap();
        assert_eq!(record.state, MessageState::Confirmed);
        assert_eq!(record.deliveries.len(), 1, "routed once");
    }
}

/// Prepares and Publishes at once, as a busy server sees them (the PostgreSQL store writes
/// both kinds in shared batches): new and repeated keys of either kind, a topic without
/// subscription. Every caller gets its own answer, and each Publish is routed to every
/// subscription of its topic once.
pub async fn concurrent_prepares_and_publishes_each_get_their_own_answer(t: &TestStore) {
    let now = Timestamp::now();
    let sub = subscribe(t.store.as_ref(), 5, now).await;
    let second = subscription("second", TOPIC, 5, now);
    t.store.create_subscription(second).await.unwrap();
    let calls: Vec<_> = (0..60)
        .map(|i| {
            let store = t.store.clone();
            // Keys 0..20 come three times each, as a Prepare or a Publish; the last six calls
            // repeat a key for a topic without subscription.
            let topic = if i >= 54 { "nobody-listens" } else { TOPIC };
            let message = message(topic, &format!("k{}", i % 20), i % 3 != 0, now);
            tokio::spawn(async move { (message.clone(), store.insert_message(message).await) })
        })
        .collect();
    let mut ids_by_key = std::collections::HashMap::new();
    let mut published = HashSet::new();
    for call in calls {
        let (sent, answer) = call.await.unwrap();
        match answer {
            Ok(outcome) => {
                let id = *ids_by_key
                    .entry(sent.key.clone())
                    .or_insert(outcome.message_id);
                assert_eq!(outcome.message_id, id, "one message per key");
                assert_eq!(outcome.created, outcome.message_id == sent.id);
                if outcome.created {
                    let state = match sent.publish {
                        true => MessageState::Confirmed,
                        false => MessageState::Prepared,
                    };
                    assert_eq!(outcome.state, state, "{}", sent.key);
                    if sent.publish {
                        published.insert(id);
                    }
                }
            }
            Err(StoreError::FailedPrecondition(_)) => {
                assert_eq!(sent.topic.as_str(), "nobody-listens")
            }
            // The same key with other content (the other topic) was stored first.
            Err(StoreError::AlreadyExists(_)) => {}
            Err(other) => panic!("{}: {other}", sent.key),
        }
    }
    assert_eq!(ids_by_key.len(), 20);
    for id in ids_by_key.values() {
        let record = t.store.get_message(&by_id(*id)).await.unwrap();
        let routed = if published.contains(id) { 2 } else { 0 };
        assert_eq!(record.deliveries.len(), routed, "{id}");
    }
    let leased = t
        .store
        .lease(&sub, Batch::messages(100), now)
        .await
        .unwrap();
    let leased: HashSet<MessageId> = leased.iter().map(|d| d.receipt.message_id).collect();
    assert_eq!(leased, published);
}

pub async fn deliver_after_delays_the_first_delivery(t: &TestStore) {
    let store = t.store.as_ref();
    let now = Timestamp::now();
    let sub = subscribe(store, 5, now).await;
    let delayed = NewMessage {
        deliver_after: Duration::from_secs(60),
        ..message(TOPIC, "later", false, now)
    };
    let id = store.insert_message(delayed).await.unwrap().message_id;
    assert_eq!(store.next_due(&name(SUB)).await.unwrap(), None);
    let confirmed_at = later(now, 1_000);
    store
        .decide(&by_id(id), Decision::Commit, confirmed_at)
        .await
        .unwrap();
    let due = confirmed_at.plus(Duration::from_secs(60));
    assert_eq!(store.next_due(&name(SUB)).await.unwrap(), Some(due));
    assert!(
        store
            .lease(&sub, Batch::messages(10), later(confirmed_at, 59_999))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .lease(&sub, Batch::messages(10), due)
            .await
            .unwrap()
            .len(),
        1
    );
}
