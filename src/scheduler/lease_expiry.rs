//! Ends expired leases: the delivery is due again after its backoff, or DEAD when out of
//! attempts. The store's UPDATE re-checks state and generation, so a lease that was acked or
//! renewed a moment ago is left alone.

use std::pin::pin;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::sleep::{failure_backoff, until_due};
use crate::domain::Timestamp;
use crate::metrics::{self, DeadReason};
use crate::store::{Store, StoreError};
use crate::wakeups::Wakeups;

/// Ends every lease expired by `now`; returns how many. Counts the leases ended, and the
/// deliveries that went DEAD because it was their last attempt.
#[tracing::instrument(name = "lease_expiry", skip_all)]
pub async fn pass(store: &dyn Store, now: Timestamp) -> Result<u64, StoreError> {
    let mut ended = 0;
    loop {
        // The store ends at most a bounded batch per call; repeat until none is left.
        let batch = store.expire_leases(now).await?;
        ended += batch.ended;
        metrics::leases_expired(batch.ended);
        for (subscription, dead) in &batch.dead {
            metrics::deliveries_dead(subscription.as_str(), DeadReason::LeaseExpired, *dead);
            tracing::warn!(
                %subscription, dead,
                "leases expired on the last attempt: deliveries are DEAD until redriven"
            );
        }
        if batch.ended == 0 {
            return Ok(ended);
        }
    }
}

pub async fn run(store: Arc<dyn Store>, wakeups: Wakeups, shutdown: CancellationToken) {
    let mut failures = 0;
    loop {
        // Woken by a lease that ends before the planned look (a store that signals leases),
        // or by anything on the scheduler's general signal.
        let leases = wakeups.leases();
        let mut lease_made = pin!(leases.notified());
        lease_made.as_mut().enable();
        let mut woken = pin!(wakeups.scheduler().notified());
        woken.as_mut().enable();
        leases.looking();
        let next = match pass(store.as_ref(), Timestamp::now()).await {
            Ok(ended) => {
                if ended > 0 {
                    tracing::debug!(ended, "expired leases ended");
                }
                failures = 0;
                store.next_lease_expiry().await
            }
            Err(error) => Err(error),
        };
        let due = match next {
            Ok(due) => due,
            Err(error) => {
                failures += 1;
                tracing::warn!(error = %error, failures, "lease expiry pass failed");
                Some(Timestamp::now().plus(failure_backoff(failures)))
            }
        };
        leases.plan(due);
        let woken = async {
            tokio::select! {
                () = woken => {}
                () = lease_made => {}
            }
        };
        if !until_due(due, woken, &shutdown).await {
            return;
        }
    }
}
