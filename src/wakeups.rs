//! In-process wake-ups: a long poll waits on its subscription's signal, the scheduler on its
//! own, and whoever makes work due (a confirm, a redrive, an expired lease) signals them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio::sync::futures::Notified;

use crate::domain::Timestamp;

#[derive(Clone, Default)]
pub struct Wakeups {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    subscriptions: Mutex<HashMap<String, Arc<SubscriptionSignal>>>,
    scheduler: Notify,
    checks: DueSignal,
    leases: DueSignal,
    push: Notify,
}

impl Wakeups {
    /// The signal of one subscription. Register interest (`Notified::enable`) before looking
    /// for work, so a signal sent between the look and the wait is not missed.
    pub fn subscription(&self, name: &str) -> Arc<SubscriptionSignal> {
        let mut map = self
            .inner
            .subscriptions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        map.entry(name.to_owned()).or_default().clone()
    }

    /// Wakes one waiter on a subscription (or, with none waiting, the next to wait): one
    /// lease looks for what became due, not every waiting consumer at once, most of whom would
    /// find nothing. A long poll whose lease may have left due work behind passes the wake-up
    /// on with `notify_one` on the signal it holds (`Batch::may_have_left_work`); a waiter that goes away
    /// after being woken hands it to the next (tokio's `Notify` forwards a `notify_one`).
    pub fn notify_subscription(&self, name: &str) {
        let notify = {
            let map = self
                .inner
                .subscriptions
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            map.get(name).cloned()
        };
        if let Some(notify) = notify {
            notify.notify_one();
        }
    }

    /// Wakes every waiter on every subscription and every scheduler loop: for when wake-ups may
    /// have been missed (the PostgreSQL listener was disconnected), so everyone looks again.
    pub fn notify_all(&self) {
        let all: Vec<Arc<SubscriptionSignal>> = {
            let map = self
                .inner
                .subscriptions
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            map.values().cloned().collect()
        };
        for signal in all {
            signal.notify_waiters();
        }
        self.notify_scheduler();
        self.notify_push();
        self.inner.checks.wake();
        self.inner.leases.wake();
    }

    /// The scheduler loops' signal: new work may be due earlier than they planned. Like a
    /// subscription's, enable the `Notified` before looking for work.
    pub fn scheduler(&self) -> &Notify {
        &self.inner.scheduler
    }

    /// Wakes every scheduler loop that is waiting.
    pub fn notify_scheduler(&self) {
        self.inner.scheduler.notify_waiters();
    }

    /// The push loop's own signal: deliveries became due (a confirm, a nack, an expired lease,
    /// a redrive). Unlike [`Wakeups::notify_scheduler`] it leaves the other loops asleep, so a
    /// stream of confirms costs the lease-expiry loop nothing. Enable before looking for work.
    pub fn push(&self) -> &Notify {
        &self.inner.push
    }

    /// Wakes the push loop (see [`Wakeups::push`]).
    pub fn notify_push(&self) {
        self.inner.push.notify_waiters();
    }

    /// The lease-expiry loop's signal: a lease calls [`DueSignal::due_at`] with its end, which
    /// wakes the loop only when that is before the loop's planned look (a stream of leases that
    /// end after the earliest one costs the loop nothing).
    pub fn leases(&self) -> &DueSignal {
        &self.inner.leases
    }

    /// The check-back loop's signal: a Prepare calls [`DueSignal::due_at`] with the new
    /// message's first check time.
    pub fn checks(&self) -> &DueSignal {
        &self.inner.checks
    }
}

/// A subscription's wake-up signal, and what its leases on this process know. A lease that
/// began after the last wake-up sees every commit that made work due so far (wake-ups are
/// sent after their commit); until the next wake-up, another lease can only find what that
/// one leaves behind (it passes the wake-up on when it may have: `Batch::may_have_left_work`)
/// or what becomes due by time, which `Store::next_due` tells far more cheaply than a lease.
/// Except on a backlog: while the leases come back full, each poll leases at once, beside the
/// running ones, rather than queue behind them for rows they cannot take.
#[derive(Default)]
pub struct SubscriptionSignal {
    notify: Notify,
    /// Wake-ups sent so far.
    wakes: AtomicU64,
    /// One more than the `wakes` the latest lease saw when it began (0: none yet).
    covered: AtomicU64,
    /// Leases of the subscription running on this process right now.
    leasing: AtomicUsize,
    /// Told when a lease ends.
    lease_ended: Notify,
    /// The latest lease to end came back full: more was due than one lease takes.
    backlogged: AtomicBool,
}

/// What a long poll does next (see [`SubscriptionSignal::look`]).
#[derive(Debug, PartialEq, Eq)]
pub enum Look {
    /// A wake-up came since the latest lease began, or the subscription has a backlog: lease.
    Lease,
    /// A lease that began since the last wake-up is running, and the one before it did not
    /// come back full: wait for it to end.
    AwaitLease,
    /// A lease that began since the last wake-up has ended: only work due by time can be
    /// waiting; ask for the next due time.
    AskNextDue,
}

impl SubscriptionSignal {
    /// Enable the `Notified` before looking for work (see [`Wakeups::subscription`]).
    pub fn notified(&self) -> Notified<'_> {
        self.notify.notified()
    }

    /// Wakes one waiter, or the next to wait (see [`Wakeups::notify_subscription`]).
    pub fn notify_one(&self) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
        self.notify.notify_one();
    }

    fn notify_waiters(&self) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// What a long poll does next. Enable [`SubscriptionSignal::lease_ended`] first when it
    /// may wait for a lease.
    pub fn look(&self) -> Look {
        let covered = self.covered.load(Ordering::SeqCst) == self.wakes.load(Ordering::SeqCst) + 1;
        let running = self.leasing.load(Ordering::SeqCst) > 0;
        if !covered || (running && self.backlogged.load(Ordering::SeqCst)) {
            Look::Lease
        } else if running {
            Look::AwaitLease
        } else {
            Look::AskNextDue
        }
    }

    /// Tells when a running lease ends.
    pub fn lease_ended(&self) -> Notified<'_> {
        self.lease_ended.notified()
    }

    /// Records a lease beginning now; it ends when the guard is dropped.
    pub fn begin_lease(&self) -> LeaseRunning<'_> {
        self.leasing.fetch_add(1, Ordering::SeqCst);
        let mark = self.wakes.load(Ordering::SeqCst);
        self.covered.fetch_max(mark + 1, Ordering::SeqCst);
        LeaseRunning { signal: self }
    }
}

/// A lease running on a subscription ([`SubscriptionSignal::begin_lease`]).
pub struct LeaseRunning<'a> {
    signal: &'a SubscriptionSignal,
}

impl LeaseRunning<'_> {
    /// Ends the lease; one that may have left due work behind passes the wake-up on, and until
    /// a lease ends that did not, polls lease without waiting for the running ones.
    pub fn end(self, may_have_left_work: bool) {
        self.signal
            .backlogged
            .store(may_have_left_work, Ordering::SeqCst);
        if may_have_left_work {
            self.signal.notify_one();
        }
    }
}

impl Drop for LeaseRunning<'_> {
    // Also when the lease failed or its call went away: the polls waiting for it look again.
    fn drop(&mut self) {
        self.signal.leasing.fetch_sub(1, Ordering::SeqCst);
        self.signal.lease_ended.notify_waiters();
    }
}

/// Wakes one loop only when new work is due before the loop planned to look again, so a
/// stream of writes whose work is due later (Prepares, checked seconds later) costs the loop
/// nothing.
#[derive(Debug)]
pub struct DueSignal {
    notify: Notify,
    /// Milliseconds of the loop's planned wake-up; `i64::MAX` while it is looking for work (or
    /// has nothing planned), so that any work wakes it.
    planned: AtomicI64,
}

impl Default for DueSignal {
    fn default() -> Self {
        Self {
            notify: Notify::new(),
            planned: AtomicI64::new(i64::MAX),
        }
    }
}

impl DueSignal {
    /// The loop's wake-up. Enable it, then call [`DueSignal::looking`], then look for work.
    pub fn notified(&self) -> Notified<'_> {
        self.notify.notified()
    }

    /// The loop's side, once its `Notified` is enabled and before it looks for work: any work
    /// made due from now until [`DueSignal::plan`] wakes it.
    pub fn looking(&self) {
        self.planned.store(i64::MAX, Ordering::SeqCst);
    }

    /// The loop's side, after looking: it will look again at `at` (`None`: only when woken or
    /// at its idle ceiling).
    pub fn plan(&self, at: Option<Timestamp>) {
        let at = at.map_or(i64::MAX, Timestamp::as_millis);
        self.planned.store(at, Ordering::SeqCst);
    }

    /// Wakes the loop whatever it planned (wake-ups may have been missed).
    pub fn wake(&self) {
        self.notify.notify_waiters();
    }

    /// The writer's side, after its commit: work is due at `at`.
    pub fn due_at(&self, at: Timestamp) {
        if at.as_millis() < self.planned.load(Ordering::SeqCst) {
            self.notify.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::pin::pin;
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_lease_begun_since_the_last_wake_up_covers_the_subscription() {
        let wakeups = Wakeups::default();
        let signal = wakeups.subscription("billing");
        assert_eq!(signal.look(), Look::Lease, "no lease has looked yet");
        let running = signal.begin_lease();
        assert_eq!(signal.look(), Look::AwaitLease);
        running.end(false);
        assert_eq!(signal.look(), Look::AskNextDue);
        wakeups.notify_subscription("billing");
        assert_eq!(signal.look(), Look::Lease, "a commit made work due");

        let running = signal.begin_lease();
        running.end(true);
        assert_eq!(
            signal.look(),
            Look::Lease,
            "the lease may have left work behind"
        );

        // A wake-up during a lease: that lease may have looked before the commit.
        let running = signal.begin_lease();
        wakeups.notify_all();
        drop(running);
        assert_eq!(signal.look(), Look::Lease);
    }

    #[test]
    fn on_a_backlog_polls_lease_beside_the_running_lease() {
        let wakeups = Wakeups::default();
        let signal = wakeups.subscription("billing");
        signal.begin_lease().end(true);
        let first = signal.begin_lease();
        assert_eq!(
            signal.look(),
            Look::Lease,
            "the last lease came back full: more is due than the running one takes"
        );
        let second = signal.begin_lease();
        first.end(true);
        assert_eq!(signal.look(), Look::Lease);
        let third = signal.begin_lease();
        second.end(false);
        assert_eq!(
            signal.look(),
            Look::AwaitLease,
            "a lease found the end of the backlog: wait for the running one again"
        );
        third.end(false);
        assert_eq!(signal.look(), Look::AskNextDue);
    }

    /// Whether the enabled `woken` has fired.
    async fn fired(woken: std::pin::Pin<&mut Notified<'_>>) -> bool {
        tokio::time::timeout(Duration::from_millis(10), woken)
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn due_signals_wake_only_work_due_before_the_plan() {
        let signal = DueSignal::default();
        let at = Timestamp::from_millis(10_000);

        let mut woken = pin!(signal.notified());
        woken.as_mut().enable();
        signal.looking();
        signal.plan(Some(at));
        signal.due_at(Timestamp::from_millis(20_000));
        assert!(
            !fired(woken.as_mut()).await,
            "later work does not wake the loop"
        );
        signal.due_at(Timestamp::from_millis(5_000));
        assert!(fired(woken).await, "earlier work does");

        // While the loop is looking, any work wakes it: the look may have missed it.
        let mut woken = pin!(signal.notified());
        woken.as_mut().enable();
        signal.looking();
        signal.due_at(Timestamp::from_millis(1_000_000_000_000_000));
        assert!(fired(woken).await);
    }

    /// One due delivery wakes one of the waiting long polls, not all of them; a woken waiter
    /// that goes away without looking hands the wake-up to the next.
    #[tokio::test]
    async fn a_subscription_wakes_one_waiter_and_a_dropped_one_hands_it_on() {
        let wakeups = Wakeups::default();
        let signal = wakeups.subscription("billing");
        let mut first = pin!(signal.notified());
        // Boxed, so that dropping it drops the future itself.
        let mut second = Box::pin(signal.notified());
        let mut third = pin!(signal.notified());
        for waiter in [first.as_mut(), second.as_mut(), third.as_mut()] {
            waiter.enable();
        }
        wakeups.notify_subscription("billing");
        assert!(fired(first).await, "the longest waiter is woken");
        assert!(!fired(second.as_mut()).await, "the others sleep on");
        assert!(!fired(third.as_mut()).await);

        // `second` is woken, then goes away (a cancelled Receive) without looking.
        wakeups.notify_subscription("billing");
        drop(second);
        assert!(fired(third).await, "its wake-up reaches the next waiter");
    }
}
