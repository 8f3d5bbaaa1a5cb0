//! Layered configuration: built-in defaults, then a TOML file, then `COURIER_*` environment
//! variables (`__` separates nested keys), then command-line flags; validated before use.

pub mod env;

mod callbacks;
mod duration_text;
mod limits;
mod load_error;
mod scheduler;
mod security;
mod store;
mod telemetry;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

pub use callbacks::CallbacksConfig;
pub use limits::{
    DEFAULT_MAX_STREAMS_PER_CONNECTION, InFlightLimits, Limits, SubscriptionDefaults,
};
pub use scheduler::{ChecksConfig, PushConfig, RetentionConfig};
pub use security::{AuthConfig, TlsConfig};
pub use store::{PostgresConfig, SqliteConfig};
pub use telemetry::TelemetryConfig;

/// Everything `courier serve` can be told. Field names are the configuration keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// gRPC listen address.
    pub listen: String,
    /// Address of the Prometheus metrics endpoint (`GET /metrics`); empty disables it.
    pub metrics_listen: String,
    /// `sqlite://path` (created if missing) or `postgres://…`.
    pub database_url: String,
    /// `plain` or `json`.
    pub log_format: LogFormat,
    /// How long in-flight calls may run after a shutdown signal.
    #[serde(with = "duration_text")]
    pub shutdown_grace: Duration,
    pub checks: ChecksConfig,
    pub push: PushConfig,
    pub callbacks: CallbacksConfig,
    pub subscriptions: SubscriptionDefaults,
    pub limits: Limits,
    pub retention: RetentionConfig,
    pub sqlite: SqliteConfig,
    pub postgres: PostgresConfig,
    pub tls: TlsConfig,
    pub auth: AuthConfig,
    pub telemetry: TelemetryConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Plain,
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:50051".into(),
            metrics_listen: "127.0.0.1:9464".into(),
            database_url: "sqlite://courier.db".into(),
            log_format: LogFormat::Plain,
            shutdown_grace: Duration::from_secs(10),
            checks: ChecksConfig::default(),
            push: PushConfig::default(),
            callbacks: CallbacksConfig::default(),
            subscriptions: SubscriptionDefaults::default(),
            limits: Limits::default(),
            retention: RetentionConfig::default(),
            sqlite: SqliteConfig::default(),
            postgres: PostgresConfig::default(),
            tls: TlsConfig::default(),
            auth: AuthConfig::default(),
            telemetry: TelemetryConfig::default(),
        }
    }
}

/// Settings given on the command line; they override every other layer.
#[derive(Debug, Default, Clone, Serialize)]
pub struct FlagOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value that does not load, described by `load_error`.
    #[error("{0}")]
    Load(String),
    #[error("configuration key `{key}`: {problem}")]
    Invalid { key: &'static str, problem: String },
}

impl Config {
    /// Reads the layers in order (defaults, file, environment, flags) and validates the result.
    pub fn load(file: Option<&Path>, flags: FlagOverrides) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.exists() {
                return Err(ConfigError::Invalid {
                    key: "--config",
                    problem: format!("file {} does not exist", file.display()),
                });
            }
            figment = figment.merge(Toml::file(file));
        }
        let config: Config = figment
            // COURIER_TEST_*, COURIER_CLI_TOKEN and Kubernetes service links are not
            // configuration: a shell or pod that has them must still start Courier.
            .merge(
                Env::prefixed(env::PREFIX)
                    .filter(|key| {
                        env::not_configuration(&format!("{}{key}", env::PREFIX)).is_none()
                    })
                    .split("__"),
            )
            .merge(Serialized::defaults(flags))
            .extract()
            .map_err(|error| ConfigError::Load(load_error::describe(error)))?;
        config.validate()?;
        Ok(config)
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.listen.parse().map_err(|e| ConfigError::Invalid {
            key: "listen",
            problem: format!("{:?} is not a socket address: {e}", self.listen),
        })
    }

    /// The metrics endpoint's address, or `None` when `metrics_listen` is empty (disabled).
    pub fn metrics_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        let text = self.metrics_listen.trim();
        if text.is_empty() {
            return Ok(None);
        }
        text.parse().map(Some).map_err(|e| ConfigError::Invalid {
            key: "metrics_listen",
            problem: format!("{text:?} is not a socket address (or empty to disable): {e}"),
        })
    }

    /// Checks ranges and relations between keys; the error names the offending key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let listen = self.listen_addr()?;
        self.metrics_addr()?;
        self.tls.validate()?;
        self.auth.validate()?;
        self.auth.check_exposure(listen)?;
        if crate::store::Backend::of(&self.database_url).is_none() {
            return invalid("database_url", crate::store::Backend::EXPECTED);
        }
        self.checks.validate()?;
        self.push.validate()?;
        self.callbacks.validate()?;
        self.subscriptions.validate()?;
        self.limits.validate()?;
        self.retention.validate()?;
        self.sqlite.validate()?;
        self.postgres.validate()?;
        self.telemetry.validate()
    }
}

/// The error for `key`, whose value has `problem`.
fn invalid(key: &'static str, problem: impl Into<String>) -> Result<(), ConfigError> {
    Err(ConfigError::Invalid {
        key,
        problem: problem.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_the_design() {
        let config = Config::default();
        config.validate().unwrap();
        assert_eq!(config.listen, "127.0.0.1:50051");
        assert_eq!(config.checks.max_attempts, 15);
        assert_eq!(config.subscriptions.ack_deadline, Duration::from_secs(30));
        assert_eq!(
            config.retention.final_messages,
            Duration::from_secs(604_800)
        );
        assert_eq!(config.checks.concurrency, 32);
        assert_eq!(config.push.concurrency, 64);
        assert_eq!(config.push.per_subscription, 8);
    }

    #[test]
    fn metrics_listen_is_an_address_or_empty() {
        let mut config = Config::default();
        assert_eq!(config.metrics_listen, "127.0.0.1:9464");
        assert_eq!(
            config.metrics_addr().unwrap(),
            Some("127.0.0.1:9464".parse().unwrap())
        );
        config.metrics_listen = String::new();
        assert_eq!(config.metrics_addr().unwrap(), None);
        config.validate().unwrap();
        config.metrics_listen = "localhost".into();
        let error = config.validate().unwrap_err();
        assert!(error.to_string().contains("metrics_listen"), "{error}");
    }

    #[test]
    fn file_and_flags_layer_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("courier.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:7000\"\n[checks]\ninitial_backoff = \"250ms\"\n[retention]\nfinal_messages = \"2d\"\n",
        )
        .unwrap();
        let flags = FlagOverrides {
            listen: Some("127.0.0.1:7001".into()),
            database_url: None,
        };
        let config = Config::load(Some(&file), flags).unwrap();
        assert_eq!(config.listen, "127.0.0.1:7001");
        assert_eq!(config.checks.initial_backoff, Duration::from_millis(250));
        assert_eq!(
            config.retention.final_messages,
            Duration::from_secs(172_800)
        );
    }

    #[test]
    fn errors_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("courier.toml");
        std::fs::write(&file, "[checks]\ninitial_backoff = \"soon\"\n").unwrap();
        let error = Config::load(Some(&file), FlagOverrides::default()).unwrap_err();
        assert!(error.to_string().contains("initial_backoff"), "{error}");

        std::fs::write(&file, "[checks]\nmax_attempts = 0\n").unwrap();
        let error = Config::load(Some(&file), FlagOverrides::default()).unwrap_err();
        assert!(error.to_string().contains("checks.max_attempts"), "{error}");

        std::fs::write(&file, "[postgres]\nstatement_timeout = \"10ms\"\n").unwrap();
        let error = Config::load(Some(&file), FlagOverrides::default()).unwrap_err();
        assert!(
            error.to_string().contains("postgres.statement_timeout"),
            "{error}"
        );

        std::fs::write(&file, "[checks]\nmax_atempts = 3\n").unwrap();
        let error = Config::load(Some(&file), FlagOverrides::default()).unwrap_err();
        assert!(error.to_string().contains("max_atempts"), "{error}");
    }
}
