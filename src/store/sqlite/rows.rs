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

/// The writer's rows (rusqlite).
impl Columns for rusqlite::Row<'_> {
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
}
