//! Durability: the real `courier` binary, configured through `COURIER_*` environment variables,
//! is killed with SIGKILL and restarted on the same database; every write it had answered is
//! still there.

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use courier::proto::{
    AckStatus, DeliveryState, GetSubscriptionRequest, MessageOutcome, MessageState, Subscription,
};
use futures::future::join_all;

use crate::harness::*;

/// The `courier serve` process; killed (SIGKILL) when dropped.
struct BinaryServer {
    child: Child,
    api: Api,
    log: std::path::PathBuf,
}

impl std::ops::Deref for BinaryServer {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

impl BinaryServer {
    /// Starts `courier serve` on a free loopback port and waits until it answers.
    async fn start(database_url: &str, dir: &Path, run: usize) -> Self {
        let addr = free_port();
        let log = dir.join(format!("courier-{run}.log"));
        let mut command = Command::new(env!("CARGO_BIN_EXE_courier"));
        // The binary reads every COURIER_* variable as configuration and refuses unknown keys,
        // so the test's own settings (COURIER_TEST_*) must not reach it.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("COURIER_") {
                command.env_remove(name);
            }
        }
        let child = command
            .arg("serve")
            .env("COURIER_LISTEN", addr.to_string())
            .env("COURIER_DATABASE_URL", database_url)
            // Several servers run at once: none takes the default metrics port.
            .env("COURIER_METRICS_LISTEN", "")
            .stdin(Stdio::null())
            .stdout(File::create(&log).expect("log file"))
            .stderr(File::create(dir.join(format!("courier-{run}.err"))).expect("log file"))
            .spawn()
            .expect("start the courier binary");
        let mut server = Self {
            child,
            api: Api::connect_lazy(addr),
            log,
        };
        server.wait_until_ready(Duration::from_secs(30)).await;
        server
    }

    async fn wait_until_ready(&mut self, deadline: Duration) {
        let started = Instant::now();
        loop {
            if let Some(exit) = self.child.try_wait().expect("child status") {
                panic!(
                    "courier serve exited with {exit} while starting; {}",
                    self.output()
                );
            }
            if probe_serving(self.api.channel()).await.is_ok() {
                return;
            }
            assert!(
                started.elapsed() < deadline,
                "courier serve not ready after {deadline:?}; {}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn output(&self) -> String {
        let read = |path: &Path| std::fs::read_to_string(path).unwrap_or_default();
        format!(
            "stdout: {}\nstderr: {}",
            read(&self.log),
            read(&self.log.with_extension("err"))
        )
    }

    /// SIGKILL: no shutdown code runs.
    fn kill(mut self) {
        self.child.kill().expect("SIGKILL courier");
        self.child.wait().expect("reap courier");
    }
}

impl Drop for BinaryServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address")
}

#[tokio::test]
async fn every_answered_write_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let database = Backend::from_env().fresh_database(&dir).await;
    let database_url = database.url.clone();

    let server = BinaryServer::start(&database_url, dir.path(), 1).await;
    // Non-default settings, and a lease long enough that nothing is redelivered in this test.
    let created = server
        .create_subscription(Subscription {
            ack_deadline: secs(45),
            ..fast_subscription(SUB, TOPIC, 7)
        })
        .await;
    let acked = server.publish(TOPIC, "acked").await;
    let delivery = server.receive_one(SUB, Duration::ZERO).await;
    assert_eq!(delivery.message_id, acked);
    assert_eq!(server.ack(SUB, &[&delivery.receipt]).await, [AckStatus::Ok]);
    let prepared = server.prepare(TOPIC, "prepared").await;
    let cancelled = server.prepare(TOPIC, "cancelled").await;
    server.cancel(&cancelled).await.unwrap();
    let confirmed = server.prepare(TOPIC, "confirmed").await;
    server.confirm(&confirmed).await.unwrap();
    // A burst of concurrent publishes, answered just before the kill.
    let burst: Vec<String> = join_all((0..50).map(|n| {
        let api = server.api.clone();
        async move { api.publish(TOPIC, &format!("burst-{n}")).await }
    }))
    .await;
    server.kill();

    let server = BinaryServer::start(&database_url, dir.path(), 2).await;
    let subscription = server
        .admin()
        .get_subscription(GetSubscriptionRequest { name: SUB.into() })
        .await
        .expect("the subscription survived")
        .into_inner();
    assert_eq!(subscription, created);

    let expectations = [
        (&acked, MessageState::Confirmed, MessageOutcome::Delivered),
        (&prepared, MessageState::Prepared, MessageOutcome::Prepared),
        (
            &cancelled,
            MessageState::Cancelled,
            MessageOutcome::Cancelled,
        ),
        (
            &confirmed,
            MessageState::Confirmed,
            MessageOutcome::Delivering,
        ),
    ];
    for (id, state, outcome) in expectations {
        let message = server.status(id).await;
        assert_eq!(
            (message.state(), message.outcome()),
            (state, outcome),
            "{}",
            message.key
        );
    }
    assert_eq!(
        server.delivery_status(&acked, SUB).await.state(),
        DeliveryState::Acked
    );
    for id in &burst {
        let message = server.status(id).await;
        assert_eq!(message.state(), MessageState::Confirmed, "{}", message.key);
        assert_eq!(message.deliveries.len(), 1, "{}", message.key);
    }

    // The producer keys still dedup, and the pending deliveries arrive with their content.
    let again = server
        .producer()
        .prepare(prepare_request(PRODUCER, TOPIC, "prepared"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (again.message_id.as_str(), again.created),
        (prepared.as_str(), false)
    );
    server.confirm(&prepared).await.unwrap();
    let mut pending = Vec::new();
    while pending.len() < burst.len() + 2 {
        let deliveries = server.receive(SUB, 100, Duration::from_secs(2)).await;
        assert!(
            !deliveries.is_empty(),
            "only {} of {} deliveries arrived",
            pending.len(),
            burst.len() + 2
        );
        pending.extend(deliveries);
    }
    assert_eq!(pending.len(), burst.len() + 2);
    for delivery in &pending {
        assert_eq!(delivery.payload, payload_of(&delivery.key));
        assert_eq!(delivery.attempt, 1);
    }
    assert!(pending.iter().any(|d| d.message_id == confirmed));
    assert!(pending.iter().any(|d| d.message_id == prepared));
    server.kill();
}
