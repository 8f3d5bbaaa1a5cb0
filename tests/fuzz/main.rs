//! Fuzzing of everything that parses outside input, on stable Rust under `cargo test`:
//! proptest generates inputs (arbitrary text and bytes, near-valid values, arbitrary proto
//! messages) and shrinks a failure to its smallest input, printed with the failure.
//!
//! - `scalars.rs`: names, keys, message ids, receipts, and `google.protobuf.Duration` fields;
//! - `requests.rs`: each request's validation (`courier::convert`), from generated
//!   messages and from arbitrary bytes decoded as protobuf;
//! - `config.rs`: configuration values from a TOML file and from `COURIER_*` variables;
//! - `trace_context.rs`: W3C `traceparent` and `tracestate` values.
//!
//! The invariants: nothing panics; a refusal is INVALID_ARGUMENT (or RESOURCE_EXHAUSTED for
//! a limit) with field violations in plain words, never Rust's Debug output; an accepted value
//! round-trips (written back out and parsed again, it is the same value).
//!
//! `cargo test --test fuzz` runs 256 cases per property (a few seconds in all).
//! `PROPTEST_CASES=1000000 cargo test --release --test fuzz` runs them for as long as asked.

mod config;
mod requests;
mod scalars;
mod trace_context;

use courier::convert::RequestError;
use proptest::prelude::*;
use tonic::{Code, Status};

/// Text that betrays Rust's Debug output (`Name("x")`, `Some(..)`, raw identifiers) in an
/// answer meant for people.
const DEBUG_MARKERS: [&str; 7] = ["(\"", "r#", "Some(", "None", "Ok(", "Err(", " { "];

/// Asserts `text` is a plain sentence: not empty, no Debug output.
#[track_caller]
pub fn assert_plain(text: &str) {
    assert!(!text.trim().is_empty(), "an empty description");
    for marker in DEBUG_MARKERS {
        assert!(
            !text.contains(marker),
            "{text:?} looks like Debug output ({marker:?})"
        );
    }
}

/// Asserts a refused request is INVALID_ARGUMENT with named fields, or RESOURCE_EXHAUSTED with
/// named limits, in plain words, and returns the fields named.
#[track_caller]
pub fn assert_refusal(error: RequestError) -> Vec<String> {
    let fields = match &error {
        RequestError::Invalid(violations) => {
            assert!(
                !violations.is_empty(),
                "INVALID_ARGUMENT without a violation"
            );
            for violation in violations {
                assert!(!violation.field.is_empty(), "a violation without a field");
                assert_plain(&violation.description);
            }
            violations.iter().map(|v| v.field.clone()).collect()
        }
        RequestError::OverLimit(violations) => {
            assert!(!violations.is_empty(), "RESOURCE_EXHAUSTED without a limit");
            for violation in violations {
                assert_plain(&violation.description);
            }
            Vec::new()
        }
    };
    let status = Status::from(error);
    assert!(
        matches!(
            status.code(),
            Code::InvalidArgument | Code::ResourceExhausted
        ),
        "{status:?}"
    );
    assert_plain(status.message());
    fields
}

/// Text as clients send it: anything at all, near-valid names and ids, and receipts.
pub fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[A-Za-z0-9._-]{0,130}",
        // Around the longest name allowed.
        "[A-Za-z0-9._-]{127,129}",
        "[ -~]{0,40}",
        Just(String::new()),
        uuid_text(),
        receipt_text(),
    ]
}

/// A UUID in its usual form.
pub fn uuid_text() -> impl Strategy<Value = String> {
    any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).to_string())
}

/// A receipt's shape, `<uuid>:<generation>:<subscription>`, with parts that may be wrong.
pub fn receipt_text() -> impl Strategy<Value = String> {
    (
        prop_oneof![uuid_text(), "[0-9a-f-]{0,40}"],
        prop_oneof![any::<u32>().prop_map(|n| n.to_string()), "[-+0-9a-z]{0,12}"],
        prop_oneof!["[A-Za-z0-9._-]{1,20}", any::<String>()],
    )
        .prop_map(|(id, generation, subscription)| format!("{id}:{generation}:{subscription}"))
}
