//! The Store conformance suite: one set of tests written against `dyn Store`, run against
//! every backend by [`store_test_suite!`] (the pattern of quickwit's `metastore_test_suite!`).
//! A backend is correct when it passes all of them; SQLite and PostgreSQL must behave alike.
//!
//! Each test gets a [`TestStore`] on a database of its own and can open a second store on
//! the same database ([`TestStore::replica`]), as another Courier replica would. Times are
//! passed explicitly, so nothing here sleeps.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use super::{
    AckStatus, CheckRecorded, CheckVerdict, DeliveryQuery, ExpiredLeases, MessageQuery, NewMessage,
    Store, StoreError, Wakeups,
};
use crate::config::{PostgresConfig, SqliteConfig};
use crate::domain::{
    Decision, DeliveryState, MessageId, MessageKey, MessageOutcome, MessageRef, MessageState, Name,
    Receipt, RedeliveryPlan, RetryPolicy, Subscription, Timestamp,
};

type Opening = Pin<Box<dyn Future<Output = Arc<dyn Store>>>>;
type OpenReplica = Box<dyn Fn(Wakeups) -> Opening + Send + Sync>;

/// A store on a database of its own; the database goes away with it.
pub struct TestStore {
    pub store: Arc<dyn Store>,
    pub wakeups: Wakeups,
    open_replica: OpenReplica,
    /// Keeps the database (a temporary directory or a PostgreSQL test database) alive; declared
    /// last so the store is dropped first.
    _database: Box<dyn Send + Sync>,
}

impl TestStore {
    /// Another store on the same database, with wake-ups of its own: another replica.
    pub async fn replica(&self) -> (Arc<dyn Store>, Wakeups) {
        let wakeups = Wakeups::default();
        ((self.open_replica)(wakeups.clone()).await, wakeups)
    }
}

pub async fn open_sqlite() -> Option<TestStore> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}/courier.db", dir.path().display());
    let open = move |wakeups: Wakeups| {
        let url = url.clone();
        Box::pin(async move {
            let store = super::sqlite::SqliteStore::open(&url, &SqliteConfig::default(), wakeups)
                .await
                .expect("open SQLite store");
            Arc::new(store) as Arc<dyn Store>
        }) as Opening
    };
    let wakeups = Wakeups::default();
    Some(TestStore {
        store: open(wakeups.clone()).await,
        wakeups,
        open_replica: Box::new(open),
        _database: Box::new(dir),
    })
}

pub async fn open_postgres() -> Option<TestStore> {
    let database = super::testing::TestDatabase::create().await?;
    let url = database.url().to_owned();
    let open = move |wakeups: Wakeups| {
        let url = url.clone();
        Box::pin(async move {
            let store =
                super::postgres::PostgresStore::open(&url, &PostgresConfig::default(), wakeups)
                    .await
                    .expect("open PostgreSQL store");
            store.listening().await;
            Arc::new(store) as Arc<dyn Store>
        }) as Opening
    };
    let wakeups = Wakeups::default();
    Some(TestStore {
        store: open(wakeups.clone()).await,
        wakeups,
        open_replica: Box::new(open),
        _database: Box::new(database),
    })
}

/// Declares one `#[tokio::test]` per conformance test for the backend that `$open` opens.
macro_rules! store_test_suite {
    ($open:path) => {
        store_test_suite!(@tests $open;
            subscriptions_create_get_list_update_delete,
            subscription_names_sort_bytewise,
            insert_requires_a_subscription,
            insert_dedups_on_producer_key_and_rejects_other_content,
            publish_routes_to_every_subscription,
            concurrent_inserts_of_one_key_create_one_message,
            decide_moves_open_messages_and_repeats_idempotently,
            decide_rejects_contradictions_and_unknown_messages,
            concurrent_decisions_have_one_winner,
            concurrent_calls_of_every_kind_each_get_their_own_answer,
            deliver_after_delays_the_first_delivery,
            lease_then_ack,
            ack_statuses_for_stale_unknown_and_repeated_receipts,
            ack_with_the_latest_receipt_after_expiry,
            nack_with_delay_then_dead_on_the_last_attempt,
            extend_lease_keeps_the_lease,
            reject_parks_the_delivery,
            expire_leases_checks_state_and_generation,
            expire_leases_on_the_last_attempt_is_dead,
            redrive_dead_deliveries,
            list_messages_pages_and_filters,
            list_deliveries_pages_and_filters,
            stats_count_by_state,
            unrouted_confirm_is_counted,
            delete_subscription_removes_its_deliveries,
            checkers_register_and_replace,
            confirm_wakes_the_subscription,
            concurrent_leasers_never_share_a_delivery,
            check_claims_take_due_messages_and_hold_them,
            record_check_applies_once_and_never_undoes_a_decision,
            concurrent_check_claims_never_share_a_message,
            fail_delivery_retries_then_parks_and_ignores_stale_receipts,
            final_messages_are_kept_then_deleted,
            concurrent_acks_on_two_subscriptions_finish_the_message,
        );
    };
    (@tests $open:path; $($test:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                let Some(store) = $open().await else { return };
                $crate::store::conformance::$test(&store).await;
            }
        )*
    };
}

mod sqlite {
    store_test_suite!(crate::store::conformance::open_sqlite);
}

mod postgres {
    store_test_suite!(crate::store::conformance::open_postgres);
}

// --- builders and assertions ---

fn name(value: &str) -> Name {
    Name::parse("name", value).unwrap()
}

fn key(value: &str) -> MessageKey {
    MessageKey::parse("key", value).unwrap()
}

const PRODUCER: &str = "shop";
const TOPIC: &str = "orders";
const SUB: &str = "billing";
const ACK_DEADLINE: Duration = Duration::from_secs(30);

fn policy(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        initial_backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(60),
        multiplier: 2.0,
    }
}

fn subscription(sub: &str, topic: &str, max_attempts: u32, now: Timestamp) -> Subscription {
    Subscription {
        name: name(sub),
        topic: name(topic),
        ack_deadline: ACK_DEADLINE,
        retry_policy: policy(max_attempts),
        push_endpoint: None,
        created_at: now,
    }
}

fn message(topic: &str, message_key: &str, publish: bool, now: Timestamp) -> NewMessage {
    NewMessage {
        id: MessageId::new(),
        producer: name(PRODUCER),
        topic: name(topic),
        key: key(message_key),
        payload: format!("payload of {message_key}").into_bytes(),
        headers: BTreeMap::from([("trace".to_owned(), message_key.to_owned())]),
        check_after: Duration::from_secs(10),
        deliver_after: Duration::ZERO,
        publish,
        now,
    }
}

fn by_id(id: MessageId) -> MessageRef {
    MessageRef::Id(id)
}

/// A subscription `SUB` on `TOPIC` with `max_attempts`.
async fn subscribe(store: &dyn Store, max_attempts: u32, now: Timestamp) -> Subscription {
    store
        .create_subscription(subscription(SUB, TOPIC, max_attempts, now))
        .await
        .unwrap()
        .0
}

/// Publishes a message to `TOPIC` and returns its id.
async fn publish(store: &dyn Store, message_key: &str, now: Timestamp) -> MessageId {
    store
        .insert_message(message(TOPIC, message_key, true, now))
        .await
        .unwrap()
        .message_id
}

/// The one delivery of `id` to `SUB`.
async fn delivery(store: &dyn Store, id: MessageId) -> crate::domain::DeliveryStatus {
    let record = store.get_message(&by_id(id)).await.unwrap();
    record
        .deliveries
        .into_iter()
        .find(|d| d.subscription.as_str() == SUB)
        .expect("a delivery to SUB")
}

async fn lease_one(store: &dyn Store, sub: &Subscription, now: Timestamp) -> Receipt {
    let leased = store.lease(sub, 1, now).await.unwrap();
    assert_eq!(leased.len(), 1, "one delivery due at {now:?}");
    leased[0].receipt.clone()
}

fn later(now: Timestamp, millis: u64) -> Timestamp {
    now.plus(Duration::from_millis(millis))
}

// --- subscriptions ---

pub async fn subscriptions_create_get_list_update_delete(t: &TestStore) {
    let store = t.store.as_ref();
    let now = Timestamp::now();
    let created = subscription(SUB, TOPIC, 5, now);
    let (sub, was_created) = store.create_subscription(created.clone()).await.unwrap();
    assert!(was_created);
    assert_eq!(sub, created);
    assert_eq!(store.get_subscription(&name(SUB)).await.unwrap(), created);

    // Identical again, later: OK, and the original is returned.
    let again = subscription(SUB, TOPIC, 5, later(now, 5_000));
    let (existing, was_created) = store.create_subscription(again).await.unwrap();
    assert!(!was_created);
    assert_eq!(existing.created_at, now);

    // Same name, other configuration.
    let other = subscription(SUB, TOPIC, 7, now);
    assert!(matches!(
        store.create_subscription(other).await,
        Err(StoreError::AlreadyExists(_))
    ));
    let other_topic = subscription(SUB, "payments", 5, now);
    assert!(matches!(
        store.create_subscription(other_topic).await,
        Err(StoreError::AlreadyExists(_))
    ));

    store
        .create_subscription(subscription("audit", TOPIC, 5, now))
        .await
        .unwrap();
    store
        .create_subscription(subscription("ledger", "payments", 5, now))
        .await
        .unwrap();
    let all: Vec<String> = store
        .list_subscriptions(None)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name.to_string())
        .collect();
    assert_eq!(all, ["audit", "billing", "ledger"]);
    let orders: Vec<String> = store
        .list_subscriptions(Some(&name(TOPIC)))
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name.to_string())
        .collect();
    assert_eq!(orders, ["audit", "billing"]);

    // Update: everything but the topic and the creation time.
    let mut update = subscription(SUB, TOPIC, 9, later(now, 9_000));
    update.ack_deadline = Duration::from_secs(90);
    update.push_endpoint = Some("http://10.0.0.7:7001".into());
    let updated = store.update_subscription(update.clone()).await.unwrap();
    assert_eq!(updated.created_at, now);
    assert_eq!(updated.retry_policy.max_attempts, 9);
    assert_eq!(store.get_subscription(&name(SUB)).await.unwrap(), updated);
    let moved = subscription(SUB, "payments", 9, now);
    assert!(matches!(
        store.update_subscription(moved).await,
        Err(StoreError::FailedPrecondition(_))
    ));
    let missing = subscription("nobody", TOPIC, 5, now);
    assert!(matches!(
        store.update_subscription(missing).await,
        Err(StoreError::NotFound(_))
    ));

    store.delete_subscription(&name(SUB)).await.unwrap();
    assert!(matches!(
        store.get_subscription(&name(SUB)).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.delete_subscription(&name(SUB)).await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn subscription_names_sort_bytewise(t: &TestStore) {
    let store = t.store.as_ref();
    let now = Timestamp::now();
    for sub in ["b", "B", "a-1", "a_1", "a.1", "A"] {
        store
            .create_subscription(subscription(sub, TOPIC, 5, now))
            .await
            .unwrap();
    }
    let names: Vec<String> = store
        .list_subscriptions(None)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name.to_string())
        .collect();
    assert_eq!(names, ["A", "B", "a-1", "a.1", "a_1", "b"]);
}

// --- producer ---

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
            .lease(&sub, 10, later(confirmed_at, 59_999))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.lease(&sub, 10, due).await.unwrap().len(), 1);
}

// --- consumer ---

pub async fn lease_then_ack(t: &TestStore) {
    let store = t.store.as_ref();
    let now = Timestamp::now();
    let sub = subscribe(store, 5, now).await;
    let sent = message(TOPIC, "k", true, now);
    let id = store.insert_message(sent.clone()).await.unwrap().message_id;

    let leased_at = later(now, 10);
    let leased = store.lease(&sub, 10, leased_at).await.unwrap();
    assert_eq!(leased.len(), 1);
    let delivery_out = &leased[0];
    assert_eq!(delivery_out.receipt.message_id, id);
    assert_eq!(delivery_out.receipt.subscription.as_str(), SUB);
    assert_eq!(delivery_out.receipt.generation, 1);
    assert_eq!(delivery_out.attempt, 1);
    assert_eq!(delivery_out.topic.as_str(), TOPIC);
    assert_eq!(delivery_out.producer.as_str(), PRODUCER);
    assert_eq!(delivery_out.key.as_str(), "k");
    assert_eq!(delivery_out.payload, sent.payload);
    assert_eq!(delivery_out.headers, sent.headers);
    assert_eq!(delivery_out.published_at, now);
    assert_eq!(delivery_out.lease_expires_at, leased_at.plus(ACK_DEADLINE));
    let status = delivery(store, id).await;
    assert_eq!(status.state, DeliveryState::Leased);
    assert_eq!(status.attempts, 1);
    assert_eq!(status.lease_expires_at, Some(leased_at.plus(ACK_DEADLINE)));
    assert_eq!(status.next_attempt_at, None);
    assert_eq!(
        store.next_lease_expiry().await.unwrap(),
        Some(leased_at.plus(ACK_DEADLINE))
    );

    // Leased: not handed out again.
    assert!(
        store
            .lease(&sub, 10, later(now, 20))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.next_due(&name(SUB)).await.unwrap(), None);

    let statuses = store
        .ack(std::slice::from_ref(&delivery_out.receipt), later(now, 30))
        .await
        .unwrap();
    assert_eq!(statuses, [AckStatus::Ok]);
    let status = delivery(store, id).await;
    assert_eq!(status.state, DeliveryState::Acked);
    assert_eq!(status.lease_expires_at, None);
    assert_eq!(store.next_lease_expiry().await.unwrap(), None);
    let record = store.get_message(&by_id(id)).await.unwrap();
    assert_eq!(record.outcome(), MessageOutcome::Delivered);
}

pub async fn ack_statuses_for_stale_unknown_and_repeated_receipts(t: &TestStore) {
    let store = t.store.as_ref();
    let now = Timestamp::now();
    let sub = subscribe(store, 5, now).await;
    let id = publish(store, "k", now).await;
    let first = lease_one(store, &sub, now).await;
    // The lease runs out; the delivery is leased again under a new generation.
    assert_eq!(
        store
            .expire_leases(now.plus(ACK_DEADLINE))
            .await
            .unwrap()
            .ended,
        1
    );
    let retry_at = delivery(store, id).await.next_attempt_at.unwrap();
    let second = lease_one(store, &sub, retry_at).await;
    assert_eq!(second.generation, first.generation + 1);

    let unknown = Receipt {
        message_id: MessageId::new(),
        ..first.clone()
    };
    let future = Receipt {
        generation: second.generation + 1,
        ..second.clone()
    };
    let other_subscription = Receipt {
        subscription: name("nobody"),
        ..second.clone()
    };
    let statuses = store
        .ack(
            &[
                first.clone(),
                unknown,
                future,
                other_subscription,
                second.clone(),
                second.clone(),
                first.clone(),
            ],
            retry_at,
        )
        .await
        .unwrap();
    assert_eq!(
        statuses,
        [
            AckStatus::LeaseLost,
            AckStatus::NotFound,
            AckStatus::NotFound,
            AckStatus::NotFound,
            AckStatus::Ok,
            AckStatus::Ok,
            // Acked now: any receipt of it answers OK.
            AckStatus::Ok,
        ]
    );
    assert_eq!(delivery(store, id).await.state, DeliveryState::Acked);
    assert_eq!(
        store.ack(&[second], retry_at).await.unwrap(),
        [AckStatus::Ok]
    );
    assert_eq!(store.ack(&[], retry_at).await.unwrap(), []);
}

pub async fn ack_with_the_latest_receipt_after_expiry(t: &TestStore) {
    let store = t.store.as_ref();
    let now = Timestamp::now();
    let sub = subscribe(store, 5, now).await;
    let id = publish(store, "k", now).await;
    let receipt = lease_one(store, &sub, now).await;
    assert_eq!(
        store
            .expire_leases(now.plus(ACK_DEADLINE))
            .await
            .unwrap()
            .ended,
        1
    );
    assert_eq!(delivery(store, id).await.state, DeliveryState::Pending);
    // Nobody leased it since: the late ack still counts.
    let statuses = store.ack(&[receipt], now.plus(ACK_DEADLINE)).await.unwrap();
    assert_eq!(statuses, [AckStatus::Ok]);
    assert_eq!(delivery(store, id).await.state, DeliveryState::Acked);
    assert!(
        store
            .lease(&sub, 10, later(now, 3_600_000))
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn nack_with_delay_then_dead_on_the_last_attempt(t: &TestStore) {
    let store = t.store.as_ref();
    let now = Timestamp::now();
    let sub = subscribe(store, 2, now).await;
    let id = publish(store, "k", now).await;
    let receipt = lease_one(store, &sub, now).await;
    let delay = Duration::from_secs(5);
    assert_eq!(
        store.nack(&receipt, Some(delay), now).await.unwrap(),
        Some(RedeliveryPlan::RetryAt(now.plus(delay)))
    );
    // A repeat of the same Nack changes nothing, and says so.
    assert_eq!(
        store.nack(&receipt, None, later(now, 100)).await.unwrap(),
        None
    );
    let status = delivery(store, id).await;
    assert_eq!(status.state, DeliveryState::Pending);
    assert_eq!(status.next_attempt_at, Some(now.plus(delay)));
    assert_eq!(status.last_error.as_deref(), Some("nacked by the consumer"));
    assert_eq!(
        store.next_due(&name(SUB)).await.unwrap(),
        Some(now.plus(delay))
    );
    assert!(
        store
            .lease(&sub, 10, later(now, 4_999))
            .await
            .unwrap()
            .is_empty()
    );

    let second = lease_one(store, &sub, now.plus(delay)).await;
    assert_eq!(
        store.lease(&sub, 1, now.plus(delay)).await.unwrap().len(),
        0
    );
    // The old receipt lost its lease.
    assert!(matches!(
        store.nack(&receipt, None, now.plus(delay)).await,
        Err(StoreError::LeaseLost {
            current: DeliveryState::Leased
        })
    ));
    // Second and last attempt: a Nack makes it DEAD, whatever the delay.
    assert_eq!(
        store
            .nack(&second, Some(delay), now.plus(delay))
            .await
            .unwrap(),
        Some(RedeliveryPlan::Dead)
    );
    // Repeated, it answers no plan: the death is reported once.
    assert_eq!(
        store
            .nack(&second, None, later(now.plus(delay), 100))
            .await
            .unwrap(),
        None
    );
    let status = delivery(store, id).await;
    assert_eq!(status.state, DeliveryState::Dead);
    assert_eq!(status.attempts, 2);
    assert_eq!(status.next_attempt_at, None);
    let record = store.get_message(&by_id(id)).await.unwrap();
    assert_eq!(record.outcome(), MessageOutcome::DeadLettered);
    assert!(matches!(
        store
            .nack(
                &Receipt {
                    message_id: MessageId::new(),
                    ..second.clone()
                },
                None,
                now
            )
            .await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn extend_lease_keeps_the_lease(t: &TestStore) {
    let store = t.store.as_ref();
    let now = Timestamp::now();
    let sub = subscribe(store, 5, now).await;
    let id = publish(store, "k", now).await;
    let receipt = lease_one(store, &sub, now).await;
    let extended_at = later(now, 20_000);
    let until = store
        .extend_lease(&receipt, Duration::from_secs(60), extended_at)
        .await
        .unwrap();
    assert_eq!(until, extended_at.plus(Duration::from_secs(60)));
    assert_eq!(delivery(store, id).await.lease_expires_at, Some(until));
    assert_eq!(
        store
            .expire_leases(now.plus(ACK_DEADLINE))
            .await
            .unwrap()
            .ended,
        0
    );
    assert_eq!(delivery(store, id).await.state, DeliveryState::Leased);
    assert_eq!(store.expire_leases(until).await.unwrap().ended, 1);
    // Expired: the receipt can no longer extend.
    assert!(matches!(
        store
            .extend_lease(&receipt, Duration::from_secs(60), until)
            .await,
        Err(StoreError::LeaseLost {
            current: DeliveryState::Pending
        })
    ));
    let stale = Receipt {
        generation: 0,
        ..receipt.clone()
    };
    assert!(matches!(
        store
            .extend_lease(&stale, Duration::from_secs(60), until)
            .await,
        Err(StoreError::LeaseLost { .. })
    ));
    let unknown = Receipt {
        generation: 9,
        ..receipt
    };
    assert!(matches!(
        store
            .extend_lease(&unknown, Duration::from_secs(60), until)
            .await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn reject_parks_the_delivery(t: &TestStore) {
    let store = t.store.as_ref();
    let now = Timestamp::now();
    let sub = subscribe(store, 5, now).await;
    let id = publish(store, "k", now).await;
    let receipt = lease_one(store, &sub, now).await;
    store
        .reject(&receipt, "malformed order", now)
        .await
        .unwrap();
    store
        .reject(&receipt, "malformed order", now)
        .await
        .unwrap();
    let status = delivery(store, id).await;
    assert_eq!(status.state, DeliveryState::Dead);
    assert_eq!(status.attempts, 1);
    assert_eq!(
        status.last_error.as_deref(),
        Some("rejected by the consumer: malformed order")
    );
    assert!(
        store
            .lease(&sub, 10, later(now, 3_600_000))
            .await
            .unwrap()
            .is_empty()
    );

    let other = publish(store, "k2", now).await;
    let receipt = lease_one(store, &sub, now).await;
    store.reject(&receipt, "", now).await.unwrap();
    assert_eq!(
        delivery(store, other).await.last_error.as_deref(),
        Some("rejected by the consumer")
    );
    let unknown = Receipt {
        message_id: MessageId::new(),
        ..receipt
    };
    assert!(matches!(
        store.reject(&unknown, "", now).await,
        Err(StoreError::NotFound(_))
    ));
}

// --- scheduler ---

pub async fn expire_leases_checks_state_and_generation(t: &TestStore) {
    let store = t.store.as_ref();
    let now = Timestamp::now();
    let sub = subscribe(store, 5, now).await;
    let acked = publish(store, "acked", now).await;
    let expired = publish(store, "expired", later(now, 1)).await;
    let leased = store.lease(&sub, 10, later(now, 1)).await.unwrap();
    assert_eq!(leased.len(), 2);
    assert_eq!(leased[0].receipt.message_id, acked, "oldest due first");
    store.ack(&[leased[0].receipt.clone()], now).await.unwrap();

    let deadline = later(now, 1).plus(ACK_DEADLINE);
    assert_eq!(
        store.expire_leases(later(now, 30_000)).await.unwrap().ended,
        0,
        "not yet"
    );
    assert_eq!(
        store.expire_leases(deadline).await.unwrap(),
        ExpiredLeases {
            ended: 1,
            dead: vec![],
        },
        "retried: attempts are left"
    );
    assert_eq!(delivery(store, acked).await.state, DeliveryState::Acked);
    let status = delivery(store, expired).await;
    assert_eq!(status.state, DeliveryState::Pending);
    assert_eq!(
        status.last_error.as_deref(),
        Some("lease expired before an ack")
    );
    assert_eq!(status.lease_expires_at, None);
    // Backoff after attempt 1: 1 s, ±20 % jitter.
    let retry_at = status.next_attempt_at.unwrap();
    assert!(
        (later(deadline, 800)..=later(deadline, 1_200)).contains(&retry_at),
        "{retry_at:?} vs {deadline:?}"
    );
    assert_eq!(
        store.expire_leases(deadline).await.unwrap(),
        ExpiredLeases::default(),
        "already ended"
    );

    // Leased again: the old deadline no longer applies.
    let again = lease_one(store, &sub, retry_at).await;
    assert_eq!(again.generation, 2);
    assert_eq!(
        store.expire_leases(later(retry_at, 1)).await.unwrap().ended,
        0
    );
    assert_eq!(delivery(store, expired).await.state, DeliveryState::Leased);
    assert_eq!(
        store.next_lease_expiry().await.unwrap(),
        Some(retry_at.plus(ACK_DEADLINE))
    );
}

pub async fn expire_leases_on_the_last_attempt_is_dead(t: &TestStore) {
    let store = t.store.as_ref();
    let now = Timestamp::now();
    let sub = subscribe(store, 1, now).await;
    let audit = store
        .create_subscription(subscription("audit", TOPIC, 2, now))
        .await
        .unwrap()
        .0;
    let ids = [
        publish(store, "k", now).await,
        publish(store, "k2", now).await,
    ];
    assert_eq!(store.lease(&sub, 10, now).await.unwrap().len(), 2);
    assert_eq!(store.lease(&audit, 10, now).await.unwrap().len(), 2);
    let deadline = now.plus(ACK_DEADLINE);
    // Every lease ends; only SUB's were the last attempts (audit's are retried).
    let expired = store.expire_leases(deadline).await.unwrap();
    assert_eq!(
        expired,
        ExpiredLeases {
            ended: 4,
            dead: vec![(name(SUB), 2)],
        }
    );
    assert_eq!(expired.dead_total(), 2);
    for id in ids {
        let status = delivery(store, id).await;
        assert_eq!(status.state, DeliveryState::Dead);
        assert_eq!(status.next_attempt_at, None);
    }
    assert_eq!(store.next_due(&name(SUB)).await.unwrap(), None);
    // Nothing is ended, or counted dead, twice.
    assert_eq!(
        store.expire_leases(deadline).await.unwrap(),
        ExpiredLeases::default()
    );

    // audit's second and last attempts run out too. Backoff after attempt 1: 1 s, ±20 %.
    let retried = later(deadline, 1_200);
    assert_eq!(store.lease(&audit, 10, retried).await.unwrap().len(), 2);
    assert_eq!(
        store
            .expire_leases(retried.plus(ACK_DEADLINE))
            .await
            .unwrap(),
        ExpiredLeases {
            ended: 2,
            dead: vec![(name("audit"), 2)],
        }
    );
    assert_eq!(store.next_due(&name("audit")).await.unwrap(), None);
}

// --- admin ---

pub async fn redrive_dead_deliveries(t: &TestStore) {
    let store = t.store.as_ref();
    let now = Timestamp::now();
    let sub = subscribe(store, 1, now).await;
    let ids = [
        publish(store, "a", now).await,
        publish(store, "b", now).await,
        publish(store, "c", now).await,
    ];
    let leased = store.lease(&sub, 10, now).await.unwrap();
    assert_eq!(leased.len(), 3);
    for receipt in leased.iter().map(|d| &d.receipt) {
        assert_eq!(
            store.nack(receipt, None, now).await.unwrap(),
            Some(RedeliveryPlan::Dead)
        );
    }
    for id in ids {
        assert_eq!(delivery(store, id).await.state, DeliveryState::Dead);
    }

    let redriven_at = later(now, 5_000);
    let listed = store
        .redrive(&name(SUB), &[ids[0], MessageId::new()], redriven_at)
        .await
        .unwrap();
    assert_eq!(listed, 1);
    let status = delivery(store, ids[0]).await;
    assert_eq!(status.state, DeliveryState::Pending);
    assert_eq!(status.attempts, 0);
    assert_eq!(status.next_attempt_at, Some(redriven_at));
    assert_eq!(delivery(store, ids[1]).await.state, DeliveryState::Dead);

    assert_eq!(
        store.redrive(&name(SUB), &[], redriven_at).await.unwrap(),
        2
    );
    assert_eq!(
        store.redrive(&name(SUB), &[], redriven_at).await.unwrap(),
        0
    );
    assert!(matches!(
        store.redrive(&name("nobody"), &[], redriven_at).await,
        Err(StoreError::NotFound(_))
    ));
    let again = store.lease(&sub, 10, redriven_at).await.unwrap();
    assert_eq!(again.len(), 3);
    assert!(
        again
            .iter()
            .all(|d| d.attempt == 1 && d.receipt.generation == 2)
    );
}

pub async fn list_messages_pages_and_filters(t: &TestStore) {
    let store = t.store.as_ref();
    let now = Timestamp::now();
    subscribe(store, 5, now).await;
    store
        .create_subscription(subscription("ledger", "payments", 5, now))
        .await
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..5 {
        let topic = if i % 2 == 0 { TOPIC } else { "payments" };
        let sent = message(topic, &format!("m{i}"), i != 4, later(now, i));
        ids.push(store.insert_message(sent).await.unwrap().message_id);
    }
    let newest_first: Vec<MessageId> = ids.iter().rev().copied().collect();

    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .list_messages(MessageQuery {
                page_size: 2,
                before,
                ..MessageQuery::default()
            })
            .await
            .unwrap();
        assert!(page.items.len() <= 2);
        seen.extend(page.items.iter().map(|m| m.id));
        match page.next {
            Some(next) => {
                assert_eq!(Some(&next), seen.last());
                before = Some(next);
            }
            None => break,
        }
    }
    assert_eq!(seen, newest_first);

    let list = |query: MessageQuery| async move {
        store
            .list_messages(MessageQuery {
                page_size: 100,
                ..query
            })
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|m| m.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        list(MessageQuery {
            topic: Some(name(TOPIC)),
            ..MessageQuery::default()
        })
        .await,
        [ids[4], ids[2], ids[0]]
    );
    assert_eq!(
        list(MessageQuery {
            state: Some(MessageState::Prepared),
            ..MessageQuery::default()
        })
        .await,
        [ids[4]]
    );
    assert_eq!(
        list(MessageQuery {
            producer: Some(name("warehouse")),
            ..MessageQuery::default()
        })
        .await,
        []
    );
    // Outcomes: ack one, kill one.
    let sub = store.get_subscription(&name(SUB)).await.unwrap();
    let leased = store.lease(&sub, 10, later(now, 10)).await.unwrap();
    assert_eq!(leased.len(), 2);
    store.ack(&[leased[0].receipt.clone()], now).await.unwrap();
    store.reject(&leased[1].receipt, "", now).await.unwrap();
    let outcome = |outcome| MessageQuery {
        outcome: Some(outcome),
        ..MessageQuery::default()
    };
    assert_eq!(list(outcome(MessageOutcome::Delivered)).await, [ids[0]]);
    assert_eq!(list(outcome(MessageOutcome::DeadLettered)).await, [ids[2]]);
    assert_eq!(
        list(outcome(MessageOutcome::Delivering)).await,
        [ids[3], ids[1]]
    );
    assert_eq!(list(outcome(MessageOutcome::Prepared)).await, [ids[4]]);
    let page = store
        .list_messages(MessageQuery {
            page_size: 100,
            outcome: Some(MessageOutcome::Delivered),
            ..MessageQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        page.items[0].deliveries.len(),
        1,
        "listed messages carry their deliveries"
    );
}

pub async fn list_deliveries_pages_and_filters(t: &TestStore) {
    let store = t.store.as_ref();
    let now = Timestamp::now();
    let sub = subscribe(store, 5, now).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(publish(store, &format!("d{i}"), later(now, i)).await);
    }
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list_deliveries(DeliveryQuery {
                subscription: name(SUB),
                state: None,
                page_size: 2,
                after,
            })
            .await
            .unwrap();
        seen.extend(page.items.iter().map(|d| d.message_id));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, ids, "oldest message first");

    let leased = store.lease(&sub, 2, later(now, 10)).await.unwrap();
    assert_eq!(leased.len(), 2);
    let leased_ids: Vec<MessageId> = store
        .list_deliveries(DeliveryQuery {
            subscription: name(SUB),
            state: Some(DeliveryState::Leased),
            page_size: 10,
            after: None,
        })
        .await
        .unwrap()
        .items
        .iter()
        .map(|d| d.message_id)
        .collect();
    assert_eq!(leased_ids, [ids[0], ids[1]]);
    assert!(matches!(
        store
            .list_deliveries(DeliveryQuery {
                subscription: name("nobody"),
                state: None,
                page_size: 10,
                after: None,
            })
            .await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn stats_count_by_state(t: &TestStore) {
    let store = t.store.as_ref();
    let now = Timestamp::now();
    let sub = subscribe(store, 5, now).await;
    store
        .create_subscription(subscription("idle", "payments", 5, now))
        .await
        .unwrap();
    for i in 0..4 {
        publish(store, &format!("s{i}"), now).await;
    }
    store
        .insert_message(message(TOPIC, "prepared", false, now))
        .await
        .unwrap();
    let cancelled = store
        .insert_message(message(TOPIC, "cancelled", false, now))
        .await
        .unwrap()
        .message_id;
    store
        .decide(&by_id(cancelled), Decision::Rollback, now)
        .await
        .unwrap();
    let leased = store.lease(&sub, 2, now).await.unwrap();
    store.ack(&[leased[0].receipt.clone()], now).await.unwrap();
    store.reject(&leased[1].receipt, "", now).await.unwrap();
    let leased = store.lease(&sub, 1, now).await.unwrap();
    assert_eq!(leased.len(), 1);

    let stats = store.stats(later(now, 7_000)).await.unwrap();
    assert_eq!(stats.unrouted_confirms, 0);
    assert_eq!(stats.topics.len(), 1);
    let orders = &stats.topics[0];
    assert_eq!(orders.topic, TOPIC);
    assert_eq!(
        (
            orders.prepared,
            orders.confirmed,
            orders.cancelled,
            orders.unresolved
        ),
        (1, 4, 1, 0)
    );
    let subs: Vec<_> = stats
        .subscriptions
        .iter()
        .map(|s| {
            (
                s.subscription.as_str(),
                s.topic.as_str(),
                s.pending,
                s.leased,
                s.acked,
                s.dead,
                s.oldest_pending_age,
            )
        })
        .collect();
    assert_eq!(
        subs,
        [
            ("billing", TOPIC, 1, 1, 1, 1, Some(Duration::from_secs(7))),
            ("idle", "payments", 0, 0, 0, 0, None),
        ]
    );
}

pub async fn unrouted_confirm_is_counted(t: &TestStore) {
    let store = t.store.as_ref();
    let now = Timestamp::now();
    subscribe(store, 5, now).await;
    let id = store
        .insert_message(message(TOPIC, "k", false, now))
        .await
        .unwrap()
        .message_id;
    store.delete_subscription(&name(SUB)).await.unwrap();
    let state = store
        .decide(&by_id(id), Decision::Commit, now)
        .await
        .unwrap();
    assert_eq!(state, MessageState::Confirmed);
    let record = store.get_message(&by_id(id)).await.unwrap();
    assert!(record.deliveries.is_empty());
    assert_eq!(record.outcome(), MessageOutcome::Delivering);
    let stats = store.stats(now).await.unwrap();
    assert_eq!(stats.unrouted_confirms, 1);
    assert_eq!(stats.topics[0].unrouted, 1);
}

pub async fn delete_subscription_removes_its_deliveries(t: &TestStore) {
    let store = t.store.as_ref();
    let now = Timestamp::now();
    subscribe(store, 5, now).await;
    store
        .create_subscription(subscription("audit", TOPIC, 5, now))
        .await
        .unwrap();
    let id = publish(store, "k", now).await;
    store.delete_subscription(&name(SUB)).await.unwrap();
    let record = store.get_message(&by_id(id)).await.unwrap();
    let left: Vec<&str> = record
        .deliveries
        .iter()
        .map(|d| d.subscription.as_str())
        .collect();
    assert_eq!(left, ["audit"]);
    assert_eq!(store.next_due(&name(SUB)).await.unwrap(), None);
    // Created again under the same name, it starts empty.
    let sub = subscribe(store, 5, now).await;
    assert!(store.lease(&sub, 10, now).await.unwrap().is_empty());
}

pub async fn checkers_register_and_replace(t: &TestStore) {
    let store = t.store.as_ref();
    assert_eq!(store.get_checker(&name(PRODUCER)).await.unwrap(), None);
    let checker = super::CheckerRegistration {
        producer: name(PRODUCER),
        endpoint: "http://10.0.0.7:7001".into(),
        timeout: Duration::from_secs(5),
    };
    store.register_checker(checker.clone()).await.unwrap();
    assert_eq!(
        store.get_checker(&name(PRODUCER)).await.unwrap(),
        Some(checker.clone())
    );
    let replaced = super::CheckerRegistration {
        endpoint: "http://10.0.0.8:7001".into(),
        timeout: Duration::from_millis(1_500),
        ..checker
    };
    store.register_checker(replaced.clone()).await.unwrap();
    assert_eq!(
        store.get_checker(&name(PRODUCER)).await.unwrap(),
        Some(replaced)
    );
}

// --- wake-ups and concurrency ---

pub async fn confirm_wakes_the_subscription(t: &TestStore) {
    let store = t.store.as_ref();
    let now = Timestamp::now();
    subscribe(store, 5, now).await;
    let id = store
        .insert_message(message(TOPIC, "k", false, now))
        .await
        .unwrap()
        .message_id;
    let signal = t.wakeups.subscription(SUB);
    let woken = signal.notified();
    tokio::pin!(woken);
    woken.as_mut().enable();
    store
        .decide(&by_id(id), Decision::Commit, now)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), woken)
        .await
        .expect("confirm wakes the subscription's waiters");
}

pub async fn concurrent_leasers_never_share_a_delivery(t: &TestStore) {
    const MESSAGES: usize = 300;
    let now = Timestamp::now();
    let sub = subscribe(t.store.as_ref(), 5, now).await;
    for i in 0..MESSAGES {
        publish(t.store.as_ref(), &format!("c{i}"), now).await;
    }
    let (replica, _) = t.replica().await;
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let store = if worker % 2 == 0 {
            t.store.clone()
        } else {
            replica.clone()
        };
        let sub = sub.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let leased = store.lease(&sub, 7, now).await.unwrap();
                if leased.is_empty() {
                    return mine;
                }
                mine.extend(leased.into_iter().map(|d| d.receipt.message_id));
            }
        }));
    }
    let mut seen = HashSet::new();
    let mut total = 0;
    for task in tasks {
        for id in task.await.unwrap() {
            total += 1;
            assert!(seen.insert(id), "message {id} leased twice");
        }
    }
    assert_eq!(total, MESSAGES);
    let stats = t.store.stats(now).await.unwrap();
    assert_eq!(stats.subscriptions[0].leased, MESSAGES as u64);
}

// --- scheduler: check-back, push failures, retention ---

const CHECK_AFTER: Duration = Duration::from_secs(10);
const HOLD: Duration = Duration::from_secs(60);

/// Prepares a message with key `message_key` (first check `CHECK_AFTER` after `now`).
async fn prepare(store: &dyn Store, message_key: &str, now: Timestamp) -> MessageId {
    store
        .insert_message(message(TOPIC, message_key, false, now))
        .await
        .unwrap()
        .message_id
}

pub async fn check_claims_take_due_messages_and_hold_them(t: &TestStore) {
    let store = t.store.as_ref();
    let now = Timestamp::now();
    subscribe(store, 5, now).await;
    let checker = super::CheckerRegistration {
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

pub async fn fail_delivery_retries_then_parks_and_ignores_stale_receipts(t: &TestStore) {
    let store = t.store.as_ref();
    let now = Timestamp::now();
    let sub = subscribe(store, 2, now).await;
    let id = publish(store, "pushed", now).await;
    let receipt = lease_one(store, &sub, now).await;
    let plan = store
        .fail_delivery(&sub, &receipt, "receiver answered UNAVAILABLE", now)
        .await
        .unwrap();
    let Some(RedeliveryPlan::RetryAt(retry_at)) = plan else {
        panic!("expected a retry, got {plan:?}");
    };
    assert!((later(now, 800)..=later(now, 1_200)).contains(&retry_at));
    let status = delivery(store, id).await;
    assert_eq!(status.state, DeliveryState::Pending);
    assert_eq!(status.next_attempt_at, Some(retry_at));
    assert_eq!(
        status.last_error.as_deref(),
        Some("receiver answered UNAVAILABLE")
    );
    // The same failure reported twice, or for a lease that no longer holds: nothing changes.
    assert_eq!(
        store
            .fail_delivery(&sub, &receipt, "again", now)
            .await
            .unwrap(),
        None
    );
    let second = lease_one(store, &sub, retry_at).await;
    assert_eq!(
        store
            .fail_delivery(&sub, &receipt, "stale", retry_at)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .fail_delivery(&sub, &second, "timed out", retry_at)
            .await
            .unwrap(),
        Some(RedeliveryPlan::Dead)
    );
    let status = delivery(store, id).await;
    assert_eq!(status.state, DeliveryState::Dead);
    assert_eq!(status.last_error.as_deref(), Some("timed out"));
    let gone = Receipt {
        message_id: MessageId::new(),
        ..second
    };
    assert_eq!(
        store.fail_delivery(&sub, &gone, "x", now).await.unwrap(),
        None
    );
}

pub async fn final_messages_are_kept_then_deleted(t: &TestStore) {
    let store = t.store.as_ref();
    // In the past: a subscription deleted below finishes messages at the wall clock's time,
    // which must come after every time given here.
    let now = Timestamp::from_millis(Timestamp::now().as_millis() - 60_000);
    let sub = subscribe(store, 1, now).await;
    let audit = store
        .create_subscription(subscription("audit", TOPIC, 5, now))
        .await
        .unwrap()
        .0;
    assert_eq!(store.oldest_final_at().await.unwrap(), None);

    // Cancelled: final at the cancel.
    let cancelled = prepare(store, "cancelled", now).await;
    let cancelled_at = later(now, 1_000);
    store
        .decide(&by_id(cancelled), Decision::Rollback, cancelled_at)
        .await
        .unwrap();
    assert_eq!(store.oldest_final_at().await.unwrap(), Some(cancelled_at));

    // Confirmed to two subscriptions: final at the last ack.
    let delivered = publish(store, "delivered", now).await;
    let on_billing = lease_one(store, &sub, now).await;
    let on_audit = lease_one(store, &audit, now).await;
    store.ack(&[on_billing], later(now, 2_000)).await.unwrap();
    assert_eq!(
        store
            .delete_final_messages(later(now, 10_000), 10)
            .await
            .unwrap(),
        1,
        "only the cancelled one is final"
    );
    assert!(matches!(
        store.get_message(&by_id(cancelled)).await,
        Err(StoreError::NotFound(_))
    ));
    store.ack(&[on_audit], later(now, 3_000)).await.unwrap();
    assert_eq!(
        store.oldest_final_at().await.unwrap(),
        Some(later(now, 3_000))
    );

    // A dead letter keeps its message; so does an unrouted confirm.
    let dead = publish(store, "dead", now).await;
    let receipt = lease_one(store, &sub, now).await;
    store.reject(&receipt, "", now).await.unwrap();
    let on_audit = lease_one(store, &audit, now).await;
    store.ack(&[on_audit], now).await.unwrap();
    assert_eq!(delivery(store, dead).await.state, DeliveryState::Dead);

    // Its last unfinished delivery deleted with its subscription: final then.
    let orphaned = publish(store, "orphaned", now).await;
    let on_audit = lease_one(store, &audit, now).await;
    store.ack(&[on_audit], now).await.unwrap();
    store.delete_subscription(&name(SUB)).await.unwrap();
    // The dead letter went with the subscription too, so that message is final now as well.

    let far = Timestamp::now().plus(Duration::from_secs(3_600));
    assert_eq!(store.delete_final_messages(far, 1).await.unwrap(), 1);
    assert!(
        matches!(
            store.get_message(&by_id(delivered)).await,
            Err(StoreError::NotFound(_))
        ),
        "oldest first"
    );
    assert_eq!(store.delete_final_messages(far, 10).await.unwrap(), 2);
    for id in [dead, orphaned] {
        assert!(matches!(
            store.get_message(&by_id(id)).await,
            Err(StoreError::NotFound(_))
        ));
    }
    assert_eq!(store.delete_final_messages(far, 10).await.unwrap(), 0);
    assert_eq!(store.oldest_final_at().await.unwrap(), None);

    // Deleting a message frees its producer key.
    let reused = NewMessage {
        payload: b"new content".to_vec(),
        ..message(TOPIC, "delivered", true, now)
    };
    let reused = store.insert_message(reused).await.unwrap();
    assert!(reused.created);

    // Never final: prepared, unresolved, unrouted.
    prepare(store, "open", now).await;
    let unresolved = prepare(store, "unresolved", now).await;
    store
        .record_check(
            unresolved,
            1,
            CheckVerdict::GiveUp { error: "x".into() },
            now,
        )
        .await
        .unwrap();
    let unrouted = prepare(store, "unrouted", now).await;
    store.delete_subscription(&name("audit")).await.unwrap();
    store
        .decide(&by_id(unrouted), Decision::Commit, now)
        .await
        .unwrap();
    // Only the reused key's message, whose one delivery went with the audit subscription.
    assert_eq!(store.delete_final_messages(far, 10).await.unwrap(), 1);
    assert!(store.get_message(&by_id(reused.message_id)).await.is_err());
    assert_eq!(store.oldest_final_at().await.unwrap(), None);
    for id in [unresolved, unrouted] {
        assert!(store.get_message(&by_id(id)).await.is_ok());
    }
}

pub async fn concurrent_acks_on_two_subscriptions_finish_the_message(t: &TestStore) {
    const MESSAGES: usize = 100;
    let now = Timestamp::now();
    let billing = subscribe(t.store.as_ref(), 5, now).await;
    let audit = t
        .store
        .create_subscription(subscription("audit", TOPIC, 5, now))
        .await
        .unwrap()
        .0;
    for i in 0..MESSAGES {
        publish(t.store.as_ref(), &format!("f{i}"), now).await;
    }
    let (replica, _) = t.replica().await;
    // Both deliveries of each message are acked at the same moment, one per replica.
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let mut tasks = Vec::new();
    for (store, sub) in [(t.store.clone(), billing), (replica.clone(), audit)] {
        let mut leased = store.lease(&sub, MESSAGES as u32, now).await.unwrap();
        assert_eq!(leased.len(), MESSAGES);
        leased.sort_by_key(|d| d.receipt.message_id);
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            for delivery in leased {
                barrier.wait().await;
                let statuses = store.ack(&[delivery.receipt], now).await.unwrap();
                assert_eq!(statuses, [AckStatus::Ok]);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    // Each message's last ack, on whichever replica, saw the other: all of them are final.
    let far = now.plus(Duration::from_secs(3_600));
    assert_eq!(
        t.store.delete_final_messages(far, 1_000).await.unwrap(),
        MESSAGES as u64
    );
}
