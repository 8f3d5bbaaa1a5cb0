//! Conformance: the scheduler's lease expiry, failed pushes and retention.

use std::sync::Arc;
use std::time::Duration;

use super::TestStore;
use super::helpers::*;
use crate::domain::{
    AckStatus, Decision, DeliveryState, MessageId, Receipt, RedeliveryPlan, Timestamp,
};
use crate::store::{Batch, CheckVerdict, ExpiredLeases, NewMessage, StoreError};

pub async fn expire_leases_checks_state_and_generation(t: &TestStore) {
    let store = t.store.as_ref();
    let now = Timestamp::now();
    let sub = subscribe(store, 5, now).await;
    let acked = publish(store, "acked", now).await;
    let expired = publish(store, "expired", later(now, 1)).await;
    let leased = store
        .lease(&sub, Batch::messages(10), later(now, 1))
        .await
        .unwrap();
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
    assert_eq!(
        store
            .lease(&sub, Batch::messages(10), now)
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        store
            .lease(&audit, Batch::messages(10), now)
            .await
            .unwrap()
            .len(),
        2
    );
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
    assert_eq!(
        store
            .lease(&audit, Batch::messages(10), retried)
            .await
            .unwrap()
            .len(),
        2
    );
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
        let mut leased = store
            .lease(&sub, Batch::messages(MESSAGES as u32), now)
            .await
            .unwrap();
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
