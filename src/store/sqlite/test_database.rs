//! A migrated SQLite store for this backend's own tests, with a plain connection to the same
//! file beside it, to read what no `Store` method shows (query plans, rows of a table).

use rusqlite::Connection;
use tempfile::TempDir;

use super::SqliteStore;
use crate::config::SqliteConfig;
use crate::wakeups::Wakeups;

pub struct TestDatabase {
    pub store: SqliteStore,
    pub conn: Connection,
    // Removed after the store and the connection close.
    _dir: TempDir,
}

impl TestDatabase {
    /// A fresh database in a temporary directory, every migration applied.
    pub async fn open() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("courier.db");
        let url = format!("sqlite://{}", path.display());
        let store = SqliteStore::open(&url, &SqliteConfig::default(), Wakeups::default())
            .await
            .unwrap();
        let conn = Connection::open(&path).unwrap();
        Self {
            store,
            conn,
            _dir: dir,
        }
    }
}
