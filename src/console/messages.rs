//! Messages: find one by id or producer key, or list them by topic, producer, state, outcome
//! and creation time, newest first, a page at a time.

use http::{Response, StatusCode};
use http_body_util::Full;
use hyper::body::Bytes;
use maud::{Markup, html};

use super::{Call, ErrorPage, Pages, Problems, layout, see_other};
use crate::domain::{
    FieldViolation, MessageId, MessageKey, MessageOutcome, MessageRecord, MessageRef, MessageState,
    Name, Timestamp,
};
use crate::store::MessageQuery;

const PAGE_SIZE: u32 = 50;

/// Outcomes as the filter names them.
pub const OUTCOMES: [(&str, MessageOutcome); 6] = [
    ("PREPARED", MessageOutcome::Prepared),
    ("CANCELLED", MessageOutcome::Cancelled),
    ("UNRESOLVED", MessageOutcome::Unresolved),
    ("DELIVERING", MessageOutcome::Delivering),
    ("DELIVERED", MessageOutcome::Delivered),
    ("DEAD_LETTERED", MessageOutcome::DeadLettered),
];

pub fn outcome_name(outcome: MessageOutcome) -> &'static str {
    OUTCOMES
        .iter()
        .find(|(_, o)| *o == outcome)
        .map_or("", |(name, _)| name)
}

pub async fn page(pages: &Pages<'_>, call: &Call) -> Result<Response<Full<Bytes>>, ErrorPage> {
    // A search for one message goes straight to it.
    if let Some(id) = call.param("id") {
        let id = MessageId::parse(id).map_err(|_| {
            ErrorPage::invalid(&[FieldViolation::new("id", "is not a message id (a UUID)")])
        })?;
        pages.store.get_message(&MessageRef::Id(id)).await?;
        return Ok(see_other(&format!("/messages/{id}")));
    }
    let query = query(call)?;
    if let (Some(producer), Some(key)) = (&query.producer, &query.key) {
        let found = MessageRef::ProducerKey {
            producer: producer.clone(),
            key: key.clone(),
        };
        let record = pages.store.get_message(&found).await?;
        return Ok(see_other(&format!("/messages/{}", record.id)));
    }
    let found = pages.store.list_messages(query).await?;
    let now = Timestamp::now();
    let next = found.next.map(|cursor| {
        let mut pairs: Vec<(String, String)> = call
            .query
            .iter()
            .filter(|(k, _)| k != "before")
            .cloned()
            .collect();
        pairs.push(("before".into(), cursor.to_string()));
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        format!("/messages?{query}")
    });
    let body = html! {
        (filters(call))
        @if found.items.is_empty() {
            (layout::empty("No message matches these filters. Widen the time range or clear a filter."))
        } @else {
            (table(&found.items, now))
        }
        @if let Some(next) = next { p { a href=(next) { "Older messages →" } } }
    };
    Ok(layout::page(
        "Messages",
        "/messages",
        pages.viewer,
        &pages.csrf,
        None,
        body,
    ))
}

/// The listing's filters from the query string; a bad one is a 400 page naming it.
fn query(call: &Call) -> Result<MessageQuery, ErrorPage> {
    let mut problems = Problems::default();
    let name = |field: &'static str| move |v: &str| Name::parse(field, v);
    let topic = problems.optional(call.param("topic"), name("topic"));
    let producer = problems.optional(call.param("producer"), name("producer"));
    let key = problems.optional(call.param("key"), |v| MessageKey::parse("key", v));
    let state = problems.optional(call.param("state"), |v| {
        MessageState::parse(v).ok_or_else(|| FieldViolation::new("state", "is not a message state"))
    });
    let outcome = problems.optional(call.param("outcome"), |v| {
        OUTCOMES
            .iter()
            .find(|(name, _)| *name == v)
            .map(|(_, o)| *o)
            .ok_or_else(|| FieldViolation::new("outcome", "is not an outcome"))
    });
    let created_from = problems.time("from", call.param("from"));
    let created_until = problems.time("until", call.param("until"));
    let before = problems.optional(call.param("before"), |v| {
        MessageId::parse(v).map_err(|_| FieldViolation::new("before", "is not a page cursor"))
    });
    problems.finish()?;
    if key.is_some() && producer.is_none() {
        return Err(ErrorPage::new(
            StatusCode::BAD_REQUEST,
            "Please check the form",
            "A key names a message only with its producer: fill in producer too.",
        ));
    }
    Ok(MessageQuery {
        topic,
        producer,
        state,
        outcome,
        key,
        created_from,
        created_until,
        page_size: PAGE_SIZE,
        before,
    })
}

fn filters(call: &Call) -> Markup {
    let value = |name: &str| call.param(name).unwrap_or("").to_owned();
    html! {
        form.filters method="get" action="/messages" {
            label { "Message id" input name="id" size="38" value=(value("id")); }
            label { "Producer" input name="producer" value=(value("producer")); }
            label { "Key" input name="key" value=(value("key")); }
            label { "Topic" input name="topic" value=(value("topic")); }
            label { "State" select name="state" {
                option value="" { "any" }
                @for state in MessageState::ALL {
                    option selected[value("state") == state.as_str()] { (state.as_str()) }
                }
            } }
            label { "Outcome" select name="outcome" {
                option value="" { "any" }
                @for (name, _) in OUTCOMES {
                    option selected[value("outcome") == name] { (name) }
                }
            } }
            label { "Created from (UTC)" input type="datetime-local" name="from" value=(value("from")); }
            label { "until" input type="datetime-local" name="until" value=(value("until")); }
            button.act type="submit" { "Search" }
            a href="/messages" { "clear" }
        }
    }
}

fn table(messages: &[MessageRecord], now: Timestamp) -> Markup {
    html! {
        table {
            tr { th { "Message" } th { "Producer / key" } th { "Topic" } th { "State" } th { "Outcome" } th { "Created" } th { "Deliveries" } }
            @for m in messages {
                tr {
                    td { a href={"/messages/" (m.id)} { code { (m.id) } } }
                    td { (m.producer) " / " (m.key) }
                    td { (m.topic) }
                    td { (m.state.as_str()) }
                    td class=[outcome_class(m.outcome())] { (outcome_name(m.outcome())) }
                    td { (layout::when(m.created_at, now)) }
                    td {
                        @for d in &m.deliveries {
                            span title=(d.last_error.as_deref().unwrap_or("")) { (d.subscription) ": " (d.state.as_str()) } " "
                        }
                    }
                }
            }
        }
    }
}

pub fn outcome_class(outcome: MessageOutcome) -> Option<&'static str> {
    match outcome {
        MessageOutcome::Unresolved | MessageOutcome::DeadLettered => Some("bad"),
        MessageOutcome::Delivered => Some("ok"),
        _ => None,
    }
}
