//! SQLite's read dialect: message ids stored as hyphenated text, id lists bound as one JSON
//! array. The reads themselves are `store::reads`.

use sqlx::query::Query;
use sqlx::{AssertSqlSafe, QueryBuilder, Sqlite, SqliteConnection};

use crate::domain::MessageId;
use crate::store::lanes::for_sqlite;
use crate::store::reads::Dialect;
use crate::store::rows::{self, Columns};
use crate::store::{DeadLetter, DeadLetters, StoreError, dead_letters};

pub struct SqliteDialect;

pub type Reads = crate::store::reads::Reads<SqliteDialect>;

impl Dialect for SqliteDialect {
    type Db = Sqlite;
    type Id = String;

    fn id(id: MessageId) -> String {
        id.to_string()
    }

    fn push_one_of(
        query: &mut QueryBuilder<Sqlite>,
        column: &str,
        ids: &[MessageId],
    ) -> Result<(), StoreError> {
        let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
        let ids = serde_json::to_string(&ids).map_err(StoreError::internal)?;
        query
            .push(column)
            .push(" IN (SELECT value FROM json_each(")
            .push_bind(ids)
            .push("))");
        Ok(())
    }
}

/// `dead_letters::select` in SQLite's dialect: ids bound as one JSON array.
pub(super) fn chosen_dead_letters() -> String {
    for_sqlite(&dead_letters::select(
        "($2 = '[]' OR d.message_id IN (SELECT value FROM json_each($2)))",
        "instr",
    ))
}

/// How many dead letters `chosen` names (`store::dead_letters`); NotFound for an unknown
/// subscription.
pub async fn count_dead_letters(
    conn: &mut SqliteConnection,
    chosen: &DeadLetters,
) -> Result<u64, StoreError> {
    Reads::subscription(&mut *conn, &chosen.subscription).await?;
    let sql = format!(
        "SELECT COUNT(*) AS n FROM ({}) chosen",
        chosen_dead_letters()
    );
    let row = bind_chosen(sqlx::query(AssertSqlSafe(sql)), chosen)?
        .fetch_one(&mut *conn)
        .await?;
    Ok(u64::try_from(row.int("n")?).unwrap_or(0))
}

/// The first `limit` dead letters `chosen` names; NotFound for an unknown subscription.
pub async fn list_dead_letters(
    conn: &mut SqliteConnection,
    chosen: &DeadLetters,
    limit: u32,
) -> Result<Vec<DeadLetter>, StoreError> {
    Reads::subscription(&mut *conn, &chosen.subscription).await?;
    let sql = format!("{} LIMIT {limit}", chosen_dead_letters());
    let found = bind_chosen(sqlx::query(AssertSqlSafe(sql)), chosen)?
        .fetch_all(&mut *conn)
        .await?;
    found.iter().map(rows::dead_letter).collect()
}

type Args = <Sqlite as sqlx::Database>::Arguments;

/// Binds the parameters of `chosen_dead_letters` in order.
fn bind_chosen<'q>(
    query: Query<'q, Sqlite, Args>,
    chosen: &'q DeadLetters,
) -> Result<Query<'q, Sqlite, Args>, StoreError> {
    let ids: Vec<String> = chosen.message_ids.iter().map(ToString::to_string).collect();
    let ids = serde_json::to_string(&ids).map_err(StoreError::internal)?;
    let (contains, from, until, key, ordering_key) = chosen.filter_binds();
    Ok(query
        .bind(chosen.subscription.as_str())
        .bind(ids)
        .bind(contains)
        .bind(from)
        .bind(until)
        .bind(key)
        .bind(ordering_key))
}
