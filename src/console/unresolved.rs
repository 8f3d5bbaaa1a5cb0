//! Unresolved: the messages check-back gave up on, each with Commit and Roll back (Resolve),
//! and the Resolve action itself.

use http::Response;
use http_body_util::Full;
use hyper::body::Bytes;
use maud::{Markup, html};

use super::{Call, ErrorPage, Pages, layout, see_other};
use crate::domain::{Decision, FieldViolation, MessageId, MessageRef, MessageState, Timestamp};
use crate::metrics;
use crate::store::MessageQuery;

const PAGE_SIZE: u32 = 100;

pub async fn page(pages: &Pages<'_>, call: &Call) -> Result<Response<Full<Bytes>>, ErrorPage> {
    let before = call.param("before").and_then(|v| MessageId::parse(v).ok());
    let found = pages
        .store
        .list_messages(MessageQuery {
            state: Some(MessageState::Unresolved),
            page_size: PAGE_SIZE,
            before,
            ..MessageQuery::default()
        })
        .await?;
    let now = Timestamp::now();
    let body = html! {
        p.note { "Check-back asked each producer's Checker until it gave up. Find out in the producer's own records whether its local transaction committed, then Commit (deliver the message) or Roll back (cancel it). A late Confirm or Cancel from the producer also settles it." }
        @if found.items.is_empty() {
            (layout::empty("No unresolved messages. Every prepared message was confirmed, cancelled, or is still being checked."))
        } @else {
            table {
                tr { th { "Message" } th { "Producer / key" } th { "Topic" } th { "Prepared" } th { "Checks" } th { "Last check error" } th { "Decide" } }
                @for m in &found.items {
                    tr {
                        td { a href={"/messages/" (m.id)} { code { (m.id) } } }
                        td { (m.producer) " / " (m.key) }
                        td { (m.topic) }
                        td { (layout::when(m.created_at, now)) }
                        td.n { (m.check_attempts) }
                        td { (m.last_check_error.as_deref().unwrap_or("")) }
                        td {
                            @if pages.viewer.can_act() {
                                (resolve_buttons(&m.id, &pages.csrf, "/unresolved"))
                            } @else { span.muted { "admin only" } }
                        }
                    }
                }
            }
            @if let Some(next) = found.next { p { a href={"/unresolved?before=" (next)} { "More →" } } }
        }
    };
    Ok(layout::page(
        "Unresolved",
        "/unresolved",
        pages.viewer,
        &pages.csrf,
        None,
        body,
    ))
}

/// Commit and Roll back buttons for message `id`; after the action the browser goes to `back`.
pub fn resolve_buttons(id: &MessageId, csrf: &str, back: &str) -> Markup {
    html! {
        form method="post" action="/unresolved/resolve" {
            (layout::csrf_field(csrf))
            input type="hidden" name="id" value=(id);
            input type="hidden" name="back" value=(back);
            button.act type="submit" name="decision" value="commit" { "Commit" }
            " "
            button.danger type="submit" name="decision" value="rollback" { "Roll back" }
        }
    }
}

pub async fn resolve(pages: &Pages<'_>, call: &Call) -> Result<Response<Full<Bytes>>, ErrorPage> {
    let id = call.field("id").and_then(|v| MessageId::parse(v).ok());
    let decision = match call.field("decision") {
        Some("commit") => Some(Decision::Commit),
        Some("rollback") => Some(Decision::Rollback),
        _ => None,
    };
    let (Some(id), Some(decision)) = (id, decision) else {
        return Err(ErrorPage::invalid(&[FieldViolation::new(
            "decision",
            "needs a message id and Commit or Roll back",
        )]));
    };
    let message = MessageRef::Id(id);
    let viewer = pages.viewer;
    let state = pages
        .store
        .resolve(&message, decision, viewer.name(), Timestamp::now())
        .await?;
    metrics::message_decided(state, metrics::Source::Operator);
    crate::audit!(viewer, %message, ?decision, %state, "message resolved by an operator");
    Ok(see_other(local_path(call.field("back"))))
}

/// Where to go back to: a path on this console, else the overview.
pub fn local_path(back: Option<&str>) -> &str {
    match back {
        Some(path) if path.starts_with('/') && !path.starts_with("//") => path,
        _ => "/",
    }
}
