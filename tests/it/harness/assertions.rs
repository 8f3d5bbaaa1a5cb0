//! Assertions on error answers: the code, the field violations, the state named.

use tonic::{Code, Status};
use tonic_types::StatusExt;

/// Asserts the call failed with `code` and returns the status.
#[track_caller]
pub fn assert_code<T: std::fmt::Debug>(result: Result<T, Status>, code: Code) -> Status {
    match result {
        Ok(value) => panic!("expected {code:?}, got Ok({value:?})"),
        Err(status) => {
            assert_eq!(status.code(), code, "unexpected status: {status:?}");
            status
        }
    }
}

/// Asserts INVALID_ARGUMENT whose details carry a field violation naming `field` (the path may
/// be qualified, e.g. `subscription.ack_deadline` for `ack_deadline`).
#[track_caller]
pub fn assert_invalid_field<T: std::fmt::Debug>(result: Result<T, Status>, field: &str) -> Status {
    let status = assert_code(result, Code::InvalidArgument);
    let details = status.get_error_details();
    let violations = details
        .bad_request()
        .map(|bad_request| bad_request.field_violations.clone())
        .unwrap_or_default();
    assert!(
        violations.iter().any(|v| names_field(&v.field, field)),
        "expected a field violation for {field:?}, got {violations:?} ({status:?})"
    );
    status
}

fn names_field(path: &str, field: &str) -> bool {
    path == field
        || path.ends_with(&format!(".{field}"))
        || path.starts_with(&format!("{field}["))
        || path.starts_with(&format!("{field}."))
        || path.contains(&format!(".{field}["))
}

/// Asserts FAILED_PRECONDITION whose message names `state` (in any letter case).
#[track_caller]
pub fn assert_precondition_names<T: std::fmt::Debug>(
    result: Result<T, Status>,
    state: &str,
) -> Status {
    let status = assert_code(result, Code::FailedPrecondition);
    assert!(
        status
            .message()
            .to_lowercase()
            .contains(&state.to_lowercase()),
        "the error should name the current state {state}: {:?}",
        status.message()
    );
    status
}
