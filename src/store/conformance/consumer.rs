//! Conformance: leases, Ack, Nack, ExtendLease and Reject, and wake-ups.

use std::collections::HashSet;
use std::time::Duration;

use super::TestStore;
use super::helpers::*;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::domain::{
    AckStatus, Decision, DeliveryState, MessageId, MessageOutcome, Receipt, RedeliveryPlan,
    Subscription, Timestamp,
};
use crate::lease_ahead::LeaseAhead;
use crate::long_poll;
use crate::store::{Batch, StatsScope, StoreError, rules};
use crate::wakeups::Look;

pub async fn lease_then_ack(t: &TestStore) {
    let store = t.store.as_ref();
    let now = Timestamp::now();
    let sub = subscribe(store, 5, now).await;
    let sent = message(TOPIC, "k", true, now);
    let id = store.insert_message(sent.clone()).await.unwrap().message_id;

    let leased_at = later(now, 10);
    let leased = store
        .lease(&sub, Batch::messages(10), leased_at)
        .await
        .unwrap();
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
            .lease(&sub, Batch::messages(10), later(now, 20))
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
            // Acked now, by the newer lease: the stale receipt still learns its lease was lost
            // (its work was duplicated).
            AckStatus::LeaseLost,
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
            .lease(&sub, Batch::messages(10), later(now, 3_600_000))
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
        store.nack(&receipt, Some(delay), None, now).await.unwrap(),
        Some(RedeliveryPlan::RetryAt(now.plus(delay)))
    );
    // A repeat of the same Nack changes nothing, and says so.
    assert_eq!(
        store
            .nack(&receipt, None, None, later(now, 100))
            .await
            .unwrap(),
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
            .lease(&sub, Batch::messages(10), later(now, 4_999))
            .await
            .unwrap()
            .is_empty()
    );

    let second = lease_one(store, &sub, now.plus(delay)).await;
    assert_eq!(
        store
            .lease(&sub, Batch::messages(1), now.plus(delay))
            .await
            .unwrap()
            .len(),
        0
    );
    // The old receipt lost its lease.
    assert!(matches!(
        store.nack(&receipt, None, None, now.plus(delay)).await,
        Err(StoreError::LeaseLost {
            current: DeliveryState::Leased
        })
    ));
    // Second and last attempt: a Nack makes it DEAD, whatever the delay; the consumer's
    // reason is kept.
    let reason = Some("the ledger timed out");
    let nacked = "nacked by the consumer: the ledger timed out";
    assert_eq!(
        store
            .nack(&second, Some(delay), reason, now.plus(delay))
            .await
            .unwrap(),
        Some(RedeliveryPlan::Dead)
    );
    // Repeated, it answers no plan: the death is reported once.
    assert_eq!(
        store
            .nack(&second, None, None, later(now.plus(delay), 100))
            .await
            .unwrap(),
        None
    );
    let status = delivery(store, id).await;
    assert_eq!(status.state, DeliveryState::Dead);
    assert_eq!(status.attempts, 2);
    assert_eq!(status.next_attempt_at, None);
    assert_eq!(status.last_error.as_deref(), Some(nacked));
    let events = store.message_history(id).await.unwrap().events;
    let details: Vec<_> = events.iter().map(|e| e.detail.as_deref()).collect();
    assert_eq!(details, [Some(rules::NACKED), Some(nacked)]);
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
            .lease(&sub, Batch::messages(10), later(now, 3_600_000))
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

/// Receive's long poll on `sub` for up to `max` deliveries, waiting up to `wait`: the ids
/// it leased.
async fn long_poll(t: &TestStore, sub: &Subscription, max: u32, wait: Duration) -> Vec<MessageId> {
    let no_shutdown = CancellationToken::new();
    let deadline = tokio::time::Instant::now() + wait;
    let batch = Batch::messages(max);
    let leased = long_poll::lease_or_wait(
        t.store.as_ref(),
        &t.wakeups,
        None,
        sub,
        batch,
        deadline,
        &no_shutdown,
    )
    .await
    .unwrap();
    leased.iter().map(|d| d.receipt.message_id).collect()
}

/// A long poll whose last lease found the subscription drained asks for the next due time
/// before it leases again: it must still lease what becomes due by time alone (no wake-up
/// comes for a delayed delivery), and what a commit makes due while it waits. The long poll
/// reads the clock itself, so this test waits on it (a few hundred milliseconds).
pub async fn a_drained_long_poll_still_finds_work_due_by_time_and_by_commit(t: &TestStore) {
    let store = t.store.as_ref();
    let sub = subscribe(store, 5, Timestamp::now()).await;
    assert!(
        long_poll(t, &sub, 10, Duration::from_millis(20))
            .await
            .is_empty()
    );
    let signal = t.wakeups.subscription(SUB);

    let mut delayed = message(TOPIC, "delayed", true, Timestamp::now());
    delayed.deliver_after = Duration::from_millis(300);
    let delayed = store.insert_message(delayed).await.unwrap().message_id;
    assert!(
        long_poll(t, &sub, 10, Duration::ZERO).await.is_empty(),
        "not due yet"
    );
    assert_eq!(
        signal.look(),
        Look::AskNextDue,
        "a lease found it drained after the publish"
    );
    assert_eq!(
        long_poll(t, &sub, 10, Duration::from_secs(10)).await,
        vec![delayed],
        "due by time, with no wake-up"
    );

    assert!(long_poll(t, &sub, 10, Duration::ZERO).await.is_empty());
    assert_eq!(signal.look(), Look::AskNextDue);
    let waiting = long_poll(t, &sub, 10, Duration::from_secs(10));
    let publishing = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        publish(store, "while-waiting", Timestamp::now()).await
    };
    let (leased, published) = tokio::join!(waiting, publishing);
    assert_eq!(leased, vec![published], "due by a commit, with a wake-up");
}

/// While another consumer's lease, begun since the last wake-up, runs, a long poll with time
/// to wait waits for it to end before it looks; one with no time left leases at once.
pub async fn a_long_poll_waits_for_a_running_lease_only_when_it_has_time(t: &TestStore) {
    let store = t.store.as_ref();
    let sub = subscribe(store, 5, Timestamp::now()).await;
    let first = publish(store, "first", Timestamp::now()).await;
    let signal = t.wakeups.subscription(SUB);

    let running = signal.begin_lease(); // another consumer's, say
    assert_eq!(long_poll(t, &sub, 2, Duration::ZERO).await, vec![first]);
    drop(running);
    // The publish's wake-up is covered by a lease begun after it, and the lease before that
    // was not full: no backlog.
    let second = publish(store, "second", Timestamp::now()).await;
    let running = signal.begin_lease();
    let waiting = long_poll(t, &sub, 2, Duration::from_secs(10));
    tokio::pin!(waiting);
    let early = tokio::time::timeout(Duration::from_millis(100), &mut waiting).await;
    assert!(early.is_err(), "it waits for the running lease");
    drop(running);
    let leased = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the lease's end lets it look");
    assert_eq!(leased, vec![second]);
}

pub async fn on_a_backlog_a_long_poll_leases_beside_the_running_lease(t: &TestStore) {
    let store = t.store.as_ref();
    let sub = subscribe(store, 5, Timestamp::now()).await;
    let first = publish(store, "first", Timestamp::now()).await;
    let second = publish(store, "second", Timestamp::now()).await;
    let signal = t.wakeups.subscription(SUB);

    // A full lease: more may be due than one lease takes.
    assert_eq!(long_poll(t, &sub, 1, Duration::ZERO).await, vec![first]);
    let running = signal.begin_lease(); // another consumer's, say
    let leased = tokio::time::timeout(
        Duration::from_secs(5),
        long_poll(t, &sub, 1, Duration::from_secs(10)),
    )
    .await
    .expect("it leases without waiting for the running lease");
    assert_eq!(leased, vec![second]);
    drop(running);
}

pub async fn returned_leases_are_due_again_in_their_place(t: &TestStore) {
    let store = t.store.as_ref();
    let now = Timestamp::now();
    let sub = subscribe(store, 5, now).await;
    let first = publish(store, "first", now).await;
    let second = publish(store, "second", later(now, 1)).await;
    let leased = store
        .lease(&sub, Batch::messages(10), later(now, 10))
        .await
        .unwrap();
    assert_eq!(leased.len(), 2);

    // Given back: pending again, due from their publish time, the attempt not counted.
    assert_eq!(
        store.return_leases(&leased, later(now, 20)).await.unwrap(),
        2
    );
    let status = delivery(store, first).await;
    assert_eq!(status.state, DeliveryState::Pending);
    assert_eq!(status.attempts, 0);
    assert_eq!(status.next_attempt_at, Some(now));
    assert_eq!(status.lease_expires_at, None);

    // Leased again oldest first, as their first attempt.
    let again = store
        .lease(&sub, Batch::messages(10), later(now, 30))
        .await
        .unwrap();
    let ids: Vec<MessageId> = again.iter().map(|d| d.receipt.message_id).collect();
    assert_eq!(ids, vec![first, second]);
    assert!(again.iter().all(|d| d.attempt == 1));

    // Receipts of leases taken again since are left alone.
    assert_eq!(
        store.return_leases(&leased, later(now, 40)).await.unwrap(),
        0
    );
    assert_eq!(delivery(store, first).await.state, DeliveryState::Leased);
}

pub async fn a_full_long_poll_leases_the_next_batch_ahead(t: &TestStore) {
    let store = t.store.as_ref();
    // Published a second ago, one millisecond apart: all due, in this order.
    let now = Timestamp::from_millis(Timestamp::now().as_millis() - 1000);
    let sub = subscribe(store, 5, now).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(publish(store, &format!("m{i}"), later(now, i)).await);
    }
    let shutdown = CancellationToken::new();
    let ahead = LeaseAhead::new(
        t.store.clone(),
        t.wakeups.clone(),
        (TaskTracker::new(), shutdown.clone()),
        4,
    );
    let receive = || async {
        let leased = long_poll::lease_or_wait(
            store,
            &t.wakeups,
            Some(&ahead),
            &sub,
            Batch::messages(2),
            tokio::time::Instant::now() + Duration::from_secs(5),
            &shutdown,
        )
        .await
        .unwrap();
        leased
            .iter()
            .map(|d| (d.receipt.message_id, d.attempt))
            .collect::<Vec<_>>()
    };
    let held = |count: usize| {
        let ahead = &ahead;
        async move {
            for _ in 0..1000 {
                if ahead.held(SUB) == count {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            panic!("{count} batches never held");
        }
    };

    // A full batch: the next one is leased ahead and held for the next Receive.
    assert_eq!(receive().await, vec![(ids[0], 1), (ids[1], 1)]);
    held(1).await;
    assert_eq!(delivery(store, ids[2]).await.state, DeliveryState::Leased);
    assert_eq!(receive().await, vec![(ids[2], 1), (ids[3], 1)]);

    // Taking a full one leased the last ahead; nobody takes it, so it goes back after the
    // hold, its attempt not counted, and the next Receive gets it as its first attempt.
    held(1).await;
    assert_eq!(delivery(store, ids[4]).await.state, DeliveryState::Leased);
    held(0).await;
    let mut status = delivery(store, ids[4]).await;
    for _ in 0..1000 {
        if status.state == DeliveryState::Pending {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        status = delivery(store, ids[4]).await;
    }
    assert_eq!(status.state, DeliveryState::Pending);
    assert_eq!(status.attempts, 0);
    assert_eq!(receive().await, vec![(ids[4], 1)]);
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
                let leased = store.lease(&sub, Batch::messages(7), now).await.unwrap();
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
    let stats = t.store.stats(now, StatsScope::Full).await.unwrap();
    assert_eq!(stats.subscriptions[0].leased, MESSAGES as u64);
}
