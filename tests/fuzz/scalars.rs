//! Names, keys, message ids, receipts and durations, each against an oracle written here from
//! the contract (the proto comments), not from the code under test.

use std::time::Duration;

use courier::convert;
use courier::domain::MessageRef;
use courier::proto::message_ref::Ref;
use courier::proto::{
    AckRequest, ExtendLeaseRequest, MessageRef as ProtoRef, NackRequest, ProducerKey,
    ReceiveRequest,
};
use proptest::prelude::*;

use crate::{assert_refusal, receipt_text, text, uuid_text};

/// `[A-Za-z0-9._-]{1,128}`.
fn is_name(value: &str) -> bool {
    (1..=128).contains(&value.len())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// 1 to 256 bytes of UTF-8 without U+0000.
fn is_key(value: &str) -> bool {
    (1..=256).contains(&value.len()) && !value.contains('\0')
}

/// A `google.protobuf.Duration` its specification allows, as a non-negative `Duration`:
/// nanos within ±999,999,999 and of the sign of seconds.
fn valid_duration(value: &prost_types::Duration) -> Option<Duration> {
    let nanos_ok = value.nanos.unsigned_abs() < 1_000_000_000;
    let signs_agree =
        value.seconds == 0 || value.nanos == 0 || (value.seconds > 0) == (value.nanos > 0);
    (nanos_ok && signs_agree && value.seconds >= 0 && value.nanos >= 0)
        .then(|| Duration::new(value.seconds as u64, value.nanos as u32))
}

/// Durations as clients send them: unset, anything, near the allowed ranges, and malformed.
pub fn proto_duration() -> impl Strategy<Value = Option<prost_types::Duration>> {
    let duration = |(seconds, nanos)| prost_types::Duration { seconds, nanos };
    prop_oneof![
        Just(None),
        (any::<i64>(), any::<i32>())
            .prop_map(duration)
            .prop_map(Some),
        (-2i64..50_000, -1_000_000_001i32..=1_000_000_001)
            .prop_map(duration)
            .prop_map(Some),
        (0i64..40, 0i32..1_000_000_000)
            .prop_map(duration)
            .prop_map(Some),
    ]
}

fn by_key(producer: String, key: String) -> Option<ProtoRef> {
    Some(ProtoRef {
        r#ref: Some(Ref::ProducerKey(ProducerKey { producer, key })),
    })
}

proptest! {
    #[test]
    fn names_are_accepted_exactly_when_the_contract_allows(value in text()) {
        match convert::name("topic", &value) {
            Ok(name) => {
                prop_assert!(is_name(&value), "{value:?} accepted");
                prop_assert_eq!(name.as_str(), value.as_str());
            }
            Err(error) => {
                prop_assert!(!is_name(&value), "{value:?} refused");
                prop_assert_eq!(assert_refusal(error), vec!["topic".to_owned()]);
            }
        }
    }

    #[test]
    fn producer_keys_are_accepted_exactly_when_the_contract_allows(
        producer in prop_oneof!["[a-z]{1,8}", text()],
        key in prop_oneof![text(), "\\PC{200,300}", Just("a\0b".to_owned())],
    ) {
        match convert::message_ref(by_key(producer.clone(), key.clone())) {
            Ok(MessageRef::ProducerKey { producer: parsed_producer, key: parsed_key }) => {
                prop_assert!(is_name(&producer) && is_key(&key));
                prop_assert_eq!(parsed_producer.as_str(), producer.as_str());
                prop_assert_eq!(parsed_key.as_str(), key.as_str());
            }
            Ok(other) => prop_assert!(false, "a producer key parsed as {other:?}"),
            Err(error) => {
                prop_assert!(!(is_name(&producer) && is_key(&key)));
                assert_refusal(error);
            }
        }
    }

    #[test]
    fn message_ids_round_trip(value in prop_oneof![text(), uuid_text()]) {
        let request = Some(ProtoRef { r#ref: Some(Ref::MessageId(value.clone())) });
        match convert::message_ref(request) {
            Ok(MessageRef::Id(id)) => {
                prop_assert!(uuid::Uuid::try_parse(&value).is_ok());
                let again = Some(ProtoRef { r#ref: Some(Ref::MessageId(id.to_string())) });
                prop_assert_eq!(convert::message_ref(again).ok(), Some(MessageRef::Id(id)));
            }
            Ok(other) => prop_assert!(false, "a message id parsed as {other:?}"),
            Err(error) => {
                prop_assert!(uuid::Uuid::try_parse(&value).is_err());
                assert_refusal(error);
            }
        }
    }

    #[test]
    fn receipts_round_trip(receipts in prop::collection::vec(prop_oneof![receipt_text(), text()], 0..5)) {
        let request = AckRequest { subscription: "billing".into(), receipts: receipts.clone() };
        match convert::ack(request) {
            Ok(params) => {
                prop_assert_eq!(params.receipts.len(), receipts.len());
                // Written back as the server answers them, they parse to the same receipts.
                let written: Vec<String> = params.receipts.iter().map(ToString::to_string).collect();
                let again = convert::ack(AckRequest { subscription: "billing".into(), receipts: written })
                    .expect("a receipt Courier wrote parses");
                prop_assert_eq!(again.receipts, params.receipts);
            }
            Err(error) => {
                for field in assert_refusal(error) {
                    prop_assert!(field == "receipts" || field.starts_with("receipts["), "{field}");
                }
            }
        }
    }

    #[test]
    fn receive_wait_follows_the_duration_specification(wait in proto_duration()) {
        let request = ReceiveRequest {
            subscription: "billing".into(),
            max_messages: 1,
            wait,
            max_bytes: 0,
        };
        let expected = match wait {
            None => Some(Duration::ZERO),
            Some(value) => valid_duration(&value).filter(|d| *d <= Duration::from_secs(30)),
        };
        match convert::receive(request, 4_000_000) {
            Ok(params) => prop_assert_eq!(Some(params.wait), expected, "{:?}", wait),
            Err(error) => {
                prop_assert_eq!(expected, None, "{:?} refused", wait);
                prop_assert_eq!(assert_refusal(error), vec!["wait".to_owned()]);
            }
        }
    }

    #[test]
    fn nack_delay_and_lease_extension_follow_the_duration_specification(
        value in proto_duration(),
        receipt in receipt_text(),
    ) {
        let twelve_hours = Duration::from_secs(12 * 3600);
        let valid = value.as_ref().and_then(valid_duration);
        let nack = convert::nack(NackRequest {
            subscription: "billing".into(),
            receipt: receipt.clone(),
            delay: value,
            reason: String::new(),
        });
        match nack {
            Ok(params) => {
                prop_assert_eq!(params.delay, valid.filter(|d| *d <= twelve_hours));
                prop_assert!(value.is_none() || params.delay.is_some());
            }
            Err(error) => {
                assert_refusal(error);
            }
        }
        let extend = convert::extend_lease(ExtendLeaseRequest {
            subscription: "billing".into(),
            receipt,
            extension: value,
        });
        match extend {
            Ok(params) => {
                let allowed = Duration::from_secs(1)..=twelve_hours;
                prop_assert!(valid.is_some_and(|d| allowed.contains(&d)));
                prop_assert_eq!(Some(params.extension), valid);
            }
            Err(error) => {
                assert_refusal(error);
            }
        }
    }
}
