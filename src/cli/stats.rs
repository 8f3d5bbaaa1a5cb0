//! `courier stats`: counts by state per topic and per subscription (Admin.GetStats).

use clap::Args;
use serde_json::json;

use super::output::{self, Table};
use super::{CliError, Server, Target};
use crate::proto;

#[derive(Debug, Args)]
pub struct StatsArgs {
    #[command(flatten)]
    target: Target,
}

pub async fn run(args: StatsArgs) -> Result<(), CliError> {
    let server = Server::connect(&args.target).await?;
    let stats = server
        .admin()
        .get_stats(proto::GetStatsRequest {})
        .await?
        .into_inner();
    if server.json {
        return output::print_json(&stats_json(&stats));
    }
    let mut topics = Table::new(&[
        "TOPIC",
        "PREPARED",
        "CONFIRMED",
        "CANCELLED",
        "UNRESOLVED",
        "UNROUTED",
    ]);
    for t in &stats.topics {
        topics.row(vec![
            t.topic.clone(),
            t.prepared.to_string(),
            t.confirmed.to_string(),
            t.cancelled.to_string(),
            t.unresolved.to_string(),
            t.unrouted.to_string(),
        ]);
    }
    let mut subscriptions = Table::new(&[
        "SUBSCRIPTION",
        "TOPIC",
        "PENDING",
        "LEASED",
        "ACKED",
        "DEAD",
        "DISCARDED",
        "BLOCKED LANES",
        "OLDEST PENDING",
    ]);
    for s in &stats.subscriptions {
        subscriptions.row(vec![
            s.subscription.clone(),
            s.topic.clone(),
            s.pending.to_string(),
            s.leased.to_string(),
            s.acked.to_string(),
            s.dead.to_string(),
            s.discarded.to_string(),
            s.blocked_lanes.to_string(),
            output::duration_cell(&s.oldest_pending_age),
        ]);
    }
    let mut text = String::new();
    if topics.is_empty() {
        text.push_str("no messages\n");
    } else {
        text.push_str(&topics.render());
    }
    text.push('\n');
    if subscriptions.is_empty() {
        text.push_str("no subscriptions\n");
    } else {
        text.push_str(&subscriptions.render());
    }
    let blocked: u64 = stats.subscriptions.iter().map(|s| s.blocked_lanes).sum();
    if blocked > 0 {
        text.push_str(&format!(
            "\n{blocked} ordered lanes are held by a dead head: \
             `courier dead-letters list SUBSCRIPTION --blocking`, then redrive or discard them\n"
        ));
    }
    if stats.unrouted_confirms > 0 {
        text.push_str(&format!(
            "\n{} confirmed messages found no subscription (unrouted)\n",
            stats.unrouted_confirms
        ));
    }
    output::print(&text)
}

fn stats_json(stats: &proto::GetStatsResponse) -> serde_json::Value {
    let topics: Vec<_> = stats
        .topics
        .iter()
        .map(|t| {
            json!({
                "topic": t.topic,
                "prepared": t.prepared,
                "confirmed": t.confirmed,
                "cancelled": t.cancelled,
                "unresolved": t.unresolved,
                "unrouted": t.unrouted,
            })
        })
        .collect();
    let subscriptions: Vec<_> = stats
        .subscriptions
        .iter()
        .map(|s| {
            json!({
                "subscription": s.subscription,
                "topic": s.topic,
                "pending": s.pending,
                "leased": s.leased,
                "acked": s.acked,
                "dead": s.dead,
                "discarded": s.discarded,
                "blocked_lanes": s.blocked_lanes,
                "oldest_pending_age_seconds": output::seconds_json(&s.oldest_pending_age),
            })
        })
        .collect();
    json!({
        "topics": topics,
        "subscriptions": subscriptions,
        "unrouted_confirms": stats.unrouted_confirms,
    })
}
