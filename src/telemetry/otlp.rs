//! OTLP export: Courier's `tracing` spans become OpenTelemetry spans (tracing-opentelemetry)
//! and a batch processor sends them to `telemetry.otlp_endpoint` over gRPC. The batch
//! processor runs on a thread of its own and drops spans when its queue is full, so no
//! request ever waits on the collector; shutdown flushes what is queued.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::{Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::registry::LookupSpan;

use crate::config::TelemetryConfig;

/// The name spans are exported under (`service.name`).
const SERVICE_NAME: &str = "courier";

/// Why span export could not be set up; the server does not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot export spans to telemetry.otlp_endpoint `{endpoint}`")]
pub struct TelemetryError {
    endpoint: String,
    #[source]
    source: opentelemetry_otlp::ExporterBuildError,
}

/// The layer that turns Courier's spans into exported OpenTelemetry spans.
pub(super) type SpanLayer<S> = Box<dyn Layer<S> + Send + Sync>;

/// Span export while it runs: flush it with [`Telemetry::shutdown`] before the process ends.
#[must_use = "spans still queued are lost unless shutdown() flushes them"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// No export (tools and tests that only log).
    pub fn off() -> Self {
        Self { provider: None }
    }

    /// Starts export when `config` names an endpoint, and returns the layer that feeds it:
    /// Courier's own spans (not its libraries'), at INFO and above.
    pub(super) fn start<S>(
        config: &TelemetryConfig,
    ) -> Result<(Self, Option<SpanLayer<S>>), TelemetryError>
    where
        S: Subscriber + for<'span> LookupSpan<'span> + Send + Sync,
    {
        let Some(endpoint) = config.endpoint() else {
            return Ok((Self::off(), None));
        };
        let exporter = SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()
            .map_err(|source| TelemetryError {
                endpoint: endpoint.to_owned(),
                source,
            })?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(Resource::builder().with_service_name(SERVICE_NAME).build())
            .build();
        let layer = tracing_opentelemetry::layer()
            .with_tracer(provider.tracer(SERVICE_NAME))
            .with_filter(Targets::new().with_target("courier", Level::INFO))
            .boxed();
        Ok((
            Self {
                provider: Some(provider),
            },
            Some(layer),
        ))
    }

    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Sends the spans still queued and stops export. It blocks until the collector answered
    /// (or the exporter's timeout), so call it outside the runtime's worker threads, while the
    /// runtime still runs (the exporter's connection lives there).
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(error) = provider.shutdown()
        {
            tracing::warn!(error = %error, "flushing spans at shutdown failed");
        }
    }
}
