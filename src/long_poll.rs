//! The long poll behind Receive: lease due deliveries, or wait for some until a deadline.
//! Sleeps until the next delivery is due or a wake-up arrives (a confirm, a nack, an expired
//! lease), never on a fixed tick.
//!
//! A lease is the most expensive statement a consumer runs, and one that finds nothing is
//! wasted. A lease that began after the last wake-up sees all the work made due so far, so
//! until the next wake-up ([`SubscriptionSignal::look`]) a poll does not lease again: it
//! waits for that lease to end if it is still running (the lease passes the wake-up on if it
//! may have left work behind), then asks for the next due time and leases only if that has
//! come (work due by time sends no wake-up). Consumers that come back from their Acks at the
//! same moment then share one lease instead of racing each other to empty ones. On a backlog
//! (the latest lease came back full) a poll leases at once, beside the running lease: waiting
//! for it would only queue the poll behind rows that lease cannot take. With a [`LeaseAhead`]
//! (the Consumer service's), a full lease also leases the next batch ahead, and a poll first
//! takes a batch leased ahead for it.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::domain::{LeasedDelivery, Subscription, Timestamp};
use crate::lease_ahead::LeaseAhead;
use crate::store::{Batch, Store, StoreError};
use crate::wakeups::{Look, SubscriptionSignal, Wakeups};

/// Floor on a long poll's sleep when the store reports work due that a lease did not find
/// (another consumer took it, or clock rounding); keeps a disagreement from spinning the CPU.
const MIN_POLL_SLEEP: Duration = Duration::from_millis(5);

/// Leases up to `batch` of `subscription`'s due deliveries (or takes a batch `ahead` leased
/// for it), waiting until `deadline` for some; answers empty at the deadline or at `shutdown`.
pub async fn lease_or_wait(
    store: &dyn Store,
    wakeups: &Wakeups,
    ahead: Option<&LeaseAhead>,
    subscription: &Subscription,
    batch: Batch,
    deadline: Instant,
    shutdown: &CancellationToken,
) -> Result<Vec<LeasedDelivery>, StoreError> {
    let signal = wakeups.subscription(subscription.name.as_str());
    loop {
        if let Some(ahead) = ahead
            && let Some(mut leased) = ahead.take(subscription, batch)
        {
            // Less than the batch takes was held (the backlog's tail, or a larger batch than
            // the one leased ahead): a lease tops it up, as a Receive without it would get.
            // What was held is handed out even if that lease fails.
            if let Some(rest) = batch.rest_after(&leased) {
                match lease(store, &signal, Some(ahead), subscription, (rest, batch)).await {
                    Ok(more) => leased.extend(more),
                    Err(error) => tracing::debug!(error = %error, "topping up a held batch failed"),
                }
            }
            return Ok(leased);
        }
        // Register interest before looking, so a wake-up (or a lease's end) between the look
        // and the wait below is not lost.
        let notified = signal.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let lease_ended = signal.lease_ended();
        tokio::pin!(lease_ended);
        lease_ended.as_mut().enable();

        let look = match signal.look() {
            // A poll with no time left to wait takes what is due now, beside the other lease.
            Look::AwaitLease if Instant::now() >= deadline => Look::Lease,
            look => look,
        };
        let mut next_due = None;
        let worth_leasing = match look {
            Look::Lease => true,
            Look::AwaitLease => false,
            Look::AskNextDue => {
                next_due = store.next_due(&subscription.name).await?;
                next_due.is_some_and(|due| due <= Timestamp::now())
            }
        };
        if worth_leasing {
            let leased = lease(store, &signal, ahead, subscription, (batch, batch)).await?;
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
            () = &mut lease_ended, if look == Look::AwaitLease => {}
            () = shutdown.cancelled() => return Ok(Vec::new()),
        }
    }
}

/// One lease of `this` batch, known to the subscription's `signal` while it runs; one that comes
/// back full (a backlog) passes the wake-up on and leases the `next` batch `ahead`.
async fn lease(
    store: &dyn Store,
    signal: &SubscriptionSignal,
    ahead: Option<&LeaseAhead>,
    subscription: &Subscription,
    (this, next): (Batch, Batch),
) -> Result<Vec<LeasedDelivery>, StoreError> {
    let running = signal.begin_lease();
    let leased = store.lease(subscription, this, Timestamp::now()).await?;
    let backlog = this.may_have_left_work(&leased);
    running.end(backlog);
    if backlog && let Some(ahead) = ahead {
        ahead.lease_next(subscription, next);
    }
    Ok(leased)
}
