//! Logs and traces: one place decides the filter, the output format and where spans go.
//!
//! Logs go to stderr (stdout belongs to the operator commands' output). Handlers and
//! scheduler steps run in spans that carry their message id and subscription, so every line
//! logged inside one names what it was about. An error is logged with its whole cause chain
//! ([`ErrorChain`]). With `telemetry.otlp_endpoint` set, Courier's own spans are also
//! OpenTelemetry spans exported to that collector (`otlp`), joined to the traces producers
//! start (`context`).

pub mod context;
mod otlp;

use std::error::Error;
use std::fmt;
use std::io::IsTerminal;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, TelemetryConfig};

pub use otlp::{Telemetry, TelemetryError};

/// The target of spans only export wants, never the log: the RPC span, whose handler span
/// inside already names the call in log lines.
pub const EXPORT_ONLY: &str = "courier::export";

/// Installs the global subscriber: `RUST_LOG` filters the log (default `info`), output is
/// plain text or one JSON object per line, on stderr. Plain text is coloured only when stderr
/// is a terminal and `NO_COLOR` is unset. With an OTLP endpoint, Courier's spans are exported
/// too, whatever `RUST_LOG` says; call it inside the Tokio runtime then (the exporter's
/// connection lives there) and [`Telemetry::shutdown`] before the runtime ends. A second call
/// (tests starting several servers) changes nothing.
pub fn init_tracing(
    format: LogFormat,
    telemetry: &TelemetryConfig,
) -> Result<Telemetry, TelemetryError> {
    install(format, telemetry, "info")
}

/// Logs as [`init_tracing`] does, plain text and no export, but only warnings and errors
/// unless `RUST_LOG` says otherwise: `courier bench` and the server it starts, whose stderr
/// should hold what went wrong, not every call. So `RUST_LOG=info courier bench` measures
/// the logging `courier serve` does by default.
pub fn init_quiet_tracing() {
    let no_export = TelemetryConfig::default();
    let _never_fails_without_export = install(LogFormat::Plain, &no_export, "warn");
}

/// The subscriber, with `default_filter` where `RUST_LOG` is unset.
fn install(
    format: LogFormat,
    telemetry: &TelemetryConfig,
    default_filter: &str,
) -> Result<Telemetry, TelemetryError> {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(default_filter))
        .add_directive(
            format!("{EXPORT_ONLY}=off")
                .parse()
                .expect("a valid directive"),
        );
    let log = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let log = match format {
        LogFormat::Plain => log.with_ansi(use_colour()).boxed(),
        LogFormat::Json => log.with_ansi(false).json().boxed(),
    };
    let (telemetry, spans) = Telemetry::start(telemetry)?;
    let logged = tracing_subscriber::registry().with(log.with_filter(filter));
    // No exporter means no layer, not a `None` one: tracing-subscriber takes a `None` layer
    // for one that wants every callsite, and would then make the export-only RPC span of
    // every call in the registry, for nobody.
    let _already_installed = match spans {
        Some(spans) => logged.with(spans).try_init(),
        None => logged.try_init(),
    };
    Ok(telemetry)
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

/// Formats an error with every source below it: `store failure: caused by: disk I/O error`.
pub struct ErrorChain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": caused by: {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl fmt::Display for Layer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl Error for Layer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1
                .as_deref()
                .map(|cause| cause as &(dyn Error + 'static))
        }
    }

    #[test]
    fn an_error_chain_names_every_cause() {
        let disk = Layer("disk I/O error", None);
        let store = Layer("store failure", Some(Box::new(disk)));
        assert_eq!(
            ErrorChain(&store).to_string(),
            "store failure: caused by: disk I/O error"
        );
    }
}
