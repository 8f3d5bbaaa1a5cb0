//! The model's data: subscriptions, messages and their deliveries as plain values, and the
//! rules every operation shares (routing, lanes, retries, finality). Written from the
//! documented contract (the `Store` trait, DESIGN.md, docs/design-notes.md "Ordered lanes"),
//! not from either backend's SQL, so a backend that drifts from the contract disagrees here.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::domain::{
    DeadHeadPolicy, DeliveryState, MessageId, MessageState, Name, RetryPolicy, Subscription,
    Timestamp,
};

/// The topic every generated message and subscription uses.
pub const TOPIC: &str = "orders";
pub const PRODUCER: &str = "shop";
pub const ACK_DEADLINE: Duration = Duration::from_secs(10);
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(8);
/// When a prepared message is first checked.
pub const CHECK_AFTER: Duration = Duration::from_secs(10);
/// How long a check claim holds its message.
pub const HOLD: Duration = Duration::from_secs(30);
/// The delay of a delayed message's first delivery.
pub const DELIVER_AFTER: Duration = Duration::from_secs(3);
/// Share of a backoff the store may add or remove at random (`domain::backoff::JITTER`).
const JITTER: f64 = 0.2;

/// How a subscription was created (the same topic for all).
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionModel {
    pub ordered: bool,
    pub dead_head: DeadHeadPolicy,
    pub max_attempts: u32,
    pub created_at: Timestamp,
}

impl SubscriptionModel {
    /// What an update of a subscription that does not exist sends.
    pub fn unknown(now: Timestamp) -> Self {
        Self {
            ordered: false,
            dead_head: DeadHeadPolicy::Block,
            max_attempts: 1,
            created_at: now,
        }
    }

    pub fn subscription(&self, name: &str) -> Subscription {
        Subscription {
            name: Name::from_trusted(name.to_owned()),
            topic: Name::from_trusted(TOPIC.to_owned()),
            ack_deadline: ACK_DEADLINE,
            retry_policy: RetryPolicy {
                max_attempts: self.max_attempts,
                initial_backoff: INITIAL_BACKOFF,
                max_backoff: MAX_BACKOFF,
                multiplier: 2.0,
            },
            push_endpoint: None,
            ordered: self.ordered,
            dead_head: self.dead_head,
            created_at: self.created_at,
        }
    }
}

/// When a PENDING delivery is due: exactly, or (after a backoff with random jitter) within
/// bounds until the next observation reads the store's choice back and pins it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Due {
    At(Timestamp),
    Between(Timestamp, Timestamp),
}

impl Due {
    /// The earliest time the delivery may be due (for due checks before it is pinned, which
    /// never happen: every step is observed).
    pub fn at(self) -> Timestamp {
        match self {
            Self::At(at) | Self::Between(at, _) => at,
        }
    }

    pub fn admits(self, at: Timestamp) -> bool {
        match self {
            Self::At(expected) => at == expected,
            Self::Between(low, high) => low <= at && at <= high,
        }
    }
}

/// Where a failed attempt sends a delivery.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Plan {
    Retry(Due),
    Dead,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryModel {
    pub state: DeliveryState,
    pub attempts: u32,
    pub generation: u32,
    /// None while PENDING behind its lane's head (and in every other state).
    pub next_attempt_at: Option<Due>,
    pub lease_expires_at: Option<Timestamp>,
    /// The place in its lane (ordered subscriptions, keyed messages); None outside lanes.
    pub lane_seq: Option<u64>,
    pub last_error: Option<String>,
}

impl DeliveryModel {
    fn pending(next_attempt_at: Option<Due>, lane_seq: Option<u64>) -> Self {
        Self {
            state: DeliveryState::Pending,
            attempts: 0,
            generation: 0,
            next_attempt_at,
            lease_expires_at: None,
            lane_seq,
            last_error: None,
        }
    }

    /// PENDING, LEASED or DEAD: still in its lane.
    pub fn live(&self) -> bool {
        matches!(
            self.state,
            DeliveryState::Pending | DeliveryState::Leased | DeliveryState::Dead
        )
    }
}

#[derive(Debug, Clone)]
pub struct MessageModel {
    pub id: MessageId,
    pub key: String,
    /// The ordering key, if any.
    pub lane: Option<String>,
    pub payload: Vec<u8>,
    pub deliver_after: Duration,
    pub state: MessageState,
    pub check_attempts: u32,
    pub next_check_at: Option<Timestamp>,
    pub last_check_error: Option<String>,
    pub decided_at: Option<Timestamp>,
    pub final_at: Option<Timestamp>,
    /// Deleted by retention: gone from the store.
    pub deleted: bool,
    /// By subscription name.
    pub deliveries: BTreeMap<String, DeliveryModel>,
}

/// Everything the model knows; `now` is the test clock every store call is given.
#[derive(Debug, Clone)]
pub struct Model {
    pub now: Timestamp,
    pub subscriptions: BTreeMap<String, SubscriptionModel>,
    /// Every message ever stored, in creation order (deleted ones stay, marked).
    pub messages: Vec<MessageModel>,
}

impl Model {
    pub fn new(now: Timestamp) -> Self {
        Self {
            now,
            subscriptions: BTreeMap::new(),
            messages: Vec::new(),
        }
    }

    pub fn message(&self, id: MessageId) -> Option<&MessageModel> {
        self.messages.iter().find(|m| m.id == id && !m.deleted)
    }

    pub fn message_mut(&mut self, id: MessageId) -> Option<&mut MessageModel> {
        self.messages.iter_mut().find(|m| m.id == id && !m.deleted)
    }

    pub fn delivery_mut(
        &mut self,
        id: MessageId,
        subscription: &str,
    ) -> Option<&mut DeliveryModel> {
        self.message_mut(id)?.deliveries.get_mut(subscription)
    }

    /// Creates one PENDING delivery per current subscription: due after the message's delay,
    /// or at the end of its lane in ordered subscriptions (then the lane may go on).
    pub fn route(&mut self, index: usize) {
        let now = self.now;
        let subscriptions: Vec<(String, bool)> = self
            .subscriptions
            .iter()
            .map(|(name, s)| (name.clone(), s.ordered))
            .collect();
        let (lane, due) = {
            let message = &self.messages[index];
            (message.lane.clone(), now.plus(message.deliver_after))
        };
        for (name, ordered) in subscriptions {
            let delivery = match (&lane, ordered) {
                (Some(key), true) => {
                    let last = self.lane(&name, key).map(|(_, seq)| seq).max().unwrap_or(0);
                    DeliveryModel::pending(None, Some(last + 1))
                }
                _ => DeliveryModel::pending(Some(Due::At(due)), None),
            };
            let in_lane = delivery.lane_seq.is_some();
            self.messages[index]
                .deliveries
                .insert(name.clone(), delivery);
            if in_lane {
                self.promote(&name, lane.as_deref());
            }
        }
    }

    /// The live deliveries of lane (`subscription`, `key`): message index and place.
    fn lane<'a>(
        &'a self,
        subscription: &'a str,
        key: &'a str,
    ) -> impl Iterator<Item = (usize, u64)> + 'a {
        self.messages
            .iter()
            .enumerate()
            .filter(move |(_, m)| !m.deleted && m.lane.as_deref() == Some(key))
            .filter_map(move |(index, m)| {
                let delivery = m.deliveries.get(subscription)?;
                let seq = delivery.lane_seq?;
                delivery.live().then_some((index, seq))
            })
    }

    /// Makes the first waiting delivery of the lane due (at its own delivery time if that is
    /// later), unless a delivery of the lane is in flight: due, leased, or DEAD where the
    /// subscription blocks on a dead head. Nothing for `key` None (not a lane).
    pub fn promote(&mut self, subscription: &str, key: Option<&str>) {
        self.promote_at(subscription, key, (self.now, self.now));
    }

    /// [`Model::promote`] by a clock read somewhere between `earliest` and `latest`.
    pub fn promote_at(
        &mut self,
        subscription: &str,
        key: Option<&str>,
        (earliest, latest): (Timestamp, Timestamp),
    ) {
        let Some(key) = key else { return };
        let blocks = self.subscriptions[subscription].dead_head == DeadHeadPolicy::Block;
        let members: Vec<(usize, u64)> = self.lane(subscription, key).collect();
        let delivery = |index: usize| &self.messages[index].deliveries[subscription];
        let in_flight = members.iter().any(|&(index, _)| {
            let d = delivery(index);
            match d.state {
                DeliveryState::Leased => true,
                DeliveryState::Pending => d.next_attempt_at.is_some(),
                DeliveryState::Dead => blocks,
                _ => false,
            }
        });
        if in_flight {
            return;
        }
        let next = members
            .iter()
            .filter(|&&(index, _)| {
                let d = delivery(index);
                d.state == DeliveryState::Pending && d.next_attempt_at.is_none()
            })
            .min_by_key(|&&(_, seq)| seq)
            .map(|&(index, _)| index);
        if let Some(index) = next {
            let message = &mut self.messages[index];
            let own = message
                .decided_at
                .expect("a routed message was decided")
                .plus(message.deliver_after);
            let due = if own >= latest {
                Due::At(own)
            } else if own.max(earliest) == latest {
                Due::At(latest)
            } else {
                Due::Between(own.max(earliest), latest)
            };
            let delivery = message.deliveries.get_mut(subscription).expect("a member");
            delivery.next_attempt_at = Some(due);
        }
    }

    /// The lane key of message `id`'s delivery to `subscription`, if that delivery is in one.
    pub fn lane_of(&self, id: MessageId, subscription: &str) -> Option<String> {
        let message = self.message(id)?;
        let delivery = message.deliveries.get(subscription)?;
        delivery.lane_seq.and(message.lane.clone())
    }

    /// The retry rule: DEAD once `attempts` reach the subscription's maximum, else PENDING after
    /// `delay`, or after the backoff for `attempts` within its jitter.
    pub fn plan(&self, subscription: &str, attempts: u32, delay: Option<Duration>) -> Plan {
        if attempts >= self.subscriptions[subscription].max_attempts {
            return Plan::Dead;
        }
        let now = self.now;
        Plan::Retry(match delay {
            Some(delay) => Due::At(now.plus(delay)),
            None => {
                let exponent = attempts.saturating_sub(1).min(30);
                let nominal = INITIAL_BACKOFF
                    .saturating_mul(1 << exponent)
                    .min(MAX_BACKOFF)
                    .as_millis() as f64;
                // A millisecond of slack each way for the store's rounding.
                let low = (nominal * (1.0 - JITTER)).floor() as u64 - 1;
                let high = (nominal * (1.0 + JITTER)).ceil() as u64 + 1;
                Due::Between(
                    now.plus(Duration::from_millis(low)),
                    now.plus(Duration::from_millis(high)),
                )
            }
        })
    }

    /// Ends the attempt of a LEASED (or unleased) delivery by `plan`; a dead delivery lets its
    /// lane go on where the subscription skips dead heads.
    pub fn release(&mut self, id: MessageId, subscription: &str, plan: Plan, error: &str) {
        let lane = self.lane_of(id, subscription);
        let delivery = self.delivery_mut(id, subscription).expect("a delivery");
        delivery.lease_expires_at = None;
        delivery.last_error = Some(error.to_owned());
        match plan {
            Plan::Retry(due) => {
                delivery.state = DeliveryState::Pending;
                delivery.next_attempt_at = Some(due);
            }
            Plan::Dead => {
                delivery.state = DeliveryState::Dead;
                delivery.next_attempt_at = None;
                self.promote(subscription, lane.as_deref());
            }
        }
    }

    /// Records when messages became final at this step: CANCELLED, or CONFIRMED with
    /// deliveries that are all ACKED or DISCARDED. Once final, a message stays so.
    pub fn mark_final(&mut self) {
        let now = self.now;
        for message in self.messages.iter_mut().filter(|m| !m.deleted) {
            if message.final_at.is_some() {
                continue;
            }
            let done = |d: &DeliveryModel| {
                matches!(d.state, DeliveryState::Acked | DeliveryState::Discarded)
            };
            let is_final = match message.state {
                MessageState::Cancelled => true,
                MessageState::Confirmed => {
                    !message.deliveries.is_empty() && message.deliveries.values().all(done)
                }
                MessageState::Prepared | MessageState::Unresolved => false,
            };
            if is_final {
                message.final_at = Some(now);
            }
        }
    }
}

/// A store error as the model predicts it: the kind, and the state a conflict names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    NotFound,
    AlreadyExists,
    FailedPrecondition,
    MessageConflict(MessageState),
    LeaseLost(DeliveryState),
}

impl Refusal {
    /// The refusal a store error is, or None for errors the model never predicts
    /// (unavailable, internal): those fail the run.
    pub fn of(error: &crate::store::StoreError) -> Option<Self> {
        use crate::store::StoreError as E;
        Some(match error {
            E::NotFound(_) => Self::NotFound,
            E::AlreadyExists(_) => Self::AlreadyExists,
            E::FailedPrecondition(_) => Self::FailedPrecondition,
            E::MessageConflict { current } => Self::MessageConflict(*current),
            E::LeaseLost { current } => Self::LeaseLost(*current),
            E::Unavailable(_) | E::InvalidConfig(_) | E::Internal(_) => return None,
        })
    }
}
