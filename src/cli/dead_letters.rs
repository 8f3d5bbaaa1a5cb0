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
    /// (ids that are not dead are skipped), or with --all every dead one of the subscription.
    Redrive {
        subscription: String,
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        message_ids: Vec<String>,
        /// Redrive every dead delivery of the subscription.
        #[arg(long)]
        all: bool,
    },
    /// End dead deliveries for good (DISCARDED, never delivered again): the listed messages'
    /// (ids that are not dead are skipped), or with --all every dead one of the subscription.
    /// A lane a discarded head held goes on.
    Discard {
        subscription: String,
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        message_ids: Vec<String>,
        /// Discard every dead delivery of the subscription.
        #[arg(long)]
        all: bool,
    },
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
        } => {
            let redriven = server
                .admin()
                .redrive(proto::RedriveRequest {
                    subscription: subscription.clone(),
                    message_ids,
                })
                .await?
                .into_inner()
                .redriven;
            if server.json {
                return output::print_json(&json!({
                    "subscription": subscription,
                    "redriven": redriven,
                }));
            }
            let noun = if redriven == 1 {
                "delivery"
            } else {
                "deliveries"
            };
            output::print(&format!(
                "redrove {redriven} dead {noun} of subscription {subscription}\n"
            ))
        }
        DeadLettersCommand::Discard {
            subscription,
            message_ids,
            all: _,
        } => {
            let discarded = server
                .admin()
                .discard_dead_letters(proto::DiscardDeadLettersRequest {
                    subscription: subscription.clone(),
                    message_ids,
                })
                .await?
                .into_inner()
                .discarded;
            if server.json {
                return output::print_json(&json!({
                    "subscription": subscription,
                    "discarded": discarded,
                }));
            }
            let noun = if discarded == 1 {
                "delivery"
            } else {
                "deliveries"
            };
            output::print(&format!(
                "discarded {discarded} dead {noun} of subscription {subscription}\n"
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
