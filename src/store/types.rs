//! Values that cross the Store boundary.

use std::time::Duration;

use super::rules;
use crate::domain::{
    DeliveryState, Headers, LeasedDelivery, MessageId, MessageKey, MessageOutcome, MessageRecord,
    MessageState, Name, OrderingKey, Timestamp, TraceContext,
};

/// A message to store, already validated.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub id: MessageId,
    pub producer: Name,
    pub topic: Name,
    pub key: MessageKey,
    /// The lane the message joins in ordered subscriptions; empty for none.
    pub ordering_key: OrderingKey,
    pub payload: Vec<u8>,
    pub headers: Headers,
    /// When the scheduler first asks the producer's checker (ignored for publish).
    pub check_after: Duration,
    /// Delay of the first delivery after confirm.
    pub deliver_after: Duration,
    /// Publish: store CONFIRMED with deliveries at once.
    pub publish: bool,
    /// The producer's trace (W3C trace context), sent on with every check and delivery. Not
    /// content: a repeated Prepare with another trace is still the same message.
    pub trace: Option<TraceContext>,
    pub now: Timestamp,
}

impl NewMessage {
    /// When the scheduler first asks the producer's checker: never for a Publish.
    pub fn first_check_at(&self) -> Option<Timestamp> {
        (!self.publish).then(|| self.now.plus(self.check_after))
    }

    /// Bytes of content the message carries: payload, header names and values, key.
    pub fn size(&self) -> usize {
        let headers: usize = self.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
        self.payload.len() + headers + self.key.as_str().len() + self.ordering_key.as_str().len()
    }
}

/// How much one lease may hand out: at most `messages` deliveries, and no more `bytes` than
/// fit (a delivery counts its payload, headers, keys and a fixed allowance for its other
/// fields), but always at least one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batch {
    pub messages: u32,
    pub bytes: u64,
}

impl Batch {
    /// Up to `messages` deliveries, whatever their size.
    pub fn messages(messages: u32) -> Self {
        Self {
            messages,
            bytes: u64::MAX,
        }
    }

    /// What a leased delivery counts against a batch's bytes, as a lease counts it (payload,
    /// headers about as their JSON takes them, keys and the allowance).
    pub fn cost(delivery: &LeasedDelivery) -> u64 {
        let headers: usize = delivery
            .headers
            .iter()
            .map(|(name, value)| name.len() + value.len() + 6)
            .sum::<usize>()
            + 2;
        let bytes = delivery.payload.len()
            + headers
            + delivery.key.as_str().len()
            + delivery.ordering_key.as_str().len();
        u64::try_from(bytes)
            .unwrap_or(u64::MAX)
            .saturating_add(u64::try_from(rules::DELIVERY_ALLOWANCE).unwrap_or(0))
    }

    /// How many of `deliveries`, in order, one Receive of this batch hands out: the lease's
    /// rule (`rules::fitting`) within the batch's count.
    pub fn takes<'a>(&self, deliveries: impl IntoIterator<Item = &'a LeasedDelivery>) -> usize {
        let sizes = deliveries
            .into_iter()
            .take(usize::try_from(self.messages).unwrap_or(usize::MAX))
            .map(|delivery| i64::try_from(Batch::cost(delivery)).unwrap_or(i64::MAX));
        rules::fitting(sizes, *self)
    }

    /// What is left of this batch after `taken` (deliveries leased ahead, handed out first),
    /// if anything.
    pub fn rest_after(&self, taken: &[LeasedDelivery]) -> Option<Batch> {
        let count = u32::try_from(taken.len()).unwrap_or(u32::MAX);
        let bytes: u64 = taken.iter().map(Batch::cost).sum();
        (count < self.messages && bytes < self.bytes).then(|| Batch {
            messages: self.messages - count,
            bytes: self.bytes - bytes,
        })
    }

    /// Whether a lease of this batch that handed out `leased` may have left due deliveries
    /// behind: it is full by count, or near its byte budget (payloads and the allowance per
    /// delivery only, so it errs towards yes). Then another waiting consumer should look.
    pub fn may_have_left_work(&self, leased: &[LeasedDelivery]) -> bool {
        if leased.is_empty() {
            return false;
        }
        let full = u32::try_from(leased.len()).map_or(true, |count| count >= self.messages);
        let allowance = u64::try_from(rules::DELIVERY_ALLOWANCE).unwrap_or(0);
        let bytes = leased
            .iter()
            .map(|delivery| u64::try_from(delivery.payload.len()).unwrap_or(u64::MAX))
            .fold(0, |total: u64, payload| {
                total.saturating_add(payload).saturating_add(allowance)
            });
        full || bytes.saturating_mul(2) >= self.bytes
    }
}

/// Result of [`super::Store::insert_message`].
#[derive(Debug, Clone)]
pub struct InsertOutcome {
    pub message_id: MessageId,
    pub state: MessageState,
    /// False when an identical message with the same producer key already existed.
    pub created: bool,
}

/// Filters and paging for ListMessages: newest first.
#[derive(Debug, Clone, Default)]
pub struct MessageQuery {
    pub topic: Option<Name>,
    pub producer: Option<Name>,
    pub state: Option<MessageState>,
    pub outcome: Option<MessageOutcome>,
    /// Only messages with this producer key (with `producer`: the one message).
    pub key: Option<MessageKey>,
    /// Only messages created at or after this time.
    pub created_from: Option<Timestamp>,
    /// Only messages created before this time.
    pub created_until: Option<Timestamp>,
    pub page_size: u32,
    /// Only messages with an id below this one (the last id of the previous page).
    pub before: Option<MessageId>,
}

/// Filters and paging for ListDeliveries: oldest message first.
#[derive(Debug, Clone)]
pub struct DeliveryQuery {
    pub subscription: Name,
    pub state: Option<DeliveryState>,
    /// Only DEAD deliveries that hold their lane (ordered subscriptions that block on a dead
    /// head).
    pub blocking_only: bool,
    pub page_size: u32,
    /// Only deliveries of messages with an id above this one.
    pub after: Option<MessageId>,
}

/// One page of a listing; `next` is the cursor of the following page, if there is one.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<MessageId>,
}

impl Page<MessageRecord> {
    pub fn empty() -> Self {
        Self {
            items: Vec::new(),
            next: None,
        }
    }
}

/// How much a stats read counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatsScope {
    /// What is in flight or waits for an operator, read through indexes that hold only that:
    /// its cost follows the work in flight, not what the database retains. The retained
    /// totals (`confirmed`, `cancelled`, `acked`) are zero, and a topic is listed only while
    /// it has such messages. For the metrics scrape, which runs every few seconds forever.
    Live,
    /// Everything, the retained totals too, which read every row retention keeps (about a
    /// second per million): the operator's view (GetStats, `courier stats`, the console's
    /// overview at `/?totals=1`).
    Full,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TopicStats {
    pub topic: String,
    pub prepared: u64,
    /// Retained CONFIRMED messages ([`StatsScope::Full`] only).
    pub confirmed: u64,
    /// Retained CANCELLED messages ([`StatsScope::Full`] only).
    pub cancelled: u64,
    pub unresolved: u64,
    pub unrouted: u64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SubscriptionStats {
    pub subscription: String,
    pub topic: String,
    pub pending: u64,
    pub leased: u64,
    /// Retained ACKED deliveries ([`StatsScope::Full`] only).
    pub acked: u64,
    pub dead: u64,
    pub discarded: u64,
    /// Lanes held by a DEAD head (ordered subscriptions that block on one).
    pub blocked_lanes: u64,
    pub oldest_pending_age: Option<Duration>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    pub topics: Vec<TopicStats>,
    pub subscriptions: Vec<SubscriptionStats>,
    pub unrouted_confirms: u64,
}

impl Stats {
    /// The counts of `topic`, if it is listed.
    pub fn topic(&self, topic: &str) -> Option<&TopicStats> {
        self.topics.iter().find(|t| t.topic == topic)
    }

    /// The counts of the subscription named `name`, if there is one.
    pub fn subscription(&self, name: &str) -> Option<&SubscriptionStats> {
        self.subscriptions.iter().find(|s| s.subscription == name)
    }
}

/// What one check of a prepared message concluded, decided by the scheduler.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckVerdict {
    /// The checker answered COMMIT or ROLLBACK.
    Decided(crate::domain::Decision),
    /// No decision (UNKNOWN, an error, a timeout, no checker): ask again at `at`.
    RetryAt { at: Timestamp, error: String },
    /// No decision, and that was the last attempt: the message becomes UNRESOLVED.
    GiveUp { error: String },
}

/// What [`super::Store::record_check`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckRecorded {
    /// The verdict was applied; the message is now in this state.
    Applied(MessageState),
    /// Nothing changed: the message left PREPARED (a Confirm, Cancel or Resolve won the race)
    /// or another scheduler already recorded this attempt. Holds the current state.
    Stale(MessageState),
}

/// What one [`super::Store::expire_leases`] call did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExpiredLeases {
    /// How many leases it ended, PENDING again or DEAD.
    pub ended: u64,
    /// Of those, how many went DEAD (the attempt was the subscription's last), by
    /// subscription in the order first met; subscriptions with none are left out.
    pub dead: Vec<(Name, u64)>,
}

impl ExpiredLeases {
    /// Counts one lease of `subscription` that was ended, and whether it went DEAD.
    pub fn count(&mut self, subscription: &str, dead: bool) {
        self.ended += 1;
        if !dead {
            return;
        }
        match self
            .dead
            .iter_mut()
            .find(|(name, _)| name.as_str() == subscription)
        {
            Some((_, count)) => *count += 1,
            None => self
                .dead
                .push((Name::from_trusted(subscription.to_owned()), 1)),
        }
    }

    /// How many of the ended leases went DEAD, over every subscription.
    pub fn dead_total(&self) -> u64 {
        self.dead.iter().map(|(_, count)| count).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Receipt;

    fn leased(payload_bytes: usize) -> LeasedDelivery {
        let name = Name::from_trusted("billing".to_owned());
        LeasedDelivery {
            receipt: Receipt {
                message_id: MessageId::new(),
                generation: 1,
                subscription: name.clone(),
            },
            topic: name.clone(),
            producer: name,
            key: MessageKey::from_trusted("k".to_owned()),
            ordering_key: OrderingKey::from_trusted(String::new()),
            payload: vec![0; payload_bytes],
            headers: Headers::new(),
            attempt: 1,
            published_at: Timestamp::from_millis(0),
            lease_expires_at: Timestamp::from_millis(0),
            trace: None,
        }
    }

    #[test]
    fn a_batch_takes_what_fits_its_count_and_bytes_and_always_the_first() {
        let held: Vec<_> = (0..5).map(|_| leased(1_000)).collect();
        let one = Batch::cost(&held[0]);
        let by_count = Batch {
            messages: 3,
            bytes: 1_000_000,
        };
        assert_eq!(by_count.takes(&held), 3);
        let by_bytes = Batch {
            messages: 10,
            bytes: 2 * one + 1,
        };
        assert_eq!(by_bytes.takes(&held), 2);
        let too_small = Batch {
            messages: 10,
            bytes: 1,
        };
        assert_eq!(too_small.takes(&held), 1, "the first, whatever its size");
        assert_eq!(by_count.takes(&[]), 0);
    }

    #[test]
    fn a_lease_may_have_left_work_when_full_by_count_or_near_its_byte_budget() {
        let small = |n| (0..n).map(|_| leased(100)).collect::<Vec<_>>();
        let batch = Batch {
            messages: 3,
            bytes: 1_000_000,
        };
        assert!(!batch.may_have_left_work(&[]), "nothing was due");
        assert!(
            !batch.may_have_left_work(&small(2)),
            "it took all that was due"
        );
        assert!(batch.may_have_left_work(&small(3)), "full: more may be due");
        let big = [leased(300_000), leased(300_000)];
        assert!(batch.may_have_left_work(&big), "the next may not have fit");
        assert!(
            !Batch::messages(3).may_have_left_work(&big),
            "no byte budget"
        );
    }
}
