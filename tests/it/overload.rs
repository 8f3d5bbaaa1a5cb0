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

/// A connection carries at most `limits.max_streams_per_connection` calls at once; the client's
/// HTTP/2 layer holds the rest until a stream frees, so an overloaded client's queue stays with
/// it. Another connection is not held up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_carries_at_most_its_stream_limit_and_its_client_queues_the_rest() {
    let server =
        TestServer::start_with(|config| config.limits.max_streams_per_connection = 2).await;
    server.create_subscription(subscription(SUB, TOPIC)).await;
    let poll = Duration::from_secs(1);
    let started = Instant::now();
    // Three long polls on one connection: two streams, so the third waits for one of them.
    let polls: Vec<_> = (0..3)
        .map(|_| {
            let api = (*server).clone();
            tokio::spawn(async move {
                api.receive(SUB, 1, poll).await;
                started.elapsed()
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A call on a connection of its own is served at once.
    let other = Api::connect_lazy(server.addr);
    let asked = Instant::now();
    assert!(other.receive(SUB, 1, Duration::ZERO).await.is_empty());
    assert!(
        asked.elapsed() < Duration::from_millis(500),
        "another connection is not held up: {:?}",
        asked.elapsed()
    );

    let mut took = Vec::new();
    for poll in polls {
        took.push(poll.await.expect("the long poll"));
    }
    took.sort();
    assert!(
        took[1] < poll + Duration::from_millis(600),
        "two polls ran at once: {took:?}"
    );
    assert!(
        took[2] >= poll * 2 - Duration::from_millis(100),
        "the third waited for a stream before its own poll: {took:?}"
    );
}
