//! The store's sections: the SQLite writer and readers, the PostgreSQL pool.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, duration_text, invalid};

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

impl SqliteConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.read_connections == 0 {
            return invalid("sqlite.read_connections", "must be at least 1");
        }
        if self.max_batch == 0 {
            return invalid("sqlite.max_batch", "must be at least 1");
        }
        Ok(())
    }
}

impl PostgresConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=1000).contains(&self.max_connections) {
            return invalid("postgres.max_connections", "must be between 1 and 1000");
        }
        if !(Duration::from_millis(100)..=Duration::from_secs(300)).contains(&self.connect_timeout)
        {
            return invalid("postgres.connect_timeout", "must be between 100ms and 5m");
        }
        if !(Duration::from_millis(100)..=Duration::from_secs(300)).contains(&self.acquire_timeout)
        {
            return invalid("postgres.acquire_timeout", "must be between 100ms and 5m");
        }
        // PostgreSQL keeps statement_timeout in whole milliseconds.
        if !(Duration::from_millis(100)..=Duration::from_secs(3600))
            .contains(&self.statement_timeout)
        {
            return invalid("postgres.statement_timeout", "must be between 100ms and 1h");
        }
        Ok(())
    }
}
