//! The database a bench runs on: a fresh SQLite file in a temporary directory, a fresh
//! PostgreSQL database (dropped afterwards), or one the caller names.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use sqlx::{AssertSqlSafe, Connection, PgConnection};

use super::{BenchError, BenchOptions};
use crate::store::Backend;

/// How long the bench waits for PostgreSQL to publish the counters of closed connections.
const SETTLE_DEADLINE: Duration = Duration::from_secs(15);

pub enum BenchDatabase {
    /// A SQLite file; `temporary` is the directory to remove afterwards.
    Sqlite {
        url: String,
        temporary: Option<PathBuf>,
    },
    /// A PostgreSQL database; `drop_after` when the bench created it.
    Postgres {
        url: String,
        admin_url: String,
        name: String,
        drop_after: bool,
    },
    /// A running server's database that the bench knows nothing about.
    Unknown,
}

impl BenchDatabase {
    pub async fn prepare(options: &BenchOptions) -> Result<Self, BenchError> {
        let given = options.database_url.as_deref();
        match given {
            Some(url) if Backend::of(url) == Some(Backend::Postgres) => {
                let parsed = url::Url::parse(url)
                    .map_err(|e| BenchError::Options(format!("--database-url: {e}")))?;
                let current = parsed.path().trim_start_matches('/').to_owned();
                if options.reuse_database || options.addr.is_some() {
                    return Ok(Self::Postgres {
                        url: url.to_owned(),
                        admin_url: url.to_owned(),
                        name: current,
                        drop_after: false,
                    });
                }
                let name = format!("courier_bench_{}", uuid::Uuid::now_v7().simple());
                let mut admin = PgConnection::connect(url).await?;
                sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut admin)
                    .await?;
                let _ = admin.close().await;
                let mut fresh = parsed;
                fresh.set_path(&name);
                eprintln!("bench: created PostgreSQL database {name}");
                Ok(Self::Postgres {
                    url: fresh.to_string(),
                    admin_url: url.to_owned(),
                    name,
                    drop_after: true,
                })
            }
            Some(url) if Backend::of(url) == Some(Backend::Sqlite) => Ok(Self::Sqlite {
                url: url.to_owned(),
                temporary: None,
            }),
            Some(_) => Err(BenchError::Options(
                "--database-url must start with sqlite: or postgres://".into(),
            )),
            None if options.addr.is_some() => Ok(Self::Unknown),
            None => {
                let dir = std::env::temp_dir()
                    .join(format!("courier-bench-{}", uuid::Uuid::now_v7().simple()));
                std::fs::create_dir_all(&dir)?;
                Ok(Self::Sqlite {
                    url: format!("sqlite://{}", dir.join("courier.db").display()),
                    temporary: Some(dir),
                })
            }
        }
    }

    pub fn url(&self) -> &str {
        match self {
            Self::Sqlite { url, .. } | Self::Postgres { url, .. } => url,
            Self::Unknown => "",
        }
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Self::Sqlite { .. } => "sqlite",
            Self::Postgres { .. } => "postgres",
            Self::Unknown => "unknown",
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Self::Postgres { .. })
    }

    /// Where the commit count comes from, for the report.
    pub fn commit_source(&self) -> &'static str {
        match self {
            Self::Postgres { .. } => {
                "pg_stat_database.xact_commit of the bench database (every committed transaction, reads included)"
            }
            _ => "the SQLite writer's group commits",
        }
    }

    /// `pg_stat_database.xact_commit` of the bench database; `None` for other backends.
    pub async fn xact_commit(&self) -> Result<Option<u64>, BenchError> {
        let Self::Postgres {
            admin_url, name, ..
        } = self
        else {
            return Ok(None);
        };
        let mut admin = PgConnection::connect(admin_url).await?;
        let count: Option<i64> =
            sqlx::query_scalar("SELECT xact_commit FROM pg_stat_database WHERE datname = $1")
                .bind(name)
                .fetch_optional(&mut admin)
                .await?;
        let _ = admin.close().await;
        Ok(Some(
            count.map_or(0, |count| u64::try_from(count).unwrap_or(0)),
        ))
    }

    /// Waits until no other connection uses the bench database, so every backend that served
    /// it has exited and published its counters.
    pub async fn settle_stats(&self) -> Result<(), BenchError> {
        let Self::Postgres {
            admin_url, name, ..
        } = self
        else {
            return Ok(());
        };
        let mut admin = PgConnection::connect(admin_url).await?;
        let start = Instant::now();
        loop {
            let others: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            )
            .bind(name)
            .fetch_one(&mut admin)
            .await?;
            if others == 0 || start.elapsed() > SETTLE_DEADLINE {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = admin.close().await;
        Ok(())
    }

    /// Removes what the bench created; failures are reported, not fatal.
    pub async fn cleanup(&self) {
        match self {
            Self::Sqlite {
                temporary: Some(dir),
                ..
            } => {
                if let Err(error) = std::fs::remove_dir_all(dir) {
                    eprintln!("bench: cannot remove {}: {error}", dir.display());
                }
            }
            Self::Postgres {
                admin_url,
                name,
                drop_after: true,
                ..
            } => {
                let dropped = async {
                    let mut admin = PgConnection::connect(admin_url).await?;
                    sqlx::raw_sql(AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut admin)
                    .await?;
                    admin.close().await
                };
                match dropped.await {
                    Ok(()) => eprintln!("bench: dropped PostgreSQL database {name}"),
                    Err(error) => eprintln!("bench: cannot drop database {name}: {error}"),
                }
            }
            _ => {}
        }
    }
}
