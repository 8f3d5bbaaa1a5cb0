//! The test's own database, on the backend `COURIER_TEST_BACKEND` names.

use courier::store::testing::TestDatabase as PostgresDatabase;
use sqlx::{AssertSqlSafe, Connection, PgConnection, SqliteConnection};
use tempfile::TempDir;

/// The database a test server runs on: SQLite in a temporary directory, or, with
/// `COURIER_TEST_BACKEND=postgres`, a fresh database per test on the PostgreSQL server named by
/// `COURIER_TEST_POSTGRES_URL` (its user must be allowed to create databases). The same tests
/// then run against the PostgreSQL backend.
#[derive(Debug, Clone)]
pub enum Backend {
    Sqlite,
    Postgres { admin_url: String },
}

impl Backend {
    pub fn from_env() -> Self {
        match std::env::var("COURIER_TEST_BACKEND").as_deref() {
            Err(_) | Ok("") | Ok("sqlite") => Self::Sqlite,
            Ok("postgres") => Self::Postgres {
                admin_url: std::env::var("COURIER_TEST_POSTGRES_URL")
                    .expect("COURIER_TEST_BACKEND=postgres needs COURIER_TEST_POSTGRES_URL"),
            },
            Ok(other) => panic!("COURIER_TEST_BACKEND={other:?}: expected sqlite or postgres"),
        }
    }

    /// A database no other test uses; a PostgreSQL one is dropped with the returned guard.
    pub async fn fresh_database(&self, dir: &TempDir) -> TestDatabase {
        match self {
            Self::Sqlite => TestDatabase {
                url: format!("sqlite://{}/courier.db", dir.path().display()),
                _postgres: None,
            },
            Self::Postgres { admin_url } => {
                let database = PostgresDatabase::create_on(admin_url).await;
                TestDatabase {
                    url: database.url().to_owned(),
                    _postgres: Some(database),
                }
            }
        }
    }
}

/// A test's own database. Dropping it drops a PostgreSQL database (closing the connections a
/// cancelled server may still hold); a SQLite one goes with its temporary directory.
pub struct TestDatabase {
    pub url: String,
    _postgres: Option<PostgresDatabase>,
}

impl TestDatabase {
    /// A database the test keeps elsewhere (replicas share one): nothing goes with this.
    pub fn shared(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            _postgres: None,
        }
    }

    /// Runs `sql`, one `COUNT`, straight on the database, for what no RPC shows (rows the
    /// server should have deleted). The SQL must read alike on both backends.
    pub async fn count(&self, sql: &str) -> i64 {
        let counted: Result<i64, sqlx::Error> = match courier::store::Backend::of(&self.url) {
            Some(courier::store::Backend::Sqlite) => {
                let mut connection = SqliteConnection::connect(&self.url)
                    .await
                    .expect("the test's SQLite database opens");
                sqlx::query_scalar(AssertSqlSafe(sql.to_owned()))
                    .fetch_one(&mut connection)
                    .await
            }
            Some(courier::store::Backend::Postgres) => {
                let mut connection = PgConnection::connect(&self.url)
                    .await
                    .expect("the test's PostgreSQL database opens");
                sqlx::query_scalar(AssertSqlSafe(sql.to_owned()))
                    .fetch_one(&mut connection)
                    .await
            }
            None => panic!("not a database URL: {}", self.url),
        };
        counted.unwrap_or_else(|error| panic!("{sql}: {error}"))
    }
}
