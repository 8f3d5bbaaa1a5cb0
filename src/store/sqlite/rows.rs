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
