//! A message to send: what Prepare and Publish take.

use std::collections::HashMap;
use std::time::Duration;

use crate::proto::{self, PrepareRequest, PublishRequest};

/// A message for [`Producer::send`](crate::Producer::send) or
/// [`Producer::publish`](crate::Producer::publish). The producer's name comes from the
/// [`Producer`](crate::Producer).
#[derive(Debug, Clone, Default)]
pub struct OutgoingMessage {
    topic: String,
    key: String,
    payload: Vec<u8>,
    headers: HashMap<String, String>,
    check_after: Option<Duration>,
    deliver_after: Option<Duration>,
    ordering_key: String,
}

impl OutgoingMessage {
    /// A message on `topic` with the business `key` (an order number, a payment id): unique
    /// per producer, so a retried send finds the message already there instead of making a
    /// second one.
    pub fn new(topic: impl Into<String>, key: impl Into<String>) -> Self {
        Self {
            topic: topic.into(),
            key: key.into(),
            ..Self::default()
        }
    }

    /// The bytes delivered to consumers.
    pub fn payload(mut self, payload: impl Into<Vec<u8>>) -> Self {
        self.payload = payload.into();
        self
    }

    /// Adds a header delivered with the message.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }

    /// When Courier first asks the producer's Checker if neither Confirm nor Cancel arrived
    /// (the server's default, 10 s, otherwise).
    pub fn check_after(mut self, after: Duration) -> Self {
        self.check_after = Some(after);
        self
    }

    /// Delays the first delivery by this long after confirm.
    pub fn deliver_after(mut self, after: Duration) -> Self {
        self.deliver_after = Some(after);
        self
    }

    /// Puts the message in a lane: ordered subscriptions deliver one message of a lane at a
    /// time, in confirm order.
    pub fn ordering_key(mut self, key: impl Into<String>) -> Self {
        self.ordering_key = key.into();
        self
    }

    /// The business key.
    pub fn key(&self) -> &str {
        &self.key
    }

    pub(crate) fn prepare_request(self, producer: &str) -> PrepareRequest {
        PrepareRequest {
            producer: producer.to_owned(),
            topic: self.topic,
            key: self.key,
            payload: self.payload,
            headers: self.headers,
            check_after: self.check_after.map(proto::duration),
            deliver_after: self.deliver_after.map(proto::duration),
            ordering_key: self.ordering_key,
        }
    }

    pub(crate) fn publish_request(self, producer: &str) -> PublishRequest {
        PublishRequest {
            producer: producer.to_owned(),
            topic: self.topic,
            key: self.key,
            payload: self.payload,
            headers: self.headers,
            deliver_after: self.deliver_after.map(proto::duration),
            ordering_key: self.ordering_key,
        }
    }
}
