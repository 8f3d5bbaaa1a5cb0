//! Admission: calls over their kind's in-flight bound are refused at once with
//! RESOURCE_EXHAUSTED; other kinds go on, and the kind is served again once calls finish.

use std::time::{Duration, Instant};

use courier::proto::ReceiveRequest;
use tonic::Code;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_over_their_kinds_bound_are_refused_at_once() {
    let server = TestServer::start_with(|config| config.limits.in_flight.receive = 2).await;
    server.create_subscription(subscription(SUB, TOPIC)).await;
    // Two long polls take both places.
    let polls: Vec<_> = (0..2)
        .map(|_| {
            let api = (*server).clone();
            tokio::spawn(async move { api.receive(SUB, 1, Duration::from_secs(2)).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    let refused = server
        .consumer()
        .receive(ReceiveRequest {
            subscription: SUB.into(),
            max_messages: 1,
            ..Default::default()
        })
        .await;
    let status = assert_code(refused, Code::ResourceExhausted);
    assert!(
        started.elapsed() < Duration::from_millis(250),
        "refused at once, not queued: {:?}",
        started.elapsed()
    );
    assert!(
        status.message().contains("limits.in_flight.receive"),
        "{}",
        status.message()
    );
    // Other kinds are bounded apart.
    assert!(server.deliveries(SUB).await.is_empty());

    for poll in polls {
        assert!(poll.await.expect("the long poll").is_empty());
    }
    assert!(server.receive(SUB, 1, Duration::ZERO).await.is_empty());
}
