//! Lease-ahead on a backlog: when a Receive's lease comes back full, this process leases the
//! subscription's next batch at once, while that consumer works and acks, and holds it for the
//! next Receive, which hands it out without waiting for a lease (as much of it as its batch
//! takes; a lease tops up a batch that what is held does not fill). A consumer's round trip
//! then overlaps its next lease, as RabbitMQ's prefetch overlaps its next deliveries. A held
//! batch nobody takes within [`HOLD`] goes back to the store (`Store::return_leases`: pending
//! again, in its place, the attempt not counted), and so do all held batches when the server
//! shuts down. Only a crash leaves a held batch leased; its leases then expire as any
//! consumer's would.
//!
//! Steady traffic never leases ahead: its leases come back short.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::domain::{LeasedDelivery, Subscription, Timestamp};
use crate::store::{Batch, Store};
use crate::wakeups::Wakeups;

/// Batches all subscriptions together may have leased ahead on this process, which bounds the
/// memory held: each batch is at most its Receive's byte budget (`limits.max_receive_bytes`,
/// 4 MB by default; a typical backlog batch of 256 deliveries of 1 KiB is a quarter of one).
const AHEAD_IN_ALL: usize = 16;
/// Longest a leased-ahead batch waits for a Receive before it goes back. A consumer that acks
/// at once is back within milliseconds; one that works up to this long on a batch still finds
/// the next waiting rather than leased and given back each time. Never more than a quarter of
/// the ack deadline, so a batch handed out late keeps most of its lease.
pub const HOLD: Duration = Duration::from_secs(1);

/// The batches leased ahead on this process, shared by every Receive.
#[derive(Clone)]
pub struct LeaseAhead {
    store: Arc<dyn Store>,
    wakeups: Wakeups,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    /// Batches (held or being leased) one subscription may have ahead; 0: none.
    per_subscription: usize,
    held: Arc<Mutex<Held>>,
}

#[derive(Default)]
struct Held {
    /// Only subscriptions with a batch held or being leased: at most `AHEAD_IN_ALL`.
    by_subscription: HashMap<String, Ahead>,
    /// Tells one held batch from another, so the hold timer of a taken one finds it gone.
    next_id: u64,
}

impl Held {
    /// Batches held or being leased, over all subscriptions.
    fn in_all(&self) -> usize {
        self.by_subscription
            .values()
            .map(|ahead| ahead.ready.len() + ahead.leasing)
            .sum()
    }

    /// Drops a subscription's entry once nothing is held or being leased for it.
    fn forget_if_idle(&mut self, name: &str) {
        if self
            .by_subscription
            .get(name)
            .is_some_and(|ahead| ahead.ready.is_empty() && ahead.leasing == 0)
        {
            self.by_subscription.remove(name);
        }
    }
}

#[derive(Default)]
struct Ahead {
    ready: VecDeque<Ready>,
    leasing: usize,
}

struct Ready {
    id: u64,
    /// Oldest due first; a Receive takes from the front.
    deliveries: VecDeque<LeasedDelivery>,
}

impl LeaseAhead {
    /// Leases up to `per_subscription` batches of a subscription ahead through `store`; its
    /// tasks run on `tracker` and give their batches back once `shutdown` is cancelled.
    pub fn new(
        store: Arc<dyn Store>,
        wakeups: Wakeups,
        (tracker, shutdown): (TaskTracker, CancellationToken),
        per_subscription: usize,
    ) -> Self {
        Self {
            store,
            wakeups,
            tracker,
            shutdown,
            per_subscription,
            held: Arc::default(),
        }
    }

    /// Deliveries leased ahead on `subscription`, oldest first, as many as a Receive of
    /// `batch` takes, if any are waiting. Taking a full batch leases the next ahead.
    pub fn take(&self, subscription: &Subscription, batch: Batch) -> Option<Vec<LeasedDelivery>> {
        let name = subscription.name.as_str();
        let taken = {
            let mut held = self.lock();
            let ahead = held.by_subscription.get_mut(name)?;
            let mut wanted = batch.takes(ahead.ready.iter().flat_map(|ready| &ready.deliveries));
            let mut taken = Vec::with_capacity(wanted);
            while wanted > 0
                && let Some(ready) = ahead.ready.front_mut()
            {
                let from_this = wanted.min(ready.deliveries.len());
                taken.extend(ready.deliveries.drain(..from_this));
                wanted -= from_this;
                if ready.deliveries.is_empty() {
                    ahead.ready.pop_front();
                }
            }
            held.forget_if_idle(name);
            taken
        };
        if taken.is_empty() {
            return None;
        }
        if batch.may_have_left_work(&taken) {
            self.lease_next(subscription, batch);
        }
        Some(taken)
    }

    /// A Receive's lease of `batch` came back full: lease the next batch now (unless enough
    /// are ahead already), for the next Receive to take.
    pub fn lease_next(&self, subscription: &Subscription, batch: Batch) {
        if self.shutdown.is_cancelled() || !self.reserve(subscription) {
            return;
        }
        let this = self.clone();
        let subscription = subscription.clone();
        self.tracker.spawn(async move {
            let signal = this.wakeups.subscription(subscription.name.as_str());
            let running = signal.begin_lease();
            let leased = this
                .store
                .lease(&subscription, batch, Timestamp::now())
                .await;
            let deliveries = match leased {
                Ok(deliveries) => deliveries,
                Err(error) => {
                    tracing::debug!(error = %error, "leasing ahead failed");
                    this.unreserve(&subscription);
                    return;
                }
            };
            running.end(batch.may_have_left_work(&deliveries));
            if deliveries.is_empty() {
                this.unreserve(&subscription);
                return;
            }
            let id = this.hold(&subscription, deliveries);
            // A Receive waiting on the subscription takes it now.
            signal.notify_one();
            let hold = HOLD.min(subscription.ack_deadline / 4);
            tokio::select! {
                () = tokio::time::sleep(hold) => {}
                () = this.shutdown.cancelled() => {}
            }
            this.give_back(&subscription, id).await;
        });
    }

    /// Counts a batch about to be leased ahead, if the limits allow one more.
    fn reserve(&self, subscription: &Subscription) -> bool {
        let mut held = self.lock();
        let name = subscription.name.as_str();
        let ahead = held
            .by_subscription
            .get(name)
            .map_or(0, |ahead| ahead.ready.len() + ahead.leasing);
        if held.in_all() >= AHEAD_IN_ALL || ahead >= self.per_subscription {
            return false;
        }
        held.by_subscription
            .entry(name.to_owned())
            .or_default()
            .leasing += 1;
        true
    }

    /// Uncounts a batch whose lease ahead found nothing or failed.
    fn unreserve(&self, subscription: &Subscription) {
        let mut held = self.lock();
        let name = subscription.name.as_str();
        if let Some(ahead) = held.by_subscription.get_mut(name) {
            ahead.leasing -= 1;
        }
        held.forget_if_idle(name);
    }

    /// Holds a leased-ahead batch for the next Receive; returns its id.
    fn hold(&self, subscription: &Subscription, deliveries: Vec<LeasedDelivery>) -> u64 {
        let mut held = self.lock();
        held.next_id += 1;
        let id = held.next_id;
        let ahead = held
            .by_subscription
            .entry(subscription.name.as_str().to_owned())
            .or_default();
        ahead.leasing -= 1;
        ahead.ready.push_back(Ready {
            id,
            deliveries: deliveries.into(),
        });
        id
    }

    /// Gives batch `id` back to the store, unless a Receive took it.
    async fn give_back(&self, subscription: &Subscription, id: u64) {
        let ready = {
            let mut held = self.lock();
            let Some(ahead) = held.by_subscription.get_mut(subscription.name.as_str()) else {
                return;
            };
            let Some(at) = ahead.ready.iter().position(|ready| ready.id == id) else {
                return;
            };
            let ready = ahead.ready.remove(at);
            held.forget_if_idle(subscription.name.as_str());
            ready
        };
        let Some(ready) = ready else { return };
        let deliveries: Vec<LeasedDelivery> = ready.deliveries.into();
        if let Err(error) = self
            .store
            .return_leases(&deliveries, Timestamp::now())
            .await
        {
            // They stay leased and expire as any consumer's lease would.
            tracing::warn!(
                error = %error,
                subscription = %subscription.name.as_str(),
                deliveries = deliveries.len(),
                "could not give back deliveries leased ahead; they are redelivered when their lease expires"
            );
        }
    }

    /// Batches held for `subscription` now.
    #[cfg(test)]
    pub fn held(&self, subscription: &str) -> usize {
        self.lock()
            .by_subscription
            .get(subscription)
            .map_or(0, |ahead| ahead.ready.len())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
