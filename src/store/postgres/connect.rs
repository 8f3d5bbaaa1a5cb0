//! Connecting to PostgreSQL: Courier's connection settings, a first connection that waits for
//! a database still starting, and the migrations.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};

use super::error::{invalid_url, timed_out};
use crate::config::PostgresConfig;
use crate::store::StoreError;

pub(super) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Connection settings from the URL plus Courier's: application name and the server-side
/// timeouts. The URL (and its password) stays inside sqlx; errors never quote it.
pub fn options(url: &str, config: &PostgresConfig) -> Result<PgConnectOptions, StoreError> {
    let timeout_ms = config.statement_timeout.as_millis().to_string();
    let options = PgConnectOptions::from_str(url)
        .map_err(|_| invalid_url())?
        .application_name("courier")
        // A transaction never waits on its client for long; if a replica stalls mid
        // transaction (a cut network), PostgreSQL ends it and frees its row locks.
        .options([
            ("statement_timeout", timeout_ms.as_str()),
            ("idle_in_transaction_session_timeout", timeout_ms.as_str()),
            // Not "relation _sqlx_migrations already exists, skipping" at every start.
            ("client_min_messages", "warning"),
        ]);
    Ok(options)
}

/// Runs the migrations. Safe while other replicas do the same: sqlx's PostgreSQL migrator
/// holds an advisory lock (`pg_advisory_lock`) while it checks and applies migrations, so one
/// replica applies them and the others wait, then find nothing left to do.
pub async fn migrate(
    options: &PgConnectOptions,
    config: &PostgresConfig,
) -> Result<(), StoreError> {
    // Without statement_timeout: waiting for another replica's migration (the advisory
    // lock) or a long migration must not be cancelled. Its own connection, closed after,
    // so the session-level lock can never linger in a pooled connection.
    let options = options.clone().options([("statement_timeout", "0")]);
    let mut connection = connect_with_retry(&options, config.connect_timeout).await?;
    // `run_direct` is what `run` does after acquiring; called on the connection itself it
    // keeps this future `Send` (sqlx's `Acquire` bound otherwise trips the compiler's
    // higher-ranked lifetime check when the future is spawned).
    let migrated = MIGRATOR.run_direct(None, &mut connection, false).await;
    let _ = connection.close().await;
    migrated.map_err(|error| match error {
        sqlx::migrate::MigrateError::Execute(error) => StoreError::from(error),
        other => StoreError::internal(other),
    })
}

/// Opens one connection, retrying refused or failed attempts with a short backoff until
/// `timeout` has passed, so replicas that start just before PostgreSQL does still come up.
async fn connect_with_retry(
    options: &PgConnectOptions,
    timeout: Duration,
) -> Result<PgConnection, StoreError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pause = Duration::from_millis(50);
    loop {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let error = match tokio::time::timeout(remaining, options.connect()).await {
            Ok(Ok(connection)) => return Ok(connection),
            Ok(Err(error)) => StoreError::from(error),
            Err(_) => timed_out(timeout),
        };
        // Only a database that is not there (yet) is worth waiting for; a wrong password or
        // database name is not going to fix itself.
        if !matches!(error, StoreError::Unavailable(_))
            || tokio::time::Instant::now() + pause >= deadline
        {
            return Err(error);
        }
        tracing::debug!(error = %error, "database not reachable yet; retrying");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}
