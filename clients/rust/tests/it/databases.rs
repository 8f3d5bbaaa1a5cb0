//! The producer's or consumer's own database for one test: SQLite in a temporary directory,
//! or a fresh PostgreSQL database (dropped afterwards) on COURIER_TEST_POSTGRES_URL.

use std::str::FromStr;
use std::time::Duration;

use courier::store::testing::TestDatabase;
use courier_client::Backend;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, Pool, SqlitePool};
use tempfile::TempDir;

/// Holds what must outlive the pool's use: the directory or the PostgreSQL database.
pub enum Keep {
    Sqlite(#[allow(dead_code)] TempDir),
    Postgres(#[allow(dead_code)] TestDatabase),
}

pub async fn sqlite() -> (SqlitePool, Keep) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let options =
        SqliteConnectOptions::from_str(&format!("sqlite://{}/app.db", dir.path().display()))
            .expect("a SQLite URL")
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5));
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await
        .expect("the SQLite database opens");
    (pool, Keep::Sqlite(dir))
}

/// None when PostgreSQL tests skip (no COURIER_TEST_POSTGRES_URL, not in CI).
pub async fn postgres() -> Option<(PgPool, Keep)> {
    let database = TestDatabase::create().await?;
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect(database.url())
        .await
        .expect("the PostgreSQL database opens");
    Some((pool, Keep::Postgres(database)))
}

/// The business table the tests write beside the outbox and the inbox.
pub async fn create_orders<DB: Backend>(pool: &Pool<DB>) {
    let mut connection = pool.acquire().await.expect("a connection");
    DB::execute(
        &mut connection,
        "CREATE TABLE orders (order_no TEXT PRIMARY KEY, message_id TEXT NOT NULL)",
        Vec::new(),
    )
    .await
    .expect("CREATE TABLE orders");
}

/// Inserts an order inside the caller's transaction.
pub async fn insert_order<DB: Backend>(
    connection: &mut DB::Connection,
    order_no: &str,
    message_id: &str,
) -> Result<(), sqlx::Error> {
    DB::execute(
        connection,
        "INSERT INTO orders (order_no, message_id) VALUES ($1, $2)",
        vec![order_no.to_owned(), message_id.to_owned()],
    )
    .await
    .map(drop)
}

pub async fn count<DB: Backend>(pool: &Pool<DB>, sql: &'static str) -> u64 {
    let mut connection = pool.acquire().await.expect("a connection");
    DB::fetch_text(&mut connection, sql, Vec::new())
        .await
        .expect("a count")
        .expect("a row")
        .parse()
        .expect("a number")
}

pub async fn orders<DB: Backend>(pool: &Pool<DB>) -> u64 {
    count(pool, "SELECT CAST(COUNT(*) AS TEXT) FROM orders").await
}

/// The outbox row's state of `message_id`, if any.
pub async fn outbox_state<DB: Backend>(pool: &Pool<DB>, message_id: &str) -> Option<String> {
    let mut connection = pool.acquire().await.expect("a connection");
    DB::fetch_text(
        &mut connection,
        "SELECT state FROM courier_outbox WHERE message_id = $1",
        vec![message_id.to_owned()],
    )
    .await
    .expect("the outbox reads")
}

/// Runs each named test function, `async fn name<DB: Backend>(pool: Pool<DB>)`, on SQLite
/// and on PostgreSQL.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (pool, _keep) = $crate::databases::sqlite().await;
                    super::$name(pool).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some((pool, _keep)) = $crate::databases::postgres().await else {
                        return;
                    };
                    super::$name(pool).await;
                }
            )*
        }
    };
}
