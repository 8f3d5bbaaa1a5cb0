//! Layered configuration: built-in defaults, then a TOML file, then `COURIER_*` environment
//! variables (`__` separates nested keys), then command-line flags; validated before use.

pub mod env;
mod security;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::domain::RetryPolicy;

pub use security::{AuthConfig, TlsConfig};

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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Plain,
    Json,
}

/// Check-back of prepared messages through the producers' Checkers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChecksConfig {
    /// First check after Prepare, unless the message sets `check_after`.
    #[serde(with = "duration_text")]
    pub first_after: Duration,
    #[serde(with = "duration_text")]
    pub initial_backoff: Duration,
    #[serde(with = "duration_text")]
    pub max_backoff: Duration,
    /// Checks before a message becomes UNRESOLVED.
    pub max_attempts: u32,
    /// Deadline of one Check call, unless the checker registered its own.
    #[serde(with = "duration_text")]
    pub timeout: Duration,
    /// Check calls in flight at once, over every producer.
    pub concurrency: usize,
}

impl ChecksConfig {
    /// The check schedule as a retry policy: `initial_backoff` doubling up to `max_backoff`,
    /// with the same jitter as deliveries, for `max_attempts` checks.
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.max_attempts,
            initial_backoff: self.initial_backoff,
            max_backoff: self.max_backoff,
            multiplier: 2.0,
        }
    }
}

/// Push delivery to the Receivers of subscriptions that have a `push_endpoint`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PushConfig {
    /// Deliver calls in flight at once, over every push subscription.
    pub concurrency: usize,
    /// Deliver calls in flight at once to one subscription, so one slow receiver cannot take
    /// every slot.
    pub per_subscription: usize,
}

/// How Courier calls Checkers and Receivers: TLS for `https://` endpoints, the key that signs
/// the JWT every call carries, and which hosts may be called at all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CallbacksConfig {
    /// PEM file of CA certificates trusted beside the system roots for `https://` endpoints.
    pub ca_file: Option<PathBuf>,
    /// PEM certificate (chain) Courier presents to endpoints that ask for one (mutual TLS).
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key of `client_cert_file`.
    pub client_key_file: Option<PathBuf>,
    /// PEM PKCS#8 Ed25519 key that signs callback JWTs, re-read on SIGHUP. Unset: a key
    /// generated once and shared by every replica through the database.
    pub signing_key_file: Option<PathBuf>,
    /// Host globs (`*` matches any run of characters) that checker and push endpoints may
    /// name; the default `["*"]` allows any host.
    pub allowed_hosts: Vec<String>,
}

/// Values that subscriptions take for fields their creator left unset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SubscriptionDefaults {
    #[serde(with = "duration_text")]
    pub ack_deadline: Duration,
    pub max_attempts: u32,
    #[serde(with = "duration_text")]
    pub initial_backoff: Duration,
    #[serde(with = "duration_text")]
    pub max_backoff: Duration,
    pub multiplier: f64,
}

impl SubscriptionDefaults {
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.max_attempts,
            initial_backoff: self.initial_backoff,
            max_backoff: self.max_backoff,
            multiplier: self.multiplier,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    pub max_payload_bytes: usize,
    pub max_headers: usize,
    /// Sum of the lengths of every header name and value.
    pub max_header_bytes: usize,
    /// Most bytes one Receive answers (ReceiveRequest.max_bytes may ask for less). The default
    /// keeps an answer within a default gRPC client's 4 MiB message limit.
    pub max_receive_bytes: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// How long a final message (and its producer key) is kept: the dedup window.
    #[serde(with = "duration_text")]
    pub final_messages: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SqliteConfig {
    /// Read-only connections beside the single writer.
    pub read_connections: u32,
    /// Most write commands committed in one transaction.
    pub max_batch: usize,
}

/// The PostgreSQL connection pool. Every replica opens up to `max_connections` (plus one for
/// LISTEN), so size PostgreSQL's `max_connections` for all replicas together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PostgresConfig {
    /// Most connections this replica holds in its pool.
    pub max_connections: u32,
    /// How long opening one connection may take at start (and for the LISTEN connection).
    #[serde(with = "duration_text")]
    pub connect_timeout: Duration,
    /// How long a call waits for a pooled connection (including reconnecting) before it fails
    /// with UNAVAILABLE.
    #[serde(with = "duration_text")]
    pub acquire_timeout: Duration,
    /// Longest one SQL statement may run; PostgreSQL cancels it after that.
    #[serde(with = "duration_text")]
    pub statement_timeout: Duration,
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
        }
    }
}

impl Default for ChecksConfig {
    fn default() -> Self {
        Self {
            first_after: Duration::from_secs(10),
            initial_backoff: Duration::from_secs(10),
            max_backoff: Duration::from_secs(600),
            max_attempts: 15,
            timeout: Duration::from_secs(5),
            concurrency: 32,
        }
    }
}

impl Default for PushConfig {
    fn default() -> Self {
        Self {
            concurrency: 64,
            per_subscription: 8,
        }
    }
}

impl Default for CallbacksConfig {
    fn default() -> Self {
        Self {
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
            signing_key_file: None,
            allowed_hosts: vec!["*".into()],
        }
    }
}

impl Default for SubscriptionDefaults {
    fn default() -> Self {
        Self {
            ack_deadline: Duration::from_secs(30),
            max_attempts: 16,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(600),
            multiplier: 2.0,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_payload_bytes: 1024 * 1024,
            max_headers: 64,
            max_header_bytes: 16 * 1024,
            max_receive_bytes: 4_000_000,
        }
    }
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            final_messages: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

impl Default for SqliteConfig {
    fn default() -> Self {
        Self {
            read_connections: 4,
            max_batch: 512,
        }
    }
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            max_connections: 16,
            connect_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(3),
            statement_timeout: Duration::from_secs(10),
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
    #[error("configuration: {0}")]
    Load(#[from] Box<figment::Error>),
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
            .map_err(Box::new)?;
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
        fn invalid(key: &'static str, problem: impl Into<String>) -> Result<(), ConfigError> {
            Err(ConfigError::Invalid {
                key,
                problem: problem.into(),
            })
        }
        let listen = self.listen_addr()?;
        self.metrics_addr()?;
        self.tls.validate()?;
        self.auth.validate()?;
        self.auth.check_exposure(listen)?;
        if crate::store::Backend::of(&self.database_url).is_none() {
            return invalid("database_url", crate::store::Backend::EXPECTED);
        }
        let checks = &self.checks;
        if checks.max_attempts == 0 {
            return invalid("checks.max_attempts", "must be at least 1");
        }
        if checks.initial_backoff.is_zero() {
            return invalid("checks.initial_backoff", "must be more than 0");
        }
        if checks.max_backoff < checks.initial_backoff {
            return invalid(
                "checks.max_backoff",
                "must be at least checks.initial_backoff",
            );
        }
        if checks.timeout.is_zero() {
            return invalid("checks.timeout", "must be more than 0");
        }
        if !(1..=10_000).contains(&checks.concurrency) {
            return invalid("checks.concurrency", "must be between 1 and 10000");
        }
        let push = &self.push;
        if !(1..=10_000).contains(&push.concurrency) {
            return invalid("push.concurrency", "must be between 1 and 10000");
        }
        if push.per_subscription == 0 || push.per_subscription > push.concurrency {
            return invalid(
                "push.per_subscription",
                "must be at least 1 and at most push.concurrency",
            );
        }
        self.callbacks.validate()?;
        let subs = &self.subscriptions;
        if !(Duration::from_secs(1)..=Duration::from_secs(12 * 3600)).contains(&subs.ack_deadline) {
            return invalid("subscriptions.ack_deadline", "must be between 1s and 12h");
        }
        if !(1..=1000).contains(&subs.max_attempts) {
            return invalid("subscriptions.max_attempts", "must be between 1 and 1000");
        }
        if subs.initial_backoff.is_zero() {
            return invalid("subscriptions.initial_backoff", "must be more than 0");
        }
        if subs.max_backoff < subs.initial_backoff {
            return invalid(
                "subscriptions.max_backoff",
                "must be at least subscriptions.initial_backoff",
            );
        }
        if !(1.0..=10.0).contains(&subs.multiplier) {
            return invalid("subscriptions.multiplier", "must be between 1.0 and 10.0");
        }
        if self.limits.max_payload_bytes == 0 || self.limits.max_payload_bytes > 64 * 1024 * 1024 {
            return invalid("limits.max_payload_bytes", "must be between 1 and 64 MiB");
        }
        if self.limits.max_receive_bytes < 64 * 1024 {
            return invalid("limits.max_receive_bytes", "must be at least 64 KiB");
        }
        if self.retention.final_messages.is_zero() {
            return invalid("retention.final_messages", "must be more than 0");
        }
        if self.sqlite.read_connections == 0 {
            return invalid("sqlite.read_connections", "must be at least 1");
        }
        if self.sqlite.max_batch == 0 {
            return invalid("sqlite.max_batch", "must be at least 1");
        }
        let postgres = &self.postgres;
        if !(1..=1000).contains(&postgres.max_connections) {
            return invalid("postgres.max_connections", "must be between 1 and 1000");
        }
        if !(Duration::from_millis(100)..=Duration::from_secs(300))
            .contains(&postgres.connect_timeout)
        {
            return invalid("postgres.connect_timeout", "must be between 100ms and 5m");
        }
        if !(Duration::from_millis(100)..=Duration::from_secs(300))
            .contains(&postgres.acquire_timeout)
        {
            return invalid("postgres.acquire_timeout", "must be between 100ms and 5m");
        }
        // PostgreSQL keeps statement_timeout in whole milliseconds.
        if !(Duration::from_millis(100)..=Duration::from_secs(3600))
            .contains(&postgres.statement_timeout)
        {
            return invalid("postgres.statement_timeout", "must be between 100ms and 1h");
        }
        Ok(())
    }
}

impl CallbacksConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.client_cert_file.is_some() != self.client_key_file.is_some() {
            return Err(ConfigError::Invalid {
                key: "callbacks.client_cert_file",
                problem: "callbacks.client_cert_file and callbacks.client_key_file go together"
                    .into(),
            });
        }
        for pattern in &self.allowed_hosts {
            crate::callbacks::HostPattern::parse(pattern).map_err(|problem| {
                ConfigError::Invalid {
                    key: "callbacks.allowed_hosts",
                    problem,
                }
            })?;
        }
        Ok(())
    }
}

/// Durations written as text: `250ms`, `10s`, `10m`, `7d`.
mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&humantime::format_duration(*value).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(text.trim()).map_err(|e| {
            D::Error::custom(format!(
                "{text:?} is not a duration ({e}); write it like 250ms, 10s, 10m or 7d"
            ))
        })
    }
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
    fn push_slots_per_subscription_fit_the_total() {
        let mut config = Config::default();
        config.push.per_subscription = config.push.concurrency + 1;
        let error = config.validate().unwrap_err();
        assert!(
            error.to_string().contains("push.per_subscription"),
            "{error}"
        );
        config.push.per_subscription = 1;
        config.checks.concurrency = 0;
        let error = config.validate().unwrap_err();
        assert!(error.to_string().contains("checks.concurrency"), "{error}");
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
