//! The replicas' shared callback signing key (one row): the first candidate offered is kept.

use rusqlite::{Connection, params};

use crate::domain::Timestamp;
use crate::store::StoreError;

pub fn get_or_insert(
    connection: &Connection,
    candidate: &[u8],
    now: Timestamp,
) -> Result<Vec<u8>, StoreError> {
    connection.execute(
        "INSERT INTO callback_signing_key (id, pkcs8, created_at) VALUES (1, ?1, ?2) \
         ON CONFLICT (id) DO NOTHING",
        params![candidate, now.as_millis()],
    )?;
    Ok(connection.query_row(
        "SELECT pkcs8 FROM callback_signing_key WHERE id = 1",
        [],
        |row| row.get(0),
    )?)
}
