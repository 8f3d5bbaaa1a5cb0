//! Each request's validation, from generated messages (every field arbitrary or near-valid)
//! and from arbitrary bytes decoded as protobuf, as the server would receive them. Proto
//! messages are built with `..Default::default()`, so fields added later get their defaults.

// The struct updates are for fields the proto gains later.
#![allow(clippy::needless_update)]

use std::collections::HashMap;
use std::time::Duration;

use courier::config::Config;
use courier::convert::{self, MessageFields};
use courier::proto::message_ref::Ref;
use courier::proto::{
    AckRequest, ListDeliveriesRequest, ListMessagesRequest, MessageRef, PrepareRequest,
    PublishRequest, ReceiveRequest, RedriveRequest, RegisterCheckerRequest, RejectRequest,
    ResolveRequest, RetryPolicy, Subscription,
};
use proptest::prelude::*;
use prost::Message;

use crate::scalars::proto_duration;
use crate::{assert_refusal, receipt_text, text, uuid_text};

/// `limits.max_receive_bytes` by default.
const RECEIVE_CEILING: u32 = 4_000_000;

/// Limits small enough for generated requests to cross them.
fn config() -> Config {
    let mut config = Config::default();
    config.limits.max_payload_bytes = 512;
    config.limits.max_headers = 3;
    config.limits.max_header_bytes = 64;
    config
}

fn headers() -> impl Strategy<Value = HashMap<String, String>> {
    prop::collection::hash_map(text(), text(), 0..5)
}

fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..700)
}

/// Endpoints: anything, and URLs that are nearly right.
fn endpoint() -> impl Strategy<Value = String> {
    prop_oneof![
        text(),
        "(http|https|ftp|HTTP)://([a-zA-Z0-9.-]{0,12}|\\[::1\\]|user:pw@h)(:[0-9]{0,6})?(/[a-z]{0,3})?(\\?q)?",
    ]
}

fn message_ref() -> impl Strategy<Value = Option<MessageRef>> {
    let by_key = (text(), text()).prop_map(|(producer, key)| {
        Ref::ProducerKey(courier::proto::ProducerKey { producer, key })
    });
    prop_oneof![
        Just(None),
        Just(Some(MessageRef { r#ref: None })),
        prop_oneof![
            uuid_text().prop_map(Ref::MessageId),
            text().prop_map(Ref::MessageId),
            by_key
        ]
        .prop_map(|r| Some(MessageRef { r#ref: Some(r) })),
    ]
}

fn subscription() -> impl Strategy<Value = Option<Subscription>> {
    let policy = (
        prop_oneof![0u32..1002, any::<u32>()],
        proto_duration(),
        proto_duration(),
        prop_oneof![0.0..11.0, any::<f64>()],
    )
        .prop_map(
            |(max_attempts, initial_backoff, max_backoff, multiplier)| RetryPolicy {
                max_attempts,
                initial_backoff,
                max_backoff,
                multiplier,
            },
        );
    (
        text(),
        text(),
        proto_duration(),
        prop::option::of(policy),
        prop_oneof![Just(String::new()), endpoint()],
    )
        .prop_map(
            |(name, topic, ack_deadline, retry_policy, push_endpoint)| Subscription {
                name,
                topic,
                ack_deadline,
                retry_policy,
                push_endpoint,
                ..Default::default()
            },
        )
        .prop_map(Some)
        .boxed()
        .prop_union(Just(None).boxed())
}

/// Bytes as the wire brings them: arbitrary, or a real encoding with a few bytes changed.
fn wire<M: Message + std::fmt::Debug + 'static>(
    messages: impl Strategy<Value = M> + 'static,
) -> impl Strategy<Value = Vec<u8>> {
    let mutated = (
        messages,
        prop::collection::vec((any::<usize>(), any::<u8>()), 0..4),
    )
        .prop_map(|(message, changes)| {
            let mut bytes = message.encode_to_vec();
            for (at, byte) in changes {
                if !bytes.is_empty() {
                    let at = at % bytes.len();
                    bytes[at] = byte;
                }
            }
            bytes
        });
    prop_oneof![prop::collection::vec(any::<u8>(), 0..200), mutated]
}

fn prepare() -> impl Strategy<Value = PrepareRequest> {
    (
        text(),
        text(),
        text(),
        payload(),
        headers(),
        proto_duration(),
        proto_duration(),
    )
        .prop_map(
            |(producer, topic, key, payload, headers, check_after, deliver_after)| PrepareRequest {
                producer,
                topic,
                key,
                payload,
                headers,
                check_after,
                deliver_after,
                ..Default::default()
            },
        )
}

/// A Prepare or Publish: accepted, it keeps every field as sent; refused, it says why plainly.
fn check_new_message(fields: MessageFields, publish: bool) -> Result<(), TestCaseError> {
    let sent = (
        fields.producer.clone(),
        fields.topic.clone(),
        fields.key.clone(),
        fields.payload.clone(),
        fields.headers.clone(),
    );
    match convert::new_message(fields, publish, &config()) {
        Ok(message) => {
            prop_assert_eq!(message.producer.as_str(), sent.0.as_str());
            prop_assert_eq!(message.topic.as_str(), sent.1.as_str());
            prop_assert_eq!(message.key.as_str(), sent.2.as_str());
            prop_assert_eq!(&message.payload, &sent.3);
            let headers: HashMap<String, String> = message.headers.into_iter().collect();
            prop_assert_eq!(headers, sent.4);
            prop_assert_eq!(message.publish, publish);
            prop_assert!(message.check_after >= Duration::from_secs(1));
        }
        Err(error) => {
            assert_refusal(error);
        }
    }
    Ok(())
}

fn check_subscription(value: Option<Subscription>) -> Result<(), TestCaseError> {
    let defaults = config().subscriptions;
    match convert::create_subscription(value.clone(), &defaults) {
        Ok(created) => {
            // As the server answers it, then sent back: the same subscription.
            let answered = convert::subscription(created.clone());
            let again = convert::create_subscription(Some(answered), &defaults)
                .expect("a subscription Courier answered is valid");
            prop_assert_eq!(
                again.clone(),
                courier::domain::Subscription {
                    created_at: again.created_at,
                    ..created
                }
            );
        }
        Err(error) => {
            assert_refusal(error);
        }
    }
    match convert::update_subscription(value, &defaults) {
        Ok(_) => {}
        Err(error) => {
            assert_refusal(error);
        }
    }
    Ok(())
}

fn check_register_checker(request: RegisterCheckerRequest) -> Result<(), TestCaseError> {
    match convert::register_checker(request.clone(), &config()) {
        Ok(registration) => {
            prop_assert_eq!(registration.producer.as_str(), request.producer.as_str());
            // The stored form of the endpoint is a fixed point of its normalization.
            let again = RegisterCheckerRequest {
                endpoint: registration.endpoint.clone(),
                ..request
            };
            let again = convert::register_checker(again, &config()).expect("a normalized endpoint");
            prop_assert_eq!(again.endpoint, registration.endpoint);
        }
        Err(error) => {
            assert_refusal(error);
        }
    }
    Ok(())
}

/// Every consumer and admin request that is validated without configuration.
fn check_plain_requests(
    receive: ReceiveRequest,
    ack: AckRequest,
    reject: RejectRequest,
    list_messages: ListMessagesRequest,
    list_deliveries: ListDeliveriesRequest,
    redrive: RedriveRequest,
    resolve: ResolveRequest,
) -> Result<(), TestCaseError> {
    match convert::receive(receive.clone(), RECEIVE_CEILING) {
        Ok(params) => {
            prop_assert_eq!(params.subscription.as_str(), receive.subscription.as_str());
            prop_assert!((1..=1000).contains(&params.batch.messages));
            prop_assert!((1..=u64::from(RECEIVE_CEILING)).contains(&params.batch.bytes));
        }
        Err(error) => drop(assert_refusal(error)),
    }
    match convert::ack(ack) {
        Ok(params) => {
            if let Err(error) = params.check_owner() {
                assert_refusal(error);
            }
        }
        Err(error) => drop(assert_refusal(error)),
    }
    match convert::reject(reject.clone()) {
        Ok(params) => {
            prop_assert_eq!(&params.reason, &reject.reason);
            prop_assert!(params.reason.len() <= 1024 && !params.reason.contains('\0'));
        }
        Err(error) => drop(assert_refusal(error)),
    }
    match convert::list_messages(list_messages) {
        Ok(query) => prop_assert!((1..=1000).contains(&query.page_size)),
        Err(error) => drop(assert_refusal(error)),
    }
    match convert::list_deliveries(list_deliveries) {
        Ok(query) => prop_assert!((1..=1000).contains(&query.page_size)),
        Err(error) => drop(assert_refusal(error)),
    }
    match convert::redrive(redrive.clone()) {
        Ok(params) => {
            let ids: Vec<String> = params
                .chosen
                .message_ids
                .iter()
                .map(ToString::to_string)
                .collect();
            prop_assert_eq!(ids.len(), redrive.message_ids.len());
        }
        Err(error) => drop(assert_refusal(error)),
    }
    if let Err(error) = convert::resolve(resolve) {
        assert_refusal(error);
    }
    Ok(())
}

proptest! {
    #[test]
    fn prepare_and_publish(request in prepare()) {
        let publish = PublishRequest {
            producer: request.producer.clone(),
            topic: request.topic.clone(),
            key: request.key.clone(),
            payload: request.payload.clone(),
            headers: request.headers.clone(),
            deliver_after: request.deliver_after,
            ..Default::default()
        };
        check_new_message(request.into(), false)?;
        check_new_message(publish.into(), true)?;
    }

    #[test]
    fn subscriptions(value in subscription()) {
        check_subscription(value)?;
    }

    #[test]
    fn checker_registrations(producer in text(), endpoint in endpoint(), timeout in proto_duration()) {
        check_register_checker(RegisterCheckerRequest { producer, endpoint, timeout, ..Default::default() })?;
    }

    #[test]
    fn consumer_and_admin_requests(
        subscription in text(),
        max_messages in prop_oneof![0u32..1100, any::<u32>()],
        wait in proto_duration(),
        receipts in prop::collection::vec(prop_oneof![receipt_text(), text()], 0..4),
        reason in prop_oneof![text(), "\\PC{1000,1100}"],
        enums in (any::<i32>(), -1i32..8, any::<u32>(), -1i32..6),
        page_token in prop_oneof![text(), uuid_text()],
        message_ids in prop::collection::vec(prop_oneof![uuid_text(), text()], 0..4),
        message in message_ref(),
    ) {
        let (state, outcome, page_size, decision) = enums;
        let receipt = receipts.first().cloned().unwrap_or_default();
        check_plain_requests(
            ReceiveRequest { subscription: subscription.clone(), max_messages, wait, ..Default::default() },
            AckRequest { subscription: subscription.clone(), receipts, ..Default::default() },
            RejectRequest { subscription: subscription.clone(), receipt, reason, ..Default::default() },
            ListMessagesRequest {
                topic: subscription.clone(),
                producer: page_token.clone(),
                state,
                outcome,
                page_size,
                page_token: page_token.clone(),
                ..Default::default()
            },
            ListDeliveriesRequest { subscription: subscription.clone(), state: outcome, page_size, page_token, ..Default::default() },
            RedriveRequest { subscription, message_ids, ..Default::default() },
            ResolveRequest { message, decision, ..Default::default() },
        )?;
    }

    #[test]
    fn producer_requests_from_the_wire(
        prepare in wire(prepare()),
        subscription in wire(subscription().prop_map(Option::unwrap_or_default)),
    ) {
        if let Ok(request) = PrepareRequest::decode(prepare.as_slice()) {
            check_new_message(request.into(), false)?;
        }
        if let Ok(request) = PublishRequest::decode(prepare.as_slice()) {
            check_new_message(request.into(), true)?;
        }
        if let Ok(request) = RegisterCheckerRequest::decode(prepare.as_slice()) {
            check_register_checker(request)?;
        }
        if let Ok(value) = Subscription::decode(subscription.as_slice()) {
            check_subscription(Some(value))?;
        }
    }

    #[test]
    fn consumer_and_admin_requests_from_the_wire(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        // Each request that decodes is checked; one that does not goes in as its default.
        let receive = ReceiveRequest::decode(bytes.as_slice()).unwrap_or_default();
        let ack = AckRequest::decode(bytes.as_slice()).unwrap_or_default();
        let reject = RejectRequest::decode(bytes.as_slice()).unwrap_or_default();
        let list_messages = ListMessagesRequest::decode(bytes.as_slice()).unwrap_or_default();
        let list_deliveries = ListDeliveriesRequest::decode(bytes.as_slice()).unwrap_or_default();
        let redrive = RedriveRequest::decode(bytes.as_slice()).unwrap_or_default();
        let resolve = ResolveRequest::decode(bytes.as_slice()).unwrap_or_default();
        check_plain_requests(receive, ack, reject, list_messages, list_deliveries, redrive, resolve)?;
    }
}
