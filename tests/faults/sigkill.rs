//! SIGKILL under load: the server is killed and started again while producers and consumers
//! run; nothing answered is lost, nothing uncommitted is delivered, nothing acknowledged comes
//! back. On PostgreSQL two replicas share the database and the one killed holds leases, which
//! the other must deliver again once they expire.

use std::time::{Duration, Instant};

use courier::store::testing::TestDatabase;

use crate::disk::integrity_check;
use crate::harness::*;
use crate::load::{Load, Target, Tolerance, hold_leases};
use crate::process::{Courier, Launch};
use crate::{fault_cycles, fault_interval};

/// Two subscriptions on the topic, so "the same subscription" in the Ack check means something.
pub const SUBSCRIPTIONS: [&str; 2] = [SUB, "audit"];
/// How long the consumers may take, after the last kill, to receive what is still due.
pub const DRAIN: Duration = Duration::from_secs(30);
/// Leases held by a killed replica expire after the ack deadline (1 s); the margin is for a
/// loaded machine.
const TAKEOVER: Duration = Duration::from_secs(20);

/// Subscriptions whose leases expire after 1 s and that retry without ever giving up.
pub async fn create_subscriptions(api: &Api) {
    for name in SUBSCRIPTIONS {
        api.create_subscription(fast_subscription(name, TOPIC, 1000))
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_loses_nothing_across_sigkills_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("courier.db");
    let url = format!("sqlite://{}", database.display());
    let mut server = Courier::start(&Launch::new("sqlite", &url, dir.path())).await;
    create_subscriptions(&server).await;
    let load = Load::start(
        &[Target::new("sqlite", &server)],
        &SUBSCRIPTIONS,
        3,
        Tolerance::Kills,
    );
    let cycles = fault_cycles();
    for _ in 0..cycles {
        tokio::time::sleep(fault_interval()).await;
        let launch = server.kill();
        server = Courier::start(&launch).await;
    }
    tokio::time::sleep(fault_interval()).await;
    let ledger = load.finish(DRAIN).await;
    println!("sqlite, {cycles} SIGKILLs: {}", ledger.summary());
    server.kill();
    assert_eq!(integrity_check(&database), "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_loses_nothing_when_replicas_are_killed_holding_leases() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let launches =
        ["replica-a", "replica-b"].map(|name| Launch::new(name, database.url(), dir.path()));
    // One after the other: the first creates the schema.
    let mut replicas = Vec::new();
    for launch in &launches {
        replicas.push(Some(Courier::start(launch).await));
    }
    let targets: Vec<Target> = launches
        .iter()
        .zip(&replicas)
        .map(|(launch, replica)| Target::new(&launch.name, replica.as_ref().unwrap()))
        .collect();
    create_subscriptions(&targets[0].api).await;
    let load = Load::start(&targets, &SUBSCRIPTIONS, 2, Tolerance::Kills);

    let cycles = fault_cycles();
    let mut held_in_all = 0;
    for cycle in 0..cycles {
        tokio::time::sleep(fault_interval()).await;
        let victim = &targets[cycle % 2];
        let held = hold_leases(victim, SUB, 20, &load.shared_ledger()).await;
        let launch = replicas[cycle % 2].take().unwrap().kill();
        // The victim stays down until the other replica has delivered its leases again.
        let killed_at = Instant::now();
        loop {
            let taken_over = load.ledger().taken_over(&held, &victim.name);
            if taken_over == held.len() {
                break;
            }
            assert!(
                killed_at.elapsed() < TAKEOVER,
                "{} killed with {} leases held; only {taken_over} delivered again by the other replica within {TAKEOVER:?}",
                victim.name,
                held.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        println!(
            "{} killed with {} leases held; the other replica delivered them again within {:?}",
            victim.name,
            held.len(),
            killed_at.elapsed()
        );
        held_in_all += held.len();
        replicas[cycle % 2] = Some(Courier::start(&launch).await);
    }
    tokio::time::sleep(fault_interval()).await;
    let ledger = load.finish(DRAIN).await;
    println!(
        "postgres, {cycles} SIGKILLs of replicas: {}",
        ledger.summary()
    );
    assert!(
        held_in_all > 0,
        "no replica held a lease when it was killed: the takeover went untested"
    );
}
