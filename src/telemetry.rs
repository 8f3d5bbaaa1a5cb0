//! Log setup: one place decides the filter and the output format.
//!
//! Logs go to stderr (stdout belongs to the operator commands' output). Handlers and
//! scheduler steps run in spans that carry their message id and subscription, so every line
//! logged inside one names what it was about.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber: `RUST_LOG` filters (default `info`), output is plain text or
/// one JSON object per line, on stderr. Plain text is coloured only when stderr is a terminal
/// and `NO_COLOR` is unset. A second call (tests starting several servers) changes nothing.
pub fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _already_installed = match format {
        LogFormat::Plain => builder.with_ansi(use_colour()).try_init(),
        LogFormat::Json => builder.with_ansi(false).json().try_init(),
    };
}

/// Colours only for a person at a terminal: never in files, pipes or log collectors.
fn use_colour() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty());
    std::io::stderr().is_terminal() && !no_color
}

/// Records `value` as `field` of the current span, which declared it (`field = Empty`) in its
/// `#[instrument]`; handlers record ids once they are parsed and validated.
pub fn record(field: &'static str, value: impl std::fmt::Display) {
    tracing::Span::current().record(field, tracing::field::display(value));
}

/// Records the message a request names: `message_id`, or `producer` and `key`.
pub fn record_message(message: &crate::domain::MessageRef) {
    match message {
        crate::domain::MessageRef::Id(id) => record("message_id", id),
        crate::domain::MessageRef::ProducerKey { producer, key } => {
            record("producer", producer);
            // A key is any UTF-8: quoted, so it cannot break a log line.
            tracing::Span::current().record("key", tracing::field::debug(key.as_str()));
        }
    }
}
