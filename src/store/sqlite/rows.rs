//! Decoding SQLite rows: the shared codec in `store::rows`, with message ids stored as
//! hyphenated text.

use sqlx::sqlite::SqliteRow;

use crate::domain::MessageId;
use crate::store::StoreError;
pub use crate::store::rows::*;

impl Columns for SqliteRow {
    typed_columns!();

    fn id(&self, column: &str) -> Result<MessageId, StoreError> {
        message_id(&self.text(column)?)
    }
}

/// The typed lookups of [`Columns`] for a rusqlite row type with a `get(column)`; the
/// type writes that lookup itself.
macro_rules! rusqlite_columns {
    () => {
        fn int(&self, column: &str) -> Result<i64, StoreError> {
            Ok(self.get(column)?)
        }
        fn opt_int(&self, column: &str) -> Result<Option<i64>, StoreError> {
            Ok(self.get(column)?)
        }
        fn text(&self, column: &str) -> Result<String, StoreError> {
            Ok(self.get(column)?)
        }
        fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError> {
            Ok(self.get(column)?)
        }
        fn real(&self, column: &str) -> Result<f64, StoreError> {
            Ok(self.get(column)?)
        }
        fn bytes(&self, column: &str) -> Result<Vec<u8>, StoreError> {
            Ok(self.get(column)?)
        }
        fn id(&self, column: &str) -> Result<MessageId, StoreError> {
            message_id(&self.text(column)?)
        }
    };
}

/// The writer's rows (rusqlite): each lookup by name asks SQLite for the statement's column
/// names one by one.
impl Columns for rusqlite::Row<'_> {
    rusqlite_columns!();
}

/// A writer row whose columns are found in `names`, the statement's column names read once
/// per query (`ops::query_all_named`): for the many-column rows of a lease, asking SQLite
/// for each name at each lookup cost more than decoding the row.
pub struct NamedRow<'a, 'r> {
    pub row: &'a rusqlite::Row<'r>,
    pub names: &'a [String],
}

impl NamedRow<'_, '_> {
    fn get<T: rusqlite::types::FromSql>(&self, column: &str) -> rusqlite::Result<T> {
        let index = self
            .names
            .iter()
            .position(|name| name == column)
            .ok_or_else(|| rusqlite::Error::InvalidColumnName(column.to_owned()))?;
        self.row.get(index)
    }
}

impl Columns for NamedRow<'_, '_> {
    rusqlite_columns!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_row_finds_each_column_by_the_names_read_once() {
        let conn = rusqlite::Connection::open_in_memory().expect("an in-memory database");
        let mut statement = conn
            .prepare("SELECT 7 AS attempts, 'orders' AS topic, NULL AS decided_at")
            .expect("prepares");
        let names: Vec<String> = statement
            .column_names()
            .into_iter()
            .map(str::to_owned)
            .collect();
        let mut found = statement.query([]).expect("runs");
        let row = found.next().expect("steps").expect("one row");
        let named = NamedRow { row, names: &names };
        assert_eq!(named.int("attempts").expect("attempts"), 7);
        assert_eq!(named.text("topic").expect("topic"), "orders");
        assert_eq!(named.opt_int("decided_at").expect("decided_at"), None);
        let missing = named.text("payload").expect_err("no such column");
        let logged = crate::telemetry::ErrorChain(&missing).to_string();
        assert!(logged.contains("payload"), "{logged}");
    }
}
