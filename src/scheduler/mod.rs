//! Background work: lease expiry (and, later, check-back, push dispatch, retention). Each loop
//! sleeps until its next due time or a wake-up and stops on the cancellation token.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::store::{Store, Wakeups};

/// Starts every scheduler loop on `tracker`; they stop when `shutdown` is cancelled.
pub fn spawn(
    _store: Arc<dyn Store>,
    _wakeups: Wakeups,
    _config: &Config,
    _shutdown: CancellationToken,
    _tracker: &TaskTracker,
) {
}
