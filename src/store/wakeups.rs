//! In-process wake-ups: a long poll waits on its subscription's signal, the scheduler on its
//! own, and whoever makes work due (a confirm, a redrive, an expired lease) signals them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

#[derive(Clone, Default)]
pub struct Wakeups {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    subscriptions: Mutex<HashMap<String, Arc<Notify>>>,
    scheduler: Notify,
}

impl Wakeups {
    /// The signal of one subscription. Register interest (`Notified::enable`) before looking
    /// for work, so a signal sent between the look and the wait is not missed.
    pub fn subscription(&self, name: &str) -> Arc<Notify> {
        let mut map = self
            .inner
            .subscriptions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        map.entry(name.to_owned()).or_default().clone()
    }

    /// Wakes every waiter on a subscription.
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
            notify.notify_waiters();
        }
    }

    /// The scheduler's signal: new work may be due earlier than it planned.
    pub fn scheduler(&self) -> &Notify {
        &self.inner.scheduler
    }

    pub fn notify_scheduler(&self) {
        self.inner.scheduler.notify_one();
    }
}
