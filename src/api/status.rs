//! The one table from Courier's errors to gRPC status codes (DESIGN.md, "Errors"). Clients see
//! codes and plain messages; internal causes go to the log only.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};
use tracing::{error, warn};

use crate::convert::RequestError;
use crate::store::StoreError;
use crate::telemetry::ErrorChain;

/// Maps a store error to the status a client sees. Exhaustive on purpose: a new variant must
/// be given a code here before it compiles.
pub fn store_status(error: StoreError) -> Status {
    match error {
        StoreError::NotFound(_) => Status::not_found(error.to_string()),
        StoreError::AlreadyExists(message) => Status::already_exists(message),
        // "message is CANCELLED": the client learns the state its call contradicts.
        StoreError::MessageConflict { .. } | StoreError::LeaseLost { .. } => {
            Status::failed_precondition(error.to_string())
        }
        StoreError::FailedPrecondition(message) => Status::failed_precondition(message),
        StoreError::Unavailable(_) => {
            warn!(error = %ErrorChain(&error), "store unavailable");
            Status::unavailable("the store is unavailable; retry later")
        }
        // Only opening a store answers it; reaching a client would be a bug.
        StoreError::InvalidConfig(_) | StoreError::Internal(_) => {
            error!(error = %ErrorChain(&error), "internal error");
            Status::internal("internal error")
        }
    }
}

impl From<StoreError> for Status {
    fn from(error: StoreError) -> Self {
        store_status(error)
    }
}

/// INVALID_ARGUMENT with every field violation in a `BadRequest` detail, or
/// RESOURCE_EXHAUSTED with every exceeded limit in a `QuotaFailure` detail.
pub fn request_status(error: RequestError) -> Status {
    match error {
        RequestError::Invalid(violations) => {
            let message = if violations.is_empty() {
                "invalid request".to_owned()
            } else {
                join(violations.iter().map(ToString::to_string))
            };
            let details = ErrorDetails::with_bad_request(
                violations
                    .into_iter()
                    .map(|v| tonic_types::FieldViolation::new(v.field, v.description))
                    .collect::<Vec<_>>(),
            );
            Status::with_error_details(Code::InvalidArgument, message, details)
        }
        RequestError::OverLimit(violations) => {
            let message = join(violations.iter().map(|v| v.description.clone()));
            let details = ErrorDetails::with_quota_failure(
                violations
                    .into_iter()
                    .map(|v| tonic_types::QuotaViolation::new(v.limit, v.description))
                    .collect::<Vec<_>>(),
            );
            Status::with_error_details(Code::ResourceExhausted, message, details)
        }
    }
}

impl From<RequestError> for Status {
    fn from(error: RequestError) -> Self {
        request_status(error)
    }
}

fn join(parts: impl Iterator<Item = String>) -> String {
    parts.collect::<Vec<_>>().join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::LimitViolation;
    use crate::domain::{DeliveryState, FieldViolation, MessageState};

    #[test]
    fn store_errors_map_to_the_design_codes() {
        let cases = [
            (StoreError::NotFound("message x".into()), Code::NotFound),
            (StoreError::AlreadyExists("key".into()), Code::AlreadyExists),
            (
                StoreError::LeaseLost {
                    current: DeliveryState::Leased,
                },
                Code::FailedPrecondition,
            ),
            (
                StoreError::FailedPrecondition("no".into()),
                Code::FailedPrecondition,
            ),
            (
                StoreError::from(sqlx::Error::PoolTimedOut),
                Code::Unavailable,
            ),
            (StoreError::InvalidConfig("bad".into()), Code::Internal),
        ];
        for (error, code) in cases {
            assert_eq!(store_status(error).code(), code);
        }
    }

    #[test]
    fn conflicts_name_the_current_state() {
        let status = store_status(StoreError::MessageConflict {
            current: MessageState::Cancelled,
        });
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(status.message(), "message is CANCELLED");
    }

    #[test]
    fn internal_errors_hide_their_cause() {
        let cause = std::io::Error::other("secret sqlx text");
        let status = store_status(StoreError::internal(cause));
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(status.message(), "internal error");
    }

    #[test]
    fn request_errors_carry_details() {
        let status = request_status(RequestError::Invalid(vec![
            FieldViolation::new("producer", "is required"),
            FieldViolation::new("key", "is required"),
        ]));
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        let bad_request = details.bad_request().expect("bad request detail");
        assert_eq!(bad_request.field_violations.len(), 2);
        assert_eq!(bad_request.field_violations[1].field, "key");

        let status = request_status(RequestError::OverLimit(vec![LimitViolation {
            limit: "limits.max_payload_bytes",
            description: "payload is 2 bytes; limits.max_payload_bytes allows 1".into(),
        }]));
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert!(status.message().contains("limits.max_payload_bytes"));
    }
}
