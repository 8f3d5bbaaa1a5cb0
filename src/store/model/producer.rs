//! The model's subscriptions, producer decisions, check-backs and retention.

use std::collections::{BTreeMap, BTreeSet};

use super::state::{
    CHECK_AFTER, DELIVER_AFTER, HOLD, MessageModel, Model, Refusal, SubscriptionModel,
};
use crate::domain::{Decision, DeliveryState, MessageId, MessageState, Timestamp};
use crate::store::{CheckRecorded, CheckVerdict};

/// A message the runner is about to insert.
#[derive(Debug, Clone)]
pub struct Insert {
    pub id: MessageId,
    pub key: String,
    pub lane: Option<String>,
    pub payload: Vec<u8>,
    pub delayed: bool,
    pub publish: bool,
}

impl Model {
    /// Creates the subscription, returns an identical one as it is (`false`), refuses a
    /// different one under the same name.
    pub fn create_subscription(
        &mut self,
        name: &str,
        wanted: SubscriptionModel,
    ) -> Result<bool, Refusal> {
        match self.subscriptions.get(name) {
            None => {
                self.subscriptions.insert(name.to_owned(), wanted);
                Ok(true)
            }
            Some(existing) => {
                let same = SubscriptionModel {
                    created_at: existing.created_at,
                    ..wanted
                };
                if *existing == same {
                    Ok(false)
                } else {
                    Err(Refusal::AlreadyExists)
                }
            }
        }
    }

    /// Changes a subscription's policy; whether it is ordered cannot change. Lanes a DEAD
    /// delivery holds may go on under the new dead-head policy; the store promotes with its
    /// own clock, read between `wall.0` and `wall.1`.
    pub fn update_subscription(
        &mut self,
        name: &str,
        wanted: SubscriptionModel,
        wall: (Timestamp, Timestamp),
    ) -> Result<(), Refusal> {
        let existing = self.subscriptions.get_mut(name).ok_or(Refusal::NotFound)?;
        if existing.ordered != wanted.ordered {
            return Err(Refusal::FailedPrecondition);
        }
        let changed = existing.dead_head != wanted.dead_head;
        existing.dead_head = wanted.dead_head;
        existing.max_attempts = wanted.max_attempts;
        if changed {
            let held: BTreeSet<String> = self
                .messages
                .iter()
                .filter(|m| !m.deleted)
                .filter_map(|m| {
                    let d = m.deliveries.get(name)?;
                    (d.state == DeliveryState::Dead && d.lane_seq.is_some())
                        .then(|| m.lane.clone())?
                })
                .collect();
            for key in held {
                self.promote_at(name, Some(&key), wall);
            }
        }
        Ok(())
    }

    /// The live message that holds producer key `key`, if any.
    pub fn holder(&self, key: &str) -> Option<&MessageModel> {
        self.messages.iter().find(|m| !m.deleted && m.key == key)
    }

    /// Prepares or publishes a message; the topic needs a subscription. A key a live message
    /// holds answers that message when the content is the same (a retry), else is refused.
    /// Returns the message's id and state, and whether it was created.
    pub fn insert(&mut self, insert: Insert) -> Result<(MessageId, MessageState, bool), Refusal> {
        if let Some(holder) = self.holder(&insert.key) {
            return if holder.payload == insert.payload && holder.lane == insert.lane {
                Ok((holder.id, holder.state, false))
            } else {
                Err(Refusal::AlreadyExists)
            };
        }
        if self.subscriptions.is_empty() {
            return Err(Refusal::FailedPrecondition);
        }
        let now = self.now;
        let (state, next_check_at, decided_at) = if insert.publish {
            (MessageState::Confirmed, None, Some(now))
        } else {
            (MessageState::Prepared, Some(now.plus(CHECK_AFTER)), None)
        };
        self.messages.push(MessageModel {
            id: insert.id,
            key: insert.key,
            lane: insert.lane,
            payload: insert.payload,
            deliver_after: if insert.delayed {
                DELIVER_AFTER
            } else {
                std::time::Duration::ZERO
            },
            state,
            check_attempts: 0,
            next_check_at,
            last_check_error: None,
            decided_at,
            final_at: None,
            deleted: false,
            deliveries: BTreeMap::new(),
        });
        if insert.publish {
            self.route(self.messages.len() - 1);
        }
        Ok((insert.id, state, true))
    }

    /// A producer's Confirm or Cancel, or an operator's Resolve: PREPARED and UNRESOLVED take
    /// either; a final state takes only the decision that made it (a repeat).
    pub fn decide(&mut self, id: MessageId, decision: Decision) -> Result<MessageState, Refusal> {
        let now = self.now;
        let index = self
            .messages
            .iter()
            .position(|m| m.id == id && !m.deleted)
            .ok_or(Refusal::NotFound)?;
        let message = &mut self.messages[index];
        let target = match decision {
            Decision::Commit => MessageState::Confirmed,
            Decision::Rollback => MessageState::Cancelled,
        };
        match message.state {
            MessageState::Prepared | MessageState::Unresolved => {}
            current if current == target => return Ok(current),
            current => return Err(Refusal::MessageConflict(current)),
        }
        message.state = target;
        message.decided_at = Some(now);
        message.next_check_at = None;
        if target == MessageState::Confirmed {
            self.route(index);
        }
        Ok(target)
    }

    /// The PREPARED messages whose check is due, earliest first: (id, check due time).
    pub fn due_checks(&self) -> Vec<(MessageId, Timestamp)> {
        let mut due: Vec<(MessageId, Timestamp)> = self
            .messages
            .iter()
            .filter(|m| !m.deleted && m.state == MessageState::Prepared)
            .filter_map(|m| Some((m.id, m.next_check_at?)))
            .filter(|(_, at)| *at <= self.now)
            .collect();
        due.sort_by_key(|(_, at)| *at);
        due
    }

    /// Applies a claim the store made of `claimed`: each is held until `now + HOLD`. Answers
    /// the attempt each claim must carry.
    pub fn claim_checks(&mut self, claimed: &[MessageId]) -> Vec<u32> {
        let until = self.now.plus(HOLD);
        claimed
            .iter()
            .map(|id| {
                let message = self.message_mut(*id).expect("claimed a known message");
                message.next_check_at = Some(until);
                message.check_attempts + 1
            })
            .collect()
    }

    /// Records check number `attempt`, a compare-and-set on PREPARED and `attempt - 1`
    /// recorded attempts; otherwise stale, changing nothing.
    pub fn record_check(
        &mut self,
        id: MessageId,
        attempt: u32,
        verdict: &CheckVerdict,
    ) -> Result<CheckRecorded, Refusal> {
        let message = self.message_mut(id).ok_or(Refusal::NotFound)?;
        if message.state != MessageState::Prepared || message.check_attempts + 1 != attempt {
            return Ok(CheckRecorded::Stale(message.state));
        }
        message.check_attempts = attempt;
        match verdict {
            CheckVerdict::Decided(decision) => {
                message.last_check_error = None;
                let state = self.decide(id, *decision)?;
                Ok(CheckRecorded::Applied(state))
            }
            CheckVerdict::RetryAt { at, error } => {
                message.next_check_at = Some(*at);
                message.last_check_error = Some(error.clone());
                Ok(CheckRecorded::Applied(MessageState::Prepared))
            }
            CheckVerdict::GiveUp { error } => {
                message.state = MessageState::Unresolved;
                message.next_check_at = None;
                message.last_check_error = Some(error.clone());
                Ok(CheckRecorded::Applied(MessageState::Unresolved))
            }
        }
    }

    /// The messages retention may delete at `cutoff`, oldest final first: (id, final_at).
    pub fn final_by(&self, cutoff: Timestamp) -> Vec<(MessageId, Timestamp)> {
        let mut candidates: Vec<(MessageId, Timestamp)> = self
            .messages
            .iter()
            .filter(|m| !m.deleted)
            .filter_map(|m| Some((m.id, m.final_at?)))
            .filter(|(_, at)| *at <= cutoff)
            .collect();
        candidates.sort_by_key(|(_, at)| *at);
        candidates
    }

    pub fn delete(&mut self, id: MessageId) {
        if let Some(message) = self.message_mut(id) {
            message.deleted = true;
        }
    }
}
