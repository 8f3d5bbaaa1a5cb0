//! Several Courier replicas on one PostgreSQL database: work shared without a double lease, a
//! long poll on one replica woken by a confirm on another, a replica killed with SIGKILL whose
//! leases the other takes over, and the database going away (a TCP proxy the test cuts) and
//! coming back. They need `COURIER_TEST_POSTGRES_URL`; without it they skip with a notice, or
//! fail when `CI=true` (see `courier::store::testing`).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use courier::proto::{AckStatus, MessageOutcome, ReceiveRequest};
use courier::store::testing::{Link, TcpProxy, TestDatabase};
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::harness::*;
use crate::process::{Courier, Launch};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_share_the_work_without_a_double_lease() {
    const MESSAGES: usize = 400;
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let a = TestServer::start_on(database.url(), |_| {}).await;
    let b = TestServer::start_on(database.url(), |_| {}).await;
    a.create_subscription(subscription(SUB, TOPIC)).await;

    let publishers: Vec<_> = (0..4)
        .map(|p| {
            let producer = if p % 2 == 0 {
                a.producer()
            } else {
                b.producer()
            };
            tokio::spawn(async move {
                let mut producer = producer;
                for i in (p..MESSAGES).step_by(4) {
                    producer
                        .publish(publish_request(PRODUCER, TOPIC, &format!("m{i}")))
                        .await
                        .expect("Publish");
                }
            })
        })
        .collect();

    // Consumers on both replicas, from the start: they long-poll while messages arrive.
    let started = Instant::now();
    let consumers: Vec<_> = (0..6)
        .map(|c| {
            let api = if c % 2 == 0 {
                Api::clone(&a)
            } else {
                Api::clone(&b)
            };
            tokio::spawn(async move {
                let mut received = Vec::new();
                let mut idle_polls = 0;
                while idle_polls < 3 && started.elapsed() < Duration::from_secs(60) {
                    let deliveries = api.receive(SUB, 10, Duration::from_millis(500)).await;
                    if deliveries.is_empty() {
                        idle_polls += 1;
                        continue;
                    }
                    idle_polls = 0;
                    let receipts: Vec<&str> =
                        deliveries.iter().map(|d| d.receipt.as_str()).collect();
                    let statuses = api.ack(SUB, &receipts).await;
                    assert!(statuses.iter().all(|s| *s == AckStatus::Ok), "{statuses:?}");
                    received.extend(deliveries.into_iter().map(|d| (d.message_id, d.attempt)));
                }
                (c % 2, received)
            })
        })
        .collect();
    for publisher in publishers {
        publisher.await.unwrap();
    }
    let mut seen = HashSet::new();
    let mut per_replica: HashMap<usize, usize> = HashMap::new();
    for consumer in consumers {
        let (replica, received) = consumer.await.unwrap();
        *per_replica.entry(replica).or_default() += received.len();
        for (message_id, attempt) in received {
            assert_eq!(attempt, 1, "message {message_id} redelivered");
            assert!(
                seen.insert(message_id.clone()),
                "message {message_id} received twice"
            );
        }
    }
    assert_eq!(seen.len(), MESSAGES, "every message received");
    assert!(
        per_replica.values().all(|n| *n > 0),
        "both replicas served consumers: {per_replica:?}"
    );
    println!(
        "{MESSAGES} messages over two replicas in {:?}, each received once: {per_replica:?}",
        started.elapsed()
    );
    let sample = seen.iter().next().unwrap();
    assert_eq!(b.status(sample).await.outcome(), MessageOutcome::Delivered);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_confirm_on_one_replica_wakes_a_long_poll_on_another() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let a = TestServer::start_on(database.url(), |_| {}).await;
    let b = TestServer::start_on(database.url(), |_| {}).await;
    a.create_subscription(subscription(SUB, TOPIC)).await;

    let mut latencies = Vec::new();
    for round in 0..10 {
        let mut consumer = b.consumer();
        let poll = tokio::spawn(async move {
            let deliveries = consumer
                .receive(ReceiveRequest {
                    max_bytes: 0,
                    subscription: SUB.into(),
                    max_messages: 1,
                    wait: secs(20),
                })
                .await
                .expect("Receive")
                .into_inner()
                .deliveries;
            (Instant::now(), deliveries)
        });
        // Let the long poll settle into its wait on replica B.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let key = format!("wake-{round}");
        let prepared = a.prepare(TOPIC, &key).await;
        let confirmed_at = Instant::now();
        a.confirm(&prepared).await.expect("Confirm");
        let (returned_at, deliveries) = poll.await.unwrap();
        assert_eq!(deliveries.len(), 1);
        assert_eq!(deliveries[0].message_id, prepared);
        latencies.push(returned_at.duration_since(confirmed_at));
        b.ack(SUB, &[deliveries[0].receipt.as_str()]).await;
    }
    latencies.sort();
    let (median, max) = (
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1],
    );
    println!(
        "long poll on replica B answered after a Confirm on replica A: median {median:?}, max {max:?}"
    );
    assert!(max < Duration::from_millis(500), "{latencies:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leases_of_a_killed_replica_are_taken_over() {
    const MESSAGES: usize = 20;
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // The real `courier serve` binary, so it can be killed with SIGKILL.
    let doomed = Courier::start(&Launch::new("doomed", database.url(), dir.path())).await;
    let survivor = TestServer::start_on(database.url(), |_| {}).await;
    // Ack deadline 1 s, fast retries.
    survivor
        .create_subscription(fast_subscription(SUB, TOPIC, 5))
        .await;
    let mut ids = HashSet::new();
    for i in 0..MESSAGES {
        ids.insert(survivor.publish(TOPIC, &format!("k{i}")).await);
    }
    // The doomed replica's consumer takes every delivery, then the replica dies holding them.
    let mut leased = 0;
    while leased < MESSAGES {
        leased += doomed.receive(SUB, 100, Duration::from_secs(5)).await.len();
    }
    // SIGKILL: no shutdown code runs; its leases stay behind.
    doomed.kill();
    let killed_at = Instant::now();

    let mut redelivered = HashSet::new();
    while redelivered.len() < MESSAGES {
        assert!(
            killed_at.elapsed() < Duration::from_secs(20),
            "only {} of {MESSAGES} redelivered",
            redelivered.len()
        );
        let deliveries = survivor.receive(SUB, 100, Duration::from_secs(5)).await;
        for delivery in &deliveries {
            assert_eq!(
                delivery.attempt, 2,
                "the second attempt, after the lost lease"
            );
            assert!(ids.contains(&delivery.message_id));
            redelivered.insert(delivery.message_id.clone());
        }
        let receipts: Vec<&str> = deliveries.iter().map(|d| d.receipt.as_str()).collect();
        if !receipts.is_empty() {
            survivor.ack(SUB, &receipts).await;
        }
    }
    println!(
        "a SIGKILLed replica's {MESSAGES} leases (ack deadline 1s) redelivered by the other within {:?}",
        killed_at.elapsed()
    );
    for id in ids {
        assert_eq!(
            survivor.status(&id).await.outcome(),
            MessageOutcome::Delivered
        );
    }
}

async fn health(api: &Api) -> Result<ServingStatus, Code> {
    health_of(api, "").await
}

async fn health_of(api: &Api, service: &str) -> Result<ServingStatus, Code> {
    let mut client = HealthClient::new(api.channel());
    let check = client.check(HealthCheckRequest {
        service: service.to_owned(),
    });
    match tokio::time::timeout(Duration::from_secs(2), check).await {
        Ok(Ok(response)) => Ok(response.get_ref().status()),
        Ok(Err(status)) => Err(status.code()),
        Err(_) => Err(Code::DeadlineExceeded),
    }
}

/// How soon health follows the database, both ways: about a second (probes run every 250 ms
/// and a reported failure is confirmed within 500 ms), with room for a busy test machine.
const HEALTH_REACTION: Duration = Duration::from_millis(1500);

async fn outage(link: Link) {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let proxy = TcpProxy::start(database.server_addr()).await;
    let replica = TestServer::start_on(&proxy.url_for(database.url()), |config| {
        config.postgres.acquire_timeout = Duration::from_millis(500);
        config.postgres.statement_timeout = Duration::from_secs(1);
        config.postgres.connect_timeout = Duration::from_secs(1);
    })
    .await;
    replica.create_subscription(subscription(SUB, TOPIC)).await;
    let before = replica.publish(TOPIC, "before").await;

    proxy.set(link);
    // Calls answer UNAVAILABLE within their deadline, never hang; the first one takes the
    // replica out of service at once, not at the health task's next ping.
    let mut first_failure = None;
    for attempt in 0..3 {
        let mut request = tonic::Request::new(publish_request(
            PRODUCER,
            TOPIC,
            &format!("during-{attempt}"),
        ));
        request.set_timeout(Duration::from_secs(5));
        let started = Instant::now();
        let published = replica.producer().publish(request).await;
        assert_code(published, Code::Unavailable);
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        first_failure.get_or_insert_with(Instant::now);
        if attempt == 0 {
            let not_serving = eventually(
                Duration::from_secs(15),
                "health says NOT_SERVING",
                || async {
                    (health(&replica).await == Ok(ServingStatus::NotServing)).then(Instant::now)
                },
            )
            .await;
            let after_failure = not_serving.saturating_duration_since(first_failure.unwrap());
            println!("{link:?}: NOT_SERVING {after_failure:?} after the first failed call");
            assert!(
                after_failure < HEALTH_REACTION,
                "{link:?}: {after_failure:?}"
            );
        }
    }
    // Liveness does not follow the database: a probe on it must not restart the replica.
    assert_eq!(
        health_of(&replica, courier::LIVENESS_SERVICE).await,
        Ok(ServingStatus::Serving)
    );

    proxy.set(Link::Up);
    let restored_at = Instant::now();
    let serving = eventually(
        Duration::from_secs(20),
        "health says SERVING again",
        || async { (health(&replica).await == Ok(ServingStatus::Serving)).then(Instant::now) },
    )
    .await;
    let after_restore = serving.duration_since(restored_at);
    println!("{link:?}: SERVING {after_restore:?} after the link came back");
    assert!(
        after_restore < HEALTH_REACTION,
        "{link:?}: {after_restore:?}"
    );
    // Nothing lost, and new work flows.
    let after = replica.publish(TOPIC, "after").await;
    let mut received = HashSet::new();
    while !(received.contains(&before) && received.contains(&after)) {
        assert!(restored_at.elapsed() < Duration::from_secs(30));
        for delivery in replica.receive(SUB, 10, Duration::from_secs(2)).await {
            received.insert(delivery.message_id);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cut_database_answers_unavailable_then_serves_again() {
    outage(Link::Cut).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_network_path_answers_unavailable_then_serves_again() {
    outage(Link::Blackhole).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lanes_keep_confirm_order_across_two_replicas() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let a = TestServer::start_on(database.url(), |_| {}).await;
    let b = TestServer::start_on(database.url(), |_| {}).await;
    crate::ordering::random_failures_keep_every_lane_in_confirm_order(
        &[Api::clone(&a), Api::clone(&b)],
        async || {},
    )
    .await;
}
