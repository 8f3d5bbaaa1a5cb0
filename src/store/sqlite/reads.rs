//! SQLite's read dialect: message ids stored as hyphenated text, id lists bound as one JSON
//! array. The reads themselves are `store::reads`.

use sqlx::{QueryBuilder, Sqlite};

use crate::domain::MessageId;
use crate::store::StoreError;
use crate::store::reads::Dialect;

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
