//! W3C trace context (`traceparent`, `tracestate`) against an oracle written here from the
//! specification's grammar, not from the parser under test.

use courier::domain::{
    MAX_TRACESTATE_BYTES, MAX_TRACESTATE_MEMBERS, TraceContext, TraceParent, TraceState,
};
use proptest::prelude::*;

/// Version 00: `00-` 32 lowercase hex `-` 16 lowercase hex `-` 2 lowercase hex, ids not all
/// zeros.
fn is_version_00(value: &str) -> bool {
    let hex = |part: &str, len: usize| {
        part.len() == len && part.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
    };
    let parts: Vec<&str> = value.split('-').collect();
    parts.len() == 4
        && parts[0] == "00"
        && hex(parts[1], 32)
        && hex(parts[2], 16)
        && hex(parts[3], 2)
        && parts[1].bytes().any(|c| c != b'0')
        && parts[2].bytes().any(|c| c != b'0')
}

/// Lowercase hex of `len` digits, sometimes all zeros, sometimes with a wrong character.
fn hex_part(len: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::string::string_regex(&format!("[0-9a-f]{{{len}}}")).unwrap(),
        1 => Just("0".repeat(len)),
        1 => proptest::string::string_regex(&format!("[0-9a-fA-Fg-]{{{}, {}}}", len - 1, len + 1))
            .unwrap(),
    ]
}

/// `traceparent`s as callers send them: near-valid ones and anything at all.
fn traceparent() -> impl Strategy<Value = String> {
    prop_oneof![
        (
            prop_oneof![Just("00".to_owned()), "[0-9a-f]{2}", "[ -~]{0,3}"],
            hex_part(32),
            hex_part(16),
            hex_part(2),
            prop_oneof![Just(String::new()), "-[ -~]{0,8}", "[ -~]{0,3}"],
        )
            .prop_map(|(v, trace, span, flags, tail)| format!("{v}-{trace}-{span}-{flags}{tail}")),
        any::<String>(),
        "[ -~]{0,60}",
    ]
}

/// A `tracestate` list member's shape, with keys and values that may be wrong.
fn tracestate() -> impl Strategy<Value = String> {
    let member = prop_oneof![
        (
            "[a-z][a-z0-9_*/-]{0,10}",
            "[a-zA-Z0-9_./:;!?+*~ -]{0,11}[a-z]"
        )
            .prop_map(|(k, v)| format!("{k}={v}")),
        ("[a-z0-9]{1,4}@[a-z]{1,4}", "[a-z0-9]{1,4}").prop_map(|(k, v)| format!("{k}={v}")),
        "[ -~]{0,12}",
    ];
    prop_oneof![
        proptest::collection::vec(member, 0..40).prop_map(|members| members.join(",")),
        any::<String>(),
    ]
}

proptest! {
    #[test]
    fn a_version_00_traceparent_is_accepted_exactly_when_valid(value in traceparent()) {
        let parsed = TraceParent::parse(&value);
        // Spaces and tabs around a header's value are not part of it (RFC 9110, 5.5).
        let value = value.trim_matches([' ', '\t']);
        if is_version_00(value) {
            let parsed = parsed.expect("a valid version 00 traceparent");
            prop_assert_eq!(parsed.to_string(), value);
        } else if let Ok(parsed) = parsed {
            // Only a later version (not ff) with more fields, read by its first four.
            prop_assert!(!value.starts_with("00") && !value.starts_with("ff"), "{value:?}");
            prop_assert!(value.len() >= 55);
            prop_assert!(is_version_00(&parsed.to_string()));
        }
    }

    #[test]
    fn an_accepted_tracestate_is_bounded_and_round_trips(value in tracestate()) {
        if let Ok(Some(state)) = TraceState::parse(&value) {
            prop_assert!(state.as_str().len() <= MAX_TRACESTATE_BYTES);
            prop_assert!(state.as_str().split(',').count() <= MAX_TRACESTATE_MEMBERS);
            let again = TraceState::parse(state.as_str()).unwrap().unwrap();
            prop_assert_eq!(again, state);
        }
    }

    #[test]
    fn headers_never_fail_the_call(parents in proptest::collection::vec(traceparent(), 0..3),
                                   states in proptest::collection::vec(tracestate(), 0..3)) {
        let (context, problem) = TraceContext::from_headers(
            parents.iter().map(String::as_str),
            states.iter().map(String::as_str),
        );
        if parents.len() != 1 {
            prop_assert!(context.is_none());
        }
        if let Some(context) = context {
            let stored = TraceContext::from_stored(
                &context.parent.to_string(),
                context.state.as_ref().map(TraceState::as_str),
            );
            prop_assert_eq!(stored.unwrap(), context);
        } else if !parents.is_empty() {
            prop_assert!(problem.is_some());
        }
    }
}
