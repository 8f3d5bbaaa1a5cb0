//! The model's consumer side and dead letters: leases, Ack, Nack, ExtendLease, Reject, failed
//! pushes, lease expiry, Redrive and Discard.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::state::{ACK_DEADLINE, Due, Model, Plan, Refusal};
use crate::domain::{AckStatus, DeliveryState, MessageId, Receipt, Timestamp};
use crate::store::rules::{LEASE_EXPIRED, nacked, rejected};

/// What the store may hand out when it picks `chosen` among `candidates` (sorted by the time
/// the contract orders them by) and must take `limit` of them: exactly `min(limit, n)`, none
/// twice, and none later than a candidate it left (ties are the store's choice).
pub fn check_choice(
    what: &str,
    candidates: &[(MessageId, Timestamp)],
    limit: usize,
    chosen: &[MessageId],
) -> Result<(), String> {
    let wanted = limit.min(candidates.len());
    let set: BTreeSet<MessageId> = chosen.iter().copied().collect();
    if chosen.len() != wanted || set.len() != chosen.len() {
        return Err(format!(
            "{what}: expected {wanted} of {candidates:?}, the store chose {chosen:?}"
        ));
    }
    let at = |id: &MessageId| candidates.iter().find(|(c, _)| c == id).map(|(_, at)| *at);
    let mut latest_chosen = None;
    for id in chosen {
        let Some(time) = at(id) else {
            return Err(format!("{what}: {id} was not among {candidates:?}"));
        };
        latest_chosen = latest_chosen.max(Some(time));
    }
    let earliest_left = candidates
        .iter()
        .filter(|(id, _)| !set.contains(id))
        .map(|(_, at)| *at)
        .min();
    match (latest_chosen, earliest_left) {
        (Some(chosen), Some(left)) if chosen > left => Err(format!(
            "{what}: the store chose {chosen:?} over the earlier {left:?} among {candidates:?}"
        )),
        _ => Ok(()),
    }
}

/// Whether a receipt still holds its lease, for Nack, ExtendLease and Reject.
enum Lease {
    Held {
        attempts: u32,
    },
    /// Given up by this same receipt already (PENDING or DEAD, nobody leased it since).
    Released(DeliveryState),
}

impl Model {
    /// The PENDING deliveries of `subscription` due now, earliest first.
    pub fn due(&self, subscription: &str) -> Vec<(MessageId, Timestamp)> {
        let mut due: Vec<(MessageId, Timestamp)> = self
            .messages
            .iter()
            .filter(|m| !m.deleted)
            .filter_map(|m| {
                let d = m.deliveries.get(subscription)?;
                let at = d.next_attempt_at?.at();
                (d.state == DeliveryState::Pending && at <= self.now).then_some((m.id, at))
            })
            .collect();
        due.sort_by_key(|(_, at)| *at);
        due
    }

    /// Leases what the store chose (checked by the runner with [`check_choice`]): one more
    /// attempt and the next generation each. Answers (attempt, generation) of each.
    pub fn lease(&mut self, subscription: &str, chosen: &[MessageId]) -> Vec<(u32, u32)> {
        let expires = self.now.plus(ACK_DEADLINE);
        chosen
            .iter()
            .map(|id| {
                let d = self
                    .delivery_mut(*id, subscription)
                    .expect("a due delivery");
                d.state = DeliveryState::Leased;
                d.attempts += 1;
                d.generation += 1;
                d.next_attempt_at = None;
                d.lease_expires_at = Some(expires);
                (d.attempts, d.generation)
            })
            .collect()
    }

    fn current(&self, receipt: &Receipt) -> Option<(DeliveryState, u32, u32)> {
        let message = self.message(receipt.message_id)?;
        let d = message.deliveries.get(receipt.subscription.as_str())?;
        Some((d.state, d.generation, d.attempts))
    }

    /// Only the latest lease's receipt acks: a leased delivery, or one unleased again and not
    /// leased since; repeated on the ACKED delivery it stays OK. An older receipt, or one of a
    /// discarded delivery, lost its lease.
    pub fn ack(&mut self, receipts: &[Receipt]) -> Vec<AckStatus> {
        let mut lanes = BTreeSet::new();
        let statuses = receipts
            .iter()
            .map(|receipt| {
                let Some((state, generation, _)) = self.current(receipt) else {
                    return AckStatus::NotFound;
                };
                let (id, name) = (receipt.message_id, receipt.subscription.as_str());
                if receipt.generation > generation {
                    AckStatus::NotFound
                } else if receipt.generation < generation || state == DeliveryState::Discarded {
                    AckStatus::LeaseLost
                } else if state == DeliveryState::Acked {
                    AckStatus::Ok
                } else {
                    if let Some(key) = self.lane_of(id, name) {
                        lanes.insert((name.to_owned(), key));
                    }
                    let d = self.delivery_mut(id, name).expect("found above");
                    d.state = DeliveryState::Acked;
                    d.next_attempt_at = None;
                    d.lease_expires_at = None;
                    AckStatus::Ok
                }
            })
            .collect();
        for (subscription, key) in lanes {
            self.promote(&subscription, Some(&key));
        }
        statuses
    }

    fn lease_check(&self, receipt: &Receipt) -> Result<Lease, Refusal> {
        let (state, generation, attempts) = self.current(receipt).ok_or(Refusal::NotFound)?;
        if receipt.generation > generation {
            return Err(Refusal::NotFound);
        }
        if receipt.generation < generation
            || matches!(state, DeliveryState::Acked | DeliveryState::Discarded)
        {
            return Err(Refusal::LeaseLost(state));
        }
        Ok(match state {
            DeliveryState::Leased => Lease::Held { attempts },
            other => Lease::Released(other),
        })
    }

    /// Ends a held lease early (`None`: a repeat, nothing changes).
    pub fn nack(
        &mut self,
        receipt: &Receipt,
        delay: Option<Duration>,
        reason: Option<&str>,
    ) -> Result<Option<Plan>, Refusal> {
        let Lease::Held { attempts } = self.lease_check(receipt)? else {
            return Ok(None);
        };
        let name = receipt.subscription.as_str();
        let plan = self.plan(name, attempts, delay);
        self.release(receipt.message_id, name, plan, &nacked(reason));
        Ok(Some(plan))
    }

    pub fn extend_lease(
        &mut self,
        receipt: &Receipt,
        extension: Duration,
    ) -> Result<Timestamp, Refusal> {
        if let Lease::Released(state) = self.lease_check(receipt)? {
            return Err(Refusal::LeaseLost(state));
        }
        let until = self.now.plus(extension);
        let d = self
            .delivery_mut(receipt.message_id, receipt.subscription.as_str())
            .expect("held");
        d.lease_expires_at = Some(until);
        Ok(until)
    }

    /// Parks the delivery DEAD (also once unleased again, not leased since); a repeat on the
    /// DEAD delivery changes nothing.
    pub fn reject(&mut self, receipt: &Receipt, reason: &str) -> Result<(), Refusal> {
        if let Lease::Released(DeliveryState::Dead) = self.lease_check(receipt)? {
            return Ok(());
        }
        let name = receipt.subscription.as_str();
        self.release(receipt.message_id, name, Plan::Dead, &rejected(reason));
        Ok(())
    }

    /// A failed push of a held lease: like a Nack without delay, with `error`; `None` when the
    /// receipt no longer holds the lease.
    pub fn fail_delivery(&mut self, receipt: &Receipt, error: &str) -> Option<Plan> {
        let (state, generation, attempts) = self.current(receipt)?;
        if state != DeliveryState::Leased || generation != receipt.generation {
            return None;
        }
        let name = receipt.subscription.as_str();
        let plan = self.plan(name, attempts, None);
        self.release(receipt.message_id, name, plan, error);
        Some(plan)
    }

    /// Ends every lease that ran out by now: (how many, how many went DEAD by subscription).
    pub fn expire_leases(&mut self) -> (u64, BTreeMap<String, u64>) {
        let now = self.now;
        let expired: Vec<(MessageId, String, u32)> = self
            .messages
            .iter()
            .filter(|m| !m.deleted)
            .flat_map(|m| {
                m.deliveries.iter().filter_map(move |(name, d)| {
                    let ran_out = d.state == DeliveryState::Leased
                        && d.lease_expires_at.is_some_and(|at| at <= now);
                    ran_out.then(|| (m.id, name.clone(), d.attempts))
                })
            })
            .collect();
        let mut dead = BTreeMap::new();
        for (id, name, attempts) in &expired {
            let plan = self.plan(name, *attempts, None);
            if plan == Plan::Dead {
                *dead.entry(name.clone()).or_insert(0) += 1;
            }
            self.release(*id, name, plan, LEASE_EXPIRED);
        }
        (expired.len() as u64, dead)
    }

    /// Redrive (`discard` false: PENDING, attempts reset, due now or waiting in its lane) or
    /// Discard (DISCARDED for good) of the DEAD deliveries of `subscription`: all, or those of
    /// `only`. Then their lanes may go on. Answers how many.
    pub fn end_dead(
        &mut self,
        subscription: &str,
        only: Option<MessageId>,
        discard: bool,
    ) -> Result<u64, Refusal> {
        if !self.subscriptions.contains_key(subscription) {
            return Err(Refusal::NotFound);
        }
        let now = self.now;
        let mut lanes = BTreeSet::new();
        let mut ended = 0;
        for message in self.messages.iter_mut().filter(|m| !m.deleted) {
            if only.is_some_and(|id| id != message.id) {
                continue;
            }
            let Some(d) = message.deliveries.get_mut(subscription) else {
                continue;
            };
            if d.state != DeliveryState::Dead {
                continue;
            }
            ended += 1;
            if d.lane_seq.is_some() {
                lanes.insert(message.lane.clone().expect("a lane delivery has a key"));
            }
            d.lease_expires_at = None;
            if discard {
                d.state = DeliveryState::Discarded;
                d.next_attempt_at = None;
            } else {
                d.state = DeliveryState::Pending;
                d.attempts = 0;
                d.next_attempt_at = d.lane_seq.is_none().then_some(Due::At(now));
            }
        }
        for key in lanes {
            self.promote(subscription, Some(&key));
        }
        Ok(ended)
    }
}
