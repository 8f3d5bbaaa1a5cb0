//! PostgreSQL-only behaviour, beyond the shared conformance suite: wake-ups across replicas,
//! the listener coming back, calls failing fast while the database is away (through a TCP
//! proxy that the test cuts and restores) and recovering by themselves, concurrent
//! migrations, and the password staying out of errors.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::Connection;
use tokio_util::sync::CancellationToken;

use super::PostgresStore;
use crate::config::PostgresConfig;
use crate::domain::{
    Decision, MessageId, MessageKey, MessageRef, Name, RetryPolicy, Subscription, Timestamp,
};
use crate::store::testing::{Link, TcpProxy, TestDatabase};
use crate::store::{Batch, NewMessage, StatsScope, Store, StoreError};
use crate::wakeups::Wakeups;

const TOPIC: &str = "orders";
const SUB: &str = "billing";

fn name(value: &str) -> Name {
    Name::parse("name", value).unwrap()
}

pub(super) fn subscription(now: Timestamp) -> Subscription {
    Subscription {
        name: name(SUB),
        topic: name(TOPIC),
        ack_deadline: Duration::from_secs(30),
        retry_policy: RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            multiplier: 2.0,
        },
        push_endpoint: None,
        ordered: false,
        dead_head: Default::default(),
        created_at: now,
    }
}

fn message(key: &str, publish: bool) -> NewMessage {
    NewMessage {
        id: MessageId::new(),
        producer: name("shop"),
        topic: name(TOPIC),
        key: MessageKey::parse("key", key).unwrap(),
        ordering_key: Default::default(),
        payload: b"{}".to_vec(),
        headers: Default::default(),
        check_after: Duration::from_secs(10),
        deliver_after: Duration::ZERO,
        publish,
        trace: None,
        now: Timestamp::now(),
    }
}

/// Timeouts small enough that an outage test takes seconds.
fn fast_config() -> PostgresConfig {
    PostgresConfig {
        max_connections: 4,
        connect_timeout: Duration::from_millis(1_000),
        acquire_timeout: Duration::from_millis(500),
        statement_timeout: Duration::from_millis(1_000),
    }
}

async fn open(url: &str, config: &PostgresConfig) -> (PostgresStore, Wakeups) {
    let wakeups = Wakeups::default();
    let store = PostgresStore::open(url, config, wakeups.clone())
        .await
        .expect("open PostgreSQL store");
    tokio::time::timeout(Duration::from_secs(10), store.listening())
        .await
        .expect("the listener subscribes");
    (store, wakeups)
}

/// Publishes on `writer` and returns how long until a waiter on `waiter`'s wake-ups of SUB
/// was woken, or None after a second.
async fn wake_latency(writer: &PostgresStore, waiter: &Wakeups, key: &str) -> Option<Duration> {
    let signal = waiter.subscription(SUB);
    let woken = signal.notified();
    tokio::pin!(woken);
    woken.as_mut().enable();
    let started = Instant::now();
    writer.insert_message(message(key, true)).await.unwrap();
    tokio::time::timeout(Duration::from_secs(1), woken)
        .await
        .ok()
        .map(|()| started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirm_on_one_replica_wakes_waiters_on_another() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let (a, _) = open(database.url(), &PostgresConfig::default()).await;
    let (b, b_wakeups) = open(database.url(), &PostgresConfig::default()).await;
    a.create_subscription(subscription(Timestamp::now()))
        .await
        .unwrap();

    let mut latencies = Vec::new();
    for i in 0..50 {
        let latency = wake_latency(&a, &b_wakeups, &format!("p{i}"))
            .await
            .expect("replica B is woken by replica A's publish");
        latencies.push(latency);
    }
    // A Prepare then Confirm wakes B too.
    let prepared = a.insert_message(message("two-phase", false)).await.unwrap();
    let signal = b_wakeups.subscription(SUB);
    let woken = signal.notified();
    tokio::pin!(woken);
    woken.as_mut().enable();
    a.decide(
        &MessageRef::Id(prepared.message_id),
        Decision::Commit,
        Timestamp::now(),
    )
    .await
    .unwrap();
    tokio::time::timeout(Duration::from_secs(1), woken)
        .await
        .expect("a confirm wakes the other replica");
    // B's push loop hears it too.
    let push = b_wakeups.push().notified();
    tokio::pin!(push);
    push.as_mut().enable();
    a.insert_message(message("for-the-push-loop", true))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(1), push)
        .await
        .expect("the other replica's push loop wakes");

    // Leases made on A reach B's lease-expiry loop (debounced), so B can end them if A dies.
    let sub = a.get_subscription(&name(SUB)).await.unwrap();
    let leases = b_wakeups.leases();
    let scheduler = leases.notified();
    tokio::pin!(scheduler);
    scheduler.as_mut().enable();
    leases.looking();
    assert!(
        !a.lease(&sub, Batch::messages(1), Timestamp::now())
            .await
            .unwrap()
            .is_empty()
    );
    tokio::time::timeout(Duration::from_secs(3), scheduler)
        .await
        .expect("the other replica hears of new leases");

    // So are Prepares, for B's check-back loop: B runs the first check if A dies.
    let checks = b_wakeups.checks();
    let check_loop = checks.notified();
    tokio::pin!(check_loop);
    check_loop.as_mut().enable();
    checks.looking();
    a.insert_message(message("to-check", false)).await.unwrap();
    tokio::time::timeout(Duration::from_secs(3), check_loop)
        .await
        .expect("the other replica hears of new Prepares");

    latencies.sort();
    let median = latencies[latencies.len() / 2];
    let max = *latencies.last().unwrap();
    println!("cross-replica wake-up after publish: median {median:?}, max {max:?} (50 publishes)");
    assert!(max < Duration::from_millis(500), "max {max:?}");
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_comes_back_after_its_connection_is_killed() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let (a, _) = open(database.url(), &PostgresConfig::default()).await;
    let (b, b_wakeups) = open(database.url(), &PostgresConfig::default()).await;
    a.create_subscription(subscription(Timestamp::now()))
        .await
        .unwrap();
    assert!(wake_latency(&a, &b_wakeups, "before").await.is_some());

    // Whatever was sent while B was not listening is lost, so a reconnect wakes everyone.
    let signal = b_wakeups.subscription(SUB);
    let woken = signal.notified();
    tokio::pin!(woken);
    woken.as_mut().enable();
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = $1",
    )
    .bind(super::listener::APPLICATION_NAME)
    .fetch_all(a.calls.pool())
    .await
    .unwrap();
    assert_eq!(killed, [true, true], "both replicas' listeners");
    tokio::time::timeout(Duration::from_secs(5), woken)
        .await
        .expect("reconnecting wakes the waiters");
    tokio::time::timeout(Duration::from_secs(5), b.listening())
        .await
        .unwrap();
    assert!(wake_latency(&a, &b_wakeups, "after").await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_migrating_at_once_all_succeed() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let config = PostgresConfig::default();
    let migrations: Vec<_> = (0..6)
        .map(|_| {
            let (url, config) = (database.url().to_owned(), config.clone());
            tokio::spawn(async move { PostgresStore::migrate(&url, &config).await })
        })
        .collect();
    for migration in migrations {
        migration.await.unwrap().expect("a concurrent migration");
    }
    let (store, _) = open(database.url(), &config).await;
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(store.calls.pool())
        .await
        .unwrap();
    assert_eq!(applied as usize, super::connect::MIGRATOR.iter().count());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_sweeping_expired_leases_end_each_once() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let (a, _) = open(database.url(), &PostgresConfig::default()).await;
    let (b, _) = open(database.url(), &PostgresConfig::default()).await;
    let now = Timestamp::now();
    let sub = a.create_subscription(subscription(now)).await.unwrap().0;
    for i in 0..2_500 {
        a.insert_message(NewMessage {
            now,
            ..message(&format!("e{i}"), true)
        })
        .await
        .unwrap();
    }
    let mut leased = 0;
    loop {
        let batch = a
            .lease(&sub, Batch::messages(1000), now)
            .await
            .unwrap()
            .len();
        if batch == 0 {
            break;
        }
        leased += batch;
    }
    assert_eq!(leased, 2_500);
    let expired_at = now.plus(sub.ack_deadline);
    let (a, b) = (Arc::new(a), Arc::new(b));
    let sweeps: Vec<_> = [a.clone(), b.clone(), a.clone(), b.clone()]
        .into_iter()
        .map(|store| {
            tokio::spawn(async move {
                let mut ended = 0;
                loop {
                    match store.expire_leases(expired_at).await.unwrap().ended {
                        0 => return ended,
                        batch => ended += batch,
                    }
                }
            })
        })
        .collect();
    let mut ended = 0;
    for sweep in sweeps {
        ended += sweep.await.unwrap();
    }
    // A sweep that found every remaining lease locked by the other stops early; one more
    // pass (as the scheduler's next wake-up would) ends whatever is left.
    ended += a.expire_leases(expired_at).await.unwrap().ended;
    assert_eq!(ended, 2_500, "every lease ended exactly once");
    let stats = a.stats(expired_at, StatsScope::Full).await.unwrap();
    assert_eq!(stats.subscriptions[0].pending, 2_500);
    assert_eq!(stats.subscriptions[0].leased, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_blocked_on_a_stalled_transaction_fails_fast() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let (store, _) = open(database.url(), &fast_config()).await;
    let now = Timestamp::now();
    let sub = store
        .create_subscription(subscription(now))
        .await
        .unwrap()
        .0;
    store.insert_message(message("k", true)).await.unwrap();
    let receipt = store
        .lease(&sub, Batch::messages(1), Timestamp::now())
        .await
        .unwrap()[0]
        .receipt
        .clone();

    // Another session (a stalled replica) holds the delivery's row lock, and for now
    // PostgreSQL does not end its idle transaction.
    let mut stalled = store.calls.pool().begin().await.unwrap();
    sqlx::query("SET LOCAL idle_in_transaction_session_timeout = 0")
        .execute(&mut *stalled)
        .await
        .unwrap();
    sqlx::query("SELECT 1 FROM deliveries WHERE subscription = $1 FOR UPDATE")
        .bind(SUB)
        .execute(&mut *stalled)
        .await
        .unwrap();
    let started = Instant::now();
    let acked = store
        .ack(std::slice::from_ref(&receipt), Timestamp::now())
        .await;
    let elapsed = started.elapsed();
    assert!(
        matches!(acked, Err(StoreError::Unavailable(_))),
        "{acked:?}"
    );
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    println!("ack blocked by a held row lock answered Unavailable after {elapsed:?}");
    stalled.rollback().await.unwrap();

    // A replica that stalls inside a transaction (a cut network, a paused process) loses it:
    // PostgreSQL ends the idle transaction after idle_in_transaction_session_timeout and its
    // row locks go with it.
    let mut stalled = store.calls.pool().begin().await.unwrap();
    sqlx::query("SELECT 1 FROM deliveries WHERE subscription = $1 FOR UPDATE")
        .bind(SUB)
        .execute(&mut *stalled)
        .await
        .unwrap();
    tokio::time::sleep(fast_config().statement_timeout + Duration::from_millis(500)).await;
    assert!(
        sqlx::query("SELECT 1")
            .execute(&mut *stalled)
            .await
            .is_err()
    );
    drop(stalled);
    assert_eq!(
        store.ack(&[receipt], Timestamp::now()).await.unwrap(),
        [crate::domain::AckStatus::Ok]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_never_show_the_password() {
    let secret = "s3cret-Pa55word";
    let config = PostgresConfig {
        connect_timeout: Duration::from_millis(300),
        ..PostgresConfig::default()
    };
    // Nothing listens on port 1.
    let url = format!("postgres://courier:{secret}@127.0.0.1:1/courier");
    let started = Instant::now();
    let error = match PostgresStore::open(&url, &config, Wakeups::default()).await {
        Err(error) => error,
        Ok(_) => panic!("opened a database on port 1"),
    };
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    let bad = format!("postgres://courier:{secret}@127.0.0.1:notaport/courier");
    let parse_error = match PostgresStore::open(&bad, &config, Wakeups::default()).await {
        Err(error) => error,
        Ok(_) => panic!("opened a malformed URL"),
    };
    for error in [error, parse_error] {
        let mut text = format!("{error} {error:?}");
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            text.push_str(&format!(" {cause} {cause:?}"));
            source = cause.source();
        }
        assert!(!text.contains(secret), "{text}");
    }
}

// --- the database going away, through a proxy the test controls ---

/// Pings until the store answers again; returns how long that took.
async fn recovery(store: &PostgresStore, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        if store.ping().await.is_ok() {
            return started.elapsed();
        }
        assert!(started.elapsed() < within, "not back within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn outage(link: Link) {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let proxy = TcpProxy::start(database.server_addr()).await;
    let config = fast_config();
    let (store, wakeups) = open(&proxy.url_for(database.url()), &config).await;
    let (direct, _) = open(database.url(), &PostgresConfig::default()).await;
    let now = Timestamp::now();
    let sub = store
        .create_subscription(subscription(now))
        .await
        .unwrap()
        .0;
    let before = store.insert_message(message("before", true)).await.unwrap();

    // Calls in flight when the link goes: their connections die mid-message.
    let store = Arc::new(store);
    let load_stop = CancellationToken::new();
    let load: Vec<_> = (0..8)
        .map(|i| {
            let (store, stop) = (store.clone(), load_stop.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.is_cancelled() {
                    let _ = store
                        .insert_message(message(&format!("load-{i}-{n}"), true))
                        .await;
                    let _ = store.stats(Timestamp::now(), StatsScope::Full).await;
                    n += 1;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.set(link);
    // Every call answers Unavailable within its bound, none hangs.
    let bound = config.acquire_timeout + config.statement_timeout + Duration::from_millis(500);
    let mut slowest = Duration::ZERO;
    for attempt in 0..3 {
        let started = Instant::now();
        let published = store
            .insert_message(message(&format!("during-{attempt}"), true))
            .await;
        let elapsed = started.elapsed();
        assert!(
            matches!(published, Err(StoreError::Unavailable(_))),
            "{published:?}"
        );
        assert!(elapsed < bound, "{link:?}: {elapsed:?}");
        slowest = slowest.max(elapsed);
        let started = Instant::now();
        let pinged = store.ping().await;
        assert!(
            matches!(pinged, Err(StoreError::Unavailable(_))),
            "{pinged:?}"
        );
        slowest = slowest.max(started.elapsed());
    }

    load_stop.cancel();
    for task in load {
        task.await.unwrap();
    }
    proxy.set(Link::Up);
    let back_after = recovery(&store, Duration::from_secs(15)).await;
    println!(
        "{link:?}: calls failed within {slowest:?}; serving again {back_after:?} after the link came back"
    );

    // Nothing lost: the message from before is delivered, new writes work.
    store.insert_message(message("after", true)).await.unwrap();
    let leased = store
        .lease(&sub, Batch::messages(1000), Timestamp::now())
        .await
        .unwrap();
    let leased_ids: Vec<MessageId> = leased.iter().map(|d| d.receipt.message_id).collect();
    assert!(leased_ids.contains(&before.message_id), "{leased_ids:?}");
    // The listener is back too: another replica's writes wake this one.
    tokio::time::timeout(Duration::from_secs(15), store.listening())
        .await
        .expect("the listener reconnects");
    assert!(wake_latency(&direct, &wakeups, "woken").await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_fail_fast_while_the_database_is_cut_off_and_recover() {
    outage(Link::Cut).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_fail_fast_on_a_dead_network_path_and_recover() {
    outage(Link::Blackhole).await;
}

/// Polls `look` every 10 ms until it returns true, for at most two seconds.
async fn eventually(mut look: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if look().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_changes_on_one_replica_reach_the_others_copy() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let (a, _) = open(database.url(), &PostgresConfig::default()).await;
    let (b, _) = open(database.url(), &PostgresConfig::default()).await;
    let created = subscription(Timestamp::now());
    a.create_subscription(created.clone()).await.unwrap();
    // B reads it (and keeps its copy), then A changes it twice.
    assert_eq!(b.get_subscription(&name(SUB)).await.unwrap(), created);
    let updated = Subscription {
        ack_deadline: Duration::from_secs(90),
        ..created.clone()
    };
    a.update_subscription(updated.clone()).await.unwrap();
    assert!(
        eventually(async || b.get_subscription(&name(SUB)).await.unwrap() == updated).await,
        "B sees the update"
    );
    a.delete_subscription(&name(SUB)).await.unwrap();
    assert!(
        eventually(async || matches!(
            b.get_subscription(&name(SUB)).await,
            Err(StoreError::NotFound(_))
        ))
        .await,
        "B sees the delete"
    );
    assert!(b.list_subscriptions(None).await.unwrap().is_empty());
    // A subscription B has never seen is read from the table at once.
    a.create_subscription(created.clone()).await.unwrap();
    assert_eq!(b.get_subscription(&name(SUB)).await.unwrap(), created);
}

/// A migrated database with a store open on it and `billing` subscribed to `orders`, or None
/// when PostgreSQL tests skip. The database lives as long as the value.
pub(super) async fn store_with_subscription() -> Option<(TestDatabase, PostgresStore)> {
    let database = TestDatabase::create().await?;
    let (store, _) = open(database.url(), &PostgresConfig::default()).await;
    store
        .create_subscription(subscription(Timestamp::now()))
        .await
        .unwrap();
    Some((database, store))
}

#[tokio::test]
async fn an_ack_that_waited_for_a_delivery_another_transaction_changed_runs_again_and_acks_it() {
    let Some((database, store)) = store_with_subscription().await else {
        return;
    };
    let now = Timestamp::now();
    store.insert_message(message("k1", true)).await.unwrap();
    let batch = Batch {
        messages: 1,
        bytes: 1 << 20,
    };
    let leased = store
        .lease(&subscription(now), batch, Timestamp::now())
        .await
        .unwrap();
    let receipt = leased[0].receipt.clone();
    // Another transaction writes a new version of the delivery (same state and generation,
    // so the receipt still holds it) and keeps it locked while the Ack begins.
    let mut other = sqlx::PgConnection::connect(database.url()).await.unwrap();
    sqlx::raw_sql("BEGIN; UPDATE deliveries SET updated_at = updated_at + 1")
        .execute(&mut other)
        .await
        .unwrap();
    let ack = tokio::spawn({
        let (store, receipt) = (Arc::new(store), receipt.clone());
        async move {
            let acked = store.ack(&[receipt], Timestamp::now()).await;
            (store, acked)
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!ack.is_finished(), "the Ack waits for the delivery's lock");
    sqlx::raw_sql("COMMIT").execute(&mut other).await.unwrap();
    let (_store, acked) = ack.await.unwrap();
    assert_eq!(acked.unwrap(), vec![crate::domain::AckStatus::Ok]);
    let state: String = sqlx::query_scalar("SELECT state FROM deliveries")
        .fetch_one(&mut other)
        .await
        .unwrap();
    assert_eq!(
        state, "ACKED",
        "the Ack answered OK, so the delivery must be acked"
    );
}
