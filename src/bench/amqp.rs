//! The bench's workload against RabbitMQ through lapin: the AMQP side of `courier bench --peer`.
//!
//! The same [`workload::flow`] as Courier's run, with each part doing what a careful RabbitMQ
//! user does for durable messages: producers publish persistent messages on their own channel
//! in confirm mode and wait for each publisher confirm (RabbitMQ answers once the message is
//! fsync'd; for a quorum queue, once the Raft log is); consumers take deliveries with manual
//! acks and a prefetch of the bench's batch size, and ack each batch with one `multiple` ack,
//! as Courier's consumers ack each Receive's batch with one Ack.
//!
//! A backlog run (`--backlog N`) publishes the N messages the same way before any consumer
//! subscribes, then measures the consumers draining the queue, as Courier's backlog run does.
//! A fan-out run (`--subscriptions N`) declares N queues bound to a fanout exchange and
//! publishes to the exchange: a publisher confirm then means every queue has the message.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use futures::{FutureExt, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
};

use super::process;
use super::report::Report;
use super::server::Watch;
use super::target::{Consumer, Producer, Received, Target, subscription_names};
use super::workload;
use super::{BenchError, BenchOptions, Mode, Peer};

/// How long connecting to the broker may take.
const CONNECT_DEADLINE: Duration = Duration::from_secs(10);
/// AMQP's persistent delivery mode (a classic queue writes such messages to disk).
const PERSISTENT: u8 = 2;
/// After the consumers close, how long unacked messages get to show up as ready again.
const REQUEUE_GRACE: Duration = Duration::from_millis(500);
/// The broker's process (`beam.smp`, whose command line boots `rabbit`), for its CPU time.
const BROKER_PROCESS: (&str, &str) = ("beam.smp", "rabbit");

/// Connects once and closes: a wrong URL or a stopped broker fails before Courier's run.
pub async fn check_reachable(peer: &Peer) -> Result<(), BenchError> {
    let connection = connect(&peer.url).await?;
    connection.close(200, "reachable".into()).await?;
    Ok(())
}

async fn connect(url: &str) -> Result<Connection, BenchError> {
    let properties = ConnectionProperties::default().with_connection_name("courier-bench".into());
    tokio::time::timeout(CONNECT_DEADLINE, Connection::connect(url, properties))
        .await
        .map_err(|_| BenchError::Options(format!("RabbitMQ at {} did not answer", redact(url))))?
        .map_err(BenchError::from)
}

/// The URL without its password, for the report.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        Err(_) => "the --peer URL".into(),
    }
}

/// Runs `options`' workload against `peer` on a fresh queue (deleted after). RabbitMQ does
/// one publish per message whatever Courier's mode, so the report's mode is publish.
pub async fn run(options: &BenchOptions, peer: &Peer) -> Result<Report, BenchError> {
    let options = BenchOptions {
        mode: Mode::Publish,
        ..options.clone()
    };
    let run_id = uuid::Uuid::now_v7().simple().to_string();
    let queue = format!("courier-bench-{}", &run_id[run_id.len() - 12..]);
    let mut target = AmqpTarget::open(&options, peer, &queue).await?;
    let mut report = Report::new(&options, peer.queue.backend());
    report.set_path("amqp");
    let result = measure(&mut target, &options, &run_id, &mut report).await;
    let left = target.close().await;
    let outcome = result?;
    report.set_outcome(workload::Outcome {
        // A message still in the queue once every consumer has closed was never acked.
        ack_failures: outcome.ack_failures + left?,
        ..outcome
    });
    Ok(report)
}

async fn measure(
    target: &mut AmqpTarget,
    options: &BenchOptions,
    run_id: &str,
    report: &mut Report,
) -> Result<workload::Outcome, BenchError> {
    let broker = process::find(BROKER_PROCESS.0, BROKER_PROCESS.1);
    let location = match target.queues.as_slice() {
        [queue] => format!("{} ({} queue {queue})", redact(&target.url), target.kind),
        queues => format!(
            "{} (fanout exchange {} to {} {} queues)",
            redact(&target.url),
            target.exchange,
            queues.len(),
            target.kind
        ),
    };
    let describe = match broker {
        Some(pid) => format!("RabbitMQ at {location}; CPU and RSS are beam.smp's (pid {pid})"),
        None => format!("RabbitMQ at {location}; no local beam.smp found, CPU and RSS unknown"),
    };
    // VmHWM of a long-running broker is its lifetime's peak: only the sampled RSS says
    // anything about this run.
    report.set_server(describe, None);
    report.note(
        "acks: one `multiple` basic.ack per batch; AMQP answers no ack, so the ack time is \
         only sending it"
            .into(),
    );
    if let Some(backlog) = options.backlog {
        let seconds = workload::load_backlog(target, options, backlog, run_id).await?;
        report.note(format!(
            "backlog: {backlog} messages published (each confirmed) in {seconds:.1} s"
        ));
    }
    target.subscribe(options).await?;
    let watch = Watch::start(broker.map(Some));
    let outcome = match options.backlog {
        Some(backlog) => workload::consume_backlog(target, options, backlog).await,
        None => workload::flow(target, options, run_id).await,
    };
    report.set_sampled(watch.stop().await);
    outcome
}

/// Connections, a confirm-mode channel per producer and, once [`AmqpTarget::subscribe`]
/// ran, a consuming channel per consumer: all opened before the part they serve is measured.
struct AmqpTarget {
    url: String,
    /// One queue per subscription, named as Courier's subscriptions are.
    queues: Vec<String>,
    /// Where producers publish: the default exchange (`""`, straight to the one queue) or,
    /// for a fan-out, a fanout exchange bound to every queue.
    exchange: String,
    kind: &'static str,
    connections: Vec<Connection>,
    producers: Vec<Channel>,
    /// Taken by [`Target::consumer`], one per queue and index; the channels stay for
    /// [`Self::close`].
    consumers: Mutex<Vec<Option<lapin::Consumer>>>,
    consumer_channels: Vec<Channel>,
    admin: Channel,
}

impl AmqpTarget {
    /// Declares the queues (and for a fan-out the exchange), and opens the producers'
    /// channels; `name` names the queue, or the exchange and, numbered, its queues.
    async fn open(options: &BenchOptions, peer: &Peer, name: &str) -> Result<Self, BenchError> {
        let mut connections = Vec::with_capacity(options.connections);
        for _ in 0..options.connections {
            connections.push(connect(&peer.url).await?);
        }
        let admin = connections[0].create_channel().await?;
        let queues = subscription_names(name, options.subscriptions);
        let exchange = if queues.len() > 1 {
            admin
                .exchange_declare(
                    name.into(),
                    ExchangeKind::Fanout,
                    ExchangeDeclareOptions {
                        durable: true,
                        ..ExchangeDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await?;
            name.to_owned()
        } else {
            String::new()
        };
        for queue in &queues {
            let mut arguments = FieldTable::default();
            arguments.insert(
                "x-queue-type".into(),
                AMQPValue::LongString(peer.queue.as_str().into()),
            );
            admin
                .queue_declare(
                    queue.as_str().into(),
                    QueueDeclareOptions::durable(),
                    arguments,
                )
                .await?;
            if !exchange.is_empty() {
                admin
                    .queue_bind(
                        queue.as_str().into(),
                        exchange.as_str().into(),
                        "".into(),
                        QueueBindOptions::default(),
                        FieldTable::default(),
                    )
                    .await?;
            }
        }
        let mut producers = Vec::with_capacity(options.producers);
        for index in 0..options.producers {
            let channel = connections[index % connections.len()]
                .create_channel()
                .await?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            producers.push(channel);
        }
        Ok(Self {
            url: peer.url.clone(),
            queues,
            exchange,
            kind: peer.queue.as_str(),
            connections,
            producers,
            consumers: Mutex::new(Vec::new()),
            consumer_channels: Vec::new(),
            admin,
        })
    }

    /// Opens the consumers' channels and subscribes them to their queues, each with a
    /// prefetch of the bench's batch.
    async fn subscribe(&mut self, options: &BenchOptions) -> Result<(), BenchError> {
        let prefetch = u16::try_from(options.batch).unwrap_or(u16::MAX);
        let mut consumers = Vec::with_capacity(self.queues.len() * options.consumers);
        // In the order `Target::consumer` numbers them: every queue's consumers in turn.
        let slots = (0..self.queues.len())
            .flat_map(|queue| (0..options.consumers).map(move |index| (queue, index)));
        for (overall, (queue, index)) in slots.enumerate() {
            // From the other end of the connections, as the gRPC target does.
            let connection =
                &self.connections[self.connections.len() - 1 - overall % self.connections.len()];
            let channel = connection.create_channel().await?;
            // Kept before subscribing, so close() closes it whatever fails next.
            self.consumer_channels.push(channel.clone());
            channel
                .basic_qos(prefetch, BasicQosOptions::default())
                .await?;
            let consumer = channel
                .basic_consume(
                    self.queues[queue].as_str().into(),
                    format!("bench-consumer-{queue}-{index}").into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            consumers.push(Some(consumer));
        }
        *self
            .consumers
            .get_mut()
            .expect("no task panicked holding the consumers") = consumers;
        Ok(())
    }

    /// Closes the consumers' channels (RabbitMQ requeues what they left unacked), counts the
    /// messages left in the queues, deletes them (and the exchange) and closes the
    /// connections.
    async fn close(&self) -> Result<u64, BenchError> {
        for channel in &self.consumer_channels {
            channel.close(200, "bench done".into()).await?;
        }
        tokio::time::sleep(REQUEUE_GRACE).await;
        let mut left: u64 = 0;
        for queue in &self.queues {
            let found = self
                .admin
                .queue_declare(
                    queue.as_str().into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await?
                .message_count();
            left += u64::from(found);
            self.admin
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await?;
        }
        if !self.exchange.is_empty() {
            self.admin
                .exchange_delete(
                    self.exchange.as_str().into(),
                    ExchangeDeleteOptions::default(),
                )
                .await?;
        }
        for connection in &self.connections {
            connection.close(200, "bench done".into()).await?;
        }
        Ok(left)
    }

    /// Where a producer publishes: the exchange, and the routing key (the one queue's name
    /// on the default exchange; a fanout exchange ignores it).
    fn destination(&self) -> (String, String) {
        if self.exchange.is_empty() {
            (String::new(), self.queues[0].clone())
        } else {
            (self.exchange.clone(), String::new())
        }
    }
}

impl Target for AmqpTarget {
    fn producer(&self, index: usize) -> Box<dyn Producer> {
        let (exchange, routing_key) = self.destination();
        Box::new(AmqpProducer {
            channel: self.producers[index % self.producers.len()].clone(),
            exchange,
            routing_key,
        })
    }

    fn consumer(&self, _subscription: usize, index: usize) -> Box<dyn Consumer> {
        let consumer = self
            .consumers
            .lock()
            .expect("no task panicked holding the consumers")
            .get_mut(index)
            .and_then(Option::take)
            .expect("one consumer task per queue and consumer index");
        Box::new(AmqpConsumer {
            channel: self.consumer_channels[index].clone(),
            consumer,
        })
    }

    fn path(&self) -> &'static str {
        "amqp"
    }
}

struct AmqpProducer {
    channel: Channel,
    exchange: String,
    routing_key: String,
}

fn no_two_phase() -> BenchError {
    BenchError::Options("RabbitMQ has no two-phase messages: the peer only publishes".into())
}

#[async_trait]
impl Producer for AmqpProducer {
    async fn prepare(&mut self, _key: String, _payload: Vec<u8>) -> Result<String, BenchError> {
        Err(no_two_phase())
    }

    async fn confirm(&mut self, _message_id: String) -> Result<(), BenchError> {
        Err(no_two_phase())
    }

    /// Publishes one persistent message and waits for its publisher confirm.
    async fn publish(&mut self, key: String, payload: Vec<u8>) -> Result<(), BenchError> {
        let properties = BasicProperties::default()
            .with_message_id(key.into())
            .with_delivery_mode(PERSISTENT);
        let confirmation = self
            .channel
            .basic_publish(
                self.exchange.as_str().into(),
                self.routing_key.as_str().into(),
                BasicPublishOptions::default(),
                &payload,
                properties,
            )
            .await?
            .await?;
        match confirmation {
            Confirmation::Ack(_) => Ok(()),
            Confirmation::Nack(_) => Err(BenchError::Server(
                "RabbitMQ refused a message (publisher confirm nack)".into(),
            )),
            Confirmation::NotRequested => Err(BenchError::Server(
                "RabbitMQ sent no publisher confirm: the channel is not in confirm mode".into(),
            )),
        }
    }
}

struct AmqpConsumer {
    channel: Channel,
    consumer: lapin::Consumer,
}

impl AmqpConsumer {
    fn received(
        delivery: Result<lapin::message::Delivery, lapin::Error>,
    ) -> Result<Received, BenchError> {
        let delivery = delivery?;
        let key = delivery
            .properties
            .message_id()
            .as_ref()
            .map(|id| id.as_str().to_owned())
            .unwrap_or_default();
        Ok(Received {
            receipt: delivery.delivery_tag.to_string(),
            key,
        })
    }
}

#[async_trait]
impl Consumer for AmqpConsumer {
    /// Waits up to `wait` for the first delivery, then takes those already here, up to `max`:
    /// the batch a Receive would answer.
    async fn receive(&mut self, max: u32, wait: Duration) -> Result<Vec<Received>, BenchError> {
        let first = match tokio::time::timeout(wait, self.consumer.next()).await {
            Err(_elapsed) => return Ok(Vec::new()),
            Ok(None) => return Err(BenchError::Server("RabbitMQ cancelled the consumer".into())),
            Ok(Some(delivery)) => Self::received(delivery)?,
        };
        let mut batch = vec![first];
        while batch.len() < max as usize {
            match self.consumer.next().now_or_never() {
                Some(Some(delivery)) => batch.push(Self::received(delivery)?),
                _ => break,
            }
        }
        Ok(batch)
    }

    /// Acks every delivery up to the highest tag in one frame.
    async fn ack(&mut self, receipts: Vec<String>) -> Result<u64, BenchError> {
        let Some(highest) = receipts.iter().filter_map(|r| r.parse::<u64>().ok()).max() else {
            return Ok(receipts.len() as u64);
        };
        self.channel
            .basic_ack(highest, BasicAckOptions { multiple: true })
            .await?;
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::tests::tiny;
    use crate::bench::{PeerQueue, run_rounds, run_side_by_side};

    /// The machine's RabbitMQ (`COURIER_TEST_AMQP_URL` names another).
    fn test_url() -> String {
        std::env::var("COURIER_TEST_AMQP_URL")
            .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
    }

    /// Whether the broker's port answers; CI (CI=true) requires it.
    fn broker_listening(url: &str) -> bool {
        let parsed = url::Url::parse(url).expect("test AMQP URL");
        let host = parsed.host_str().unwrap_or("127.0.0.1").to_owned();
        let port = parsed.port().unwrap_or(5672);
        let listening = std::net::TcpStream::connect((host.as_str(), port)).is_ok();
        if !listening {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "RabbitMQ is not reachable at {}, and CI requires the peer test",
                redact(url)
            );
            eprintln!("skipped: RabbitMQ is not reachable at {}", redact(url));
        }
        listening
    }

    fn assert_every_message_acked_once(json: &serde_json::Value, backend: &str, messages: u64) {
        assert_eq!(json["backend"], backend, "{json}");
        assert_eq!(json["messages"], messages, "{json}");
        assert_eq!(json["duplicates"], 0, "{json}");
        assert_eq!(json["ack_failures"], 0, "{json}");
        assert_eq!(
            json["latency_ms"]["confirm_to_delivery"]["count"], messages,
            "{json}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_tiny_side_by_side_run_delivers_every_message_on_both() {
        let url = test_url();
        if !broker_listening(&url) {
            return;
        }
        for queue in [PeerQueue::Quorum, PeerQueue::Classic] {
            let options = tiny(BenchOptions::default());
            let peer = Peer {
                url: url.clone(),
                queue,
            };
            let both = run_side_by_side(options, peer).await.expect("both run");
            let json = both.json();
            assert_every_message_acked_once(&json["courier"], "sqlite", 60);
            assert_eq!(json["courier"]["mode"], "prepare-confirm");
            assert_every_message_acked_once(&json["peer"], queue.backend(), 60);
            assert_eq!(json["peer"]["mode"], "publish");
            assert_eq!(json["peer"]["path"], "amqp");
            assert!(
                json["ratio"]["msgs_per_sec"]
                    .as_f64()
                    .is_some_and(|r| r > 0.0)
            );
            let rendered = both.render();
            assert!(
                rendered.contains("side by side: Courier sqlite"),
                "{rendered}"
            );
            assert!(rendered.ends_with(&format!("{json}\n")));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rounds_report_every_round_and_the_medians_of_their_ratios() {
        let url = test_url();
        if !broker_listening(&url) {
            return;
        }
        let peer = Peer {
            url,
            queue: PeerQueue::Quorum,
        };
        let rounds = run_rounds(tiny(BenchOptions::default()), peer, 3)
            .await
            .expect("three rounds run");
        let json = rounds.json();
        let runs = json["rounds"].as_array().expect("every round's figures");
        assert_eq!(runs.len(), 3, "{json}");
        for run in runs {
            assert_every_message_acked_once(&run["courier"], "sqlite", 60);
            assert_every_message_acked_once(&run["peer"], "rabbitmq-quorum", 60);
        }
        // The median ratio is one of the three rounds' own (an odd count), and lies between
        // the others.
        let mut ratios: Vec<f64> = runs
            .iter()
            .map(|run| run["ratio"]["msgs_per_sec"].as_f64().expect("a ratio"))
            .collect();
        ratios.sort_by(f64::total_cmp);
        assert_eq!(json["median"]["ratio"]["msgs_per_sec"], ratios[1], "{json}");
        let rendered = rounds.render();
        for heading in ["round 1 of 3", "round 3 of 3", "median of 3 rounds"] {
            assert!(rendered.contains(heading), "{rendered}");
        }
        assert!(rendered.ends_with(&format!("{json}\n")));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_tiny_side_by_side_backlog_is_drained_on_both() {
        let url = test_url();
        if !broker_listening(&url) {
            return;
        }
        let options = tiny(BenchOptions {
            backlog: Some(200),
            ..BenchOptions::default()
        });
        let batch = u64::from(options.batch);
        let peer = Peer {
            url,
            queue: PeerQueue::Quorum,
        };
        let both = run_side_by_side(options, peer).await.expect("both run");
        let json = both.json();
        for (side, backend) in [("courier", "sqlite"), ("peer", "rabbitmq-quorum")] {
            let report = &json[side];
            assert_eq!(report["backend"], backend, "{report}");
            assert_eq!(report["mode"], "backlog", "{report}");
            assert_eq!(report["messages"], 200, "{report}");
            assert_eq!(report["duplicates"], 0, "{report}");
            assert_eq!(report["ack_failures"], 0, "{report}");
            // Every delivery came from some Receive: at most one per message, at least a
            // batch's worth per call.
            let receives = report["latency_ms"]["receive"]["count"]
                .as_u64()
                .unwrap_or(0);
            assert!((200 / batch..=200).contains(&receives), "{report}");
        }
        assert!(
            json["ratio"]["receive_p99"]
                .as_f64()
                .is_some_and(|r| r > 0.0)
        );
        assert!(
            both.render()
                .contains("each drain a backlog of 200 messages")
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_tiny_side_by_side_fan_out_reaches_every_subscription_and_queue() {
        let url = test_url();
        if !broker_listening(&url) {
            return;
        }
        let options = tiny(BenchOptions {
            subscriptions: 3,
            ..BenchOptions::default()
        });
        let peer = Peer {
            url,
            queue: PeerQueue::Quorum,
        };
        let both = run_side_by_side(options, peer).await.expect("both run");
        let json = both.json();
        for side in ["courier", "peer"] {
            let report = &json[side];
            assert_eq!(report["messages"], 60, "{report}");
            assert_eq!(report["deliveries"], 180, "{report}");
            assert_eq!(report["duplicates"], 0, "{report}");
            // On RabbitMQ this also counts what any of the three queues still held.
            assert_eq!(report["ack_failures"], 0, "{report}");
            assert_eq!(
                report["latency_ms"]["confirm_to_delivery"]["count"], 180,
                "{report}"
            );
        }
        let rendered = both.render();
        assert!(
            rendered.contains("a fanout exchange to 3 queues"),
            "{rendered}"
        );
    }

    #[tokio::test]
    async fn a_peer_that_does_not_answer_fails_before_courier_runs() {
        let peer = Peer {
            url: "amqp://guest:guest@127.0.0.1:1/%2f".into(),
            queue: PeerQueue::Quorum,
        };
        let started = std::time::Instant::now();
        let failed = run_side_by_side(BenchOptions::default(), peer).await;
        assert!(failed.is_err());
        // 100,000 messages through Courier would take far longer than a refused connection.
        assert!(started.elapsed() < CONNECT_DEADLINE + Duration::from_secs(1));
    }

    #[test]
    fn reports_never_show_the_password() {
        assert_eq!(
            redact("amqp://guest:secret@127.0.0.1:5672/%2f"),
            "amqp://guest@127.0.0.1:5672/%2f"
        );
    }
}
