//! Decoding PostgreSQL rows: the shared codec in `store::rows`, with message ids stored as
//! `uuid`.

use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use crate::domain::MessageId;
use crate::store::StoreError;
pub use crate::store::rows::*;

impl Columns for PgRow {
    typed_columns!();

    fn id(&self, column: &str) -> Result<MessageId, StoreError> {
        let id: Uuid = self.try_get(column)?;
        Ok(MessageId::from_uuid(id))
    }
}
