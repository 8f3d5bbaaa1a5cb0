//! The databases the outbox and the inbox live in: PostgreSQL and SQLite through sqlx. What
//! differs between them is the table definitions; every other statement is written once
//! (`$N` placeholders, which sqlx's SQLite driver reads too) and binds only text.

use futures::future::BoxFuture;
use sqlx::{Postgres, Sqlite};

/// A database that can hold `courier_outbox` and `courier_inbox`: [`sqlx::Postgres`] or
/// [`sqlx::Sqlite`].
pub trait Backend: sqlx::Database + sealed::Sealed {
    #[doc(hidden)]
    const TABLES: Tables;

    /// Runs `sql` with `binds` as `$1`, `$2`, …; answers the rows it changed.
    #[doc(hidden)]
    fn execute<'c>(
        connection: &'c mut Self::Connection,
        sql: &'static str,
        binds: Vec<String>,
    ) -> BoxFuture<'c, Result<u64, sqlx::Error>>;

    /// Runs `sql` with `binds`; answers the first column of the first row, if any.
    #[doc(hidden)]
    fn fetch_text<'c>(
        connection: &'c mut Self::Connection,
        sql: &'static str,
        binds: Vec<String>,
    ) -> BoxFuture<'c, Result<Option<String>, sqlx::Error>>;
}

/// The `CREATE` statements of one backend.
#[doc(hidden)]
pub struct Tables {
    pub outbox: &'static [&'static str],
    pub inbox: &'static [&'static str],
    /// Deletes outbox rows created more than `$1` seconds ago.
    pub outbox_prune: &'static str,
    /// Deletes inbox rows processed more than `$1` seconds ago.
    pub inbox_prune: &'static str,
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for sqlx::Postgres {}
    impl Sealed for sqlx::Sqlite {}
}

/// One implementation for each backend; the types differ, the code does not.
macro_rules! backend {
    ($database:ty, $tables:expr) => {
        impl Backend for $database {
            const TABLES: Tables = $tables;

            fn execute<'c>(
                connection: &'c mut Self::Connection,
                sql: &'static str,
                binds: Vec<String>,
            ) -> BoxFuture<'c, Result<u64, sqlx::Error>> {
                Box::pin(async move {
                    let mut query = sqlx::query::<$database>(sql);
                    for bind in binds {
                        query = query.bind(bind);
                    }
                    Ok(query.execute(connection).await?.rows_affected())
                })
            }

            fn fetch_text<'c>(
                connection: &'c mut Self::Connection,
                sql: &'static str,
                binds: Vec<String>,
            ) -> BoxFuture<'c, Result<Option<String>, sqlx::Error>> {
                Box::pin(async move {
                    let mut query = sqlx::query_scalar::<$database, String>(sql);
                    for bind in binds {
                        query = query.bind(bind);
                    }
                    query.fetch_optional(connection).await
                })
            }
        }
    };
}

backend!(
    Postgres,
    Tables {
        outbox: &[
            "CREATE TABLE IF NOT EXISTS courier_outbox (
                message_id TEXT PRIMARY KEY,
                state TEXT NOT NULL CHECK (state IN ('COMMITTED', 'ROLLED_BACK')),
                created_at TIMESTAMPTZ NOT NULL DEFAULT now()
            )",
            "CREATE INDEX IF NOT EXISTS courier_outbox_created_at ON courier_outbox (created_at)",
        ],
        inbox: &[
            "CREATE TABLE IF NOT EXISTS courier_inbox (
                subscription TEXT NOT NULL,
                dedup_key TEXT NOT NULL,
                message_id TEXT NOT NULL,
                processed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                PRIMARY KEY (subscription, dedup_key)
            )",
            "CREATE INDEX IF NOT EXISTS courier_inbox_processed_at ON courier_inbox (processed_at)",
        ],
        outbox_prune: "DELETE FROM courier_outbox \
            WHERE created_at < now() - make_interval(secs => CAST($1 AS DOUBLE PRECISION))",
        inbox_prune: "DELETE FROM courier_inbox \
            WHERE processed_at < now() - make_interval(secs => CAST($1 AS DOUBLE PRECISION))",
    }
);

backend!(
    Sqlite,
    Tables {
        outbox: &[
            "CREATE TABLE IF NOT EXISTS courier_outbox (
                message_id TEXT PRIMARY KEY,
                state TEXT NOT NULL CHECK (state IN ('COMMITTED', 'ROLLED_BACK')),
                created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
            )",
            "CREATE INDEX IF NOT EXISTS courier_outbox_created_at ON courier_outbox (created_at)",
        ],
        inbox: &[
            "CREATE TABLE IF NOT EXISTS courier_inbox (
                subscription TEXT NOT NULL,
                dedup_key TEXT NOT NULL,
                message_id TEXT NOT NULL,
                processed_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
                PRIMARY KEY (subscription, dedup_key)
            )",
            "CREATE INDEX IF NOT EXISTS courier_inbox_processed_at ON courier_inbox (processed_at)",
        ],
        // Times are ISO 8601 text in one format, so text order is time order.
        outbox_prune: "DELETE FROM courier_outbox \
            WHERE created_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-' || $1 || ' seconds')",
        inbox_prune: "DELETE FROM courier_inbox \
            WHERE processed_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-' || $1 || ' seconds')",
    }
);

/// Deletes the rows `statement` selects as older than `age`; answers how many.
pub(crate) async fn prune<DB: Backend>(
    pool: &sqlx::Pool<DB>,
    statement: &'static str,
    age: std::time::Duration,
) -> Result<u64, sqlx::Error> {
    let mut connection = pool.acquire().await?;
    let seconds = format!("{:.3}", age.as_secs_f64());
    DB::execute(&mut connection, statement, vec![seconds]).await
}

/// Runs each statement of `statements` on one connection of `pool`.
pub(crate) async fn install<DB: Backend>(
    pool: &sqlx::Pool<DB>,
    statements: &'static [&'static str],
) -> Result<(), sqlx::Error> {
    let mut connection = pool.acquire().await?;
    for statement in statements {
        DB::execute(&mut *connection, statement, Vec::new()).await?;
    }
    Ok(())
}
