//! The long poll behind Receive: lease due deliveries, or wait for some until a deadline.
//! Sleeps until the next delivery is due or a wake-up arrives (a confirm, a nack, an expired
//! lease), never on a fixed tick.
//!
//! A lease is the most expensive statement a consumer runs. When the last lease of the
//! subscription left nothing due behind and no wake-up came since
//! ([`SubscriptionSignal::still_drained`]), only deliveries due by time can be waiting, so the
//! poll asks for the earliest due time first and leases only if it has come. A consumer that
//! comes back right after its Ack then costs one small read, not an empty lease.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::domain::{LeasedDelivery, Subscription, Timestamp};
use crate::store::{Batch, Store, StoreError};
use crate::wakeups::Wakeups;

/// Floor on a long poll's sleep when the store reports work due that a lease did not find
/// (another consumer took it, or clock rounding); keeps a disagreement from spinning the CPU.
const MIN_POLL_SLEEP: Duration = Duration::from_millis(5);

/// Leases up to `batch` of `subscription`'s due deliveries, waiting until `deadline` for some;
/// answers empty at the deadline or at `shutdown`.
pub async fn lease_or_wait(
    store: &dyn Store,
    wakeups: &Wakeups,
    subscription: &Subscription,
    batch: Batch,
    deadline: Instant,
    shutdown: &CancellationToken,
) -> Result<Vec<LeasedDelivery>, StoreError> {
    let signal = wakeups.subscription(subscription.name.as_str());
    loop {
        // Register interest before looking, so a wake-up sent between the look and the wait
        // below is not lost.
        let notified = signal.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();

        let mark = signal.mark();
        let mut next_due = None;
        let worth_leasing = !signal.still_drained() || {
            next_due = store.next_due(&subscription.name).await?;
            next_due.is_some_and(|due| due <= Timestamp::now())
        };
        if worth_leasing {
            let leased = store.lease(subscription, batch, Timestamp::now()).await?;
            if batch.may_have_left_work(&leased) {
                signal.notify_one();
            } else {
                signal.drained(mark);
            }
            if !leased.is_empty() {
                return Ok(leased);
            }
        }
        let now = Instant::now();
        if now >= deadline || shutdown.is_cancelled() {
            return Ok(Vec::new());
        }
        if worth_leasing {
            next_due = store.next_due(&subscription.name).await?;
        }
        let wake_at = match next_due {
            Some(due) => {
                let until_due = due.since(Timestamp::now()).max(MIN_POLL_SLEEP);
                deadline.min(now + until_due)
            }
            None => deadline,
        };
        tokio::select! {
            () = tokio::time::sleep_until(wake_at) => {}
            () = &mut notified => {}
            () = shutdown.cancelled() => return Ok(Vec::new()),
        }
    }
}
