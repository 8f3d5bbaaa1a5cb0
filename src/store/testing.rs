//! Throwaway PostgreSQL databases for tests: the store conformance suite uses them, and the
//! integration tests can too (`courier::store::testing`, behind the `test-support` feature,
//! which this crate's own dev-dependency on itself turns on).
//!
//! The server comes from `COURIER_TEST_POSTGRES_URL` (e.g.
//! `postgres://postgres@127.0.0.1:5432/test`); its user must be allowed to create databases.
//! Each [`TestDatabase`] is a fresh database on it, dropped (`WITH (FORCE)`) when the value is
//! dropped, even after a failed assertion. Without the variable, PostgreSQL tests skip with a
//! notice, except under `CI=true`, where they must run.

use sqlx::{AssertSqlSafe, Connection, PgConnection};
use url::Url;

/// The variable that names the PostgreSQL server tests may use.
pub const POSTGRES_URL_VAR: &str = "COURIER_TEST_POSTGRES_URL";

/// The server URL for PostgreSQL tests, or None when they should skip. Panics when `CI` is
/// `true` and the variable is unset, so CI never passes without running them.
pub fn postgres_url() -> Option<String> {
    match std::env::var(POSTGRES_URL_VAR) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|ci| ci == "true") => {
            panic!("CI=true but {POSTGRES_URL_VAR} is not set: the PostgreSQL tests must run in CI")
        }
        _ => {
            eprintln!("skipping PostgreSQL tests: set {POSTGRES_URL_VAR}");
            None
        }
    }
}

/// A database of its own for one test, dropped with this value.
pub struct TestDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl TestDatabase {
    /// Creates an empty database on the server of [`postgres_url`], or returns None when
    /// PostgreSQL tests skip.
    pub async fn create() -> Option<Self> {
        let admin_url = postgres_url()?;
        Some(Self::create_on(&admin_url).await)
    }

    /// Creates an empty database on the server at `admin_url`.
    pub async fn create_on(admin_url: &str) -> Self {
        let name = format!("courier_t_{}", uuid::Uuid::now_v7().simple());
        let mut admin = PgConnection::connect(admin_url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {POSTGRES_URL_VAR}: {e}"));
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
        let _ = admin.close().await;
        let mut url = Url::parse(admin_url)
            .unwrap_or_else(|e| panic!("{POSTGRES_URL_VAR} is not a URL: {e}"));
        url.set_path(&name);
        Self {
            admin_url: admin_url.to_owned(),
            name,
            url: url.to_string(),
        }
    }

    /// The `database_url` of this database.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop may run inside a runtime (or during a panic), where blocking on async code
        // is not allowed: drop the database from a thread with a runtime of its own.
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&admin_url)
                    .await
                    .map_err(|e| e.to_string())?;
                let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                sqlx::raw_sql(AssertSqlSafe(drop))
                    .execute(&mut admin)
                    .await
                    .map_err(|e| e.to_string())?;
                let _ = admin.close().await;
                Ok::<_, String>(())
            })
        })
        .join();
        if let Ok(Err(error)) = dropped {
            eprintln!("could not drop test database {}: {error}", self.name);
        }
    }
}
