//! PostgreSQL's read dialect: message ids stored as `uuid`, id lists bound as one array. The
//! reads themselves are `store::reads`.

use sqlx::{Postgres, QueryBuilder};
use uuid::Uuid;

use crate::domain::MessageId;
use crate::store::StoreError;
use crate::store::reads::Dialect;

pub struct PostgresDialect;

pub type Reads = crate::store::reads::Reads<PostgresDialect>;

impl Dialect for PostgresDialect {
    type Db = Postgres;
    type Id = Uuid;

    fn id(id: MessageId) -> Uuid {
        id.as_uuid()
    }

    fn push_one_of(
        query: &mut QueryBuilder<Postgres>,
        column: &str,
        ids: &[MessageId],
    ) -> Result<(), StoreError> {
        let ids: Vec<Uuid> = ids.iter().map(MessageId::as_uuid).collect();
        query.push(column).push(" = ANY(").push_bind(ids).push(")");
        Ok(())
    }
}
