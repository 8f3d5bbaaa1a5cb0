//! Courier from Rust with `courier-client`: a shop that sends an order message in the same
//! SQLite transaction as the order (the outbox) and answers Courier's check-back from it, and
//! a billing service that consumes the messages once each (the inbox); then the check-back
//! path, where the shop "crashes" after its local commit and before Confirm.
//!
//! ```sh
//! cargo run --release -- serve                         # Courier, in another terminal
//! cargo run -p courier-client --example demo -- --addr 127.0.0.1:50051
//! ```
//!
//! Flags: `--addr` (default 127.0.0.1:50051), `--ca-file` (TLS: the CA that signed Courier's
//! certificate),
//! `--token` (or `COURIER_TOKEN`; the demo creates a subscription, so it needs `admin`),
//! `--jwks-url` (default `http://127.0.0.1:9464/.well-known/jwks.json`, Courier's
//! `metrics_listen`), `--checker-host` (an address of this machine Courier can reach,
//! default 127.0.0.1). Names are new on every run; it exits 0 only if every step worked.

use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime};

use courier_client::proto::admin_client::AdminClient;
use courier_client::proto::{self, CreateSubscriptionRequest, MessageOutcome, Subscription};
use courier_client::{
    CallbackAuth, Connection, Consumer, Delivery, HandlerError, Inbox, Outbox, OutgoingMessage,
    Processed, Producer,
};
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use tokio_util::sync::CancellationToken;

type Error = Box<dyn std::error::Error + Send + Sync>;

struct Flags {
    addr: String,
    ca_file: Option<String>,
    token: Option<String>,
    jwks_url: String,
    checker_host: String,
}

fn flags() -> Result<Flags, Error> {
    let mut flags = Flags {
        addr: "127.0.0.1:50051".into(),
        ca_file: None,
        token: std::env::var("COURIER_TOKEN")
            .ok()
            .filter(|t| !t.is_empty()),
        jwks_url: "http://127.0.0.1:9464/.well-known/jwks.json".into(),
        checker_host: "127.0.0.1".into(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--addr" => flags.addr = value,
            "--ca-file" => flags.ca_file = Some(value),
            "--token" => flags.token = Some(value),
            "--jwks-url" => flags.jwks_url = value,
            "--checker-host" => flags.checker_host = value,
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    Ok(flags)
}

/// A SQLite database that keeps every commit (WAL, synchronous=FULL).
async fn database(path: &std::path::Path) -> Result<SqlitePool, Error> {
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full);
    Ok(SqlitePool::connect_with(options).await?)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let flags = flags()?;
    let mut connection = Connection::new(&flags.addr);
    if let Some(ca_file) = &flags.ca_file {
        // A CA file means TLS: a bare host:port becomes https://host:port.
        if !flags.addr.contains("://") {
            connection = Connection::new(format!("https://{}", flags.addr));
        }
        connection = connection.ca_file(ca_file);
    }
    if let Some(token) = &flags.token {
        connection = connection.token(token);
    }
    let channel = connection.connect().await?;
    let run = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)?
        .as_millis();
    let (producer_name, topic, subscription) = (
        format!("shop-{run}"),
        format!("orders-{run}"),
        format!("billing-{run}"),
    );

    // The shop's own database: its orders and the outbox, in one transaction each time.
    let dir = tempfile::tempdir()?;
    let shop = database(&dir.path().join("shop.db")).await?;
    sqlx::query("CREATE TABLE orders (order_no TEXT PRIMARY KEY, total_cents INTEGER NOT NULL)")
        .execute(&shop)
        .await?;
    let outbox = Outbox::new(shop.clone());
    outbox.install().await?;

    // The shop's Checker, verifying Courier's callback tokens against its JWKS.
    let listener = tokio::net::TcpListener::bind((flags.checker_host.as_str(), 0)).await?;
    let checker_url = format!("http://{}", listener.local_addr()?);
    let auth = CallbackAuth::jwks_url(&flags.jwks_url, &checker_url);
    let checker = tonic::transport::Server::builder()
        .add_service(outbox.checker(auth).into_server())
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
    tokio::spawn(checker);

    let producer = Producer::new(channel.clone(), &producer_name);
    AdminClient::new(channel.clone())
        .create_subscription(CreateSubscriptionRequest {
            subscription: Some(Subscription {
                name: subscription.clone(),
                topic: topic.clone(),
                ack_deadline: Some(proto::duration(Duration::from_secs(10))),
                ..Subscription::default()
            }),
        })
        .await?;
    producer.register_checker(&checker_url, None).await?;
    println!("ok: subscription {subscription} on {topic}; checker at {checker_url}");

    // 1. The two-phase send: Prepare, the order and its outbox row in one transaction, Confirm.
    let order = OutgoingMessage::new(&topic, "order-1").payload(b"{\"total_cents\":1250}".to_vec());
    let sent = outbox
        .send_in_transaction(&producer, order, async |db, _message_id| {
            sqlx::query("INSERT INTO orders (order_no, total_cents) VALUES ('order-1', 1250)")
                .execute(&mut *db)
                .await?;
            Ok::<_, sqlx::Error>(())
        })
        .await?;
    println!(
        "ok: order-1 committed locally and sent as {}",
        sent.message_id
    );

    // 2. Billing consumes with an inbox in its own database: work and "seen" commit together.
    let billing = database(&dir.path().join("billing.db")).await?;
    sqlx::query("CREATE TABLE invoices (order_no TEXT PRIMARY KEY, message_id TEXT NOT NULL)")
        .execute(&billing)
        .await?;
    let inbox = Inbox::new(billing.clone());
    inbox.install().await?;
    let handler = move |delivery: Delivery| {
        let inbox = inbox.clone();
        async move {
            let processed = inbox
                .process(&delivery, async |db| {
                    sqlx::query("INSERT INTO invoices (order_no, message_id) VALUES ($1, $2)")
                        .bind(&delivery.key)
                        .bind(&delivery.message_id)
                        .execute(&mut *db)
                        .await
                })
                .await?;
            if matches!(processed, Processed::AlreadyProcessed) {
                println!(
                    "ok: {} seen before; acked without invoicing twice",
                    delivery.key
                );
            }
            Ok::<_, HandlerError>(())
        }
    };
    let shutdown = CancellationToken::new();
    let consumer = Consumer::new(channel.clone(), &subscription).poll_wait(Duration::from_secs(2));
    let consuming = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { consumer.run(handler, shutdown).await }
    });
    wait_delivered(&producer, &sent.message_id).await?;
    println!("ok: order-1 delivered and invoiced");

    // 3. Check-back: the shop commits locally and "crashes" before Confirm. Courier asks the
    //    Checker after check_after; the outbox says COMMIT; the message is delivered.
    let prepared = producer
        .prepare(OutgoingMessage::new(&topic, "order-2").check_after(Duration::from_secs(1)))
        .await?;
    let mut transaction = shop.begin().await?;
    sqlx::query("INSERT INTO orders (order_no, total_cents) VALUES ('order-2', 990)")
        .execute(&mut *transaction)
        .await?;
    Outbox::<sqlx::Sqlite>::record(&mut transaction, &prepared.message_id).await?;
    transaction.commit().await?;
    wait_delivered(&producer, &prepared.message_id).await?;
    println!("ok: order-2 confirmed by check-back and delivered");

    shutdown.cancel();
    consuming.await??;
    let invoices: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM invoices")
        .fetch_one(&billing)
        .await?;
    if invoices != 2 {
        return Err(format!("expected 2 invoices, found {invoices}").into());
    }
    println!("ok: every step worked");
    Ok(())
}

/// Waits up to 30 s until every delivery of the message is acknowledged.
async fn wait_delivered(producer: &Producer, message_id: &str) -> Result<(), Error> {
    let started = Instant::now();
    loop {
        let message = producer.status(message_id).await?;
        if message.outcome() == MessageOutcome::Delivered {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(30) {
            return Err(format!("{message_id} not delivered: {message:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
