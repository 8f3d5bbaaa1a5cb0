//! Applies a sequence to a store and to the model side by side: each operation's answer must
//! be the one the model predicts (or one it allows, where the store may choose), and after
//! each step the observable state must agree (`observe`). The steps are in `producer`
//! (subscriptions, messages, check-backs, retention) and `consumer` (leases and dead letters).

mod consumer;
mod producer;

use std::fmt::Debug;
use std::time::Duration;

use super::observe;
use super::ops::{Op, Pick};
use super::state::{Model, Plan, Refusal, SubscriptionModel};
use crate::domain::{DeadHeadPolicy, MessageId, Name, Receipt, RedeliveryPlan, Timestamp};
use crate::store::conformance::TestStore;
use crate::store::{Store, StoreError};

pub struct Run {
    test: TestStore,
    pub(super) model: Model,
    /// Every receipt handed out so far, oldest first.
    pub(super) receipts: Vec<Receipt>,
    /// Every check claimed so far: message and attempt.
    pub(super) claims: Vec<(MessageId, u32)>,
}

/// The store's answer and the model's agree: the same value, or the same refusal.
pub(super) fn agree<T: PartialEq + Debug>(
    what: &str,
    store: Result<T, StoreError>,
    model: Result<T, Refusal>,
) -> Result<(), String> {
    let store = store.map_err(|e| Refusal::of(&e).ok_or_else(|| format!("{what}: {e:?}")));
    let store = match store {
        Ok(value) => Ok(value),
        Err(refusal) => Err(refusal?),
    };
    if store == model {
        Ok(())
    } else {
        Err(format!(
            "{what}: the store answered {store:?}, the model {model:?}"
        ))
    }
}

/// A plan the store applied agrees with the model's (a backoff within its jitter).
pub(super) fn same_plan(
    what: &str,
    store: Option<RedeliveryPlan>,
    model: Option<Plan>,
) -> Result<(), String> {
    let same = match (store, model) {
        (None, None) => true,
        (Some(RedeliveryPlan::Dead), Some(Plan::Dead)) => true,
        (Some(RedeliveryPlan::RetryAt(at)), Some(Plan::Retry(due))) => due.admits(at),
        _ => false,
    };
    if same {
        Ok(())
    } else {
        Err(format!(
            "{what}: the store planned {store:?}, the model {model:?}"
        ))
    }
}

pub(super) fn name(value: String) -> Name {
    Name::from_trusted(value)
}

impl Run {
    pub fn new(test: TestStore, now: Timestamp) -> Self {
        Self {
            test,
            model: Model::new(now),
            receipts: Vec::new(),
            claims: Vec::new(),
        }
    }

    /// The database and what the model knows of it, once the sequence ran.
    pub fn into_parts(self) -> (TestStore, Model) {
        (self.test, self.model)
    }

    pub(super) fn store(&self) -> &dyn Store {
        self.test.store.as_ref()
    }

    pub async fn sequence(&mut self, ops: &[Op]) -> Result<(), String> {
        for (step, op) in ops.iter().enumerate() {
            self.apply(op)
                .await
                .map_err(|e| format!("step {step}, {op:?}: {e}"))?;
            self.model.mark_final();
            observe::compare(self.test.store.as_ref(), &mut self.model)
                .await
                .map_err(|e| format!("after step {step}, {op:?}: {e}"))?;
        }
        Ok(())
    }

    pub(super) fn receipt(&self, pick: &Pick) -> Option<Receipt> {
        pick.of(&self.receipts)
    }

    pub(super) fn message_id(&self, pick: &Pick) -> Option<MessageId> {
        let messages = &self.model.messages;
        Some(messages[pick.position(messages.len())?].id)
    }

    async fn apply(&mut self, op: &Op) -> Result<(), String> {
        match op {
            Op::CreateSubscription {
                sub,
                ordered,
                skip_dead_heads,
                max_attempts,
            } => {
                let wanted = SubscriptionModel {
                    ordered: *ordered,
                    dead_head: dead_head(*skip_dead_heads),
                    max_attempts: *max_attempts,
                    created_at: self.model.now,
                };
                self.create_subscription(*sub, wanted).await
            }
            Op::UpdateSubscription {
                sub,
                switch_dead_head,
                max_attempts,
                flip_ordered,
            } => {
                let change = (*switch_dead_head, *max_attempts, *flip_ordered);
                self.update_subscription(*sub, change).await
            }
            Op::Insert {
                publish,
                lane,
                delayed,
            } => {
                let key = format!("m{}", self.model.messages.len());
                let lane = lane.map(|l| format!("k{l}"));
                self.insert(key, lane, *delayed, *publish, true).await
            }
            Op::Repeat {
                message,
                same,
                publish,
            } => {
                let Some(index) = message.position(self.model.messages.len()) else {
                    return Ok(());
                };
                let original = &self.model.messages[index];
                let (key, lane) = (original.key.clone(), original.lane.clone());
                self.insert(key, lane, false, *publish, *same).await
            }
            Op::Decide {
                message,
                commit,
                by_key,
            } => self.decide(message, *commit, *by_key).await,
            Op::Lease { sub, max } => self.lease(*sub, *max).await,
            Op::Ack { receipts } => self.ack(receipts).await,
            Op::Nack { receipt, delay_ms } => self.nack(receipt, *delay_ms).await,
            Op::ExtendLease { receipt, secs } => self.extend_lease(receipt, *secs).await,
            Op::Reject { receipt } => self.reject(receipt).await,
            Op::FailDelivery { receipt } => self.fail_delivery(receipt).await,
            Op::Advance { millis } => {
                self.model.now = self.model.now.plus(Duration::from_millis(*millis));
                Ok(())
            }
            Op::ExpireLeases => self.expire_leases().await,
            Op::EndDead {
                sub,
                message,
                discard,
            } => self.end_dead(*sub, message.as_ref(), *discard).await,
            Op::ClaimChecks { limit } => self.claim_checks(*limit).await,
            Op::RecordCheck { claim, verdict } => self.record_check(claim, *verdict).await,
            Op::DeleteFinal { keep_ms, limit } => self.delete_final(*keep_ms, *limit).await,
            Op::Restart => {
                let (store, wakeups) = self.test.replica().await;
                self.test.store = store;
                self.test.wakeups = wakeups;
                Ok(())
            }
        }
    }
}

fn dead_head(skip: bool) -> DeadHeadPolicy {
    if skip {
        DeadHeadPolicy::Skip
    } else {
        DeadHeadPolicy::Block
    }
}
