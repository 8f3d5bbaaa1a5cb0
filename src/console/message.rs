//! Message detail: what the message is, its payload, and its timeline: created, every
//! check-back and its answer, the decision and who made it, and per subscription every failed
//! delivery attempt and where the delivery stands now.

use http::Response;
use http_body_util::Full;
use hyper::body::Bytes;
use maud::{Markup, html};

use super::messages::{outcome_class, outcome_name};
use super::{ErrorPage, Pages, layout, unresolved};
use crate::domain::{
    DeliveryState, FieldViolation, MessageId, MessageRecord, MessageRef, MessageState, Timestamp,
};
use crate::store::{DecidedBy, EventKind, MessageEvent, MessageHistory};

/// Most payload bytes shown inline.
const SHOWN_BYTES: usize = 64 * 1024;

pub async fn page(pages: &Pages<'_>, id: &str) -> Result<Response<Full<Bytes>>, ErrorPage> {
    let id = MessageId::parse(id)
        .map_err(|_| ErrorPage::invalid(&[FieldViolation::new("message id", "is not a UUID")]))?;
    let record = pages.store.get_message(&MessageRef::Id(id)).await?;
    let history = pages.store.message_history(id).await?;
    let now = Timestamp::now();
    let outcome = record.outcome();
    let open = matches!(
        record.state,
        MessageState::Prepared | MessageState::Unresolved
    );
    let body = html! {
        table {
            tr { th { "Id" } td { code { (record.id) } } }
            tr { th { "Producer / key" } td { (record.producer) " / " (record.key) } }
            tr { th { "Topic" } td { a href={"/messages?topic=" (record.topic)} { (record.topic) } } }
            @if !record.ordering_key.as_str().is_empty() {
                tr { th { "Ordering key" } td { (record.ordering_key.as_str()) } }
            }
            tr { th { "State" } td { (record.state.as_str()) } }
            tr { th { "Outcome" } td class=[outcome_class(outcome)] { (outcome_name(outcome)) } }
            tr { th { "Created" } td { (layout::when(record.created_at, now)) } }
            @if let Some(at) = record.next_check_at {
                tr { th { "Next check" } td { (layout::when(at, now)) " (attempt " (record.check_attempts + 1) ")" } }
            }
            @for (name, value) in &record.headers {
                tr { th { "Header " code { (name) } } td { (value) } }
            }
        }
        @if open && pages.viewer.can_act() {
            (unresolved::resolve_buttons(&record.id, &pages.csrf, &format!("/messages/{}", record.id)))
        }
        h2 { "Timeline" }
        ol.timeline { @for entry in timeline(&record, &history, now) { (entry) } }
        h2 { "Deliveries" }
        (deliveries(&record, now))
        h2 { "Payload (" (record.payload_bytes) " bytes)" }
        (payload(&history.payload_head, record.payload_bytes))
    };
    let title = format!("Message {}", record.key);
    Ok(layout::page(
        &title,
        "/messages",
        pages.viewer,
        &pages.csrf,
        None,
        body,
    ))
}

/// The timeline entries, oldest first.
fn timeline(record: &MessageRecord, history: &MessageHistory, now: Timestamp) -> Vec<Markup> {
    let mut entries: Vec<(Timestamp, u8, Markup)> = Vec::new();
    let published =
        matches!(history.decided, Some((at, DecidedBy::Producer)) if at == record.created_at);
    let created = if published {
        "Published (prepared and confirmed in one call)"
    } else {
        "Prepared"
    };
    entries.push((record.created_at, 0, html! { li { (layout::when(record.created_at, now)) " — " (created) " by producer " (record.producer) } }));
    if let Some((at, by)) = history.decided.filter(|_| !published) {
        let verb = match record.state {
            MessageState::Cancelled => "Cancelled",
            _ => "Confirmed",
        };
        entries.push((at, 2, html! { li.t-ok { (layout::when(at, now)) " — " strong { (verb) } " by the " (by.as_str()) } }));
    }
    for event in &history.events {
        entries.push((event.at, 1, event_entry(event, now)));
    }
    if record.state == MessageState::Unresolved {
        entries.push((record.updated_at, 3, html! {
            li.t-bad { (layout::when(record.updated_at, now)) " — " strong { "Unresolved" } ": check-back gave up after " (record.check_attempts) " attempts; it waits for a person (Commit or Roll back above) or the producer's own Confirm or Cancel." }
        }));
    }
    for delivery in &record.deliveries {
        let changed = history
            .delivery_changes
            .iter()
            .find(|(name, _)| *name == delivery.subscription)
            .map(|(_, at)| *at);
        let (Some(at), Some(verb)) = (changed, happy_step(delivery.state)) else {
            continue;
        };
        let class = if delivery.state == DeliveryState::Acked {
            "t-ok"
        } else {
            "t-warn"
        };
        entries.push((at, 4, html! {
            li class=(class) { (layout::when(at, now)) " — " (verb) " · subscription " (delivery.subscription) " · attempt " (delivery.attempts) }
        }));
    }
    entries.sort_by_key(|(at, order, _)| (at.as_millis(), *order));
    entries.into_iter().map(|(_, _, markup)| markup).collect()
}

/// What the last change of a delivery in `state` was, where no event records it.
fn happy_step(state: DeliveryState) -> Option<&'static str> {
    match state {
        DeliveryState::Acked => Some("Acked by the consumer"),
        DeliveryState::Leased => Some("Handed to a consumer (leased)"),
        _ => None,
    }
}

fn event_entry(event: &MessageEvent, now: Timestamp) -> Markup {
    let outcome = event.outcome.as_deref().unwrap_or("");
    let (class, text) = match event.kind {
        EventKind::Check => match outcome {
            "COMMIT" => ("ok", "Check-back: the checker answered COMMIT".to_owned()),
            "ROLLBACK" => ("ok", "Check-back: the checker answered ROLLBACK".to_owned()),
            "GAVE_UP" => (
                "bad",
                "Check-back: no decision, and that was the last attempt".to_owned(),
            ),
            _ => (
                "warn",
                "Check-back: no decision; asking again later".to_owned(),
            ),
        },
        EventKind::Nacked => ("warn", "Nacked by the consumer".to_owned()),
        EventKind::LeaseExpired => ("warn", "Lease expired before an ack".to_owned()),
        EventKind::PushFailed => ("warn", "Push to the receiver failed".to_owned()),
        EventKind::Rejected => ("bad", "Rejected by the consumer".to_owned()),
        EventKind::Resolved => ("ok", format!("Resolved {outcome} by operator")),
        EventKind::Redriven => ("ok", "Redriven by an operator".to_owned()),
        EventKind::Discarded => ("bad", "Discarded by an operator".to_owned()),
    };
    let class = if outcome == "DEAD" { "bad" } else { class };
    html! {
        li class=(class) {
            (layout::when(event.at, now)) " — " (text)
            @if let Some(sub) = &event.subscription { " · subscription " (sub) }
            @if let Some(attempt) = event.attempt { " · attempt " (attempt) }
            @if outcome == "DEAD" { " · " strong.bad { "now DEAD" } }
            @if outcome == "RETRY" && event.kind != EventKind::Check { " · will retry" }
            @if let Some(detail) = &event.detail {
                @if event.kind == EventKind::Resolved { " (" (detail) ")" } @else { br; span.muted { (detail) } }
            }
        }
    }
}

fn deliveries(record: &MessageRecord, now: Timestamp) -> Markup {
    html! {
        @if record.deliveries.is_empty() {
            @if record.state == MessageState::Confirmed {
                (layout::empty("Unrouted: the topic had no subscription when this message was confirmed. It reached nobody and is kept for you."))
            } @else {
                (layout::empty("No deliveries yet: they are created when the message is confirmed."))
            }
        } @else {
            table {
                tr { th { "Subscription" } th { "State" } th { "Attempts" } th { "Next attempt" } th { "Lease ends" } th { "Last error" } }
                @for d in &record.deliveries {
                    tr {
                        td { (d.subscription) }
                        td class=[(d.state == DeliveryState::Dead).then_some("bad")] {
                            @if d.state == DeliveryState::Dead {
                                a href={"/dead-letters?subscription=" (d.subscription) "&key=" (record.key)} { "DEAD" }
                            } @else { (d.state.as_str()) }
                        }
                        td.n { (d.attempts) }
                        td { @if let Some(at) = d.next_attempt_at { (layout::when(at, now)) } }
                        td { @if let Some(at) = d.lease_expires_at { (layout::when(at, now)) } }
                        td { (d.last_error.as_deref().unwrap_or("")) }
                    }
                }
            }
        }
    }
}

/// The payload as text when it is UTF-8 (JSON pretty-printed), else as hex; at most
/// [`SHOWN_BYTES`] of it.
pub fn payload(head: &[u8], total: u64) -> Markup {
    let shown = &head[..head.len().min(SHOWN_BYTES)];
    let cut = total > shown.len() as u64;
    let text = match std::str::from_utf8(shown) {
        Ok(text) => Some(text),
        // Cut in the middle of a character: show what came before it.
        Err(error) if cut && error.error_len().is_none() => {
            std::str::from_utf8(&shown[..error.valid_up_to()]).ok()
        }
        Err(_) => None,
    };
    let (kind, body) = match text {
        Some(text) => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(json) if !cut => (
                "JSON",
                serde_json::to_string_pretty(&json).unwrap_or_default(),
            ),
            _ => ("text", text.to_owned()),
        },
        None => ("hex (not UTF-8)", hex_lines(shown)),
    };
    html! {
        p.muted { "Shown as " (kind) "."
            @if cut { " Only the first " (SHOWN_BYTES / 1024) " KiB of " (total) " bytes are shown." } }
        @if total == 0 { (layout::empty("The payload is empty.")) } @else { pre { (body) } }
    }
}

fn hex_lines(bytes: &[u8]) -> String {
    bytes
        .chunks(32)
        .map(|line| {
            line.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_pretty_text_is_text_binary_is_hex() {
        let json = payload(br#"{"order":7}"#, 11).into_string();
        assert!(json.contains("Shown as JSON") && json.contains("&quot;order&quot;: 7"));
        let text = payload(b"hello <b>", 9).into_string();
        assert!(text.contains("Shown as text") && text.contains("hello &lt;b&gt;"));
        let binary = payload(&[0xff, 0x00, 0x10], 3).into_string();
        assert!(binary.contains("hex") && binary.contains("ff 00 10"));
    }

    #[test]
    fn long_payloads_are_cut_at_64_kib() {
        let big = vec![b'a'; SHOWN_BYTES + 1];
        let shown = payload(&big, 1_000_000).into_string();
        assert!(shown.contains("Only the first 64 KiB of 1000000 bytes"));
        assert!(shown.matches('a').count() >= SHOWN_BYTES);
    }
}
