//! PostgreSQL's read dialect: message ids stored as `uuid`, id lists bound as one array. The
//! reads themselves are `store::reads`.

use sqlx::query::Query;
use sqlx::{AssertSqlSafe, PgConnection, Postgres, QueryBuilder};
use uuid::Uuid;

use crate::domain::MessageId;
use crate::store::reads::Dialect;
use crate::store::rows::{self, Columns};
use crate::store::{DeadLetter, DeadLetters, StoreError, dead_letters};

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

/// `dead_letters::select` in PostgreSQL's dialect: ids bound as one array.
pub(super) fn chosen_dead_letters() -> String {
    dead_letters::select(
        "(cardinality($2::uuid[]) = 0 OR d.message_id = ANY($2))",
        "strpos",
    )
}

/// How many dead letters `chosen` names (`store::dead_letters`); NotFound for an unknown
/// subscription.
pub async fn count_dead_letters(
    conn: &mut PgConnection,
    chosen: &DeadLetters,
) -> Result<u64, StoreError> {
    Reads::subscription(&mut *conn, &chosen.subscription).await?;
    let sql = format!(
        "SELECT COUNT(*) AS n FROM ({}) chosen",
        chosen_dead_letters()
    );
    let row = bind_chosen(sqlx::query(AssertSqlSafe(sql)), chosen)?
        .fetch_one(&mut *conn)
        .await?;
    Ok(u64::try_from(row.int("n")?).unwrap_or(0))
}

/// The first `limit` dead letters `chosen` names; NotFound for an unknown subscription.
pub async fn list_dead_letters(
    conn: &mut PgConnection,
    chosen: &DeadLetters,
    limit: u32,
) -> Result<Vec<DeadLetter>, StoreError> {
    Reads::subscription(&mut *conn, &chosen.subscription).await?;
    let sql = format!("{} LIMIT {limit}", chosen_dead_letters());
    let found = bind_chosen(sqlx::query(AssertSqlSafe(sql)), chosen)?
        .fetch_all(&mut *conn)
        .await?;
    found.iter().map(rows::dead_letter).collect()
}

type Args = <Postgres as sqlx::Database>::Arguments;

/// Binds the parameters of `chosen_dead_letters` in order.
fn bind_chosen<'q>(
    query: Query<'q, Postgres, Args>,
    chosen: &'q DeadLetters,
) -> Result<Query<'q, Postgres, Args>, StoreError> {
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
