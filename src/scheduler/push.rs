//! Push delivery: leases the due deliveries of every subscription with a `push_endpoint` and
//! sends each to the subscription's Receiver under its ack deadline. OK acknowledges the
//! delivery; an error status, a timeout or an unreachable receiver records a failed attempt,
//! retried after the subscription's backoff until it is DEAD. Calls in flight are bounded per
//! subscription and overall, and each runs as its own task, so a slow receiver only ever
//! occupies its own subscription's slots.

use std::collections::HashMap;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::join_all;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info_span, warn};

use super::sleep::{failure_backoff, until_due};
use super::{clip_error, take_permits};
use crate::callbacks::Callbacks;
use crate::config::PushConfig;
use crate::domain::{AckStatus, LeasedDelivery, RedeliveryPlan, Subscription, Timestamp};
use crate::metrics;
use crate::store::{Batch, Store, StoreError};
use crate::telemetry::context;
use crate::wakeups::Wakeups;

/// A pushed delivery's lease outlasts the call's deadline (the ack deadline) by this much, so
/// the call's own outcome (a timeout with its reason, or a late OK) is recorded before the
/// lease-expiry sweep could end the lease.
const LEASE_GRACE: Duration = Duration::from_secs(2);

/// What push delivery did in one pass.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PushCounts {
    /// Deliveries the receiver answered OK: ACKED.
    pub acked: u64,
    /// Failed pushes that will be retried after backoff.
    pub retried: u64,
    /// Failed pushes on the last attempt: the delivery is DEAD.
    pub dead: u64,
    /// Pushes whose lease ended before their result was recorded (the lease-expiry sweep
    /// counted the attempt; an OK that came late may mean a duplicate).
    pub lease_lost: u64,
}

impl PushCounts {
    fn add(&mut self, outcome: Option<PushOutcome>) {
        match outcome {
            Some(PushOutcome::Acked) => self.acked += 1,
            Some(PushOutcome::Retried) => self.retried += 1,
            Some(PushOutcome::Dead) => self.dead += 1,
            Some(PushOutcome::LeaseLost) => self.lease_lost += 1,
            None => {}
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum PushOutcome {
    Acked,
    Retried,
    Dead,
    LeaseLost,
}

/// A leased delivery with the subscription it goes to and its two slots (the subscription's
/// and the overall one).
struct Push {
    subscription: Arc<Subscription>,
    delivery: LeasedDelivery,
    slots: [OwnedSemaphorePermit; 2],
}

pub struct Dispatcher {
    store: Arc<dyn Store>,
    wakeups: Wakeups,
    callbacks: Arc<Callbacks>,
    /// One permit per push in flight, over every subscription.
    overall: Arc<Semaphore>,
    per_subscription: usize,
    /// One semaphore per push subscription, by name.
    lanes: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// Signalled when a push ends, freeing its slots.
    finished: Notify,
}

/// The pushes one pass leased, and when the next delivery of a subscription with free slots
/// is due. (A subscription without free slots is looked at again when one of its pushes ends.)
struct Leased {
    pushes: Vec<Push>,
    next_due: Option<Timestamp>,
}

impl Dispatcher {
    pub fn new(
        store: Arc<dyn Store>,
        wakeups: Wakeups,
        callbacks: Arc<Callbacks>,
        config: &PushConfig,
    ) -> Self {
        Self {
            store,
            wakeups,
            callbacks,
            overall: Arc::new(Semaphore::new(config.concurrency)),
            per_subscription: config.per_subscription,
            lanes: Mutex::new(HashMap::new()),
            finished: Notify::new(),
        }
    }

    /// The semaphores of the current push subscriptions; lanes of subscriptions that are gone
    /// (or pull now) are dropped (their pushes in flight keep their own permits).
    fn lanes(&self, subscriptions: &[Subscription]) -> Vec<Arc<Semaphore>> {
        let mut lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
        lanes.retain(|name, _| subscriptions.iter().any(|s| s.name.as_str() == name));
        subscriptions
            .iter()
            .map(|s| {
                lanes
                    .entry(s.name.to_string())
                    .or_insert_with(|| Arc::new(Semaphore::new(self.per_subscription)))
                    .clone()
            })
            .collect()
    }

    /// Leases, for every push subscription with free slots, as many due deliveries as it has
    /// slots for.
    async fn lease_due(&self, now: Timestamp) -> Result<Leased, StoreError> {
        let subscriptions: Vec<Subscription> = self
            .store
            .list_subscriptions(None)
            .await?
            .into_iter()
            .filter(|s| s.push_endpoint.is_some())
            .collect();
        let lanes = self.lanes(&subscriptions);
        let mut leased = Leased {
            pushes: Vec::new(),
            next_due: None,
        };
        for (subscription, lane) in subscriptions.into_iter().zip(lanes) {
            if lane.available_permits() == 0 || self.overall.available_permits() == 0 {
                continue; // a push of this subscription (or any) ending wakes the loop
            }
            // A read first, so an idle subscription costs no write.
            let Some(due) = self.store.next_due(&subscription.name).await? else {
                continue;
            };
            if due > now {
                leased.next_due = Some(leased.next_due.map_or(due, |next| next.min(due)));
                continue;
            }
            let mut lane_slots = take_permits(&lane, self.per_subscription);
            let overall_slots = take_permits(&self.overall, lane_slots.len());
            lane_slots.truncate(overall_slots.len());
            if lane_slots.is_empty() {
                continue;
            }
            let max = u32::try_from(lane_slots.len()).unwrap_or(u32::MAX);
            let lease = Subscription {
                ack_deadline: subscription.ack_deadline + LEASE_GRACE,
                ..subscription.clone()
            };
            let deliveries = self.store.lease(&lease, Batch::messages(max), now).await?;
            metrics::deliveries_leased(subscription.name.as_str(), &deliveries);
            let subscription = Arc::new(subscription);
            let slots = lane_slots.into_iter().zip(overall_slots);
            for (delivery, (lane_slot, overall_slot)) in deliveries.into_iter().zip(slots) {
                leased.pushes.push(Push {
                    subscription: subscription.clone(),
                    delivery,
                    slots: [lane_slot, overall_slot],
                });
            }
        }
        Ok(leased)
    }

    /// Pushes every delivery due by `now` that has a free slot and waits for the answers,
    /// recording them as of `now`, so a test can step through retries without sleeping.
    pub async fn pass(&self, now: Timestamp) -> Result<PushCounts, StoreError> {
        let mut counts = PushCounts::default();
        let leased = self.lease_due(now).await?;
        let pushes = leased.pushes.into_iter().map(|push| async move {
            let Push {
                subscription,
                delivery,
                slots,
            } = push;
            let outcome = self.push(&subscription, delivery, Some(now)).await;
            drop(slots);
            outcome
        });
        for outcome in join_all(pushes).await {
            counts.add(outcome);
        }
        Ok(counts)
    }

    /// The background loop: leases and starts pushes (each its own task), then sleeps until a
    /// push subscription has a delivery due, a subscription is woken (confirm, nack, expiry,
    /// redrive, a failed push), or a push ends and frees a slot.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken, tracker: TaskTracker) {
        let mut failures = 0;
        loop {
            let mut woken = pin!(self.wakeups.scheduler().notified());
            woken.as_mut().enable();
            let mut deliveries_due = pin!(self.wakeups.push().notified());
            deliveries_due.as_mut().enable();
            let mut slot_freed = pin!(self.finished.notified());
            slot_freed.as_mut().enable();

            let next_due = match self.lease_due(Timestamp::now()).await {
                Ok(leased) => {
                    failures = 0;
                    for push in leased.pushes {
                        let this = self.clone();
                        let shutdown = shutdown.clone();
                        tracker.spawn(async move {
                            let Push {
                                subscription,
                                delivery,
                                slots,
                            } = push;
                            // At shutdown the push is dropped; its lease expires and it is
                            // delivered again.
                            tokio::select! {
                                _ = this.push(&subscription, delivery, None) => {}
                                () = shutdown.cancelled() => {}
                            }
                            drop(slots);
                            this.finished.notify_waiters();
                        });
                    }
                    leased.next_due
                }
                Err(error) => {
                    failures += 1;
                    warn!(error = %error, failures, "push dispatch pass failed");
                    Some(Timestamp::now().plus(failure_backoff(failures)))
                }
            };
            let woken = async {
                tokio::select! {
                    () = woken => {}
                    () = deliveries_due => {}
                    () = slot_freed => {}
                }
            };
            if !until_due(next_due, woken, &shutdown).await {
                return;
            }
        }
    }

    /// Sends one delivery, in a span that continues the message's trace (the Deliver call names
    /// it as parent), and records the answer as of `fixed_now` (or when it came).
    async fn push(
        &self,
        subscription: &Subscription,
        delivery: LeasedDelivery,
        fixed_now: Option<Timestamp>,
    ) -> Option<PushOutcome> {
        let span = info_span!(
            "push",
            subscription = %subscription.name,
            message_id = %delivery.receipt.message_id,
            attempt = delivery.attempt,
        );
        context::set_parent(&span, delivery.trace.as_ref());
        self.deliver(subscription, delivery, fixed_now)
            .instrument(span)
            .await
    }

    async fn deliver(
        &self,
        subscription: &Subscription,
        delivery: LeasedDelivery,
        fixed_now: Option<Timestamp>,
    ) -> Option<PushOutcome> {
        let endpoint = subscription.push_endpoint.as_deref()?;
        let receipt = delivery.receipt.clone();
        let attempt = delivery.attempt;
        let answer = self
            .callbacks
            .deliver(endpoint, delivery, subscription.ack_deadline)
            .await;
        let now = fixed_now.unwrap_or_else(Timestamp::now);
        let message_id = &receipt.message_id;
        let name = &subscription.name;
        let recorded = match answer {
            Ok(()) => match self.store.ack(std::slice::from_ref(&receipt), now).await {
                Ok(statuses) => match statuses.first() {
                    Some(AckStatus::Ok) => {
                        metrics::deliveries_acked(name.as_str(), 1);
                        Ok(PushOutcome::Acked)
                    }
                    _ => {
                        warn!(
                            subscription = %name, %message_id, attempt,
                            "receiver answered OK after the lease ended; it may see the delivery again"
                        );
                        Ok(PushOutcome::LeaseLost)
                    }
                },
                Err(error) => Err(error),
            },
            Err(error) => {
                metrics::delivery_push_failed(name.as_str());
                let error = clip_error(format!("receiver {endpoint}: {error}"));
                match self
                    .store
                    .fail_delivery(subscription, &receipt, &error, now)
                    .await
                {
                    Ok(Some(RedeliveryPlan::RetryAt(at))) => {
                        let retry_in = at.since(now);
                        debug!(subscription = %name, %message_id, attempt, ?retry_in, %error, "push failed; will retry");
                        Ok(PushOutcome::Retried)
                    }
                    Ok(Some(RedeliveryPlan::Dead)) => {
                        metrics::delivery_dead(name.as_str(), metrics::DeadReason::PushFailed);
                        warn!(
                            subscription = %name, %message_id, attempts = attempt, %error,
                            "push failed on the last attempt: delivery is DEAD until redriven"
                        );
                        Ok(PushOutcome::Dead)
                    }
                    Ok(None) => Ok(PushOutcome::LeaseLost),
                    Err(error) => Err(error),
                }
            }
        };
        match recorded {
            Ok(outcome) => Some(outcome),
            Err(error) => {
                // The lease stays; when it expires the delivery is due again.
                warn!(subscription = %name, %message_id, error = %error, "recording a push failed");
                None
            }
        }
    }
}
