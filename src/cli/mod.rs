//! Operator commands: `courier subscriptions|messages|dead-letters|resolve|stats …` talk to a
//! running server over gRPC (the Admin and Producer services) and print readable tables, or
//! JSON with `--json`. Errors go to stderr with exit code 1: an unreachable server
//! ("cannot reach courier at …: connection refused") or the server's status code and message.

mod dead_letters;
mod messages;
mod output;
mod resolve;
mod stats;
mod subscriptions;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use tonic_types::StatusExt;

use crate::client::{AuthChannel, ClientOptions};

use crate::proto::admin_client::AdminClient;
use crate::proto::producer_client::ProducerClient;

pub use dead_letters::DeadLettersArgs;
pub use messages::MessagesArgs;
pub use resolve::ResolveArgs;
pub use stats::StatsArgs;
pub use subscriptions::SubscriptionsArgs;

/// Exit code for a command line that names no usable server address (as clap's usage errors).
const EXIT_USAGE: u8 = 2;
/// How long connecting to the server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The operator subcommands, flattened into `courier`'s own.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, list, show and delete subscriptions.
    Subscriptions(SubscriptionsArgs),
    /// Show a message's status, or list messages.
    Messages(MessagesArgs),
    /// List a subscription's dead letters, or redrive them.
    DeadLetters(DeadLettersArgs),
    /// Decide a PREPARED or UNRESOLVED message as an operator: commit or roll back.
    Resolve(ResolveArgs),
    /// Counts by state per topic and subscription, and the oldest pending age.
    Stats(StatsArgs),
}

/// Where the server is and how to print; every operator command takes these.
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// Courier's gRPC address: http://host:port, https://host:port, or host:port.
    #[arg(
        long,
        global = true,
        value_name = "ADDR",
        default_value = "http://127.0.0.1:50051"
    )]
    pub addr: String,
    /// Print JSON for scripts instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// Deadline of each call, like 10s or 1m.
    #[arg(long, global = true, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Bearer token sent with every call (the server's auth.tokens_file holds its SHA-256).
    #[arg(
        long,
        global = true,
        env = "COURIER_CLI_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
    /// CA certificate (PEM) to trust for an https:// address, instead of the system's roots.
    #[arg(long, global = true, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM), for a server that requires one (tls.client_ca_file).
    #[arg(long, global = true, value_name = "FILE", requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, global = true, value_name = "FILE", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
}

impl Target {
    fn client_options(&self) -> ClientOptions {
        ClientOptions {
            token: self.token.clone(),
            ca_file: self.ca_file.clone(),
            client_cert: self.client_cert.clone(),
            client_key: self.client_key.clone(),
        }
    }
}

/// Runs an operator command and returns the process's exit code.
pub fn run(command: Command) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("courier: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match command {
            Command::Subscriptions(args) => subscriptions::run(args).await,
            Command::Messages(args) => messages::run(args).await,
            Command::DeadLetters(args) => dead_letters::run(args).await,
            Command::Resolve(args) => resolve::run(args).await,
            Command::Stats(args) => stats::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("courier: {error}");
            match error {
                CliError::Usage(_) => ExitCode::from(EXIT_USAGE),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error("cannot reach courier at {addr}: {reason}")]
    Unreachable { addr: String, reason: String },
    #[error("{}", describe_status(.0))]
    Status(#[from] tonic::Status),
    #[error("cannot print the output: {0}")]
    Output(#[from] std::io::Error),
}

/// `CODE: message`, then one line per field violation the server attached.
fn describe_status(status: &tonic::Status) -> String {
    let mut text = format!(
        "{}: {}",
        crate::metrics::code_name(status.code()),
        status.message()
    );
    if let Some(bad_request) = status.get_error_details().bad_request() {
        let said = status.message();
        for violation in &bad_request.field_violations {
            if said.contains(&violation.description) {
                continue;
            }
            text.push_str(&format!(
                "\n  {}: {}",
                violation.field, violation.description
            ));
        }
    }
    text
}

/// The connection a command's calls go over, with the target's call deadline.
struct Server {
    channel: AuthChannel,
    json: bool,
}

impl Server {
    async fn connect(target: &Target) -> Result<Self, CliError> {
        let options = target.client_options();
        let usage = |error: crate::client::ClientError| CliError::Usage(error.0);
        let endpoint = crate::client::endpoint(&target.addr, &options)
            .map_err(usage)?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(target.timeout);
        let channel = endpoint
            .connect()
            .await
            .map_err(|error| CliError::Unreachable {
                addr: crate::client::endpoint_uri(&target.addr),
                reason: unreachable_reason(&error),
            })?;
        Ok(Self {
            channel: crate::client::with_token(channel, &options).map_err(usage)?,
            json: target.json,
        })
    }

    fn admin(&self) -> AdminClient<AuthChannel> {
        AdminClient::new(self.channel.clone())
    }

    fn producer(&self) -> ProducerClient<AuthChannel> {
        ProducerClient::new(self.channel.clone())
    }
}

/// The most telling cause of a failed connect: the OS's words for the socket error
/// ("connection refused"), or the innermost error's text.
fn unreachable_reason(error: &(dyn std::error::Error + 'static)) -> String {
    let mut innermost = error.to_string();
    let mut source = Some(error);
    while let Some(current) = source {
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
                std::io::ErrorKind::TimedOut => "connection timed out".to_owned(),
                _ => io.to_string(),
            };
        }
        innermost = current.to_string();
        source = current.source();
    }
    if innermost.contains("timed out") || innermost.contains("timeout") {
        return format!(
            "no connection within {}",
            humantime::format_duration(CONNECT_TIMEOUT)
        );
    }
    innermost
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_read_as_code_and_message() {
        let status = tonic::Status::not_found("subscription nope not found");
        assert_eq!(
            describe_status(&status),
            "NOT_FOUND: subscription nope not found"
        );
    }
}
