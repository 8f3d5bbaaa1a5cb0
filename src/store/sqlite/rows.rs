//! Decoding SQLite rows: the shared codec in `store::rows`, with message ids stored as
//! hyphenated text.

use std::cell::OnceCell;
use std::ops::Deref;

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

/// The typed lookups of [`Columns`] for a rusqlite row type, through its lookup by name
/// `$get`.
macro_rules! rusqlite_columns {
    ($get:ident) => {
        fn int(&self, column: &str) -> Result<i64, StoreError> {
            Ok(self.$get(column)?)
        }
        fn opt_int(&self, column: &str) -> Result<Option<i64>, StoreError> {
            Ok(self.$get(column)?)
        }
        fn text(&self, column: &str) -> Result<String, StoreError> {
            Ok(self.$get(column)?)
        }
        fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError> {
            Ok(self.$get(column)?)
        }
        fn real(&self, column: &str) -> Result<f64, StoreError> {
            Ok(self.$get(column)?)
        }
        fn bytes(&self, column: &str) -> Result<Vec<u8>, StoreError> {
            Ok(self.$get(column)?)
        }
        fn id(&self, column: &str) -> Result<MessageId, StoreError> {
            message_id(&self.text(column)?)
        }
    };
}

/// The writer's rows (rusqlite): each lookup by name asks SQLite for the statement's column
/// names one by one.
impl Columns for rusqlite::Row<'_> {
    rusqlite_columns!(get);
}

/// A row of `ops::query_all`: a lookup by name finds its column in the statement's names,
/// read at the query's first such lookup and kept for its other rows. rusqlite's own lookup
/// asks SQLite for the names one by one at every lookup, which for the many-column rows of a
/// lease cost more than decoding them. Everything else of the row is rusqlite's (`Deref`).
pub struct NamedRow<'a, 'r> {
    row: &'a rusqlite::Row<'r>,
    names: &'a OnceCell<Vec<String>>,
}

impl<'a, 'r> NamedRow<'a, 'r> {
    pub fn new(row: &'a rusqlite::Row<'r>, names: &'a OnceCell<Vec<String>>) -> Self {
        Self { row, names }
    }

    fn by_name<T: rusqlite::types::FromSql>(&self, column: &str) -> rusqlite::Result<T> {
        let names = self.names.get_or_init(|| {
            let statement = self.row.as_ref();
            (0..statement.column_count())
                .filter_map(|index| statement.column_name(index).ok().map(str::to_owned))
                .collect()
        });
        let index = names
            .iter()
            .position(|name| name == column)
            .ok_or_else(|| rusqlite::Error::InvalidColumnName(column.to_owned()))?;
        self.row.get(index)
    }
}

impl<'r> Deref for NamedRow<'_, 'r> {
    type Target = rusqlite::Row<'r>;

    fn deref(&self) -> &Self::Target {
        self.row
    }
}

impl Columns for NamedRow<'_, '_> {
    rusqlite_columns!(by_name);
}

#[cfg(test)]
mod tests {
    use super::super::ops::query_all;
    use super::*;

    #[test]
    fn a_named_row_finds_each_column_by_the_names_read_once() {
        let conn = rusqlite::Connection::open_in_memory().expect("an in-memory database");
        let read = query_all(
            &conn,
            "SELECT 7 AS attempts, 'orders' AS topic, NULL AS decided_at \
             UNION ALL SELECT 8, 'billing', 5",
            [],
            |row| {
                let positional: i64 = row.get(0)?;
                assert_eq!(row.int("attempts")?, positional);
                Ok((row.text("topic")?, row.opt_int("decided_at")?))
            },
        )
        .expect("reads");
        assert_eq!(
            read,
            [("orders".to_owned(), None), ("billing".to_owned(), Some(5))]
        );
        let missing = query_all(&conn, "SELECT 1 AS attempts", [], |row| row.text("payload"))
            .expect_err("no such column");
        let logged = crate::telemetry::ErrorChain(&missing).to_string();
        assert!(logged.contains("payload"), "{logged}");
    }
}
