//! Ordered subscriptions: lanes follow confirm order, hold on a failed head, never wait for
//! each other, and a dead head blocks or is skipped as the subscription says. Receive batches
//! stop at their byte budget.

use std::time::Duration;

use super::TestStore;
use super::helpers::*;
use crate::domain::{
    AckStatus, DeadHeadPolicy, DeliveryState, MessageId, OrderingKey, Receipt, Subscription,
    Timestamp,
};
use crate::store::{Batch, DeliveryQuery, NewMessage, StatsScope, Store};

const ORDERED: &str = "ledger";

async fn ordered(
    store: &dyn Store,
    max_attempts: u32,
    dead_head: DeadHeadPolicy,
    now: Timestamp,
) -> Subscription {
    let sub = Subscription {
        ordered: true,
        dead_head,
        ..subscription(ORDERED, TOPIC, max_attempts, now)
    };
    store.create_subscription(sub).await.unwrap().0
}

fn keyed(message_key: &str, lane: &str, publish: bool, now: Timestamp) -> NewMessage {
    NewMessage {
        ordering_key: OrderingKey::parse("ordering_key", lane).unwrap(),
        ..message(TOPIC, message_key, publish, now)
    }
}

async fn publish_in(store: &dyn Store, message_key: &str, lane: &str, now: Timestamp) -> MessageId {
    let message = keyed(message_key, lane, true, now);
    store.insert_message(message).await.unwrap().message_id
}

/// The ids a lease of up to 100 deliveries hands out at `now`, sorted by id.
async fn lease_ids(store: &dyn Store, sub: &Subscription, now: Timestamp) -> Vec<MessageId> {
    let mut ids: Vec<MessageId> = lease_all(store, sub, now)
        .await
        .into_iter()
        .map(|d| d.receipt.message_id)
        .collect();
    ids.sort();
    ids
}

async fn lease_all(
    store: &dyn Store,
    sub: &Subscription,
    now: Timestamp,
) -> Vec<crate::domain::LeasedDelivery> {
    store.lease(sub, Batch::messages(100), now).await.unwrap()
}

async fn ack_one(store: &dyn Store, sub: &Subscription, now: Timestamp) -> MessageId {
    let receipt = lease_one(store, sub, now).await;
    assert_eq!(
        store
            .ack(std::slice::from_ref(&receipt), now)
            .await
            .unwrap(),
        [AckStatus::Ok]
    );
    receipt.message_id
}

/// The delivery of `id` to the ordered subscription.
async fn lane_delivery(store: &dyn Store, id: MessageId) -> crate::domain::DeliveryStatus {
    let record = store.get_message(&by_id(id)).await.unwrap();
    record
        .deliveries
        .into_iter()
        .find(|d| d.subscription.as_str() == ORDERED)
        .expect("a delivery to the ordered subscription")
}

fn sorted(mut ids: Vec<MessageId>) -> Vec<MessageId> {
    ids.sort();
    ids
}

pub async fn lanes_follow_confirm_order_not_id_order(t: &TestStore) {
    let store = t.store.as_ref();
    let now = Timestamp::now();
    let sub = ordered(store, 5, DeadHeadPolicy::Block, now).await;
    // A is prepared first (the smaller id) but confirmed second.
    let a = store
        .insert_message(keyed("a", "account-1", false, now))
        .await
        .unwrap()
        .message_id;
    let b = store
        .insert_message(keyed("b", "account-1", false, now))
        .await
        .unwrap()
        .message_id;
    assert!(a < b);
    let decided = later(now, 5);
    store
        .decide(&by_id(b), crate::domain::Decision::Commit, decided)
        .await
        .unwrap();
    store
        .decide(&by_id(a), crate::domain::Decision::Commit, later(now, 6))
        .await
        .unwrap();
    let at = later(now, 10);
    assert_eq!(
        lease_ids(store, &sub, at).await,
        [b],
        "B was confirmed first"
    );
    assert_eq!(
        lease_ids(store, &sub, at).await,
        [],
        "one at a time per lane"
    );
    let b_receipt = store.get_message(&by_id(b)).await.unwrap();
    assert_eq!(b_receipt.ordering_key.as_str(), "account-1");
    // Acking B lets A go.
    let leased_b = lane_delivery(store, b).await;
    assert_eq!(leased_b.state, DeliveryState::Leased);
    let waiting_a = lane_delivery(store, a).await;
    assert_eq!(waiting_a.state, DeliveryState::Pending);
    assert_eq!(waiting_a.next_attempt_at, None, "waiting behind B");
    assert_eq!(
        waiting_a.ordering_key.as_ref().map(OrderingKey::as_str),
        Some("account-1")
    );
    expire_and_ack(store, &sub, b, at).await;
    assert_eq!(ack_one(store, &sub, later(at, 3_600_000)).await, a);
}

/// Lets the lease of `id` (leased at `at`) run out, leases it again and acks that lease.
async fn expire_and_ack(store: &dyn Store, sub: &Subscription, id: MessageId, at: Timestamp) {
    let again = later(at, ACK_DEADLINE.as_millis() as u64);
    store.expire_leases(again).await.unwrap();
    let retry_at = lane_delivery(store, id).await.next_attempt_at.unwrap();
    assert_eq!(ack_one(store, sub, retry_at).await, id);
}

pub async fn failed_heads_hold_their_lane(t: &TestStore) {
    let store = t.store.as_ref();
    let now = Timestamp::now();
    let sub = ordered(store, 10, DeadHeadPolicy::Block, now).await;
    let first = publish_in(store, "first", "k", now).await;
    let second = publish_in(store, "second", "k", later(now, 1)).await;

    // A Nack keeps the lane on the first message.
    let receipt = lease_one(store, &sub, later(now, 2)).await;
    assert_eq!(receipt.message_id, first);
    store
        .nack(&receipt, Some(Duration::ZERO), None, later(now, 3))
        .await
        .unwrap();
    // An expired lease does too.
    let receipt = lease_one(store, &sub, later(now, 4)).await;
    assert_eq!(receipt.message_id, first);
    let expired_at = later(now, 4).plus(ACK_DEADLINE);
    assert_eq!(store.expire_leases(expired_at).await.unwrap().ended, 1);
    // And a failed push.
    let retry_at = lane_delivery(store, first).await.next_attempt_at.unwrap();
    let receipt = lease_one(store, &sub, retry_at).await;
    assert_eq!(receipt.message_id, first);
    store
        .fail_delivery(&sub, &receipt, "receiver unavailable", retry_at)
        .await
        .unwrap();
    let retry_at = lane_delivery(store, first).await.next_attempt_at.unwrap();
    let far = later(retry_at, 3_600_000);
    assert_eq!(lease_ids(store, &sub, far).await, [first]);
    assert_eq!(lane_delivery(store, second).await.next_attempt_at, None);
    // Only the ack moves the lane on.
    expire_and_ack(store, &sub, first, far).await;
    let after = later(far, 3_600_000);
    assert_eq!(lease_ids(store, &sub, after).await, [second]);
}

pub async fn lanes_never_wait_for_each_other(t: &TestStore) {
    let store = t.store.as_ref();
    let now = Timestamp::now();
    let sub = ordered(store, 5, DeadHeadPolicy::Block, now).await;
    let a1 = publish_in(store, "a1", "a", now).await;
    let _a2 = publish_in(store, "a2", "a", now).await;
    let b1 = publish_in(store, "b1", "b", now).await;
    let u1 = publish_in(store, "u1", "", now).await;
    let u2 = publish_in(store, "u2", "", now).await;
    assert_eq!(
        lease_ids(store, &sub, later(now, 1)).await,
        sorted(vec![a1, b1, u1, u2]),
        "each lane's head and every unkeyed message"
    );
}

pub async fn unordered_subscriptions_do_not_hold_keys(t: &TestStore) {
    let store = t.store.as_ref();
    let now = Timestamp::now();
    let plain = subscribe(store, 5, now).await;
    let lane = ordered(store, 5, DeadHeadPolicy::Block, now).await;
    let a = publish_in(store, "a", "k", now).await;
    let b = publish_in(store, "b", "k", now).await;
    assert_eq!(lease_ids(store, &plain, now).await, sorted(vec![a, b]));
    assert_eq!(lease_ids(store, &lane, now).await, [a]);
    assert_eq!(
        delivery(store, a).await.ordering_key,
        None,
        "not in a lane on SUB"
    );
}

pub async fn dead_head_blocks_until_redrive_or_discard(t: &TestStore) {
    let store = t.store.as_ref();
    let now = Timestamp::now();
    let sub = ordered(store, 1, DeadHeadPolicy::Block, now).await;
    let a = publish_in(store, "a", "k", now).await;
    let b = publish_in(store, "b", "k", now).await;
    let c = publish_in(store, "c", "k", now).await;

    let receipt = lease_one(store, &sub, now).await;
    assert_eq!(receipt.message_id, a);
    store
        .reject(&receipt, "poison", later(now, 1))
        .await
        .unwrap();

    let at = later(now, 2);
    let leased = lease_ids(store, &sub, at).await;
    assert!(!leased.contains(&b), "B waits behind the dead head");
    let stats = store.stats(at, StatsScope::Full).await.unwrap();
    let stats = stats.subscription(ORDERED).unwrap();
    assert_eq!((stats.dead, stats.blocked_lanes), (1, 1));
    let blocking = store
        .list_deliveries(DeliveryQuery {
            subscription: sub.name.clone(),
            state: None,
            blocking_only: true,
            page_size: 10,
            after: None,
        })
        .await
        .unwrap();
    let blocking: Vec<MessageId> = blocking.items.iter().map(|d| d.message_id).collect();
    assert_eq!(blocking, [a]);

    // Redrive: the head is delivered first, B still waits.
    assert_eq!(
        store
            .redrive(&dead_of(sub.name.as_str(), &[a]), 0.0, at)
            .await
            .unwrap(),
        1
    );
    assert_eq!(lease_ids(store, &sub, at).await, [a]);
    let receipt = store.lease(&sub, Batch::messages(1), at).await.unwrap();
    assert!(receipt.is_empty());
    // It dies again; discarding it lets the lane go on with B.
    store.expire_leases(at.plus(ACK_DEADLINE)).await.unwrap();
    assert_eq!(lane_delivery(store, a).await.state, DeliveryState::Dead);
    let after = later(at.plus(ACK_DEADLINE), 1);
    assert_eq!(
        store
            .discard_dead_letters(&dead_of(sub.name.as_str(), &[]), after)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        lane_delivery(store, a).await.state,
        DeliveryState::Discarded
    );
    assert_eq!(lease_ids(store, &sub, after).await, [b]);
    assert_eq!(lane_delivery(store, c).await.next_attempt_at, None);
    let stats = store.stats(after, StatsScope::Full).await.unwrap();
    let stats = stats.subscription(ORDERED).unwrap();
    assert_eq!((stats.discarded, stats.blocked_lanes), (1, 0));
}

pub async fn dead_head_skip_lets_the_lane_go_on(t: &TestStore) {
    let store = t.store.as_ref();
    let now = Timestamp::now();
    let sub = ordered(store, 1, DeadHeadPolicy::Skip, now).await;
    let a = publish_in(store, "a", "k", now).await;
    let b = publish_in(store, "b", "k", now).await;
    let receipt = lease_one(store, &sub, now).await;
    assert_eq!(receipt.message_id, a);
    // Out of attempts: DEAD, and the lane goes on.
    store
        .nack(&receipt, None, None, later(now, 1))
        .await
        .unwrap();
    assert_eq!(lane_delivery(store, a).await.state, DeliveryState::Dead);
    assert_eq!(lease_ids(store, &sub, later(now, 2)).await, [b]);
    let stats = store.stats(later(now, 2), StatsScope::Full).await.unwrap();
    assert!(stats.subscriptions.iter().all(|s| s.blocked_lanes == 0));
}

pub async fn switching_to_skip_releases_blocked_lanes(t: &TestStore) {
    let store = t.store.as_ref();
    let now = Timestamp::now();
    let sub = ordered(store, 1, DeadHeadPolicy::Block, now).await;
    let a = publish_in(store, "a", "k", now).await;
    let b = publish_in(store, "b", "k", now).await;
    let receipt = lease_one(store, &sub, now).await;
    store.reject(&receipt, "poison", now).await.unwrap();
    assert_eq!(lane_delivery(store, a).await.state, DeliveryState::Dead);
    assert!(lease_ids(store, &sub, later(now, 1)).await.is_empty());
    let skip = Subscription {
        dead_head: DeadHeadPolicy::Skip,
        ..sub.clone()
    };
    store.update_subscription(skip).await.unwrap();
    assert_eq!(lease_ids(store, &sub, Timestamp::now()).await, [b]);
    // `ordered` itself cannot change.
    let unordered = Subscription {
        ordered: false,
        ..sub
    };
    assert!(store.update_subscription(unordered).await.is_err());
}

pub async fn deliver_after_delays_the_lane(t: &TestStore) {
    let store = t.store.as_ref();
    let now = Timestamp::now();
    let sub = ordered(store, 5, DeadHeadPolicy::Block, now).await;
    let delayed = NewMessage {
        deliver_after: Duration::from_secs(60),
        ..keyed("a", "k", true, now)
    };
    let a = store.insert_message(delayed).await.unwrap().message_id;
    let b = publish_in(store, "b", "k", now).await;
    assert!(lease_ids(store, &sub, later(now, 59_000)).await.is_empty());
    assert_eq!(lease_ids(store, &sub, later(now, 60_000)).await, [a]);
    let _ = b;
}

pub async fn lanes_survive_a_restart(t: &TestStore) {
    let now = Timestamp::now();
    let sub = ordered(t.store.as_ref(), 5, DeadHeadPolicy::Block, now).await;
    let a = publish_in(t.store.as_ref(), "a", "k", now).await;
    let b = publish_in(t.store.as_ref(), "b", "k", now).await;
    let receipt = lease_one(t.store.as_ref(), &sub, now).await;
    assert_eq!(receipt.message_id, a);
    // Another process on the same database sees the lane exactly where it was.
    let (replica, _) = t.replica().await;
    assert!(
        lease_ids(replica.as_ref(), &sub, later(now, 1))
            .await
            .is_empty()
    );
    assert_eq!(
        replica.ack(&[receipt], later(now, 2)).await.unwrap(),
        [AckStatus::Ok]
    );
    assert_eq!(lease_ids(replica.as_ref(), &sub, later(now, 3)).await, [b]);
}

pub async fn lease_stops_at_the_byte_budget(t: &TestStore) {
    let store = t.store.as_ref();
    let now = Timestamp::now();
    let sub = subscribe(store, 5, now).await;
    for n in 0..3 {
        let big = NewMessage {
            payload: vec![b'x'; 10_000],
            ..message(TOPIC, &format!("big-{n}"), true, now)
        };
        store.insert_message(big).await.unwrap();
    }
    let two = Batch {
        messages: 10,
        bytes: 25_000,
    };
    assert_eq!(store.lease(&sub, two, now).await.unwrap().len(), 2);
    let tiny = Batch {
        messages: 10,
        bytes: 1,
    };
    assert_eq!(
        store.lease(&sub, tiny, now).await.unwrap().len(),
        1,
        "always at least one"
    );
    assert!(store.lease(&sub, tiny, now).await.unwrap().is_empty());
}

/// Acks from many consumers at once (the PostgreSQL store writes acks outside lanes in shared
/// batches, and lane heads in a transaction that lets the lane go on): each call gets its own
/// answers, and every lane whose head was acked goes on.
pub async fn concurrent_acks_in_and_out_of_lanes_each_get_their_own_answer(t: &TestStore) {
    let store = t.store.as_ref();
    let now = Timestamp::now();
    let sub = ordered(store, 5, DeadHeadPolicy::Block, now).await;
    let mut seconds = Vec::new();
    for lane in ["a", "b", "c"] {
        publish_in(store, &format!("{lane}1"), lane, now).await;
        seconds.push(publish_in(store, &format!("{lane}2"), lane, later(now, 1)).await);
    }
    for i in 0..6 {
        publish_in(store, &format!("u{i}"), "", now).await;
    }
    let leased = lease_all(store, &sub, later(now, 2)).await;
    assert_eq!(leased.len(), 9, "three lane heads and six unkeyed");
    // A call per delivery, two of them naming it twice; one call with a receipt of an
    // earlier lease and one of no delivery.
    let mut calls: Vec<Vec<Receipt>> = leased.iter().map(|d| vec![d.receipt.clone()]).collect();
    calls[0].push(leased[0].receipt.clone());
    calls[5].push(leased[5].receipt.clone());
    let stale = Receipt {
        generation: leased[2].receipt.generation - 1,
        ..leased[2].receipt.clone()
    };
    let unknown = Receipt {
        message_id: MessageId::new(),
        ..leased[3].receipt.clone()
    };
    calls.push(vec![stale, unknown]);
    let at = later(now, 3);
    let acks: Vec<_> = calls
        .into_iter()
        .map(|call| {
            let store = t.store.clone();
            tokio::spawn(async move { (call.len(), store.ack(&call, at).await.unwrap()) })
        })
        .collect();
    let mut answers = Vec::new();
    for ack in acks {
        answers.push(ack.await.unwrap());
    }
    let (odd, calls) = answers.split_last().unwrap();
    for (len, statuses) in calls {
        assert_eq!(statuses, &vec![AckStatus::Ok; *len]);
    }
    assert_eq!(odd.1, [AckStatus::LeaseLost, AckStatus::NotFound]);
    assert_eq!(
        lease_ids(store, &sub, later(now, 4)).await,
        sorted(seconds),
        "each lane's next, and nothing acked again"
    );
}
