//! PostgreSQL cut (connections reset) and blackholed (connections open, no byte moves) through
//! an in-test TCP proxy while the load runs: every failed call answers UNAVAILABLE within the
//! store's timeouts (never INTERNAL, never no answer), health goes NOT_SERVING and back to
//! SERVING, and nothing answered is lost.

use std::time::{Duration, Instant};

use courier::store::testing::{Link, TcpProxy, TestDatabase};
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::fault_interval;
use crate::load::{Load, Target, Tolerance};
use crate::process::{Courier, Launch};
use crate::sigkill::{DRAIN, SUBSCRIPTIONS, create_subscriptions};

/// How long health may take to follow the database (it reacts within about a second).
const HEALTH_DEADLINE: Duration = Duration::from_secs(10);
/// The slowest a failed call may be: the store's timeouts below, with room for a loaded
/// machine.
const SLOWEST_FAILURE: Duration = Duration::from_secs(4);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_cut_and_blackholed_under_load_answers_unavailable_and_loses_nothing() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let proxy = TcpProxy::start(database.server_addr()).await;
    let launch = Launch::new("behind-proxy", &proxy.url_for(database.url()), dir.path())
        .env("COURIER_POSTGRES__ACQUIRE_TIMEOUT", "500ms")
        .env("COURIER_POSTGRES__STATEMENT_TIMEOUT", "1s")
        .env("COURIER_POSTGRES__CONNECT_TIMEOUT", "1s");
    let mut server = Courier::start(&launch).await;
    create_subscriptions(&server).await;
    let load = Load::start(
        &[Target::new("behind-proxy", &server)],
        &SUBSCRIPTIONS,
        3,
        Tolerance::Only(&[Code::Unavailable]),
    );

    for link in [Link::Cut, Link::Blackhole] {
        tokio::time::sleep(fault_interval()).await;
        let failures_before = load.ledger().failures();
        proxy.set(link);
        let cut_at = Instant::now();
        wait_for_health(&server, ServingStatus::NotServing, link).await;
        println!("{link:?}: NOT_SERVING after {:?}", cut_at.elapsed());
        tokio::time::sleep(fault_interval()).await;
        let failures = load.ledger().failures() - failures_before;
        assert!(
            failures > 0,
            "{link:?}: no call failed while the database was away"
        );

        proxy.set(Link::Up);
        let restored_at = Instant::now();
        wait_for_health(&server, ServingStatus::Serving, link).await;
        println!(
            "{link:?}: {failures} calls answered UNAVAILABLE; SERVING {:?} after the link came back",
            restored_at.elapsed()
        );
    }
    tokio::time::sleep(fault_interval()).await;
    let ledger = load.finish(DRAIN).await;
    println!("postgres behind a cut proxy: {}", ledger.summary());
    assert!(
        ledger.slowest_failure < SLOWEST_FAILURE,
        "a failed call took {:?}",
        ledger.slowest_failure
    );
    server.assert_running();
}

async fn wait_for_health(server: &Courier, wanted: ServingStatus, link: Link) {
    let started = Instant::now();
    loop {
        let mut health = HealthClient::new(server.channel());
        let request = HealthCheckRequest {
            service: String::new(),
        };
        let answer = tokio::time::timeout(Duration::from_secs(2), health.check(request)).await;
        if let Ok(Ok(response)) = answer
            && response.get_ref().status() == wanted
        {
            return;
        }
        assert!(
            started.elapsed() < HEALTH_DEADLINE,
            "{link:?}: health not {wanted:?} within {HEALTH_DEADLINE:?}; server log:\n{}",
            server.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
