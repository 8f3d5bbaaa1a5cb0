//! The server out of file descriptors: started under a low `ulimit -n`, flooded with more
//! connections than it may open. Connections beyond the limit are refused, fail or go
//! unanswered, the server does not die nor spin a core, and it serves again once they close.

use std::net::SocketAddr;
use std::time::Duration;

use courier::proto::ListSubscriptionsRequest;

use crate::harness::*;
use crate::process::{Courier, Launch};

/// Descriptors the server may open: enough to start and serve a few clients.
const FD_LIMIT: u32 = 128;
/// Connections opened at once, each with a call: well past the limit.
const FLOOD: usize = 400;
/// How long the server is watched while out of descriptors.
const IDLE: Duration = Duration::from_secs(2);

#[derive(Debug, Default)]
struct Tally {
    served: usize,
    failed: usize,
    unanswered: usize,
}

/// One client of its own (its own connection) making one call; the client is returned so
/// the connection stays open until the whole flood has tried.
async fn one_connection(addr: SocketAddr) -> (Api, Option<bool>) {
    let api = Api::connect_lazy(addr);
    let mut admin = api.admin();
    let call = admin.list_subscriptions(ListSubscriptionsRequest::default());
    let answer = tokio::time::timeout(Duration::from_secs(5), call).await;
    (api, answer.ok().map(|result| result.is_ok()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn out_of_file_descriptors_the_server_lives_and_serves_again() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/courier.db", dir.path().display());
    let mut launch = Launch::new("few-descriptors", &url, dir.path());
    launch.ulimit = Some(format!("-n {FD_LIMIT}"));
    let mut server = Courier::start(&launch).await;
    server.create_subscription(subscription(SUB, TOPIC)).await;
    let before = server.publish(TOPIC, "before").await;

    let flood: Vec<_> = (0..FLOOD)
        .map(|_| tokio::spawn(one_connection(launch.addr)))
        .collect();
    let mut tally = Tally::default();
    let mut clients = Vec::new();
    for connection in flood {
        let (client, answer) = connection.await.expect("a flood task");
        match answer {
            Some(true) => tally.served += 1,
            Some(false) => tally.failed += 1,
            None => tally.unanswered += 1,
        }
        clients.push(client);
    }
    println!("{FLOOD} connections against ulimit -n {FD_LIMIT}: {tally:?}");
    // Still out of descriptors (the clients hold their connections): the accept loop must
    // wait, not spin a core.
    let cpu_before = server.cpu_time();
    tokio::time::sleep(IDLE).await;
    let cpu = server.cpu_time() - cpu_before;
    println!("CPU while out of descriptors: {cpu:?} in {IDLE:?}");
    assert!(
        cpu < IDLE / 4,
        "the server used {cpu:?} of CPU in {IDLE:?} out of descriptors"
    );
    server.assert_running();
    assert!(
        tally.failed + tally.unanswered > 0,
        "all {FLOOD} connections were served under ulimit -n {FD_LIMIT}: the limit never bit"
    );
    assert!(
        tally.served > 0,
        "no connection was served at all: {tally:?}"
    );

    drop(clients);
    let fresh = Api::connect_lazy(launch.addr);
    eventually(
        Duration::from_secs(15),
        "the server serves again once the connections close",
        || async {
            let mut admin = fresh.admin();
            let call = admin.list_subscriptions(ListSubscriptionsRequest::default());
            let answer = tokio::time::timeout(Duration::from_secs(2), call).await;
            answer.is_ok_and(|result| result.is_ok()).then_some(())
        },
    )
    .await;
    let after = fresh.publish(TOPIC, "after").await;
    let mut delivered = Vec::new();
    while delivered.len() < 2 {
        let deliveries = fresh.receive(SUB, 10, Duration::from_secs(2)).await;
        assert!(!deliveries.is_empty(), "only {delivered:?} delivered");
        delivered.extend(deliveries.into_iter().map(|d| d.message_id));
    }
    delivered.sort();
    let mut expected = vec![before, after];
    expected.sort();
    assert_eq!(delivered, expected);
    server.assert_running();
}
