//! Conformance: redrive, listings and statistics.

use std::time::Duration;

use super::TestStore;
use super::helpers::*;
use crate::domain::{
    Decision, DeliveryState, MessageId, MessageOutcome, MessageState, RedeliveryPlan, Timestamp,
};
use crate::store::{
    Batch, CheckVerdict, DeliveryQuery, MessageQuery, StatsScope, Store, StoreError,
};

pub async fn redrive_dead_deliveries(t: &TestStore) {
    let store = t.store.as_ref();
    let now = Timestamp::now();
    let sub = subscribe(store, 1, now).await;
    let ids = [
        publish(store, "a", now).await,
        publish(store, "b", now).await,
        publish(store, "c", now).await,
    ];
    let leased = store.lease(&sub, Batch::messages(10), now).await.unwrap();
    assert_eq!(leased.len(), 3);
    for receipt in leased.iter().map(|d| &d.receipt) {
        assert_eq!(
            store.nack(receipt, None, None, now).await.unwrap(),
            Some(RedeliveryPlan::Dead)
        );
    }
    for id in ids {
        assert_eq!(delivery(store, id).await.state, DeliveryState::Dead);
    }

    let redriven_at = later(now, 5_000);
    let listed = store
        .redrive(&dead_of(SUB, &[ids[0], MessageId::new()]), 0.0, redriven_at)
        .await
        .unwrap();
    assert_eq!(listed, 1);
    let status = delivery(store, ids[0]).await;
    assert_eq!(status.state, DeliveryState::Pending);
    assert_eq!(status.attempts, 0);
    assert_eq!(status.next_attempt_at, Some(redriven_at));
    assert_eq!(delivery(store, ids[1]).await.state, DeliveryState::Dead);

    assert_eq!(
        store
            .redrive(&dead_of(SUB, &[]), 0.0, redriven_at)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        store
            .redrive(&dead_of(SUB, &[]), 0.0, redriven_at)
            .await
            .unwrap(),
        0
    );
    assert!(matches!(
        store
            .redrive(&dead_of("nobody", &[]), 0.0, redriven_at)
            .await,
        Err(StoreError::NotFound(_))
    ));
    let again = store
        .lease(&sub, Batch::messages(10), redriven_at)
        .await
        .unwrap();
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
    let leased = store
        .lease(&sub, Batch::messages(10), later(now, 10))
        .await
        .unwrap();
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
                blocking_only: false,
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

    let leased = store
        .lease(&sub, Batch::messages(2), later(now, 10))
        .await
        .unwrap();
    assert_eq!(leased.len(), 2);
    let leased_ids: Vec<MessageId> = store
        .list_deliveries(DeliveryQuery {
            subscription: name(SUB),
            state: Some(DeliveryState::Leased),
            blocking_only: false,
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
                blocking_only: false,
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
    let leased = store.lease(&sub, Batch::messages(2), now).await.unwrap();
    store.ack(&[leased[0].receipt.clone()], now).await.unwrap();
    store.reject(&leased[1].receipt, "", now).await.unwrap();
    let leased = store.lease(&sub, Batch::messages(1), now).await.unwrap();
    assert_eq!(leased.len(), 1);

    let stats = store
        .stats(later(now, 7_000), StatsScope::Full)
        .await
        .unwrap();
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
    let stats = store.stats(now, StatsScope::Full).await.unwrap();
    assert_eq!(stats.unrouted_confirms, 1);
    assert_eq!(stats.topics[0].unrouted, 1);
}

/// A live read counts what a full read counts of everything in flight or waiting for an
/// operator, and leaves out the retained totals (and topics with nothing live).
pub async fn live_stats_are_full_stats_without_retained_totals(t: &TestStore) {
    let store = t.store.as_ref();
    let now = Timestamp::now();
    let sub = subscribe(store, 1, now).await;
    for i in 0..6 {
        publish(store, &format!("p{i}"), now).await;
    }
    let leased = store.lease(&sub, Batch::messages(4), now).await.unwrap();
    store.ack(&[leased[0].receipt.clone()], now).await.unwrap();
    for dead in &leased[1..3] {
        store.reject(&dead.receipt, "refused", now).await.unwrap();
    }
    let discarded = dead_of(SUB, &[leased[1].receipt.message_id]);
    assert_eq!(
        store.discard_dead_letters(&discarded, now).await.unwrap(),
        1
    );
    prepare(store, "prepared", now).await;
    let cancelled = prepare(store, "cancelled", now).await;
    store
        .decide(&by_id(cancelled), Decision::Rollback, now)
        .await
        .unwrap();
    let unresolved = prepare(store, "unresolved", now).await;
    let give_up = CheckVerdict::GiveUp {
        error: "no checker".into(),
    };
    store
        .record_check(unresolved, 1, give_up, now)
        .await
        .unwrap();
    // A message whose topic lost its only subscription before the Confirm is unrouted; a
    // topic whose messages all ended is only retained.
    let unrouted = prepare_on_a_new_topic(store, "lonely", now).await;
    store.delete_subscription(&name("lonely")).await.unwrap();
    let retained_only = prepare_on_a_new_topic(store, "archive", now).await;
    for (id, decision) in [
        (unrouted, Decision::Commit),
        (retained_only, Decision::Rollback),
    ] {
        store.decide(&by_id(id), decision, now).await.unwrap();
    }

    let at = later(now, 3_000);
    let full = store.stats(at, StatsScope::Full).await.unwrap();
    let live = store.stats(at, StatsScope::Live).await.unwrap();

    let orders = full.topic(TOPIC).unwrap();
    assert_eq!(
        (
            orders.prepared,
            orders.confirmed,
            orders.cancelled,
            orders.unresolved
        ),
        (1, 6, 1, 1),
        "the full read counts every state"
    );
    let billing = full.subscription(SUB).unwrap();
    assert_eq!(
        (
            billing.pending,
            billing.leased,
            billing.acked,
            billing.dead,
            billing.discarded
        ),
        (2, 1, 1, 1, 1)
    );
    let mut expected = full.clone();
    for topic in &mut expected.topics {
        (topic.confirmed, topic.cancelled) = (0, 0);
    }
    expected
        .topics
        .retain(|t| t.prepared + t.unresolved + t.unrouted > 0);
    for subscription in &mut expected.subscriptions {
        subscription.acked = 0;
    }
    assert_eq!(live, expected);
    assert!(full.topic("archive").is_some());
    assert_eq!(live.unrouted_confirms, 1);
    let billing = live.subscription(SUB).unwrap();
    assert_eq!(billing.oldest_pending_age, Some(Duration::from_secs(3)));
}

/// A PREPARED message on `topic`, which gets a subscription of the same name first.
async fn prepare_on_a_new_topic(store: &dyn Store, topic: &str, now: Timestamp) -> MessageId {
    store
        .create_subscription(subscription(topic, topic, 1, now))
        .await
        .unwrap();
    store
        .insert_message(message(topic, topic, false, now))
        .await
        .unwrap()
        .message_id
}
