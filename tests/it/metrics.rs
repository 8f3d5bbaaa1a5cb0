//! The Prometheus endpoint: a server with `metrics_listen` set is scraped after some traffic,
//! and the counters, histograms and gauges show it. Counters are process-wide and other tests
//! run in this process too, so exact values are asserted only on series labelled with this
//! test's own subscription; the rest are lower bounds.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use courier::proto::{DeliveryState, GetSubscriptionRequest, NackRequest, RejectRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::Code;

use crate::harness::{TestServer, assert_code, eventually, fast_subscription};
use crate::process::free_port;

const TOPIC: &str = "metrics-orders";
const SUB: &str = "metrics-billing";
/// The subscription of the test on deaths by Nack and by lease expiry (counters are
/// process-wide: each test labels its own series).
const DEAD_TOPIC: &str = "metrics-dead-orders";
const DEAD_SUB: &str = "metrics-dead-letters";

/// `GET path` over HTTP/1.1; returns the status code and the body.
async fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr).await?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_owned()))
}

/// Sample lines of the exposition by series (`name{labels}`), with their values.
fn samples(exposition: &str) -> HashMap<String, f64> {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

#[track_caller]
fn value(samples: &HashMap<String, f64>, series: &str) -> f64 {
    *samples
        .get(series)
        .unwrap_or_else(|| panic!("no sample {series}; have: {:#?}", sorted(samples)))
}

fn sorted(samples: &HashMap<String, f64>) -> Vec<&String> {
    let mut names: Vec<_> = samples.keys().collect();
    names.sort();
    names
}

#[tokio::test]
async fn the_endpoint_exports_rpc_message_delivery_and_backlog_metrics() {
    let metrics_addr = free_port();
    let server = TestServer::start_with(|config| {
        config.metrics_listen = metrics_addr.to_string();
    })
    .await;
    server
        .create_subscription(fast_subscription(SUB, TOPIC, 5))
        .await;

    // Messages: one left PREPARED, one prepared then confirmed, one published.
    server.prepare(TOPIC, "waiting").await;
    let confirmed = server.prepare(TOPIC, "confirmed").await;
    server.confirm(&confirmed).await.expect("Confirm");
    server.publish(TOPIC, "published").await;

    // Deliveries: ack one, nack the other and take it again (a redelivery), then reject it.
    let first = server.receive(SUB, 2, Duration::from_secs(5)).await;
    assert_eq!(first.len(), 2);
    assert_eq!(server.ack(SUB, &[&first[0].receipt]).await.len(), 1);
    server
        .consumer()
        .nack(NackRequest {
            subscription: SUB.into(),
            receipt: first[1].receipt.clone(),
            delay: None,
            reason: String::new(),
        })
        .await
        .expect("Nack");
    let again = server.receive_one(SUB, Duration::from_secs(5)).await;
    assert_eq!(again.attempt, 2);
    server
        .consumer()
        .reject(RejectRequest {
            subscription: SUB.into(),
            receipt: again.receipt,
            reason: "cannot parse".into(),
        })
        .await
        .expect("Reject");

    // An error answered in the headers (trailers-only), beside the OKs answered in trailers.
    assert_code(
        server
            .admin()
            .get_subscription(GetSubscriptionRequest {
                name: "metrics-nope".into(),
            })
            .await,
        Code::NotFound,
    );

    let (status, exposition) = http_get(metrics_addr, "/metrics").await.expect("scrape");
    assert_eq!(status, 200, "{exposition}");
    assert!(exposition.ends_with("# EOF\n"), "an OpenMetrics exposition");
    assert!(exposition.contains("# TYPE courier_rpc_duration_seconds histogram"));
    let samples = samples(&exposition);
    let sub = format!("subscription=\"{SUB}\"");

    // Deliveries, counted by this test's own subscription: exact.
    assert_eq!(
        value(
            &samples,
            &format!("courier_deliveries_leased_total{{{sub}}}")
        ),
        3.0
    );
    assert_eq!(
        value(
            &samples,
            &format!("courier_deliveries_redelivered_total{{{sub}}}")
        ),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            &format!("courier_deliveries_acked_total{{{sub}}}")
        ),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            &format!("courier_deliveries_nacked_total{{{sub}}}")
        ),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            &format!("courier_deliveries_dead_total{{{sub},reason=\"rejected\"}}")
        ),
        1.0
    );

    // Process-wide counters: at least this test's traffic.
    assert!(value(&samples, "courier_messages_prepared_total") >= 2.0);
    assert!(
        value(
            &samples,
            "courier_messages_confirmed_total{source=\"producer\"}"
        ) >= 1.0
    );
    assert!(
        value(
            &samples,
            "courier_messages_confirmed_total{source=\"publish\"}"
        ) >= 1.0
    );
    assert!(
        value(
            &samples,
            "courier_rpc_handled_total{service=\"courier.v1.Producer\",method=\"Prepare\",code=\"OK\"}"
        ) >= 2.0
    );
    assert!(
        value(
            &samples,
            "courier_rpc_handled_total{service=\"courier.v1.Admin\",method=\"GetSubscription\",code=\"NOT_FOUND\"}"
        ) >= 1.0
    );
    assert!(
        value(
            &samples,
            "courier_rpc_duration_seconds_count{service=\"courier.v1.Consumer\",method=\"Receive\"}"
        ) >= 2.0
    );
    assert!(
        value(
            &samples,
            "courier_rpc_duration_seconds_bucket{le=\"+Inf\",service=\"courier.v1.Consumer\",method=\"Ack\"}"
        ) >= 1.0
    );

    // Gauges, read from this server's store at the scrape.
    let backlog = |state: &str| {
        value(
            &samples,
            &format!(
                "courier_subscription_deliveries{{{sub},topic=\"{TOPIC}\",state=\"{state}\"}}"
            ),
        )
    };
    assert_eq!(backlog("pending"), 0.0);
    assert_eq!(backlog("leased"), 0.0);
    assert_eq!(backlog("dead"), 1.0);
    assert_eq!(
        value(
            &samples,
            &format!("courier_subscription_oldest_pending_age_seconds{{{sub},topic=\"{TOPIC}\"}}")
        ),
        0.0
    );
    assert_eq!(
        value(
            &samples,
            &format!("courier_messages_awaiting_check{{topic=\"{TOPIC}\"}}")
        ),
        1.0
    );
    assert_eq!(value(&samples, "courier_messages_unrouted"), 0.0);

    let (status, _) = http_get(metrics_addr, "/elsewhere")
        .await
        .expect("a request");
    assert_eq!(status, 404);

    // The listener goes away with the server.
    server.stop().await.expect("a clean stop");
    let after = http_get(metrics_addr, "/metrics").await;
    assert!(after.is_err(), "the metrics listener is closed: {after:?}");
}

#[tokio::test]
async fn deaths_by_nack_and_by_lease_expiry_on_the_last_attempt_are_counted() {
    let metrics_addr = free_port();
    let server = TestServer::start_with(|config| {
        config.metrics_listen = metrics_addr.to_string();
    })
    .await;
    // One attempt each, and a 1 s ack deadline: the scheduler's lease-expiry loop (running in
    // the background, as in production) ends an unacked lease about a second after Receive.
    server
        .create_subscription(fast_subscription(DEAD_SUB, DEAD_TOPIC, 1))
        .await;
    let nacked = server.publish(DEAD_TOPIC, "nacked").await;
    let expired = server.publish(DEAD_TOPIC, "expired").await;
    let deliveries = server.receive(DEAD_SUB, 2, Duration::from_secs(5)).await;
    assert_eq!(deliveries.len(), 2);
    let to_nack = deliveries
        .iter()
        .find(|d| d.message_id == nacked)
        .expect("a delivery of the message to nack");

    // A Nack on the last attempt: DEAD, counted once, even when the Nack is repeated.
    for _ in 0..2 {
        server
            .consumer()
            .nack(NackRequest {
                subscription: DEAD_SUB.into(),
                receipt: to_nack.receipt.clone(),
                delay: None,
                reason: String::new(),
            })
            .await
            .expect("Nack");
    }
    assert_eq!(
        server.delivery_status(&nacked, DEAD_SUB).await.state(),
        DeliveryState::Dead
    );

    // The other lease runs out on its last attempt. The counter moves just after the store
    // ends the lease, and scrapes share one stats read for a moment, so wait for the scrape
    // to show both the counter and the dead gauge.
    let sub = format!("subscription=\"{DEAD_SUB}\"");
    let lease_expired = format!("courier_deliveries_dead_total{{{sub},reason=\"lease_expired\"}}");
    let dead_gauge =
        format!("courier_subscription_deliveries{{{sub},topic=\"{DEAD_TOPIC}\",state=\"dead\"}}");
    let samples = eventually(
        Duration::from_secs(10),
        "the lease-expiry loop counts the death",
        || async {
            let (status, exposition) = http_get(metrics_addr, "/metrics").await.ok()?;
            assert_eq!(status, 200, "{exposition}");
            let samples = samples(&exposition);
            let both =
                samples.contains_key(&lease_expired) && samples.get(&dead_gauge) == Some(&2.0);
            both.then_some(samples)
        },
    )
    .await;
    assert_eq!(
        server.delivery_status(&expired, DEAD_SUB).await.state(),
        DeliveryState::Dead
    );
    assert_eq!(value(&samples, &lease_expired), 1.0);
    assert_eq!(
        value(
            &samples,
            &format!("courier_deliveries_dead_total{{{sub},reason=\"nacked\"}}")
        ),
        1.0
    );
    for reason in ["rejected", "push_failed"] {
        let series = format!("courier_deliveries_dead_total{{{sub},reason=\"{reason}\"}}");
        assert!(!samples.contains_key(&series), "no {series}");
    }
    assert!(value(&samples, "courier_leases_expired_total") >= 1.0);
    assert_eq!(value(&samples, &dead_gauge), 2.0);

    server.stop().await.expect("a clean stop");
}
