//! SQLite's read dialect: message ids stored as hyphenated text, id lists bound as one JSON
//! array. The reads themselves are `store::reads`.

use sqlx::query::Query;
use sqlx::{QueryBuilder, Sqlite};

use crate::domain::MessageId;
use crate::store::reads::{Args, Dialect};
use crate::store::sql::for_sqlite;
use crate::store::{DeadLetters, StoreError, dead_letters};

pub struct SqliteDialect;

pub type Reads = crate::store::reads::Reads<SqliteDialect>;

impl Dialect for SqliteDialect {
    type Db = Sqlite;
    type Id = String;

    fn id(id: MessageId) -> String {
        id.to_string()
    }

    /// In a table of its own (migration 0011).
    const PAYLOAD: &'static str =
        "(SELECT p.payload FROM message_payloads p WHERE p.id = m.payload_id)";

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

    fn statement(sql: &str) -> String {
        for_sqlite(sql)
    }

    /// Ids bound as one JSON array.
    fn dead_letters_sql() -> String {
        for_sqlite(&dead_letters::select(
            "($2 = '[]' OR d.message_id IN (SELECT value FROM json_each($2)))",
            "instr",
        ))
    }

    fn bind_dead_letters<'q>(
        query: Query<'q, Sqlite, Args<Self>>,
        chosen: &'q DeadLetters,
    ) -> Result<Query<'q, Sqlite, Args<Self>>, StoreError> {
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
}
