//! A process's copy of the subscriptions table. Every Receive and Ack looks up its
//! subscription and the push loop lists them all on each wake-up; at a few thousand messages
//! a second those reads were the most frequent statement the database ran, for a table that
//! changes only when an operator changes it.
//!
//! The copy is trusted only while it is current: the backend marks it stale when a write of
//! its own changes a subscription (SQLite, whose one writer is this process's) or when it
//! hears that another replica did (PostgreSQL: every subscription write notifies
//! `notify::SUBSCRIPTIONS` in its transaction; while its listener is not connected the store
//! reads the table instead). A copy older than [`MAX_AGE`] is read again whatever happened.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::StoreError;
use crate::domain::{Name, Subscription};

/// Longest a copy is used without reading the table again.
pub const MAX_AGE: Duration = Duration::from_secs(10);

pub struct SubscriptionCache {
    /// Bumped on every change this replica hears of.
    generation: AtomicU64,
    copy: Mutex<Option<Copy>>,
    max_age: Duration,
}

impl Default for SubscriptionCache {
    fn default() -> Self {
        Self {
            generation: AtomicU64::new(0),
            copy: Mutex::new(None),
            max_age: MAX_AGE,
        }
    }
}

struct Copy {
    generation: u64,
    read_at: Instant,
    subscriptions: Arc<[Subscription]>,
}

impl SubscriptionCache {
    /// The subscriptions changed (or may have): the next look reads the table.
    pub fn changed(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Every subscription, sorted by name: the copy while it is current, else what `read`
    /// finds in the table (kept as the new copy).
    pub async fn current_or_read<F>(&self, read: F) -> Result<Arc<[Subscription]>, StoreError>
    where
        F: Future<Output = Result<Vec<Subscription>, StoreError>>,
    {
        if let Some(all) = self.current() {
            return Ok(all);
        }
        let generation = self.generation();
        Ok(self.keep(generation, read.await?))
    }

    /// Take this before reading the table, and hand it to [`SubscriptionCache::keep`] with
    /// what was read: a change heard in between makes that read stale at once.
    fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Every subscription, sorted by name, if the copy is current.
    fn current(&self) -> Option<Arc<[Subscription]>> {
        let copy = self.copy.lock().unwrap_or_else(|p| p.into_inner());
        copy.as_ref()
            .filter(|copy| {
                copy.generation == self.generation() && copy.read_at.elapsed() < self.max_age
            })
            .map(|copy| copy.subscriptions.clone())
    }

    /// Keeps what a read that started at `generation` found, and returns it.
    fn keep(&self, generation: u64, subscriptions: Vec<Subscription>) -> Arc<[Subscription]> {
        let subscriptions: Arc<[Subscription]> = subscriptions.into();
        *self.copy.lock().unwrap_or_else(|p| p.into_inner()) = Some(Copy {
            generation,
            read_at: Instant::now(),
            subscriptions: subscriptions.clone(),
        });
        subscriptions
    }
}

/// The subscription called `name` in a copy (sorted by name).
pub fn named(all: &[Subscription], name: &Name) -> Option<Subscription> {
    all.binary_search_by(|s| s.name.as_str().cmp(name.as_str()))
        .ok()
        .map(|found| all[found].clone())
}

/// The subscriptions of a copy on `topic`, or all of them without one.
pub fn on_topic(all: &[Subscription], topic: Option<&Name>) -> Vec<Subscription> {
    all.iter()
        .filter(|s| topic.is_none_or(|topic| s.topic == *topic))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Name, RetryPolicy, Timestamp};

    fn subscription(name: &str) -> Subscription {
        Subscription {
            name: Name::parse("name", name).unwrap(),
            topic: Name::parse("topic", "orders").unwrap(),
            ack_deadline: Duration::from_secs(30),
            retry_policy: RetryPolicy {
                max_attempts: 5,
                initial_backoff: Duration::from_secs(1),
                max_backoff: Duration::from_secs(60),
                multiplier: 2.0,
            },
            push_endpoint: None,
            ordered: false,
            dead_head: Default::default(),
            created_at: Timestamp::from_millis(0),
        }
    }

    #[tokio::test]
    async fn a_copy_serves_until_a_change_or_its_age_runs_out() {
        let cache = SubscriptionCache {
            max_age: Duration::from_millis(50),
            ..SubscriptionCache::default()
        };
        assert!(cache.current().is_none(), "nothing read yet");

        cache.keep(cache.generation(), vec![subscription("billing")]);
        assert_eq!(cache.current().unwrap().len(), 1);
        cache.changed();
        assert!(cache.current().is_none(), "a change makes the copy stale");

        // A read that overlapped a change is stale as soon as it is kept.
        let before = cache.generation();
        cache.changed();
        cache.keep(before, vec![subscription("billing")]);
        assert!(cache.current().is_none());

        cache.keep(cache.generation(), vec![subscription("billing")]);
        assert!(cache.current().is_some());
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(cache.current().is_none(), "an old copy is read again");
    }
}
