//! Writing a message's events (`store::history`) inside the caller's transaction.

use sqlx::PgConnection;
use uuid::Uuid;

use crate::store::StoreError;
use crate::store::history::{INSERT_EVENT, NewEvent, TRIM_EVENTS};

/// Records `new` and trims its message's events to the newest kept.
pub(super) async fn record(conn: &mut PgConnection, new: &NewEvent) -> Result<(), StoreError> {
    let event = &new.event;
    sqlx::query(INSERT_EVENT)
        .bind(new.message_id.as_uuid())
        .bind(event.at.as_millis())
        .bind(event.kind.as_str())
        .bind(new.subscription())
        .bind(new.attempt())
        .bind(event.outcome.as_deref())
        .bind(event.detail.as_deref())
        .execute(&mut *conn)
        .await?;
    sqlx::query(TRIM_EVENTS)
        .bind(new.message_id.as_uuid())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Records every event of `events` with one statement, then trims each message's events with
/// another: a sweep or an operator's bulk action costs two statements, not two per message.
pub(super) async fn record_all(
    conn: &mut PgConnection,
    events: &[NewEvent],
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let mut columns = Columns::default();
    for new in events {
        columns.push(new);
    }
    sqlx::query(
        "INSERT INTO message_events (message_id, at, kind, subscription, attempt, outcome, detail) \
         SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::bigint[], \
           $6::text[], $7::text[])",
    )
    .bind(&columns.ids)
    .bind(&columns.at)
    .bind(&columns.kinds)
    .bind(&columns.subscriptions)
    .bind(&columns.attempts)
    .bind(&columns.outcomes)
    .bind(&columns.details)
    .execute(&mut *conn)
    .await?;
    let mut ids = columns.ids;
    ids.sort();
    ids.dedup();
    sqlx::query(
        "DELETE FROM message_events e WHERE e.message_id = ANY($1) AND e.seq < ( \
           SELECT MIN(seq) FROM (SELECT k.seq FROM message_events k \
           WHERE k.message_id = e.message_id ORDER BY k.seq DESC LIMIT $2) newest)",
    )
    .bind(ids)
    .bind(crate::store::history::EVENTS_PER_MESSAGE)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Events as columns, for one `unnest` insert.
#[derive(Default)]
struct Columns {
    ids: Vec<Uuid>,
    at: Vec<i64>,
    kinds: Vec<&'static str>,
    subscriptions: Vec<Option<String>>,
    attempts: Vec<Option<i64>>,
    outcomes: Vec<Option<String>>,
    details: Vec<Option<String>>,
}

impl Columns {
    fn push(&mut self, new: &NewEvent) {
        self.ids.push(new.message_id.as_uuid());
        self.at.push(new.event.at.as_millis());
        self.kinds.push(new.event.kind.as_str());
        self.subscriptions
            .push(new.subscription().map(str::to_owned));
        self.attempts.push(new.attempt());
        self.outcomes.push(new.event.outcome.clone());
        self.details.push(new.event.detail.clone());
    }
}
