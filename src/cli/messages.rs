//! `courier messages status|list`.

use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;

use super::output::{self, Table};
use super::{CliError, Server, Target};
use crate::proto;
use crate::proto::message_ref::Ref;

#[derive(Debug, Args)]
pub struct MessagesArgs {
    #[command(flatten)]
    target: Target,
    #[command(subcommand)]
    command: MessagesCommand,
}

#[derive(Debug, Subcommand)]
enum MessagesCommand {
    /// Show a message, its outcome and its delivery to every subscription (CheckStatus).
    Status(MessageRefArgs),
    /// List messages, newest first.
    List(ListArgs),
}

/// A message named by its id, or by `--producer` and `--key`.
#[derive(Debug, Clone, Args)]
pub(super) struct MessageRefArgs {
    /// The message id Prepare or Publish returned.
    #[arg(required_unless_present = "producer", conflicts_with = "producer")]
    message_id: Option<String>,
    /// The producer, with --key: names the message by its business key.
    #[arg(long, requires = "key")]
    producer: Option<String>,
    #[arg(long, requires = "producer")]
    key: Option<String>,
}

impl MessageRefArgs {
    pub(super) fn to_proto(&self) -> Option<proto::MessageRef> {
        let reference = match (&self.message_id, &self.producer, &self.key) {
            (Some(id), _, _) => Ref::MessageId(id.clone()),
            (None, Some(producer), Some(key)) => Ref::ProducerKey(proto::ProducerKey {
                producer: producer.clone(),
                key: key.clone(),
            }),
            // clap requires one of the two forms.
            _ => return None,
        };
        Some(proto::MessageRef {
            r#ref: Some(reference),
        })
    }

    /// The reference as JSON: `{"message_id": …}` or `{"producer": …, "key": …}`.
    pub(super) fn to_json(&self) -> serde_json::Value {
        match &self.message_id {
            Some(id) => json!({ "message_id": id }),
            None => json!({ "producer": self.producer, "key": self.key }),
        }
    }
}

#[derive(Debug, Args)]
struct ListArgs {
    #[arg(long)]
    topic: Option<String>,
    #[arg(long)]
    producer: Option<String>,
    #[arg(long, value_enum)]
    state: Option<StateFilter>,
    #[arg(long, value_enum)]
    outcome: Option<OutcomeFilter>,
    /// Most messages to show; 0 shows every one (page after page).
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// Continue a previous listing where it stopped.
    #[arg(long, value_name = "TOKEN")]
    page_token: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum StateFilter {
    Prepared,
    Confirmed,
    Cancelled,
    Unresolved,
}

impl From<StateFilter> for proto::MessageState {
    fn from(state: StateFilter) -> Self {
        match state {
            StateFilter::Prepared => Self::Prepared,
            StateFilter::Confirmed => Self::Confirmed,
            StateFilter::Cancelled => Self::Cancelled,
            StateFilter::Unresolved => Self::Unresolved,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum OutcomeFilter {
    Prepared,
    Cancelled,
    Unresolved,
    Delivering,
    Delivered,
    DeadLettered,
}

impl From<OutcomeFilter> for proto::MessageOutcome {
    fn from(outcome: OutcomeFilter) -> Self {
        match outcome {
            OutcomeFilter::Prepared => Self::Prepared,
            OutcomeFilter::Cancelled => Self::Cancelled,
            OutcomeFilter::Unresolved => Self::Unresolved,
            OutcomeFilter::Delivering => Self::Delivering,
            OutcomeFilter::Delivered => Self::Delivered,
            OutcomeFilter::DeadLettered => Self::DeadLettered,
        }
    }
}

/// Largest page the server gives.
const MAX_PAGE: u32 = 1000;

/// How many to ask for next: what the limit leaves (0 = no limit), at most a full page.
pub(super) fn next_page_size(limit: u32, shown: usize) -> u32 {
    if limit == 0 {
        return MAX_PAGE;
    }
    let left = limit.saturating_sub(u32::try_from(shown).unwrap_or(u32::MAX));
    left.min(MAX_PAGE)
}

pub async fn run(args: MessagesArgs) -> Result<(), CliError> {
    let server = Server::connect(&args.target).await?;
    match args.command {
        MessagesCommand::Status(reference) => status(&server, &reference).await,
        MessagesCommand::List(list) => self::list(&server, list).await,
    }
}

async fn status(server: &Server, reference: &MessageRefArgs) -> Result<(), CliError> {
    let message = server
        .producer()
        .check_status(proto::CheckStatusRequest {
            message: reference.to_proto(),
        })
        .await?
        .into_inner()
        .message
        .unwrap_or_default();
    if server.json {
        return output::print_json(&output::message_json(&message));
    }
    let mut pairs = vec![
        ("message id", message.message_id.clone()),
        ("producer", message.producer.clone()),
        ("topic", message.topic.clone()),
        ("key", message.key.clone()),
        ("state", output::message_state(message.state)),
        ("outcome", output::message_outcome(message.outcome)),
        ("created", output::time_cell(&message.created_at)),
        ("updated", output::time_cell(&message.updated_at)),
        ("payload", format!("{} bytes", message.payload_bytes)),
    ];
    if message.check_attempts > 0 || message.next_check_at.is_some() {
        pairs.push(("checks made", message.check_attempts.to_string()));
        pairs.push(("next check", output::time_cell(&message.next_check_at)));
    }
    if !message.last_check_error.is_empty() {
        pairs.push(("last check error", message.last_check_error.clone()));
    }
    let mut headers: Vec<_> = message.headers.iter().collect();
    headers.sort();
    for (name, value) in headers {
        pairs.push(("header", format!("{name}={value}")));
    }
    let mut text = output::fields(&pairs);
    if !message.deliveries.is_empty() {
        let mut table = Table::new(&[
            "SUBSCRIPTION",
            "STATE",
            "ATTEMPTS",
            "NEXT ATTEMPT",
            "LEASE EXPIRES",
            "LAST ERROR",
        ]);
        for d in &message.deliveries {
            table.row(vec![
                d.subscription.clone(),
                output::delivery_state(d.state),
                d.attempts.to_string(),
                output::time_cell(&d.next_attempt_at),
                output::time_cell(&d.lease_expires_at),
                output::or_dash(&d.last_error),
            ]);
        }
        text.push('\n');
        text.push_str(&table.render());
    }
    output::print(&text)
}

async fn list(server: &Server, args: ListArgs) -> Result<(), CliError> {
    let mut admin = server.admin();
    let mut messages = Vec::new();
    let mut page_token = args.page_token.unwrap_or_default();
    loop {
        let page = admin
            .list_messages(proto::ListMessagesRequest {
                topic: args.topic.clone().unwrap_or_default(),
                producer: args.producer.clone().unwrap_or_default(),
                state: args
                    .state
                    .map_or(0, |s| proto::MessageState::from(s) as i32),
                outcome: args
                    .outcome
                    .map_or(0, |o| proto::MessageOutcome::from(o) as i32),
                page_size: next_page_size(args.limit, messages.len()),
                page_token,
            })
            .await?
            .into_inner();
        messages.extend(page.messages);
        page_token = page.next_page_token;
        if page_token.is_empty() || next_page_size(args.limit, messages.len()) == 0 {
            break;
        }
    }
    if server.json {
        let list: Vec<_> = messages.iter().map(output::message_json).collect();
        return output::print_json(&json!({
            "messages": list,
            "next_page_token": (!page_token.is_empty()).then_some(&page_token),
        }));
    }
    let mut table = Table::new(&[
        "MESSAGE ID",
        "PRODUCER",
        "TOPIC",
        "KEY",
        "STATE",
        "OUTCOME",
        "CREATED",
    ]);
    for m in &messages {
        table.row(vec![
            m.message_id.clone(),
            m.producer.clone(),
            m.topic.clone(),
            m.key.clone(),
            output::message_state(m.state),
            output::message_outcome(m.outcome),
            output::time_cell(&m.created_at),
        ]);
    }
    if table.is_empty() {
        eprintln!("no messages");
    } else {
        output::print(&table.render())?;
    }
    if !page_token.is_empty() {
        eprintln!("more messages: add --page-token {page_token}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_stop_at_the_limit() {
        assert_eq!(next_page_size(50, 0), 50);
        assert_eq!(next_page_size(50, 30), 20);
        assert_eq!(next_page_size(50, 50), 0);
        assert_eq!(next_page_size(5000, 0), MAX_PAGE);
        assert_eq!(next_page_size(0, 12_345), MAX_PAGE);
    }
}
