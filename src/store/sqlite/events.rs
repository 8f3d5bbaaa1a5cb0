//! Writing a message's events (`store::history`) on the writer's connection.

use rusqlite::{Connection, params};

use super::ops::execute;
use crate::store::StoreError;
use crate::store::history::{INSERT_EVENT, NewEvent, TRIM_EVENTS};
use crate::store::sql::for_sqlite;

/// Records `new` and trims its message's events to the newest kept.
pub(super) fn record(conn: &Connection, new: &NewEvent) -> Result<(), StoreError> {
    let id = new.message_id.to_string();
    let event = &new.event;
    execute(
        conn,
        &for_sqlite(INSERT_EVENT),
        params![
            id,
            event.at.as_millis(),
            event.kind.as_str(),
            new.subscription(),
            new.attempt(),
            event.outcome.as_deref(),
            event.detail.as_deref(),
        ],
    )?;
    execute(conn, &for_sqlite(TRIM_EVENTS), [&id])?;
    Ok(())
}
