//! PostgreSQL's read dialect: message ids stored as `uuid`, id lists bound as one array. The
//! reads themselves are `store::reads`.

use sqlx::query::Query;
use sqlx::{Postgres, QueryBuilder};
use uuid::Uuid;

use crate::domain::MessageId;
use crate::store::reads::{Args, Dialect};
use crate::store::{DeadLetters, StoreError, dead_letters};

pub struct PostgresDialect;

pub type Reads = crate::store::reads::Reads<PostgresDialect>;

impl Dialect for PostgresDialect {
    type Db = Postgres;
    type Id = Uuid;

    fn id(id: MessageId) -> Uuid {
        id.as_uuid()
    }

    const PAYLOAD: &'static str = "m.payload";

    fn push_one_of(
        query: &mut QueryBuilder<Postgres>,
        column: &str,
        ids: &[MessageId],
    ) -> Result<(), StoreError> {
        let ids: Vec<Uuid> = ids.iter().map(MessageId::as_uuid).collect();
        query.push(column).push(" = ANY(").push_bind(ids).push(")");
        Ok(())
    }

    /// As written: PostgreSQL plans from statistics, and reads the index markers as comments.
    fn statement(sql: &str) -> String {
        sql.to_owned()
    }

    /// Ids bound as one array.
    fn dead_letters_sql() -> String {
        dead_letters::select(
            "(cardinality($2::uuid[]) = 0 OR d.message_id = ANY($2))",
            "strpos",
        )
    }

    fn bind_dead_letters<'q>(
        query: Query<'q, Postgres, Args<Self>>,
        chosen: &'q DeadLetters,
    ) -> Result<Query<'q, Postgres, Args<Self>>, StoreError> {
        let ids: Vec<Uuid> = chosen.message_ids.iter().map(MessageId::as_uuid).collect();
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
