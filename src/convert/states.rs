//! The state enums both ways: domain states into proto, proto filters and decisions into the
//! domain (UNSPECIFIED means "any" in a filter).

use crate::domain::{
    self, DeadHeadPolicy, DeliveryState, FieldViolation, MessageOutcome, MessageState,
};
use crate::proto;

pub fn message_state(state: MessageState) -> proto::MessageState {
    match state {
        MessageState::Prepared => proto::MessageState::Prepared,
        MessageState::Confirmed => proto::MessageState::Confirmed,
        MessageState::Cancelled => proto::MessageState::Cancelled,
        MessageState::Unresolved => proto::MessageState::Unresolved,
    }
}

pub(super) fn message_outcome(outcome: MessageOutcome) -> proto::MessageOutcome {
    match outcome {
        MessageOutcome::Prepared => proto::MessageOutcome::Prepared,
        MessageOutcome::Cancelled => proto::MessageOutcome::Cancelled,
        MessageOutcome::Unresolved => proto::MessageOutcome::Unresolved,
        MessageOutcome::Delivering => proto::MessageOutcome::Delivering,
        MessageOutcome::Delivered => proto::MessageOutcome::Delivered,
        MessageOutcome::DeadLettered => proto::MessageOutcome::DeadLettered,
    }
}

pub(super) fn delivery_state(state: DeliveryState) -> proto::DeliveryState {
    match state {
        DeliveryState::Pending => proto::DeliveryState::Pending,
        DeliveryState::Leased => proto::DeliveryState::Leased,
        DeliveryState::Acked => proto::DeliveryState::Acked,
        DeliveryState::Dead => proto::DeliveryState::Dead,
        DeliveryState::Discarded => proto::DeliveryState::Discarded,
    }
}

pub(super) fn dead_head(policy: DeadHeadPolicy) -> proto::DeadHead {
    match policy {
        DeadHeadPolicy::Block => proto::DeadHead::Block,
        DeadHeadPolicy::Skip => proto::DeadHead::Skip,
    }
}

/// A dead-head policy: UNSPECIFIED means the default, BLOCK.
pub(super) fn dead_head_policy(field: &str, value: i32) -> Result<DeadHeadPolicy, FieldViolation> {
    match proto::DeadHead::try_from(value).map_err(|_| unknown_enum(field, value))? {
        proto::DeadHead::Unspecified | proto::DeadHead::Block => Ok(DeadHeadPolicy::Block),
        proto::DeadHead::Skip => Ok(DeadHeadPolicy::Skip),
    }
}

pub(super) fn ack_status(status: domain::AckStatus) -> proto::AckStatus {
    match status {
        domain::AckStatus::Ok => proto::AckStatus::Ok,
        domain::AckStatus::LeaseLost => proto::AckStatus::LeaseLost,
        domain::AckStatus::NotFound => proto::AckStatus::NotFound,
    }
}

fn unknown_enum(field: &str, value: i32) -> FieldViolation {
    FieldViolation::new(field, format!("{value} is not a known value"))
}

/// A state filter: UNSPECIFIED means "any".
pub(super) fn message_state_filter(
    field: &str,
    value: i32,
) -> Result<Option<MessageState>, FieldViolation> {
    match proto::MessageState::try_from(value).map_err(|_| unknown_enum(field, value))? {
        proto::MessageState::Unspecified => Ok(None),
        proto::MessageState::Prepared => Ok(Some(MessageState::Prepared)),
        proto::MessageState::Confirmed => Ok(Some(MessageState::Confirmed)),
        proto::MessageState::Cancelled => Ok(Some(MessageState::Cancelled)),
        proto::MessageState::Unresolved => Ok(Some(MessageState::Unresolved)),
    }
}

pub(super) fn message_outcome_filter(
    field: &str,
    value: i32,
) -> Result<Option<MessageOutcome>, FieldViolation> {
    let outcome =
        match proto::MessageOutcome::try_from(value).map_err(|_| unknown_enum(field, value))? {
            proto::MessageOutcome::Unspecified => return Ok(None),
            proto::MessageOutcome::Prepared => MessageOutcome::Prepared,
            proto::MessageOutcome::Cancelled => MessageOutcome::Cancelled,
            proto::MessageOutcome::Unresolved => MessageOutcome::Unresolved,
            proto::MessageOutcome::Delivering => MessageOutcome::Delivering,
            proto::MessageOutcome::Delivered => MessageOutcome::Delivered,
            proto::MessageOutcome::DeadLettered => MessageOutcome::DeadLettered,
        };
    Ok(Some(outcome))
}

pub(super) fn delivery_state_filter(
    field: &str,
    value: i32,
) -> Result<Option<DeliveryState>, FieldViolation> {
    match proto::DeliveryState::try_from(value).map_err(|_| unknown_enum(field, value))? {
        proto::DeliveryState::Unspecified => Ok(None),
        proto::DeliveryState::Pending => Ok(Some(DeliveryState::Pending)),
        proto::DeliveryState::Leased => Ok(Some(DeliveryState::Leased)),
        proto::DeliveryState::Acked => Ok(Some(DeliveryState::Acked)),
        proto::DeliveryState::Dead => Ok(Some(DeliveryState::Dead)),
        proto::DeliveryState::Discarded => Ok(Some(DeliveryState::Discarded)),
    }
}

/// An operator's decision: only COMMIT and ROLLBACK decide anything.
pub(super) fn decision(field: &str, value: i32) -> Result<domain::Decision, FieldViolation> {
    match proto::Decision::try_from(value).map_err(|_| unknown_enum(field, value))? {
        proto::Decision::Commit => Ok(domain::Decision::Commit),
        proto::Decision::Rollback => Ok(domain::Decision::Rollback),
        proto::Decision::Unspecified | proto::Decision::Unknown => Err(FieldViolation::new(
            field,
            "must be DECISION_COMMIT or DECISION_ROLLBACK",
        )),
    }
}
