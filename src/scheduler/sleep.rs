//! The one way a scheduler loop waits: until its next due time, a wake-up, or shutdown.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::domain::Timestamp;

/// Longest sleep with nothing due. Wake-ups normally come first; this bounds the cost of one
/// that was missed (another process wrote to the database, say).
pub const IDLE_CEILING: Duration = Duration::from_secs(30);

/// Waits until `due` (or [`IDLE_CEILING`] when nothing is due), until `woken` fires, or until
/// shutdown. Returns false on shutdown. When `woken` is a `Notified`, it must have been enabled
/// before the pass that computed `due`, so no wake-up between the two is lost.
pub async fn until_due(
    due: Option<Timestamp>,
    woken: impl Future<Output = ()>,
    shutdown: &CancellationToken,
) -> bool {
    let wait = match due {
        Some(due) => due.since(Timestamp::now()).min(IDLE_CEILING),
        None => IDLE_CEILING,
    };
    tokio::select! {
        () = shutdown.cancelled() => false,
        () = tokio::time::sleep(wait) => true,
        () = woken => true,
    }
}

/// Pause after a failed pass, doubling up to a ceiling, so a database outage is not hammered.
pub fn failure_backoff(consecutive_failures: u32) -> Duration {
    let millis = 100u64.saturating_mul(1 << consecutive_failures.min(8));
    Duration::from_millis(millis).min(Duration::from_secs(10))
}
