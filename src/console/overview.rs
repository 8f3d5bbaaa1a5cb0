//! Overview: counts by state per topic and subscription, what needs a person, and the last
//! hour's rates. Reloads itself every 10 seconds, so it counts only what is in flight (its
//! cost follows the work, not what retention keeps); `/?totals=1` adds the retained totals
//! once, on request, and does not reload.

use http::Response;
use http_body_util::Full;
use hyper::body::Bytes;
use maud::{Markup, html};

use super::{Call, ErrorPage, Pages, charts, layout};
use crate::domain::Timestamp;
use crate::metrics::minutes::{self, Series};
use crate::store::StatsScope;

/// Seconds between the page's reloads, when it counts only what is in flight.
const RELOAD_SECONDS: u32 = 10;

pub async fn page(pages: &Pages<'_>, call: &Call) -> Result<Response<Full<Bytes>>, ErrorPage> {
    let now = Timestamp::now();
    let totals = call.param("totals").is_some();
    let scope = if totals {
        StatsScope::Full
    } else {
        StatsScope::Live
    };
    let stats = pages.store.stats(now, scope).await?;
    let unresolved: u64 = stats.topics.iter().map(|t| t.unresolved).sum();
    let dead: u64 = stats.subscriptions.iter().map(|s| s.dead).sum();
    let blocked: u64 = stats.subscriptions.iter().map(|s| s.blocked_lanes).sum();
    let mut attention: Vec<Markup> = Vec::new();
    if unresolved > 0 {
        attention.push(html! { a.bad href="/unresolved" { (unresolved) " unresolved" } });
    }
    if dead > 0 {
        attention.push(html! { a.bad href="/dead-letters" { (dead) " dead letters" } });
    }
    if blocked > 0 {
        attention.push(html! { span.bad { (blocked) " blocked lanes (a dead head holds them: redrive or discard it)" } });
    }
    if stats.unrouted_confirms > 0 {
        let unrouted = stats.unrouted_confirms;
        attention.push(html! { span.warn { (unrouted) " unrouted confirms (no subscription when confirmed)" } });
    }
    let body = html! {
        @if attention.is_empty() {
            p.note { "Nothing needs a person right now: no unresolved messages, no dead letters, no blocked lanes, no unrouted confirms." }
        } @else {
            p.note {
                @for (i, item) in attention.into_iter().enumerate() {
                    @if i > 0 { " · " }
                    (item)
                }
            }
        }
        h2 { "Last hour, per minute" }
        div.charts {
            @for series in Series::ALL {
                (charts::minutes(series.label(), &minutes::last_hour(series, now)))
            }
        }
        p.muted { "Counted by this server since it started; with several replicas each shows its own share (Prometheus sums them)." }
        h2 { "Topics" }
        @if totals {
            p.muted { "With the retained totals: every message the database keeps was counted, once; this page does not reload. " a href="/" { "Back to what is in flight" } }
        } @else {
            p.muted { "Messages in flight or waiting for a person. " a href="/?totals=1" { "Count the retained messages too" } " (reads every message the database keeps)." }
        }
        @if stats.topics.is_empty() {
            (layout::empty("No message is in flight or waiting for a person."))
        } @else {
            table {
                tr {
                    th { "Topic" } th { "Prepared" }
                    @if totals { th { "Confirmed" } th { "Cancelled" } }
                    th { "Unresolved" } th { "Unrouted" }
                }
                @for topic in &stats.topics {
                    tr {
                        td { a href={"/messages?topic=" (topic.topic)} { (topic.topic) } }
                        td.n { (topic.prepared) }
                        @if totals {
                            td.n { (topic.confirmed) }
                            td.n { (topic.cancelled) }
                        }
                        td.n class=[(topic.unresolved > 0).then_some("bad")] {
                            @if topic.unresolved > 0 { a href="/unresolved" { (topic.unresolved) } } @else { "0" }
                        }
                        td.n class=[(topic.unrouted > 0).then_some("warn")] { (topic.unrouted) }
                    }
                }
            }
        }
        h2 { "Subscriptions" }
        @if stats.subscriptions.is_empty() {
            (layout::empty("No subscriptions. Create one on the Subscriptions page or with courier subscriptions create."))
        } @else {
            table {
                tr {
                    th { "Subscription" } th { "Topic" } th { "Pending" } th { "Leased" }
                    @if totals { th { "Acked" } }
                    th { "Dead" } th { "Discarded" } th { "Blocked lanes" } th { "Oldest due pending" }
                }
                @for sub in &stats.subscriptions {
                    tr {
                        td { a href={"/subscriptions/edit?name=" (sub.subscription)} { (sub.subscription) } }
                        td { (sub.topic) }
                        td.n { (sub.pending) }
                        td.n { (sub.leased) }
                        @if totals { td.n { (sub.acked) } }
                        td.n class=[(sub.dead > 0).then_some("bad")] {
                            a href={"/dead-letters?subscription=" (sub.subscription)} { (sub.dead) }
                        }
                        td.n { (sub.discarded) }
                        td.n class=[(sub.blocked_lanes > 0).then_some("bad")] { (sub.blocked_lanes) }
                        td {
                            @match sub.oldest_pending_age {
                                Some(age) => { (layout::short_duration(age)) }
                                None => { span.muted { "none due" } }
                            }
                        }
                    }
                }
            }
        }
        p.muted {
            "Updated " (layout::utc(now))
            @if !totals { "; this page reloads every " (RELOAD_SECONDS) " seconds" }
            "."
        }
    };
    Ok(layout::page(
        "Overview",
        "/",
        pages.viewer,
        &pages.csrf,
        (!totals).then_some(RELOAD_SECONDS),
        body,
    ))
}
