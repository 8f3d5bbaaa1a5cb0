//! Request builders: durations, message references, and the messages and subscriptions most
//! tests send.

use std::collections::HashMap;
use std::time::Duration;

use courier::proto::message_ref::Ref;
use courier::proto::{
    MessageRef, PrepareRequest, ProducerKey, PublishRequest, RetryPolicy, Subscription,
};

pub fn duration(value: Duration) -> prost_types::Duration {
    prost_types::Duration::try_from(value).expect("a representable duration")
}

pub fn ms(millis: u64) -> Option<prost_types::Duration> {
    Some(duration(Duration::from_millis(millis)))
}

pub fn secs(seconds: u64) -> Option<prost_types::Duration> {
    Some(duration(Duration::from_secs(seconds)))
}

pub fn to_system_time(timestamp: &Option<prost_types::Timestamp>) -> std::time::SystemTime {
    let timestamp = timestamp.expect("a timestamp");
    std::time::SystemTime::try_from(timestamp).expect("a valid timestamp")
}

pub fn by_id(message_id: &str) -> Option<MessageRef> {
    Some(MessageRef {
        r#ref: Some(Ref::MessageId(message_id.into())),
    })
}

pub fn by_key(producer: &str, key: &str) -> Option<MessageRef> {
    Some(MessageRef {
        r#ref: Some(Ref::ProducerKey(ProducerKey {
            producer: producer.into(),
            key: key.into(),
        })),
    })
}

pub fn payload_of(key: &str) -> Vec<u8> {
    format!("payload of {key}").into_bytes()
}

pub fn headers_of(key: &str) -> HashMap<String, String> {
    HashMap::from([("trace-id".to_string(), format!("trace-{key}"))])
}

/// A Prepare with a payload and one header derived from the key.
pub fn prepare_request(producer: &str, topic: &str, key: &str) -> PrepareRequest {
    PrepareRequest {
        producer: producer.into(),
        topic: topic.into(),
        key: key.into(),
        payload: payload_of(key),
        headers: headers_of(key),
        check_after: None,
        deliver_after: None,
        ordering_key: String::new(),
    }
}

/// A Publish with the same content `prepare_request` would give.
pub fn publish_request(producer: &str, topic: &str, key: &str) -> PublishRequest {
    PublishRequest {
        producer: producer.into(),
        topic: topic.into(),
        key: key.into(),
        payload: payload_of(key),
        headers: headers_of(key),
        deliver_after: None,
        ordering_key: String::new(),
    }
}

/// A pull subscription with every field left to the server defaults.
pub fn subscription(name: &str, topic: &str) -> Subscription {
    Subscription {
        name: name.into(),
        topic: topic.into(),
        ..Default::default()
    }
}

/// A pull subscription that retries fast: `max_attempts` attempts, 1 ms backoff growing to at
/// most 10 ms, and the shortest ack deadline allowed (1 s).
pub fn fast_subscription(name: &str, topic: &str, max_attempts: u32) -> Subscription {
    Subscription {
        ack_deadline: secs(1),
        retry_policy: Some(RetryPolicy {
            max_attempts,
            initial_backoff: ms(1),
            max_backoff: ms(10),
            multiplier: 2.0,
        }),
        ..subscription(name, topic)
    }
}
