//! What the workload talks to: a server over gRPC, or the store directly. Each producer and
//! consumer task gets its own handle.

use std::sync::Arc;
use std::time::Duration;

use crate::client::AuthChannel;
use async_trait::async_trait;
use courier_coalesce::{ClientChannel, DirectChannel};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{BenchError, BenchOptions};
use crate::config::Config;
use crate::convert::{self, MessageFields};
use crate::domain::{AckStatus, Decision, MessageId, MessageRef, Receipt, Subscription, Timestamp};
use crate::long_poll;
use crate::proto;
use crate::proto::admin_client::AdminClient;
use crate::proto::consumer_client::ConsumerClient;
use crate::proto::producer_client::ProducerClient;
use crate::store::{Batch, Store};
use crate::wakeups::Wakeups;

/// The producer name every bench message carries.
pub const PRODUCER: &str = "bench";

/// One delivery as the workload sees it.
pub struct Received {
    pub receipt: String,
    pub key: String,
}

#[async_trait]
pub trait Producer: Send {
    /// Returns the message id.
    async fn prepare(&mut self, key: String, payload: Vec<u8>) -> Result<String, BenchError>;
    async fn confirm(&mut self, message_id: String) -> Result<(), BenchError>;
    async fn publish(&mut self, key: String, payload: Vec<u8>) -> Result<(), BenchError>;
}

#[async_trait]
pub trait Consumer: Send {
    /// Leases up to `max` deliveries, waiting up to `wait` for the first.
    async fn receive(&mut self, max: u32, wait: Duration) -> Result<Vec<Received>, BenchError>;
    /// Acks the receipts; returns how many did not answer OK.
    async fn ack(&mut self, receipts: Vec<String>) -> Result<u64, BenchError>;
}

pub trait Target: Send + Sync {
    fn producer(&self, index: usize) -> Box<dyn Producer>;
    /// Consumer number `index` (counted over every subscription's consumers) on subscription
    /// `subscription` (0 up to `--subscriptions`).
    fn consumer(&self, subscription: usize, index: usize) -> Box<dyn Consumer>;
    /// How the report names the path: `grpc` or `store`.
    fn path(&self) -> &'static str;
}

/// The names of the bench's `count` subscriptions on `topic`: the topic's own name for one,
/// numbered after it for a fan-out.
pub fn subscription_names(topic: &str, count: usize) -> Vec<String> {
    match count {
        1 => vec![topic.to_owned()],
        _ => (0..count).map(|index| format!("{topic}-{index}")).collect(),
    }
}

// --- gRPC ---

/// How long the bench waits for each of its connections.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub struct GrpcTarget {
    channels: Vec<AuthChannel<ClientChannel>>,
    topic: String,
    subscriptions: Vec<String>,
    lanes: Lanes,
}

/// How the bench spreads its messages over ordering keys: none, or `keys` lanes of an ordered
/// subscription, each message in the lane its producer key hashes to.
#[derive(Debug, Clone, Copy)]
pub struct Lanes {
    keys: Option<u32>,
}

impl Lanes {
    pub fn new(keys: Option<u32>) -> Self {
        Self { keys }
    }

    pub fn ordered(self) -> bool {
        self.keys.is_some()
    }

    /// The ordering key of the message with producer key `key`: empty when unordered.
    pub fn key_of(self, key: &str) -> String {
        use std::hash::{Hash, Hasher};
        let Some(keys) = self.keys else {
            return String::new();
        };
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut hasher);
        format!("lane-{}", hasher.finish() % u64::from(keys.max(1)))
    }
}

impl GrpcTarget {
    /// Opens `options.connections` HTTP/2 connections to `addr` (`http://` or `https://`),
    /// with the options' token and TLS files.
    pub async fn connect(
        addr: &str,
        options: &BenchOptions,
        topic: &str,
    ) -> Result<Self, BenchError> {
        let endpoint = crate::client::endpoint(addr, &options.client)
            .map_err(|error| BenchError::Options(error.0))?
            .tcp_nodelay(true)
            .connect_timeout(CONNECT_TIMEOUT);
        let mut channels = Vec::with_capacity(options.connections);
        for _ in 0..options.connections {
            // Plain TCP: calls go straight onto the connection, and requests made together
            // leave together, as the server's answers do. Over TLS, tonic's own channel.
            let channel = if endpoint.uri().scheme_str() == Some("https") {
                ClientChannel::Tls(endpoint.connect().await?)
            } else {
                let connecting = DirectChannel::connect(endpoint.uri());
                let connected = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
                    .await
                    .unwrap_or_else(|_| {
                        let waited = CONNECT_TIMEOUT.as_secs();
                        Err(format!("cannot connect to {addr}: no answer in {waited} s").into())
                    })
                    .map_err(|error| BenchError::Unreachable(error.to_string()))?;
                ClientChannel::Plain(connected)
            };
            let channel = crate::client::with_token(channel, &options.client)
                .map_err(|error| BenchError::Options(error.0))?;
            channels.push(channel);
        }
        Ok(Self {
            channels,
            topic: topic.to_owned(),
            subscriptions: subscription_names(topic, options.subscriptions),
            lanes: Lanes::new(options.ordered_keys),
        })
    }

    fn channel(&self, index: usize) -> AuthChannel<ClientChannel> {
        self.channels[index % self.channels.len()].clone()
    }

    /// The bench's subscriptions on its topic ([`subscription_names`]), server defaults
    /// otherwise.
    pub async fn create_subscriptions(&self) -> Result<(), BenchError> {
        let mut admin = AdminClient::new(self.channel(0));
        for name in &self.subscriptions {
            admin
                .create_subscription(proto::CreateSubscriptionRequest {
                    subscription: Some(proto::Subscription {
                        name: name.clone(),
                        topic: self.topic.clone(),
                        ordered: self.lanes.ordered(),
                        ..Default::default()
                    }),
                })
                .await
                .map_err(BenchError::rpc("CreateSubscription"))?;
        }
        Ok(())
    }
}

impl Target for GrpcTarget {
    fn producer(&self, index: usize) -> Box<dyn Producer> {
        Box::new(GrpcProducer {
            client: ProducerClient::new(self.channel(index)),
            topic: self.topic.clone(),
            lanes: self.lanes,
        })
    }

    fn consumer(&self, subscription: usize, index: usize) -> Box<dyn Consumer> {
        // Consumers take the connections from the other end, so a few consumers and many
        // producers spread over every connection.
        let last = self.channels.len() - 1 - index % self.channels.len();
        Box::new(GrpcConsumer {
            client: ConsumerClient::new(self.channel(last)),
            subscription: self.subscriptions[subscription].clone(),
        })
    }

    fn path(&self) -> &'static str {
        "grpc"
    }
}

struct GrpcProducer {
    client: ProducerClient<AuthChannel<ClientChannel>>,
    topic: String,
    lanes: Lanes,
}

#[async_trait]
impl Producer for GrpcProducer {
    async fn prepare(&mut self, key: String, payload: Vec<u8>) -> Result<String, BenchError> {
        let response = self
            .client
            .prepare(proto::PrepareRequest {
                producer: PRODUCER.into(),
                topic: self.topic.clone(),
                ordering_key: self.lanes.key_of(&key),
                key,
                payload,
                ..Default::default()
            })
            .await
            .map_err(BenchError::rpc("Prepare"))?;
        Ok(response.into_inner().message_id)
    }

    async fn confirm(&mut self, message_id: String) -> Result<(), BenchError> {
        self.client
            .confirm(proto::ConfirmRequest {
                message: Some(proto::MessageRef {
                    r#ref: Some(proto::message_ref::Ref::MessageId(message_id)),
                }),
            })
            .await
            .map_err(BenchError::rpc("Confirm"))?;
        Ok(())
    }

    async fn publish(&mut self, key: String, payload: Vec<u8>) -> Result<(), BenchError> {
        self.client
            .publish(proto::PublishRequest {
                producer: PRODUCER.into(),
                topic: self.topic.clone(),
                ordering_key: self.lanes.key_of(&key),
                key,
                payload,
                ..Default::default()
            })
            .await
            .map_err(BenchError::rpc("Publish"))?;
        Ok(())
    }
}

struct GrpcConsumer {
    client: ConsumerClient<AuthChannel<ClientChannel>>,
    subscription: String,
}

#[async_trait]
impl Consumer for GrpcConsumer {
    async fn receive(&mut self, max: u32, wait: Duration) -> Result<Vec<Received>, BenchError> {
        let wait = prost_types::Duration::try_from(wait).unwrap_or_default();
        let response = self
            .client
            .receive(proto::ReceiveRequest {
                subscription: self.subscription.clone(),
                max_messages: max,
                wait: Some(wait),
                max_bytes: 0,
            })
            .await
            .map_err(BenchError::rpc("Receive"))?;
        Ok(response
            .into_inner()
            .deliveries
            .into_iter()
            .map(|delivery| Received {
                receipt: delivery.receipt,
                key: delivery.key,
            })
            .collect())
    }

    async fn ack(&mut self, receipts: Vec<String>) -> Result<u64, BenchError> {
        let response = self
            .client
            .ack(proto::AckRequest {
                subscription: self.subscription.clone(),
                receipts,
            })
            .await
            .map_err(BenchError::rpc("Ack"))?;
        let ok = proto::AckStatus::Ok as i32;
        Ok(response
            .into_inner()
            .results
            .iter()
            .filter(|result| result.status != ok)
            .count() as u64)
    }
}

// --- the store, without gRPC ---

pub struct StoreTarget {
    store: Arc<dyn Store>,
    wakeups: Wakeups,
    config: Arc<Config>,
    topic: String,
    subscriptions: Vec<Subscription>,
    lanes: Lanes,
}

impl StoreTarget {
    /// Creates the bench's subscriptions ([`subscription_names`]) in `store` (opened with
    /// `wakeups`).
    pub async fn new(
        store: Arc<dyn Store>,
        wakeups: Wakeups,
        config: &Config,
        topic: &str,
        options: &BenchOptions,
    ) -> Result<Self, BenchError> {
        let lanes = Lanes::new(options.ordered_keys);
        let mut subscriptions = Vec::with_capacity(options.subscriptions);
        for name in subscription_names(topic, options.subscriptions) {
            let requested = proto::Subscription {
                name,
                topic: topic.to_owned(),
                ordered: lanes.ordered(),
                ..Default::default()
            };
            let subscription = convert::create_subscription(Some(requested), &config.subscriptions)
                .map_err(|error| BenchError::Server(format!("subscription: {error:?}")))?;
            subscriptions.push(store.create_subscription(subscription).await?.0);
        }
        Ok(Self {
            store,
            wakeups,
            config: Arc::new(config.clone()),
            topic: topic.to_owned(),
            subscriptions,
            lanes,
        })
    }
}

impl Target for StoreTarget {
    fn producer(&self, _index: usize) -> Box<dyn Producer> {
        Box::new(StoreProducer {
            store: self.store.clone(),
            config: self.config.clone(),
            topic: self.topic.clone(),
            lanes: self.lanes,
        })
    }

    fn consumer(&self, subscription: usize, _index: usize) -> Box<dyn Consumer> {
        Box::new(StoreConsumer {
            store: self.store.clone(),
            wakeups: self.wakeups.clone(),
            subscription: self.subscriptions[subscription].clone(),
        })
    }

    fn path(&self) -> &'static str {
        "store"
    }
}

struct StoreProducer {
    store: Arc<dyn Store>,
    config: Arc<Config>,
    topic: String,
    lanes: Lanes,
}

impl StoreProducer {
    /// Validated exactly as the Producer service does it.
    async fn insert(
        &self,
        key: String,
        payload: Vec<u8>,
        publish: bool,
    ) -> Result<MessageId, BenchError> {
        let fields = MessageFields {
            producer: PRODUCER.into(),
            topic: self.topic.clone(),
            ordering_key: self.lanes.key_of(&key),
            key,
            payload,
            headers: Default::default(),
            check_after: None,
            deliver_after: None,
        };
        let message = convert::new_message(fields, publish, &self.config)
            .map_err(|error| BenchError::Server(format!("message: {error:?}")))?;
        Ok(self.store.insert_message(message).await?.message_id)
    }
}

#[async_trait]
impl Producer for StoreProducer {
    async fn prepare(&mut self, key: String, payload: Vec<u8>) -> Result<String, BenchError> {
        Ok(self.insert(key, payload, false).await?.to_string())
    }

    async fn confirm(&mut self, message_id: String) -> Result<(), BenchError> {
        let id = MessageId::parse(&message_id)
            .map_err(|_| BenchError::Server(format!("bad message id {message_id}")))?;
        self.store
            .decide(&MessageRef::Id(id), Decision::Commit, Timestamp::now())
            .await?;
        Ok(())
    }

    async fn publish(&mut self, key: String, payload: Vec<u8>) -> Result<(), BenchError> {
        self.insert(key, payload, true).await.map(|_| ())
    }
}

struct StoreConsumer {
    store: Arc<dyn Store>,
    wakeups: Wakeups,
    subscription: Subscription,
}

#[async_trait]
impl Consumer for StoreConsumer {
    /// The long poll of the Consumer service, without gRPC.
    async fn receive(&mut self, max: u32, wait: Duration) -> Result<Vec<Received>, BenchError> {
        let leased = long_poll::lease_or_wait(
            self.store.as_ref(),
            &self.wakeups,
            None,
            &self.subscription,
            Batch::messages(max),
            Instant::now() + wait,
            &CancellationToken::new(),
        )
        .await?;
        Ok(leased
            .into_iter()
            .map(|delivery| Received {
                receipt: delivery.receipt.to_string(),
                key: delivery.key.as_str().to_owned(),
            })
            .collect())
    }

    async fn ack(&mut self, receipts: Vec<String>) -> Result<u64, BenchError> {
        let receipts = receipts
            .iter()
            .map(|receipt| {
                Receipt::parse(receipt)
                    .ok_or_else(|| BenchError::Server(format!("bad receipt {receipt}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let statuses = self.store.ack(&receipts, Timestamp::now()).await?;
        Ok(statuses
            .iter()
            .filter(|status| **status != AckStatus::Ok)
            .count() as u64)
    }
}
