//! `courier dead-letters list|redrive|discard`.

use clap::{Args, Subcommand};
use serde_json::json;

use super::messages::next_page_size;
use super::output::{self, Table};
use super::{CliError, Server, Target};
use crate::proto;

#[derive(Debug, Args)]
pub struct DeadLettersArgs {
    #[command(flatten)]
    target: Target,
    #[command(subcommand)]
    command: DeadLettersCommand,
}

#[derive(Debug, Subcommand)]
enum DeadLettersCommand {
    /// List a subscription's DEAD deliveries, oldest message first.
    List {
        subscription: String,
        /// Most dead letters to show; 0 shows every one.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Continue a previous listing where it stopped.
        #[arg(long, value_name = "TOKEN")]
        page_token: Option<String>,
        /// Only dead heads that hold their lane (ordered subscriptions that block on them).
        #[arg(long)]
        blocking: bool,
    },
    /// Make dead deliveries PENDING again with their attempts reset: the listed messages'
    /// (ids that are not dead are skipped), those the filters choose, or with --all every dead
    /// one of the subscription.
    Redrive {
        subscription: String,
        #[arg(required_unless_present_any = CHOOSERS, conflicts_with = "all")]
        message_ids: Vec<String>,
        /// Redrive every dead delivery of the subscription (that the filters let through).
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        filter: FilterArgs,
        /// Messages per second: the i-th redriven delivery is due i/RATE seconds from now
        /// (0: all at once).
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
    },
    /// End dead deliveries for good (DISCARDED, never delivered again): the listed messages'
    /// (ids that are not dead are skipped), those the filters choose, or with --all every dead
    /// one of the subscription. A lane a discarded head held goes on.
    Discard {
        subscription: String,
        #[arg(required_unless_present_any = CHOOSERS, conflicts_with = "all")]
        message_ids: Vec<String>,
        /// Discard every dead delivery of the subscription (that the filters let through).
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        filter: FilterArgs,
    },
}

/// What may stand in for a list of message ids.
const CHOOSERS: [&str; 6] = [
    "all",
    "error_contains",
    "dead_after",
    "dead_before",
    "key",
    "ordering_key",
];

/// Filters that narrow the dead letters a Redrive or Discard acts on, and its dry run.
#[derive(Debug, Args)]
struct FilterArgs {
    /// Only those whose last error contains this text (ASCII letters in either case).
    #[arg(long, value_name = "TEXT")]
    error_contains: Option<String>,
    /// Only those that went dead at or after this time (RFC 3339, UTC: 2026-01-31T08:00:00Z).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    dead_after: Option<prost_types::Timestamp>,
    /// Only those that went dead before this time (RFC 3339, UTC).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    dead_before: Option<prost_types::Timestamp>,
    /// Only the delivery of the message with this producer key.
    #[arg(long)]
    key: Option<String>,
    /// Only those of messages with this ordering key (one lane).
    #[arg(long)]
    ordering_key: Option<String>,
    /// Only count what would be acted on; change nothing.
    #[arg(long)]
    dry_run: bool,
}

impl FilterArgs {
    fn proto(&self) -> proto::DeadLetterFilter {
        proto::DeadLetterFilter {
            error_contains: self.error_contains.clone().unwrap_or_default(),
            dead_after: self.dead_after,
            dead_before: self.dead_before,
            key: self.key.clone().unwrap_or_default(),
            ordering_key: self.ordering_key.clone().unwrap_or_default(),
        }
    }
}

fn parse_time(value: &str) -> Result<prost_types::Timestamp, String> {
    let time = humantime::parse_rfc3339_weak(value)
        .map_err(|_| format!("{value} is not a time like 2026-01-31T08:00:00Z"))?;
    Ok(prost_types::Timestamp::from(time))
}

/// "1 dead delivery", "3 dead deliveries".
fn dead_deliveries(count: u64) -> String {
    let noun = if count == 1 { "delivery" } else { "deliveries" };
    format!("{count} dead {noun}")
}

pub async fn run(args: DeadLettersArgs) -> Result<(), CliError> {
    let server = Server::connect(&args.target).await?;
    match args.command {
        DeadLettersCommand::List {
            subscription,
            limit,
            page_token,
            blocking,
        } => {
            let page_token = page_token.unwrap_or_default();
            list(&server, subscription, limit, page_token, blocking).await
        }
        DeadLettersCommand::Redrive {
            subscription,
            message_ids,
            all: _,
            filter,
            rate,
        } => {
            let answer = server
                .admin()
                .redrive(proto::RedriveRequest {
                    subscription: subscription.clone(),
                    message_ids,
                    filter: Some(filter.proto()),
                    dry_run: filter.dry_run,
                    rate,
                })
                .await?
                .into_inner();
            let (verb, count) = match filter.dry_run {
                true => ("would redrive", answer.matched),
                false => ("redrove", answer.redriven),
            };
            if server.json {
                return output::print_json(&json!({
                    "subscription": subscription,
                    "dry_run": filter.dry_run,
                    "matched": answer.matched,
                    "redriven": answer.redriven,
                }));
            }
            output::print(&format!(
                "{verb} {} of subscription {subscription}\n",
                dead_deliveries(count)
            ))
        }
        DeadLettersCommand::Discard {
            subscription,
            message_ids,
            all: _,
            filter,
        } => {
            let answer = server
                .admin()
                .discard_dead_letters(proto::DiscardDeadLettersRequest {
                    subscription: subscription.clone(),
                    message_ids,
                    filter: Some(filter.proto()),
                    dry_run: filter.dry_run,
                })
                .await?
                .into_inner();
            let (verb, count) = match filter.dry_run {
                true => ("would discard", answer.matched),
                false => ("discarded", answer.discarded),
            };
            if server.json {
                return output::print_json(&json!({
                    "subscription": subscription,
                    "dry_run": filter.dry_run,
                    "matched": answer.matched,
                    "discarded": answer.discarded,
                }));
            }
            output::print(&format!(
                "{verb} {} of subscription {subscription}\n",
                dead_deliveries(count)
            ))
        }
    }
}

async fn list(
    server: &Server,
    subscription: String,
    limit: u32,
    mut page_token: String,
    blocking_only: bool,
) -> Result<(), CliError> {
    let mut admin = server.admin();
    let mut dead = Vec::new();
    loop {
        let page = admin
            .list_deliveries(proto::ListDeliveriesRequest {
                subscription: subscription.clone(),
                state: proto::DeliveryState::Dead as i32,
                page_size: next_page_size(limit, dead.len()),
                page_token,
                blocking_only,
            })
            .await?
            .into_inner();
        dead.extend(page.deliveries);
        page_token = page.next_page_token;
        if page_token.is_empty() || next_page_size(limit, dead.len()) == 0 {
            break;
        }
    }
    if server.json {
        let list: Vec<_> = dead.iter().map(output::delivery_json).collect();
        return output::print_json(&json!({
            "subscription": subscription,
            "dead_letters": list,
            "next_page_token": (!page_token.is_empty()).then_some(&page_token),
        }));
    }
    let mut table = Table::new(&["MESSAGE ID", "ORDERING KEY", "ATTEMPTS", "LAST ERROR"]);
    for d in &dead {
        table.row(vec![
            d.message_id.clone(),
            output::or_dash(&d.ordering_key),
            d.attempts.to_string(),
            output::or_dash(&d.last_error),
        ]);
    }
    if table.is_empty() {
        eprintln!("no dead letters in subscription {subscription}");
    } else {
        output::print(&table.render())?;
    }
    if !page_token.is_empty() {
        eprintln!("more dead letters: add --page-token {page_token}");
    }
    Ok(())
}
