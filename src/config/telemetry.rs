//! Where Courier sends its spans (`telemetry`): an OpenTelemetry collector over OTLP/gRPC.

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// OpenTelemetry export of Courier's spans (RPCs, store batches, check-backs, pushes).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// OTLP/gRPC endpoint of a collector, `http://host:4317` or `https://…`; empty (the
    /// default) exports nothing. The trace context producers send is forwarded either way.
    pub otlp_endpoint: String,
}

impl TelemetryConfig {
    /// The collector's URL, or `None` when export is off.
    pub fn endpoint(&self) -> Option<&str> {
        let endpoint = self.otlp_endpoint.trim();
        (!endpoint.is_empty()).then_some(endpoint)
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let Some(endpoint) = self.endpoint() else {
            return Ok(());
        };
        let problem = match url::Url::parse(endpoint) {
            Ok(url) if !matches!(url.scheme(), "http" | "https") => {
                format!("{endpoint:?} must start with http:// or https://")
            }
            Ok(url) if url.host_str().is_none() => format!("{endpoint:?} names no host"),
            Ok(_) => return Ok(()),
            Err(error) => format!("{endpoint:?} is not a URL: {error}"),
        };
        Err(ConfigError::Invalid {
            key: "telemetry.otlp_endpoint",
            problem,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(endpoint: &str) -> Result<(), String> {
        let config = TelemetryConfig {
            otlp_endpoint: endpoint.into(),
        };
        config.validate().map_err(|error| error.to_string())
    }

    #[test]
    fn the_endpoint_is_empty_or_an_http_url() {
        assert_eq!(check(""), Ok(()));
        assert_eq!(check("http://127.0.0.1:4317"), Ok(()));
        assert_eq!(check("https://otel.example:4317"), Ok(()));
        for bad in ["127.0.0.1:4317", "grpc://collector:4317", "http://"] {
            let error = check(bad).unwrap_err();
            assert!(error.contains("telemetry.otlp_endpoint"), "{bad}: {error}");
        }
    }
}
