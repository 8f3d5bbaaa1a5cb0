//! The operator's reads and repairs: message and delivery listings with their pages, Redrive,
//! Resolve and the stats.

use crate::domain::{
    self, FieldViolation, MessageId, MessageKey, MessageRecord, MessageRef, Name, OrderingKey,
};
use crate::proto;
use crate::store::{DeadLetters, DeliveryQuery, MessageQuery, Page, Stats};

use super::checks::{Checks, RequestError};
use super::durations::{optional_time, proto_duration};
use super::messages::{delivery_status, message};
use super::scalars::{message_id, message_ref_in, optional_name};
use super::states::{
    decision, delivery_state_filter, message_outcome_filter, message_state_filter,
};

const DEFAULT_PAGE_SIZE: u32 = 100;
const MAX_PAGE_SIZE: u32 = 1000;

/// A page token is the id of the last item of the previous page; empty means the first page.
fn page_token(field: &str, value: &str) -> Result<Option<MessageId>, FieldViolation> {
    if value.is_empty() {
        return Ok(None);
    }
    MessageId::parse(value)
        .map(Some)
        .map_err(|_| FieldViolation::new(field, "is not a page token from a previous response"))
}

fn next_page_token(next: Option<MessageId>) -> String {
    next.map(|id| id.to_string()).unwrap_or_default()
}

fn page_size(field: &str, value: u32) -> Result<u32, FieldViolation> {
    match value {
        0 => Ok(DEFAULT_PAGE_SIZE),
        1..=MAX_PAGE_SIZE => Ok(value),
        _ => Err(FieldViolation::new(
            field,
            format!("is {value}; at most {MAX_PAGE_SIZE} are allowed"),
        )),
    }
}

pub fn topic_filter(value: &str) -> Result<Option<Name>, RequestError> {
    optional_name("topic", value).map_err(|violation| RequestError::Invalid(vec![violation]))
}

pub fn list_messages(request: proto::ListMessagesRequest) -> Result<MessageQuery, RequestError> {
    let mut checks = Checks::default();
    let topic = checks.take(optional_name("topic", &request.topic));
    let producer = checks.take(optional_name("producer", &request.producer));
    let state = checks.take(message_state_filter("state", request.state));
    let outcome = checks.take(message_outcome_filter("outcome", request.outcome));
    let page_size = checks.take(page_size("page_size", request.page_size));
    let before = checks.take(page_token("page_token", &request.page_token));
    let (Some(topic), Some(producer), Some(state), Some(outcome), Some(page_size), Some(before)) =
        (topic, producer, state, outcome, page_size, before)
    else {
        return Err(checks.into_error());
    };
    checks.finish()?;
    Ok(MessageQuery {
        topic,
        producer,
        state,
        outcome,
        page_size,
        before,
        ..MessageQuery::default()
    })
}

pub fn list_messages_response(page: Page<MessageRecord>) -> proto::ListMessagesResponse {
    proto::ListMessagesResponse {
        messages: page.items.into_iter().map(message).collect(),
        next_page_token: next_page_token(page.next),
    }
}

pub fn list_deliveries(
    request: proto::ListDeliveriesRequest,
) -> Result<DeliveryQuery, RequestError> {
    let mut checks = Checks::default();
    let subscription = checks.take(Name::parse("subscription", &request.subscription));
    let state = checks.take(delivery_state_filter("state", request.state));
    let page_size = checks.take(page_size("page_size", request.page_size));
    let after = checks.take(page_token("page_token", &request.page_token));
    let (Some(subscription), Some(state), Some(page_size), Some(after)) =
        (subscription, state, page_size, after)
    else {
        return Err(checks.into_error());
    };
    checks.finish()?;
    Ok(DeliveryQuery {
        subscription,
        state,
        blocking_only: request.blocking_only,
        page_size,
        after,
    })
}

pub fn list_deliveries_response(
    page: Page<domain::DeliveryStatus>,
) -> proto::ListDeliveriesResponse {
    proto::ListDeliveriesResponse {
        deliveries: page.items.into_iter().map(delivery_status).collect(),
        next_page_token: next_page_token(page.next),
    }
}

/// Longest `error_contains` a dead-letter filter takes (`last_error` texts are clipped
/// shorter than this).
const MAX_ERROR_FILTER_BYTES: usize = 1024;
/// Fastest pace a Redrive takes, in messages per second.
const MAX_REDRIVE_RATE: f64 = 100_000.0;

/// What a Redrive or DiscardDeadLetters asks for: the dead letters it chooses, whether it only
/// counts them, and (Redrive) the pace in messages per second, 0 for all at once.
#[derive(Debug)]
pub struct DeadLetterAction {
    pub chosen: DeadLetters,
    pub dry_run: bool,
    pub rate: f64,
}

pub fn redrive(request: proto::RedriveRequest) -> Result<DeadLetterAction, RequestError> {
    let mut checks = Checks::default();
    let chosen = dead_letters(
        &mut checks,
        &request.subscription,
        &request.message_ids,
        request.filter,
    );
    let rate = checks.take(redrive_rate("rate", request.rate));
    let (Some(chosen), Some(rate)) = (chosen, rate) else {
        return Err(checks.into_error());
    };
    checks.finish()?;
    Ok(DeadLetterAction {
        chosen,
        dry_run: request.dry_run,
        rate,
    })
}

pub fn discard_dead_letters(
    request: proto::DiscardDeadLettersRequest,
) -> Result<DeadLetterAction, RequestError> {
    let mut checks = Checks::default();
    let chosen = dead_letters(
        &mut checks,
        &request.subscription,
        &request.message_ids,
        request.filter,
    );
    let Some(chosen) = chosen else {
        return Err(checks.into_error());
    };
    checks.finish()?;
    Ok(DeadLetterAction {
        chosen,
        dry_run: request.dry_run,
        rate: 0.0,
    })
}

/// A Redrive's pace: finite, 0 to [`MAX_REDRIVE_RATE`] messages per second.
pub fn redrive_rate(field: &str, rate: f64) -> Result<f64, FieldViolation> {
    if !rate.is_finite() || !(0.0..=MAX_REDRIVE_RATE).contains(&rate) {
        return Err(FieldViolation::new(
            field,
            format!(
                "is {rate}; give messages per second from 0 (all at once) to {MAX_REDRIVE_RATE}"
            ),
        ));
    }
    Ok(rate)
}

fn dead_letters(
    checks: &mut Checks,
    subscription: &str,
    message_ids: &[String],
    filter: Option<proto::DeadLetterFilter>,
) -> Option<DeadLetters> {
    let subscription = checks.take(Name::parse("subscription", subscription));
    let message_ids: Option<Vec<MessageId>> = message_ids
        .iter()
        .enumerate()
        .map(|(index, id)| checks.take(message_id(&format!("message_ids[{index}]"), id)))
        .collect::<Vec<_>>()
        .into_iter()
        .collect();
    let filter = filter.unwrap_or_default();
    let error_contains = checks.take(error_filter(
        "filter.error_contains",
        &filter.error_contains,
    ));
    let dead_from = checks.take(optional_time("filter.dead_after", filter.dead_after));
    let dead_until = checks.take(optional_time("filter.dead_before", filter.dead_before));
    if let (Some(Some(from)), Some(Some(until))) = (dead_from, dead_until)
        && until <= from
    {
        checks.field("filter.dead_before", "must be after filter.dead_after");
    }
    let key = match filter.key.as_str() {
        "" => Some(None),
        key => checks.take(MessageKey::parse("filter.key", key).map(Some)),
    };
    let ordering_key = match filter.ordering_key.as_str() {
        "" => Some(None),
        key => checks.take(OrderingKey::parse("filter.ordering_key", key).map(Some)),
    };
    Some(DeadLetters {
        subscription: subscription?,
        message_ids: message_ids?,
        error_contains: error_contains?,
        dead_from: dead_from?,
        dead_until: dead_until?,
        key: key?,
        ordering_key: ordering_key?,
    })
}

/// Text to find in dead letters' last errors: empty for none.
pub fn error_filter(field: &str, value: &str) -> Result<Option<String>, FieldViolation> {
    if value.len() > MAX_ERROR_FILTER_BYTES {
        return Err(FieldViolation::new(
            field,
            format!(
                "is {} bytes; at most {MAX_ERROR_FILTER_BYTES} are allowed",
                value.len()
            ),
        ));
    }
    if value.contains('\0') {
        return Err(FieldViolation::new(field, "must not contain U+0000"));
    }
    Ok((!value.is_empty()).then(|| value.to_owned()))
}

pub fn resolve(
    request: proto::ResolveRequest,
) -> Result<(MessageRef, domain::Decision), RequestError> {
    let mut checks = Checks::default();
    let message = message_ref_in(&mut checks, "message", request.message);
    let decision = checks.take(decision("decision", request.decision));
    let (Some(message), Some(decision)) = (message, decision) else {
        return Err(checks.into_error());
    };
    checks.finish()?;
    Ok((message, decision))
}

pub fn stats(stats: Stats) -> proto::GetStatsResponse {
    let topics = stats
        .topics
        .into_iter()
        .map(|topic| proto::TopicStats {
            topic: topic.topic,
            prepared: topic.prepared,
            confirmed: topic.confirmed,
            cancelled: topic.cancelled,
            unresolved: topic.unresolved,
            unrouted: topic.unrouted,
        })
        .collect();
    let subscriptions = stats
        .subscriptions
        .into_iter()
        .map(|subscription| proto::SubscriptionStats {
            subscription: subscription.subscription,
            topic: subscription.topic,
            pending: subscription.pending,
            leased: subscription.leased,
            acked: subscription.acked,
            dead: subscription.dead,
            oldest_pending_age: subscription.oldest_pending_age.map(proto_duration),
            discarded: subscription.discarded,
            blocked_lanes: subscription.blocked_lanes,
        })
        .collect();
    proto::GetStatsResponse {
        topics,
        subscriptions,
        unrouted_confirms: stats.unrouted_confirms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::test_support::fields;

    #[test]
    fn page_tokens_and_filters() {
        let query = list_messages(proto::ListMessagesRequest::default()).unwrap();
        assert_eq!(query.page_size, 100);
        assert!(query.topic.is_none() && query.state.is_none() && query.before.is_none());
        let error = list_messages(proto::ListMessagesRequest {
            page_token: "bogus".into(),
            page_size: 5000,
            state: 42,
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(fields(error), ["state", "page_size", "page_token"]);
    }

    #[test]
    fn resolve_needs_a_real_decision() {
        let request = proto::ResolveRequest {
            message: Some(proto::MessageRef {
                r#ref: Some(proto::message_ref::Ref::MessageId(
                    MessageId::new().to_string(),
                )),
            }),
            decision: proto::Decision::Unknown.into(),
        };
        assert_eq!(fields(resolve(request).unwrap_err()), ["decision"]);
    }
}
