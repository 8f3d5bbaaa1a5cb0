//! Subscriptions: the list, a form to create one, and a form to edit the settings that may
//! change (ack deadline, retry policy, push endpoint, what a dead head does). The forms go
//! through the same checks as Admin.CreateSubscription and UpdateSubscription.

use std::time::Duration;

use http::Response;
use http_body_util::Full;
use hyper::body::Bytes;
use maud::{Markup, html};

use super::{Call, ErrorPage, Pages, layout, see_other};
use crate::api::endpoints;
use crate::convert;
use crate::domain::{DeadHeadPolicy, FieldViolation, Name, Subscription};
use crate::proto;

pub async fn list(pages: &Pages<'_>, _call: &Call) -> Result<Response<Full<Bytes>>, ErrorPage> {
    let subscriptions = pages.store.list_subscriptions(None).await?;
    let body = html! {
        @if pages.viewer.can_act() { p { a href="/subscriptions/edit" { "New subscription" } } }
        @if subscriptions.is_empty() {
            (layout::empty("No subscriptions yet. A topic needs one before producers can send to it."))
        } @else {
            table {
                tr { th { "Name" } th { "Topic" } th { "Ack deadline" } th { "Attempts" } th { "Backoff" } th { "Push endpoint" } th { "Ordered" } th { "" } }
                @for s in &subscriptions {
                    tr {
                        td { (s.name) }
                        td { a href={"/messages?topic=" (s.topic)} { (s.topic) } }
                        td { (humantime::format_duration(s.ack_deadline)) }
                        td.n { (s.retry_policy.max_attempts) }
                        td { (humantime::format_duration(s.retry_policy.initial_backoff)) " ×" (s.retry_policy.multiplier) " up to " (humantime::format_duration(s.retry_policy.max_backoff)) }
                        td { (s.push_endpoint.as_deref().unwrap_or("pull (Receive)")) }
                        td { @if s.ordered { "yes, dead head: " (s.dead_head.as_str()) } @else { "no" } }
                        td { a href={"/dead-letters?subscription=" (s.name)} { "dead letters" } " · " a href={"/subscriptions/edit?name=" (s.name)} { "edit" } }
                    }
                }
            }
        }
    };
    Ok(layout::page(
        "Subscriptions",
        "/subscriptions",
        pages.viewer,
        &pages.csrf,
        None,
        body,
    ))
}

/// The form: empty to create, or filled with subscription `name` to edit.
pub async fn form(pages: &Pages<'_>, call: &Call) -> Result<Response<Full<Bytes>>, ErrorPage> {
    let existing = match call.param("name") {
        Some(name) => {
            let name = Name::parse("name", name).map_err(|v| ErrorPage::invalid(&[v]))?;
            Some(pages.store.get_subscription(&name).await?)
        }
        None => None,
    };
    let title = match &existing {
        Some(s) => format!("Subscription {}", s.name),
        None => "New subscription".to_owned(),
    };
    let body = fields(pages, existing.as_ref());
    Ok(layout::page(
        &title,
        "/subscriptions",
        pages.viewer,
        &pages.csrf,
        None,
        body,
    ))
}

fn fields(pages: &Pages<'_>, existing: Option<&Subscription>) -> Markup {
    let duration = |pick: fn(&Subscription) -> Duration| {
        existing
            .map(|s| humantime::format_duration(pick(s)).to_string())
            .unwrap_or_default()
    };
    let editing = existing.is_some();
    html! {
        form method="post" action="/subscriptions" {
            (layout::csrf_field(&pages.csrf))
            input type="hidden" name="mode" value=(if editing { "update" } else { "create" });
            table {
                tr { th { "Name" } td { input name="name" required readonly[editing] value=(existing.map(|s| s.name.to_string()).unwrap_or_default()); } }
                tr { th { "Topic" } td { input name="topic" required readonly[editing] value=(existing.map(|s| s.topic.to_string()).unwrap_or_default()); } }
                tr { th { "Ack deadline" } td { input name="ack_deadline" placeholder="30s" value=(duration(|s| s.ack_deadline)); } }
                tr { th { "Max attempts" } td { input type="number" name="max_attempts" min="1" placeholder="16" value=(existing.map(|s| s.retry_policy.max_attempts.to_string()).unwrap_or_default()); } }
                tr { th { "Initial backoff" } td { input name="initial_backoff" placeholder="1s" value=(duration(|s| s.retry_policy.initial_backoff)); } }
                tr { th { "Max backoff" } td { input name="max_backoff" placeholder="10m" value=(duration(|s| s.retry_policy.max_backoff)); } }
                tr { th { "Multiplier" } td { input name="multiplier" placeholder="2" value=(existing.map(|s| s.retry_policy.multiplier.to_string()).unwrap_or_default()); } }
                tr { th { "Push endpoint" } td { input name="push_endpoint" size="40" placeholder="empty: consumers pull with Receive" value=(existing.and_then(|s| s.push_endpoint.clone()).unwrap_or_default()); } }
                tr { th { "Ordered" } td { input type="checkbox" name="ordered" value="yes" checked[existing.is_some_and(|s| s.ordered)] disabled[editing]; " lanes by ordering key (set at creation)" } }
                tr { th { "Dead head" } td { select name="dead_head" {
                    @for policy in [DeadHeadPolicy::Block, DeadHeadPolicy::Skip] {
                        option selected[existing.is_some_and(|s| s.dead_head == policy)] { (policy.as_str()) }
                    }
                } " what a dead head does to its lane" } }
            }
            p.muted { "Empty fields take the server's defaults. Durations are written like 30s, 5m, 2h." }
            @if pages.viewer.can_act() {
                button.act type="submit" { (if editing { "Save" } else { "Create" }) }
            } @else { p.muted { "Changing subscriptions needs a token with scope admin." } }
        }
    }
}

pub async fn save(pages: &Pages<'_>, call: &Call) -> Result<Response<Full<Bytes>>, ErrorPage> {
    let value = form_subscription(call)?;
    let defaults = &pages.config.subscriptions;
    let viewer = pages.viewer;
    let store = pages.store;
    if !value.push_endpoint.is_empty() {
        endpoints::must_be_allowed("push_endpoint", &value.push_endpoint, pages.config)?;
    }
    let saved = match call.field("mode") {
        Some("update") => {
            let (spec, _) = convert::update_subscription(Some(value), defaults)?;
            let current = store.get_subscription(&spec.name).await?;
            let updated = store
                .update_subscription(spec.with_topic(current.topic, current.created_at))
                .await?;
            crate::audit!(viewer, subscription = %updated.name, push_endpoint = updated.push_endpoint.as_deref().unwrap_or(""), "subscription updated");
            updated
        }
        _ => {
            let subscription = convert::create_subscription(Some(value), defaults)?;
            let (created, _) = store.create_subscription(subscription).await?;
            crate::audit!(viewer, subscription = %created.name, topic = %created.topic, "subscription created");
            created
        }
    };
    Ok(see_other(&format!(
        "/subscriptions/edit?name={}",
        saved.name
    )))
}

/// The form as the proto Admin takes, so it is checked by the same rules.
fn form_subscription(call: &Call) -> Result<proto::Subscription, ErrorPage> {
    let mut problems = Vec::new();
    let mut duration = |field: &str| match call.field(field) {
        None => None,
        Some(text) => match humantime::parse_duration(text) {
            Ok(value) => prost_types::Duration::try_from(value).ok(),
            Err(_) => {
                problems.push(FieldViolation::new(
                    field,
                    "is not a duration like 30s, 5m or 2h",
                ));
                None
            }
        },
    };
    let ack_deadline = duration("ack_deadline");
    let initial_backoff = duration("initial_backoff");
    let max_backoff = duration("max_backoff");
    let max_attempts = match call.field("max_attempts").map(str::parse::<u32>) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            problems.push(FieldViolation::new("max_attempts", "is not a whole number"));
            0
        }
    };
    let multiplier = match call.field("multiplier").map(str::parse::<f64>) {
        None => 0.0,
        Some(Ok(m)) => m,
        Some(Err(_)) => {
            problems.push(FieldViolation::new("multiplier", "is not a number"));
            0.0
        }
    };
    if !problems.is_empty() {
        return Err(ErrorPage::invalid(&problems));
    }
    let dead_head = match call.field("dead_head") {
        Some("SKIP") => proto::DeadHead::Skip,
        _ => proto::DeadHead::Block,
    };
    Ok(proto::Subscription {
        name: call.field("name").unwrap_or("").to_owned(),
        topic: call.field("topic").unwrap_or("").to_owned(),
        ack_deadline,
        retry_policy: Some(proto::RetryPolicy {
            max_attempts,
            initial_backoff,
            max_backoff,
            multiplier,
        }),
        push_endpoint: call.field("push_endpoint").unwrap_or("").to_owned(),
        created_at: None,
        ordered: call.field("ordered") == Some("yes"),
        dead_head: dead_head.into(),
    })
}
