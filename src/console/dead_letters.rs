//! Dead letters of a subscription: filter them (error text, when they died, key), see how many
//! match (the dry run), and Redrive or Discard the selected ones or all that match, a Redrive
//! at a chosen rate.

use http::Response;
use http_body_util::Full;
use hyper::body::Bytes;
use maud::{Markup, html};

use super::{Call, ErrorPage, Pages, Problems, layout, see_other};
use crate::api::dead_letters as actions;
use crate::convert::{self, DeadLetterAction};
use crate::domain::{FieldViolation, MessageId, MessageKey, Name, OrderingKey, Timestamp};
use crate::store::dead_letters::LISTING_LIMIT;
use crate::store::{DeadLetter, DeadLetters, StatsScope};

/// The filter fields, as both the GET form and the action form name them.
const FILTERS: [&str; 6] = [
    "subscription",
    "error",
    "after",
    "before",
    "key",
    "ordering_key",
];

pub async fn page(pages: &Pages<'_>, call: &Call) -> Result<Response<Full<Bytes>>, ErrorPage> {
    let Some(_) = call.param("subscription") else {
        return choose_subscription(pages).await;
    };
    let chosen = chosen(|name| call.param(name), &[])?;
    let matched = pages.store.count_dead_letters(&chosen).await?;
    let listed = pages
        .store
        .list_dead_letters(&chosen, LISTING_LIMIT)
        .await?;
    let now = Timestamp::now();
    let title = format!("Dead letters of {}", chosen.subscription);
    let body = html! {
        @if let Some(done) = call.param("done") { p.note.ok { (done) } }
        (filters(call))
        p.note {
            strong { "Dry run: " (matched) @if matched == 1 { " dead letter matches" } @else { " dead letters match" } " these filters." }
            " Redrive all or Discard all acts on exactly these (as they are when you press it)."
        }
        @if listed.is_empty() {
            (layout::empty("No dead letter matches. Clear a filter, or enjoy the quiet."))
        } @else {
            (actions_form(pages, call, &listed, matched, now))
        }
    };
    Ok(layout::page(
        &title,
        "/dead-letters",
        pages.viewer,
        &pages.csrf,
        None,
        body,
    ))
}

async fn choose_subscription(pages: &Pages<'_>) -> Result<Response<Full<Bytes>>, ErrorPage> {
    let stats = pages
        .store
        .stats(Timestamp::now(), StatsScope::Live)
        .await?;
    let body = html! {
        @if stats.subscriptions.is_empty() {
            (layout::empty("No subscriptions, so no dead letters."))
        } @else {
            table {
                tr { th { "Subscription" } th { "Topic" } th { "Dead" } th { "Blocked lanes" } }
                @for sub in &stats.subscriptions {
                    tr {
                        td { a href={"/dead-letters?subscription=" (sub.subscription)} { (sub.subscription) } }
                        td { (sub.topic) }
                        td.n class=[(sub.dead > 0).then_some("bad")] { (sub.dead) }
                        td.n { (sub.blocked_lanes) }
                    }
                }
            }
        }
    };
    Ok(layout::page(
        "Dead letters",
        "/dead-letters",
        pages.viewer,
        &pages.csrf,
        None,
        body,
    ))
}

/// The dead letters the fields (by `value`) choose; `ids` narrows them to selected messages.
fn chosen<'a>(
    value: impl Fn(&str) -> Option<&'a str>,
    ids: &[&str],
) -> Result<DeadLetters, ErrorPage> {
    let mut problems = Problems::default();
    let subscription = problems.take(Name::parse(
        "subscription",
        value("subscription").unwrap_or(""),
    ));
    let error_contains = problems
        .take(convert::error_filter("error", value("error").unwrap_or("")))
        .flatten();
    let dead_from = problems.time("after", value("after"));
    let dead_until = problems.time("before", value("before"));
    let key = problems.optional(value("key"), |v| MessageKey::parse("key", v));
    let ordering_key = problems.optional(value("ordering_key"), |v| {
        OrderingKey::parse("ordering_key", v)
    });
    let message_ids: Vec<MessageId> = ids
        .iter()
        .filter_map(|id| {
            problems.take(MessageId::parse(id).map_err(|_| {
                FieldViolation::new("selected", "holds something that is not a message id")
            }))
        })
        .collect();
    problems.finish()?;
    Ok(DeadLetters {
        subscription: subscription.expect("a problem otherwise"),
        message_ids,
        error_contains,
        dead_from,
        dead_until,
        key,
        ordering_key,
    })
}

fn filters(call: &Call) -> Markup {
    let value = |name: &str| call.param(name).unwrap_or("").to_owned();
    html! {
        form.filters method="get" action="/dead-letters" {
            input type="hidden" name="subscription" value=(value("subscription"));
            label { "Last error contains" input name="error" value=(value("error")); }
            label { "Died after (UTC)" input type="datetime-local" name="after" value=(value("after")); }
            label { "Died before (UTC)" input type="datetime-local" name="before" value=(value("before")); }
            label { "Producer key" input name="key" value=(value("key")); }
            label { "Ordering key" input name="ordering_key" value=(value("ordering_key")); }
            button.act type="submit" { "Filter" }
            a href={"/dead-letters?subscription=" (value("subscription"))} { "clear" }
        }
    }
}

fn actions_form(
    pages: &Pages<'_>,
    call: &Call,
    listed: &[DeadLetter],
    matched: u64,
    now: Timestamp,
) -> Markup {
    html! {
        form method="post" action="/dead-letters" {
            (layout::csrf_field(&pages.csrf))
            @for name in FILTERS {
                @if let Some(value) = call.param(name) { input type="hidden" name=(name) value=(value); }
            }
            table {
                tr { th { "" } th { "Message" } th { "Key" } th { "Ordering key" } th { "Attempts" } th { "Died" } th { "Last error" } }
                @for d in listed {
                    tr {
                        td { input type="checkbox" name="selected" value=(d.message_id); }
                        td { a href={"/messages/" (d.message_id)} { code { (d.message_id) } } }
                        td { (d.key) }
                        td { (d.ordering_key.as_deref().unwrap_or("")) }
                        td.n { (d.attempts) }
                        td { (layout::when(d.dead_at, now)) }
                        td { (d.last_error.as_deref().unwrap_or("")) }
                    }
                }
            }
            @if (listed.len() as u64) < matched { p.muted { "Showing the oldest " (listed.len()) " of " (matched) "." } }
            @if pages.viewer.can_act() {
                p {
                    label { "Rate (messages per second, 0 = all at once) " input type="number" name="rate" value="0" min="0" max="100000" step="any"; }
                }
                p {
                    button.act type="submit" name="action" value="redrive-selected" { "Redrive selected" } " "
                    button.act type="submit" name="action" value="redrive-all" { "Redrive all " (matched) } " "
                    button.danger type="submit" name="action" value="discard-selected" { "Discard selected" } " "
                    button.danger type="submit" name="action" value="discard-all" { "Discard all " (matched) }
                }
            } @else { p.muted { "Redrive and Discard need a token with scope admin." } }
        }
    }
}

pub async fn act(pages: &Pages<'_>, call: &Call) -> Result<Response<Full<Bytes>>, ErrorPage> {
    let action = call.field("action").unwrap_or("");
    let selected = call.fields("selected");
    let (redrive, only_selected) = match action {
        "redrive-selected" => (true, true),
        "redrive-all" => (true, false),
        "discard-selected" => (false, true),
        "discard-all" => (false, false),
        _ => {
            return Err(ErrorPage::invalid(&[FieldViolation::new(
                "action",
                "is not Redrive or Discard",
            )]));
        }
    };
    if only_selected && selected.is_empty() {
        return Err(ErrorPage::invalid(&[FieldViolation::new(
            "selected",
            "is empty: tick the dead letters to act on",
        )]));
    }
    let ids = if only_selected { selected } else { Vec::new() };
    let chosen = chosen(|name| call.field(name), &ids)?;
    let rate = convert::redrive_rate(
        "rate",
        call.field("rate")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0),
    )
    .map_err(|v| ErrorPage::invalid(&[v]))?;
    let now = Timestamp::now();
    let viewer = pages.viewer;
    let described = actions::describe(&chosen);
    let done = if redrive {
        let action = DeadLetterAction {
            chosen,
            dry_run: false,
            rate,
        };
        let redriven = actions::redrive(pages.store, &action, now).await?;
        crate::audit!(viewer, subscription = %action.chosen.subscription, chosen = %described, rate, redriven, "dead deliveries redriven");
        match rate > 0.0 {
            true => format!("Redrove {redriven}, paced at {rate} per second."),
            false => format!("Redrove {redriven}."),
        }
    } else {
        let discarded = pages.store.discard_dead_letters(&chosen, now).await?;
        crate::audit!(viewer, subscription = %chosen.subscription, chosen = %described, discarded, "dead deliveries discarded");
        format!("Discarded {discarded}.")
    };
    let mut back: Vec<(&str, &str)> = FILTERS
        .iter()
        .filter_map(|name| call.field(name).map(|value| (*name, value)))
        .collect();
    back.push(("done", &done));
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(back)
        .finish();
    Ok(see_other(&format!("/dead-letters?{query}")))
}
