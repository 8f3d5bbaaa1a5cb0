//! Overview: counts by state per topic and subscription, what needs a person, and the last
//! hour's rates. Reloads itself every 10 seconds.

use http::Response;
use http_body_util::Full;
use hyper::body::Bytes;
use maud::{Markup, html};

use super::{ErrorPage, Pages, charts, layout};
use crate::domain::Timestamp;
use crate::metrics::minutes::{self, Series};
use crate::store::StatsScope;

pub async fn page(pages: &Pages<'_>) -> Result<Response<Full<Bytes>>, ErrorPage> {
    let now = Timestamp::now();
    let stats = pages.store.stats(now, StatsScope::Full).await?;
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
        @if stats.topics.is_empty() {
            (layout::empty("No messages yet. Producers' messages appear here once they Prepare or Publish."))
        } @else {
            table {
                tr { th { "Topic" } th { "Prepared" } th { "Confirmed" } th { "Cancelled" } th { "Unresolved" } th { "Unrouted" } }
                @for topic in &stats.topics {
                    tr {
                        td { a href={"/messages?topic=" (topic.topic)} { (topic.topic) } }
                        td.n { (topic.prepared) }
                        td.n { (topic.confirmed) }
                        td.n { (topic.cancelled) }
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
                tr { th { "Subscription" } th { "Topic" } th { "Pending" } th { "Leased" } th { "Acked" } th { "Dead" } th { "Discarded" } th { "Blocked lanes" } th { "Oldest due pending" } }
                @for sub in &stats.subscriptions {
                    tr {
                        td { a href={"/subscriptions/edit?name=" (sub.subscription)} { (sub.subscription) } }
                        td { (sub.topic) }
                        td.n { (sub.pending) }
                        td.n { (sub.leased) }
                        td.n { (sub.acked) }
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
        p.muted { "Updated " (layout::utc(now)) "; this page reloads every 10 seconds." }
    };
    Ok(layout::page(
        "Overview",
        "/",
        pages.viewer,
        &pages.csrf,
        Some(10),
        body,
    ))
}
