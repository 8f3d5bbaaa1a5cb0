//! The replicas' shared callback signing key (one row): the first candidate offered is kept.
//! Two statements, not one: a replica whose INSERT waited on another's and did nothing must
//! read that row, which only a new statement's snapshot sees (READ COMMITTED).

use sqlx::PgConnection;

use crate::domain::Timestamp;
use crate::store::StoreError;

pub async fn get_or_insert(
    connection: &mut PgConnection,
    candidate: &[u8],
    now: Timestamp,
) -> Result<Vec<u8>, StoreError> {
    sqlx::query(
        "INSERT INTO callback_signing_key (id, pkcs8, created_at) VALUES (1, $1, $2) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(candidate)
    .bind(now.as_millis())
    .execute(&mut *connection)
    .await?;
    let (pkcs8,): (Vec<u8>,) =
        sqlx::query_as("SELECT pkcs8 FROM callback_signing_key WHERE id = 1")
            .fetch_one(&mut *connection)
            .await?;
    Ok(pkcs8)
}
