//! `courier resolve MESSAGE_ID --commit|--rollback`: an operator's decision on a PREPARED or
//! UNRESOLVED message.

use clap::{ArgGroup, Args};
use serde_json::json;

use super::messages::MessageRefArgs;
use super::output;
use super::{CliError, Server, Target};
use crate::proto;

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("decision").required(true).args(["commit", "rollback"])))]
pub struct ResolveArgs {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    message: MessageRefArgs,
    /// Confirm the message: it is delivered to every subscription of its topic.
    #[arg(long)]
    commit: bool,
    /// Cancel the message: it is never delivered.
    #[arg(long)]
    rollback: bool,
}

pub async fn run(args: ResolveArgs) -> Result<(), CliError> {
    let server = Server::connect(&args.target).await?;
    let decision = if args.commit {
        proto::Decision::Commit
    } else {
        proto::Decision::Rollback
    };
    let state = server
        .admin()
        .resolve(proto::ResolveRequest {
            message: args.message.to_proto(),
            decision: decision as i32,
        })
        .await?
        .into_inner()
        .state;
    let state = output::message_state(state);
    if server.json {
        return output::print_json(&json!({
            "message": args.message.to_json(),
            "state": state,
        }));
    }
    output::print(&format!("message is {state}\n"))
}
