//! `courier subscriptions create|list|get|delete`.

use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::json;

use super::output::{self, Table};
use super::{CliError, Server, Target};
use crate::proto;

#[derive(Debug, Args)]
pub struct SubscriptionsArgs {
    #[command(flatten)]
    target: Target,
    #[command(subcommand)]
    command: SubscriptionsCommand,
}

#[derive(Debug, Subcommand)]
enum SubscriptionsCommand {
    /// Create a subscription (creating an identical one again is fine). Unset options take
    /// the server's defaults.
    Create(CreateArgs),
    /// List subscriptions, ordered by name.
    List {
        /// Only the subscriptions of this topic.
        #[arg(long)]
        topic: Option<String>,
    },
    /// Show one subscription.
    Get { name: String },
    /// Delete a subscription and its deliveries (dead letters included).
    Delete { name: String },
}

#[derive(Debug, Args)]
struct CreateArgs {
    name: String,
    #[arg(long)]
    topic: String,
    /// How long a consumer holds a delivery before it is redelivered (1s to 12h).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    ack_deadline: Option<Duration>,
    /// Attempts before a delivery becomes a dead letter.
    #[arg(long, value_name = "N")]
    max_attempts: Option<u32>,
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    initial_backoff: Option<Duration>,
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    max_backoff: Option<Duration>,
    /// Backoff growth per attempt (1.0 to 10.0).
    #[arg(long)]
    multiplier: Option<f64>,
    /// Push deliveries to this Receiver (http://host:port) instead of serving Receive.
    #[arg(long, value_name = "URL")]
    push_endpoint: Option<String>,
    /// Deliver messages that share an ordering key one at a time, in confirm order.
    #[arg(long)]
    ordered: bool,
    /// In an ordered subscription, what a dead head does to its lane: block (the default) or
    /// skip.
    #[arg(long, value_name = "POLICY", value_parser = ["block", "skip"])]
    dead_head: Option<String>,
}

fn proto_duration(duration: Option<Duration>) -> Option<prost_types::Duration> {
    duration.and_then(|d| prost_types::Duration::try_from(d).ok())
}

impl CreateArgs {
    fn into_subscription(self) -> proto::Subscription {
        let retry_set = self.max_attempts.is_some()
            || self.initial_backoff.is_some()
            || self.max_backoff.is_some()
            || self.multiplier.is_some();
        proto::Subscription {
            name: self.name,
            topic: self.topic,
            ack_deadline: proto_duration(self.ack_deadline),
            retry_policy: retry_set.then(|| proto::RetryPolicy {
                max_attempts: self.max_attempts.unwrap_or(0),
                initial_backoff: proto_duration(self.initial_backoff),
                max_backoff: proto_duration(self.max_backoff),
                multiplier: self.multiplier.unwrap_or(0.0),
            }),
            push_endpoint: self.push_endpoint.unwrap_or_default(),
            created_at: None,
            ordered: self.ordered,
            dead_head: match self.dead_head.as_deref() {
                Some("skip") => proto::DeadHead::Skip,
                Some(_) => proto::DeadHead::Block,
                None => proto::DeadHead::Unspecified,
            } as i32,
        }
    }
}

pub async fn run(args: SubscriptionsArgs) -> Result<(), CliError> {
    let server = Server::connect(&args.target).await?;
    let mut admin = server.admin();
    match args.command {
        SubscriptionsCommand::Create(create) => {
            let subscription = admin
                .create_subscription(proto::CreateSubscriptionRequest {
                    subscription: Some(create.into_subscription()),
                })
                .await?
                .into_inner();
            show(&server, &subscription)
        }
        SubscriptionsCommand::List { topic } => {
            let subscriptions = admin
                .list_subscriptions(proto::ListSubscriptionsRequest {
                    topic: topic.unwrap_or_default(),
                })
                .await?
                .into_inner()
                .subscriptions;
            if server.json {
                let list: Vec<_> = subscriptions
                    .iter()
                    .map(output::subscription_json)
                    .collect();
                return output::print_json(&json!({ "subscriptions": list }));
            }
            let mut table = Table::new(&[
                "NAME",
                "TOPIC",
                "ACK DEADLINE",
                "MAX ATTEMPTS",
                "DELIVERY",
                "CREATED",
            ]);
            for s in &subscriptions {
                let retry = s.retry_policy.unwrap_or_default();
                table.row(vec![
                    s.name.clone(),
                    s.topic.clone(),
                    output::duration_cell(&s.ack_deadline),
                    retry.max_attempts.to_string(),
                    if s.push_endpoint.is_empty() {
                        "pull".to_owned()
                    } else {
                        format!("push {}", s.push_endpoint)
                    },
                    output::time_cell(&s.created_at),
                ]);
            }
            if table.is_empty() {
                eprintln!("no subscriptions");
                return Ok(());
            }
            output::print(&table.render())
        }
        SubscriptionsCommand::Get { name } => {
            let subscription = admin
                .get_subscription(proto::GetSubscriptionRequest { name })
                .await?
                .into_inner();
            show(&server, &subscription)
        }
        SubscriptionsCommand::Delete { name } => {
            admin
                .delete_subscription(proto::DeleteSubscriptionRequest { name: name.clone() })
                .await?;
            if server.json {
                return output::print_json(&json!({ "deleted": name }));
            }
            output::print(&format!("deleted subscription {name}\n"))
        }
    }
}

fn show(server: &Server, subscription: &proto::Subscription) -> Result<(), CliError> {
    if server.json {
        output::print_json(&output::subscription_json(subscription))
    } else {
        output::print(&output::subscription_fields(subscription))
    }
}
