//! Ordered subscriptions over gRPC: per-key order under random consumer failures, dead heads,
//! DiscardDeadLetters, Receive's byte budget and the truthful answer to a stale receipt.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use courier::proto::{
    AckRequest, AckStatus, ConfirmRequest, DeadHead, DeliveryState, DiscardDeadLettersRequest,
    GetStatsRequest, ListDeliveriesRequest, NackRequest, PublishRequest, ReceiveRequest,
    RedriveRequest, RejectRequest, Subscription, UpdateSubscriptionRequest,
};
use rand::Rng;
use rand::seq::SliceRandom;
use tonic::Code;

use crate::harness::*;

/// An ordered pull subscription that retries fast (1 s ack deadline, 1–10 ms backoff).
pub fn ordered_subscription(name: &str, max_attempts: u32, dead_head: DeadHead) -> Subscription {
    Subscription {
        ordered: true,
        dead_head: dead_head as i32,
        ..fast_subscription(name, TOPIC, max_attempts)
    }
}

pub async fn publish_keyed(api: &Api, key: &str, lane: &str) -> String {
    api.producer()
        .publish(PublishRequest {
            ordering_key: lane.into(),
            ..publish_request(PRODUCER, TOPIC, key)
        })
        .await
        .expect("Publish")
        .into_inner()
        .message_id
}

/// What the consumers saw: per lane, each message's first successful Ack, stamped with a
/// sequence number taken before the Ack was sent. The next message of a lane is delivered only
/// after the previous one's Ack committed, so its own Ack starts later: the stamps order a
/// lane truthfully, where the order in which answers come back (and are recorded) need not.
type AckedInOrder = Arc<Mutex<BTreeMap<String, Vec<(u64, String)>>>>;

/// Stamps for [`AckedInOrder`], shared by every consumer of a test.
static ACK_STARTS: AtomicU64 = AtomicU64::new(0);

/// Many keys, each prepared in one order and confirmed in a shuffled one; consumers on
/// `apis` that ack, nack or let leases run out at random, and `midway` run halfway through the
/// confirms (a restart, say). Every key's first successful acks must come in confirm order, and
/// every message must arrive.
pub async fn random_failures_keep_every_lane_in_confirm_order(
    apis: &[Api],
    midway: impl AsyncFnOnce(),
) {
    const KEYS: usize = 12;
    const PER_KEY: usize = 8;
    let api = &apis[0];
    api.create_subscription(ordered_subscription(SUB, 1000, DeadHead::Block))
        .await;

    // Prepare everything first (ids in prepare order), then confirm each lane in a shuffled
    // order, lanes interleaved at random: confirm order differs from id order.
    let mut confirms: Vec<(String, String)> = Vec::new();
    for lane in 0..KEYS {
        for n in 0..PER_KEY {
            let key = format!("k{lane}-m{n}");
            let id = api
                .producer()
                .prepare(courier::proto::PrepareRequest {
                    ordering_key: format!("lane-{lane}"),
                    ..prepare_request(PRODUCER, TOPIC, &key)
                })
                .await
                .expect("Prepare")
                .into_inner()
                .message_id;
            confirms.push((format!("lane-{lane}"), id));
        }
    }
    confirms.shuffle(&mut rand::rng());
    let acked: AckedInOrder = Arc::default();
    let consumers: Vec<_> = (0..3)
        .map(|n| {
            tokio::spawn(consume_at_random(
                apis[n % apis.len()].clone(),
                acked.clone(),
            ))
        })
        .collect();
    let mut confirm_order: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut midway = Some(midway);
    for (i, (lane, id)) in confirms.iter().enumerate() {
        if i == confirms.len() / 2
            && let Some(midway) = midway.take()
        {
            midway().await;
        }
        confirm_until_answered(&apis[i % apis.len()], id).await;
        confirm_order
            .entry(lane.clone())
            .or_default()
            .push(id.clone());
    }

    let total = KEYS * PER_KEY;
    eventually(Duration::from_secs(120), "every message acked", || {
        let acked = acked.clone();
        async move {
            let count: usize = acked.lock().unwrap().values().map(Vec::len).sum();
            (count == total).then_some(())
        }
    })
    .await;
    for consumer in consumers {
        consumer.abort();
    }
    let acked: BTreeMap<String, Vec<String>> = acked
        .lock()
        .unwrap()
        .iter()
        .map(|(lane, stamped)| {
            let mut stamped = stamped.clone();
            stamped.sort();
            (
                lane.clone(),
                stamped.into_iter().map(|(_, id)| id).collect(),
            )
        })
        .collect();
    assert_eq!(acked, confirm_order, "each lane acked in confirm order");
}

/// Confirms `id`, again while the server is away (a restart): Confirm is idempotent, and the
/// next confirm waits for this one, so the confirm order stays the test's.
async fn confirm_until_answered(api: &Api, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match api
            .producer()
            .confirm(ConfirmRequest { message: by_id(id) })
            .await
        {
            Ok(_) => return,
            Err(status) if status.code() == Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(status) => panic!("Confirm: {status:?}"),
        }
    }
}

/// Receives and settles at random. Calls that fail (the server restarting) are simply tried
/// again later: their leases run out and the deliveries come back.
async fn consume_at_random(api: Api, acked: AckedInOrder) {
    let mut seen: HashSet<String> = HashSet::new();
    loop {
        let received = api
            .consumer()
            .receive(ReceiveRequest {
                subscription: SUB.into(),
                max_messages: 10,
                wait: Some(duration(Duration::from_millis(200))),
                max_bytes: 0,
            })
            .await;
        let Ok(received) = received else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let deliveries = received.into_inner().deliveries;
        for delivery in deliveries {
            let roll: f64 = rand::rng().random();
            if roll < 0.15 {
                // Let the lease run out.
                continue;
            }
            if roll < 0.3 {
                let _ = api
                    .consumer()
                    .nack(NackRequest {
                        subscription: SUB.into(),
                        receipt: delivery.receipt.clone(),
                        delay: ms(1),
                        reason: String::new(),
                    })
                    .await;
                continue;
            }
            let stamp = ACK_STARTS.fetch_add(1, Ordering::SeqCst);
            let answer = api
                .consumer()
                .ack(AckRequest {
                    subscription: SUB.into(),
                    receipts: vec![delivery.receipt.clone()],
                })
                .await;
            let ok =
                answer.is_ok_and(|answer| answer.into_inner().results[0].status() == AckStatus::Ok);
            if ok && seen.insert(delivery.message_id.clone()) {
                acked
                    .lock()
                    .unwrap()
                    .entry(delivery.ordering_key.clone())
                    .or_default()
                    .push((stamp, delivery.message_id.clone()));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn random_failures_and_a_restart_keep_every_lane_in_confirm_order() {
    let mut server = TestServer::start().await;
    let api = (*server).clone();
    random_failures_keep_every_lane_in_confirm_order(&[api], async || server.restart().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_head_blocks_its_lane_until_discarded() {
    let server = TestServer::start().await;
    server
        .create_subscription(ordered_subscription(SUB, 1, DeadHead::Block))
        .await;
    let poison = publish_keyed(&server, "poison", "account-7").await;
    let next = publish_keyed(&server, "next", "account-7").await;
    let other = publish_keyed(&server, "other", "account-8").await;

    let mut first = server.receive(SUB, 10, Duration::from_secs(5)).await;
    first.sort_by(|a, b| a.message_id.cmp(&b.message_id));
    let ids: Vec<&str> = first.iter().map(|d| d.message_id.as_str()).collect();
    assert_eq!(ids, [poison.as_str(), other.as_str()], "one head per lane");
    assert_eq!(first[0].ordering_key, "account-7");
    server
        .consumer()
        .reject(RejectRequest {
            subscription: SUB.into(),
            receipt: first[0].receipt.clone(),
            reason: "cannot parse".into(),
        })
        .await
        .expect("Reject");
    server.ack(SUB, &[&first[1].receipt]).await;
    assert!(
        server
            .receive(SUB, 10, Duration::from_millis(300))
            .await
            .is_empty(),
        "the lane is blocked"
    );

    let stats = server
        .admin()
        .get_stats(GetStatsRequest {})
        .await
        .expect("GetStats")
        .into_inner();
    assert_eq!(stats.subscriptions[0].blocked_lanes, 1);
    let blocking = server
        .admin()
        .list_deliveries(ListDeliveriesRequest {
            subscription: SUB.into(),
            blocking_only: true,
            ..Default::default()
        })
        .await
        .expect("ListDeliveries")
        .into_inner()
        .deliveries;
    assert_eq!(blocking.len(), 1);
    assert_eq!(blocking[0].message_id, poison);
    assert_eq!(blocking[0].ordering_key, "account-7");

    let discarded = server
        .admin()
        .discard_dead_letters(DiscardDeadLettersRequest {
            subscription: SUB.into(),
            message_ids: vec![poison.clone()],
            ..Default::default()
        })
        .await
        .expect("DiscardDeadLetters")
        .into_inner()
        .discarded;
    assert_eq!(discarded, 1);
    let delivery = server.receive_one(SUB, Duration::from_secs(5)).await;
    assert_eq!(
        delivery.message_id, next,
        "the lane goes on after the discard"
    );
    assert_eq!(
        server.delivery_status(&poison, SUB).await.state(),
        DeliveryState::Discarded
    );
    // Redrive finds nothing dead any more; discarding again is a no-op.
    let redriven = server
        .admin()
        .redrive(RedriveRequest {
            subscription: SUB.into(),
            message_ids: vec![],
            ..Default::default()
        })
        .await
        .expect("Redrive")
        .into_inner()
        .redriven;
    assert_eq!(redriven, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discard_answers_not_found_for_an_unknown_subscription_and_checks_ids() {
    let server = TestServer::start().await;
    let missing = server
        .admin()
        .discard_dead_letters(DiscardDeadLettersRequest {
            subscription: "nobody".into(),
            message_ids: vec![],
            ..Default::default()
        })
        .await;
    assert_code(missing, Code::NotFound);
    server.create_subscription(subscription(SUB, TOPIC)).await;
    let bad = server
        .admin()
        .discard_dead_letters(DiscardDeadLettersRequest {
            subscription: SUB.into(),
            message_ids: vec!["not-a-uuid".into()],
            ..Default::default()
        })
        .await;
    assert_invalid_field(bad, "message_ids[0]");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordering_fields_are_validated() {
    let server = TestServer::start().await;
    server
        .create_subscription(ordered_subscription(SUB, 5, DeadHead::Skip))
        .await;
    let long = server
        .producer()
        .publish(PublishRequest {
            ordering_key: "k".repeat(257),
            ..publish_request(PRODUCER, TOPIC, "long")
        })
        .await;
    assert_invalid_field(long, "ordering_key");
    let nul = server
        .producer()
        .publish(PublishRequest {
            ordering_key: "a\0b".into(),
            ..publish_request(PRODUCER, TOPIC, "nul")
        })
        .await;
    assert_invalid_field(nul, "ordering_key");
    // `ordered` is fixed at creation.
    let unordered = server
        .admin()
        .update_subscription(UpdateSubscriptionRequest {
            subscription: Some(Subscription {
                ordered: false,
                ..ordered_subscription(SUB, 5, DeadHead::Skip)
            }),
        })
        .await;
    let status = assert_code(unordered, Code::FailedPrecondition);
    assert!(status.message().contains("ordered"), "{}", status.message());
    let got = server.deliveries(SUB).await;
    assert!(got.is_empty());
    // A Receive may not ask for more than the ceiling.
    let too_much = server
        .consumer()
        .receive(ReceiveRequest {
            subscription: SUB.into(),
            max_messages: 1,
            max_bytes: 4_000_001,
            ..Default::default()
        })
        .await;
    assert_invalid_field(too_much, "max_bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receive_answers_fit_a_default_client() {
    let server = TestServer::start_with(|config| {
        config.limits.max_payload_bytes = 2 * 1024 * 1024;
    })
    .await;
    server.create_subscription(subscription(SUB, TOPIC)).await;
    for n in 0..5 {
        server
            .producer()
            .publish(PublishRequest {
                payload: vec![b'x'; 1_500_000],
                ..publish_request(PRODUCER, TOPIC, &format!("big-{n}"))
            })
            .await
            .expect("Publish");
    }
    // 7.5 MB are due; each answer stays under a default client's 4 MiB and carries what fits.
    let mut received = 0;
    let started = Instant::now();
    while received < 5 && started.elapsed() < Duration::from_secs(20) {
        let batch = server.receive(SUB, 10, Duration::from_secs(1)).await;
        assert!(
            batch.len() <= 2,
            "two 1.5 MB payloads fit in 4 MB, three do not"
        );
        received += batch.len();
    }
    assert_eq!(received, 5);
    // A smaller budget still hands out one delivery at least.
    server
        .producer()
        .publish(publish_request(PRODUCER, TOPIC, "small"))
        .await
        .expect("Publish");
    let one = server
        .consumer()
        .receive(ReceiveRequest {
            subscription: SUB.into(),
            max_messages: 10,
            max_bytes: 1,
            ..Default::default()
        })
        .await
        .expect("Receive")
        .into_inner()
        .deliveries;
    assert_eq!(one.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_receipt_learns_its_lease_was_lost_even_after_the_ack() {
    let server = TestServer::start().await;
    server
        .create_subscription(fast_subscription(SUB, TOPIC, 5))
        .await;
    server.publish(TOPIC, "k").await;
    let first = server.receive_one(SUB, Duration::from_secs(5)).await;
    // The lease runs out and another consumer takes the delivery and acks it.
    let second = eventually(Duration::from_secs(10), "a second lease", || async {
        server
            .receive(SUB, 1, Duration::from_millis(500))
            .await
            .pop()
    })
    .await;
    assert_eq!(server.ack(SUB, &[&second.receipt]).await, [AckStatus::Ok]);
    assert_eq!(
        server.ack(SUB, &[&first.receipt]).await,
        [AckStatus::LeaseLost],
        "the first consumer's work was duplicated"
    );
    assert_eq!(
        server.ack(SUB, &[&second.receipt]).await,
        [AckStatus::Ok],
        "repeating the latest receipt stays OK"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_a_blocked_subscription_to_skip_lets_its_lanes_go_on() {
    let server = TestServer::start().await;
    server
        .create_subscription(ordered_subscription(SUB, 1, DeadHead::Block))
        .await;
    publish_keyed(&server, "a", "k").await;
    let b = publish_keyed(&server, "b", "k").await;
    let a = server.receive_one(SUB, Duration::from_secs(5)).await;
    server
        .consumer()
        .reject(RejectRequest {
            subscription: SUB.into(),
            receipt: a.receipt,
            reason: "poison".into(),
        })
        .await
        .expect("Reject");
    server
        .admin()
        .update_subscription(UpdateSubscriptionRequest {
            subscription: Some(ordered_subscription(SUB, 1, DeadHead::Skip)),
        })
        .await
        .expect("UpdateSubscription");
    let next = server.receive_one(SUB, Duration::from_secs(5)).await;
    assert_eq!(next.message_id, b);
    let by_state: HashMap<i32, usize> =
        server
            .deliveries(SUB)
            .await
            .iter()
            .fold(HashMap::new(), |mut counts, d| {
                *counts.entry(d.state).or_default() += 1;
                counts
            });
    assert_eq!(by_state.get(&(DeliveryState::Dead as i32)), Some(&1));
}
