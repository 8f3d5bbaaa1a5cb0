//! Retention: deletes final messages (CANCELLED, or CONFIRMED with every delivery ACKED)
//! `retention.final_messages` after they became final, with their deliveries, which frees
//! their producer keys. Dead letters, and messages that have one, stay.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::sleep::{failure_backoff, until_due};
use crate::domain::Timestamp;
use crate::store::{Store, StoreError};

/// Most messages deleted in one write, so one sweep never holds the writer for long.
const DELETE_BATCH: u32 = 1000;

pub struct Retention {
    store: Arc<dyn Store>,
    keep_final: Duration,
}

impl Retention {
    pub fn new(store: Arc<dyn Store>, keep_final: Duration) -> Self {
        Self { store, keep_final }
    }

    /// Deletes every message final for `keep_final` by `now`; returns how many, and when the
    /// next one will be due.
    #[tracing::instrument(name = "retention", skip_all)]
    async fn sweep(&self, now: Timestamp) -> Result<(u64, Option<Timestamp>), StoreError> {
        let cutoff = Timestamp::from_millis(
            now.as_millis()
                .saturating_sub(i64::try_from(self.keep_final.as_millis()).unwrap_or(i64::MAX)),
        );
        let mut deleted = 0;
        loop {
            // A read first, so a sweep with nothing due costs no write.
            match self.store.oldest_final_at().await? {
                Some(oldest) if oldest <= cutoff => {}
                oldest => return Ok((deleted, oldest.map(|at| at.plus(self.keep_final)))),
            }
            let batch = self
                .store
                .delete_final_messages(cutoff, DELETE_BATCH)
                .await?;
            deleted += batch;
            crate::metrics::messages_deleted(batch);
            if batch == 0 {
                // Deleted by another replica meanwhile: look again after the usual pause.
                return Ok((deleted, None));
            }
        }
    }

    /// Deletes every message whose retention ended by `now`; returns how many.
    pub async fn pass(&self, now: Timestamp) -> Result<u64, StoreError> {
        self.sweep(now).await.map(|(deleted, _)| deleted)
    }

    /// The background loop: sweeps, then sleeps until the oldest final message is due. With
    /// none, it looks again after at most `keep_final` (and the idle ceiling): anything that
    /// becomes final meanwhile is due no sooner than that, so no wake-up is needed.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut failures = 0;
        loop {
            let now = Timestamp::now();
            let due = match self.sweep(now).await {
                Ok((deleted, next)) => {
                    failures = 0;
                    if deleted > 0 {
                        debug!(deleted, "final messages past retention deleted");
                    }
                    next.unwrap_or_else(|| now.plus(self.keep_final))
                }
                Err(error) => {
                    failures += 1;
                    warn!(error = %error, failures, "retention sweep failed");
                    now.plus(failure_backoff(failures))
                }
            };
            if !until_due(Some(due), std::future::pending(), &shutdown).await {
                return;
            }
        }
    }
}
