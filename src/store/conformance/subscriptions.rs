//! Conformance: subscriptions and checker registrations.

use std::time::Duration;

use super::TestStore;
use super::helpers::*;
use crate::domain::{CheckerRegistration, Timestamp};
use crate::store::{Batch, StoreError};

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
    assert!(
        store
            .lease(&sub, Batch::messages(10), now)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn checkers_register_and_replace(t: &TestStore) {
    let store = t.store.as_ref();
    assert_eq!(store.get_checker(&name(PRODUCER)).await.unwrap(), None);
    let checker = CheckerRegistration {
        producer: name(PRODUCER),
        endpoint: "http://10.0.0.7:7001".into(),
        timeout: Duration::from_secs(5),
    };
    store.register_checker(checker.clone()).await.unwrap();
    assert_eq!(
        store.get_checker(&name(PRODUCER)).await.unwrap(),
        Some(checker.clone())
    );
    let replaced = CheckerRegistration {
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
