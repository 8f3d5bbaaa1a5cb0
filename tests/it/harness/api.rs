//! Clients of one running server, and shortcuts for the calls most tests make.

use std::net::SocketAddr;
use std::time::Duration;

use courier::proto::admin_client::AdminClient;
use courier::proto::consumer_client::ConsumerClient;
use courier::proto::producer_client::ProducerClient;
use courier::proto::{
    AckRequest, AckStatus, CancelRequest, CheckStatusRequest, ConfirmRequest, Delivery,
    DeliveryStatus, ListDeliveriesRequest, ListSubscriptionsRequest, Message, MessageState,
    ReceiveRequest, RegisterCheckerRequest, Subscription,
};
use tonic::transport::Channel;
use tonic::{Code, Status};

use super::{PRODUCER, by_id, duration, plain_endpoint, prepare_request, publish_request};

pub type Producer = ProducerClient<Channel>;
pub type Consumer = ConsumerClient<Channel>;
pub type Admin = AdminClient<Channel>;

/// Clients of one running server, and shortcuts for the calls most tests make. Both a
/// `TestServer` and a `courier serve` child process (`tests/support/process.rs`) dereference
/// to one.
#[derive(Clone)]
pub struct Api {
    channel: Channel,
}

impl Api {
    /// Clients over `channel`.
    pub fn new(channel: Channel) -> Self {
        Self { channel }
    }

    /// Clients for a server at `addr`; they connect on the first call.
    pub fn connect_lazy(addr: SocketAddr) -> Self {
        Self::new(plain_endpoint(addr).connect_lazy())
    }

    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    pub fn producer(&self) -> Producer {
        ProducerClient::new(self.channel())
    }

    pub fn consumer(&self) -> Consumer {
        ConsumerClient::new(self.channel())
    }

    pub fn admin(&self) -> Admin {
        AdminClient::new(self.channel())
    }

    // --- shortcuts for the happy path; each unwraps, so a failure names the call ---

    pub async fn create_subscription(&self, subscription: Subscription) -> Subscription {
        self.admin()
            .create_subscription(courier::proto::CreateSubscriptionRequest {
                subscription: Some(subscription),
            })
            .await
            .expect("CreateSubscription")
            .into_inner()
    }

    /// Registers `endpoint` as the Checker of `PRODUCER`, with `timeout` or the default.
    pub async fn register_checker(&self, endpoint: &str, timeout: Option<Duration>) {
        self.producer()
            .register_checker(RegisterCheckerRequest {
                producer: PRODUCER.into(),
                endpoint: endpoint.into(),
                timeout: timeout.map(duration),
            })
            .await
            .expect("RegisterChecker");
    }

    /// Prepares a message built by `prepare_request` and returns its id.
    pub async fn prepare(&self, topic: &str, key: &str) -> String {
        let response = self
            .producer()
            .prepare(prepare_request(PRODUCER, topic, key))
            .await
            .expect("Prepare")
            .into_inner();
        assert!(response.created, "Prepare of a new key creates a message");
        assert_eq!(response.state(), MessageState::Prepared);
        response.message_id
    }

    /// Publishes a message built by `publish_request` and returns its id.
    pub async fn publish(&self, topic: &str, key: &str) -> String {
        let response = self
            .producer()
            .publish(publish_request(PRODUCER, topic, key))
            .await
            .expect("Publish")
            .into_inner();
        assert!(response.created, "Publish of a new key creates a message");
        assert_eq!(response.state(), MessageState::Confirmed);
        response.message_id
    }

    pub async fn confirm(&self, message_id: &str) -> Result<MessageState, Status> {
        self.producer()
            .confirm(ConfirmRequest {
                message: by_id(message_id),
            })
            .await
            .map(|r| r.into_inner().state())
    }

    pub async fn cancel(&self, message_id: &str) -> Result<MessageState, Status> {
        self.producer()
            .cancel(CancelRequest {
                message: by_id(message_id),
            })
            .await
            .map(|r| r.into_inner().state())
    }

    /// CheckStatus by id.
    pub async fn status(&self, message_id: &str) -> Message {
        self.producer()
            .check_status(CheckStatusRequest {
                message: by_id(message_id),
            })
            .await
            .expect("CheckStatus")
            .into_inner()
            .message
            .expect("CheckStatus returns the message")
    }

    /// CheckStatus by id; NOT_FOUND (a message deleted, say) is `None`.
    pub async fn find(&self, message_id: &str) -> Option<Message> {
        let answer = self
            .producer()
            .check_status(CheckStatusRequest {
                message: by_id(message_id),
            })
            .await;
        match answer {
            Ok(response) => Some(response.into_inner().message.expect("a message")),
            Err(status) if status.code() == Code::NotFound => None,
            Err(status) => panic!("CheckStatus: {status:?}"),
        }
    }

    pub async fn receive(
        &self,
        subscription: &str,
        max_messages: u32,
        wait: Duration,
    ) -> Vec<Delivery> {
        self.consumer()
            .receive(ReceiveRequest {
                subscription: subscription.into(),
                max_messages,
                wait: Some(duration(wait)),
                max_bytes: 0,
            })
            .await
            .expect("Receive")
            .into_inner()
            .deliveries
    }

    /// Receives and expects exactly one delivery within `wait`.
    pub async fn receive_one(&self, subscription: &str, wait: Duration) -> Delivery {
        let mut deliveries = self.receive(subscription, 1, wait).await;
        assert_eq!(
            deliveries.len(),
            1,
            "expected one delivery on {subscription} within {wait:?}"
        );
        deliveries.remove(0)
    }

    /// Acks the receipts and returns one status per receipt.
    pub async fn ack(&self, subscription: &str, receipts: &[&str]) -> Vec<AckStatus> {
        let results = self
            .consumer()
            .ack(AckRequest {
                subscription: subscription.into(),
                receipts: receipts.iter().map(|r| r.to_string()).collect(),
            })
            .await
            .expect("Ack")
            .into_inner()
            .results;
        assert_eq!(results.len(), receipts.len(), "one ack result per receipt");
        for (result, receipt) in results.iter().zip(receipts) {
            assert_eq!(
                result.receipt, *receipt,
                "ack results come in request order"
            );
        }
        results.iter().map(|r| r.status()).collect()
    }

    /// Every delivery of a subscription, over all pages.
    pub async fn deliveries(&self, subscription: &str) -> Vec<DeliveryStatus> {
        let mut all = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = self
                .admin()
                .list_deliveries(ListDeliveriesRequest {
                    subscription: subscription.into(),
                    page_token,
                    ..Default::default()
                })
                .await
                .expect("ListDeliveries")
                .into_inner();
            all.extend(page.deliveries);
            if page.next_page_token.is_empty() {
                return all;
            }
            page_token = page.next_page_token;
        }
    }

    /// The one delivery of `message_id` to `subscription`, from CheckStatus.
    pub async fn delivery_status(&self, message_id: &str, subscription: &str) -> DeliveryStatus {
        self.status(message_id)
            .await
            .deliveries
            .into_iter()
            .find(|d| d.subscription == subscription)
            .unwrap_or_else(|| panic!("message {message_id} has a delivery to {subscription}"))
    }

    /// Proves the server still answers after an error: a plain read succeeds.
    pub async fn assert_still_serving(&self) {
        self.admin()
            .list_subscriptions(ListSubscriptionsRequest::default())
            .await
            .expect("the server keeps serving");
    }
}
