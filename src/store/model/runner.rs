//! Applies a sequence to a store and to the model side by side: each operation's answer must
//! be the one the model predicts (or one it allows, where the store may choose), and after
//! each step the observable state must agree (`observe`).

use std::fmt::Debug;
use std::time::Duration;

use super::consumer::check_choice;
use super::observe;
use super::ops::{Op, Pick, Verdict};
use super::producer::Insert;
use super::state::{
    CHECK_AFTER, DELIVER_AFTER, HOLD, Model, PRODUCER, Plan, Refusal, SubscriptionModel, TOPIC,
};
use crate::domain::{
    DeadHeadPolicy, Decision, MessageId, MessageKey, MessageRef, Name, OrderingKey, Receipt,
    RedeliveryPlan, Timestamp,
};
use crate::store::conformance::TestStore;
use crate::store::{Batch, CheckVerdict, NewMessage, Store, StoreError};

pub struct Run {
    test: TestStore,
    model: Model,
    /// Every receipt handed out so far, oldest first.
    receipts: Vec<Receipt>,
    /// Every check claimed so far: message and attempt.
    claims: Vec<(MessageId, u32)>,
}

/// The store's answer and the model's agree: the same value, or the same refusal.
fn agree<T: PartialEq + Debug>(
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
fn same_plan(what: &str, store: Option<RedeliveryPlan>, model: Option<Plan>) -> Result<(), String> {
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

fn name(value: String) -> Name {
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

    fn store(&self) -> &dyn Store {
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

    fn receipt(&self, pick: &Pick) -> Option<Receipt> {
        pick.of(&self.receipts)
    }

    fn message_id(&self, pick: &Pick) -> Option<MessageId> {
        let messages = &self.model.messages;
        Some(messages[pick.position(messages.len())?].id)
    }

    async fn apply(&mut self, op: &Op) -> Result<(), String> {
        let now = self.model.now;
        match op {
            Op::CreateSubscription {
                sub,
                ordered,
                skip_dead_heads,
                max_attempts,
            } => {
                let sub_name = format!("s{sub}");
                let wanted = SubscriptionModel {
                    ordered: *ordered,
                    dead_head: if *skip_dead_heads {
                        DeadHeadPolicy::Skip
                    } else {
                        DeadHeadPolicy::Block
                    },
                    max_attempts: *max_attempts,
                    created_at: now,
                };
                let answer = self
                    .store()
                    .create_subscription(wanted.subscription(&sub_name))
                    .await;
                let returned = answer.as_ref().ok().map(|(s, _)| s.clone());
                let model = self.model.create_subscription(&sub_name, wanted);
                agree("create", answer.map(|(_, created)| created), model)?;
                let expected = self.model.subscriptions.get(&sub_name);
                if let (Some(returned), Some(expected)) = (returned, expected) {
                    let expected = expected.subscription(&sub_name);
                    if returned != expected {
                        return Err(format!("returned {returned:?}, expected {expected:?}"));
                    }
                }
            }
            Op::Insert {
                publish,
                lane,
                delayed,
            } => {
                let id = MessageId::new();
                let key = format!("m{}", self.model.messages.len());
                let lane = lane.map(|l| format!("k{l}"));
                let message = NewMessage {
                    id,
                    producer: name(PRODUCER.to_owned()),
                    topic: name(TOPIC.to_owned()),
                    key: MessageKey::from_trusted(key.clone()),
                    ordering_key: OrderingKey::from_trusted(lane.clone().unwrap_or_default()),
                    payload: key.clone().into_bytes(),
                    headers: Default::default(),
                    check_after: CHECK_AFTER,
                    deliver_after: if *delayed {
                        DELIVER_AFTER
                    } else {
                        Duration::ZERO
                    },
                    publish: *publish,
                    now,
                };
                let answer = self.store().insert_message(message).await;
                if let Ok(outcome) = &answer
                    && (outcome.message_id != id || !outcome.created)
                {
                    return Err(format!("a new message was not created: {outcome:?}"));
                }
                let model = self.model.insert(Insert {
                    id,
                    key,
                    lane,
                    delayed: *delayed,
                    publish: *publish,
                });
                agree("insert", answer.map(|o| o.state), model)?;
            }
            Op::Decide { message, commit } => {
                let Some(id) = self.message_id(message) else {
                    return Ok(());
                };
                let decision = if *commit {
                    Decision::Commit
                } else {
                    Decision::Rollback
                };
                let answer = self
                    .store()
                    .decide(&MessageRef::Id(id), decision, now)
                    .await;
                agree("decide", answer, self.model.decide(id, decision))?;
            }
            Op::Lease { sub, max } => {
                let sub_name = format!("s{sub}");
                let Some(model_sub) = self.model.subscriptions.get(&sub_name) else {
                    return Ok(());
                };
                let subscription = model_sub.subscription(&sub_name);
                let due = self.model.due(&sub_name);
                let leased = self
                    .store()
                    .lease(&subscription, Batch::messages(*max), now)
                    .await
                    .map_err(|e| format!("lease: {e:?}"))?;
                let chosen: Vec<MessageId> = leased.iter().map(|d| d.receipt.message_id).collect();
                check_choice("lease", &due, *max as usize, &chosen)?;
                let expected = self.model.lease(&sub_name, &chosen);
                let expires = now.plus(super::state::ACK_DEADLINE);
                for (delivery, (attempt, generation)) in leased.iter().zip(expected) {
                    let got = (
                        delivery.attempt,
                        delivery.receipt.generation,
                        delivery.lease_expires_at,
                        delivery.receipt.subscription.as_str(),
                    );
                    if got != (attempt, generation, expires, sub_name.as_str()) {
                        return Err(format!(
                            "leased {delivery:?}, expected attempt {attempt}, generation \
                             {generation}, lease until {expires:?}"
                        ));
                    }
                    self.receipts.push(delivery.receipt.clone());
                }
            }
            Op::Ack { receipts } => {
                let receipts: Option<Vec<Receipt>> =
                    receipts.iter().map(|r| self.receipt(r)).collect();
                let Some(receipts) = receipts else {
                    return Ok(());
                };
                let answer = self.store().ack(&receipts, now).await;
                agree("ack", answer, Ok(self.model.ack(&receipts)))?;
            }
            Op::Nack { receipt, delay_ms } => {
                let Some(receipt) = self.receipt(receipt) else {
                    return Ok(());
                };
                let delay = delay_ms.map(Duration::from_millis);
                let answer = self.store().nack(&receipt, delay, now).await;
                let model = self.model.nack(&receipt, delay);
                match (answer, model) {
                    (Ok(store), Ok(model)) => same_plan("nack", store, model)?,
                    (answer, model) => agree("nack", answer.map(|_| ()), model.map(|_| ()))?,
                }
            }
            Op::ExtendLease { receipt, secs } => {
                let Some(receipt) = self.receipt(receipt) else {
                    return Ok(());
                };
                let extension = Duration::from_secs(*secs);
                let answer = self.store().extend_lease(&receipt, extension, now).await;
                agree(
                    "extend",
                    answer,
                    self.model.extend_lease(&receipt, extension),
                )?;
            }
            Op::Reject { receipt } => {
                let Some(receipt) = self.receipt(receipt) else {
                    return Ok(());
                };
                let answer = self.store().reject(&receipt, "poison", now).await;
                agree("reject", answer, self.model.reject(&receipt, "poison"))?;
            }
            Op::FailDelivery { receipt } => {
                let Some(receipt) = self.receipt(receipt) else {
                    return Ok(());
                };
                let sub_name = receipt.subscription.as_str();
                let subscription = self.model.subscriptions[sub_name].subscription(sub_name);
                let error = "receiver unavailable";
                let answer = self
                    .store()
                    .fail_delivery(&subscription, &receipt, error, now)
                    .await
                    .map_err(|e| format!("fail_delivery: {e:?}"))?;
                same_plan("fail", answer, self.model.fail_delivery(&receipt, error))?;
            }
            Op::Advance { millis } => {
                self.model.now = now.plus(Duration::from_millis(*millis));
            }
            Op::ExpireLeases => {
                let ended = self
                    .store()
                    .expire_leases(now)
                    .await
                    .map_err(|e| format!("expire: {e:?}"))?;
                let dead = ended
                    .dead
                    .iter()
                    .map(|(sub, n)| (sub.as_str().to_owned(), *n))
                    .collect();
                agree(
                    "expire",
                    Ok((ended.ended, dead)),
                    Ok(self.model.expire_leases()),
                )?;
            }
            Op::EndDead {
                sub,
                message,
                discard,
            } => {
                let sub_name = format!("s{sub}");
                let only = message.as_ref().and_then(|m| self.message_id(m));
                let ids: Vec<MessageId> = only.into_iter().collect();
                let subscription = name(sub_name.clone());
                let answer = if *discard {
                    let store = self.store();
                    store.discard_dead_letters(&subscription, &ids, now).await
                } else {
                    self.store().redrive(&subscription, &ids, now).await
                };
                let model = self.model.end_dead(&sub_name, only, *discard);
                agree(if *discard { "discard" } else { "redrive" }, answer, model)?;
            }
            Op::ClaimChecks { limit } => {
                let due = self.model.due_checks();
                let claimed = self
                    .store()
                    .claim_due_checks(now, *limit, HOLD)
                    .await
                    .map_err(|e| format!("claim: {e:?}"))?;
                let chosen: Vec<MessageId> = claimed.iter().map(|c| c.message_id).collect();
                check_choice("claim", &due, *limit as usize, &chosen)?;
                let attempts = self.model.claim_checks(&chosen);
                for (check, attempt) in claimed.iter().zip(attempts) {
                    if check.attempt != attempt {
                        return Err(format!("claimed {check:?}, expected attempt {attempt}"));
                    }
                    self.claims.push((check.message_id, attempt));
                }
            }
            Op::RecordCheck { claim, verdict } => {
                let Some((id, attempt)) = claim.of(&self.claims) else {
                    return Ok(());
                };
                let verdict = match verdict {
                    Verdict::Commit => CheckVerdict::Decided(Decision::Commit),
                    Verdict::Rollback => CheckVerdict::Decided(Decision::Rollback),
                    Verdict::RetryLater => CheckVerdict::RetryAt {
                        at: now.plus(Duration::from_secs(5)),
                        error: "checker unavailable".to_owned(),
                    },
                    Verdict::GiveUp => CheckVerdict::GiveUp {
                        error: "no decision".to_owned(),
                    },
                };
                let answer = self
                    .store()
                    .record_check(id, attempt, verdict.clone(), now)
                    .await;
                let model = self.model.record_check(id, attempt, &verdict);
                agree("record_check", answer, model)?;
            }
            Op::DeleteFinal { keep_ms, limit } => {
                let cutoff = Timestamp::from_millis(now.as_millis() - *keep_ms as i64);
                let candidates = self.model.final_by(cutoff);
                let deleted = self
                    .store()
                    .delete_final_messages(cutoff, *limit)
                    .await
                    .map_err(|e| format!("retention: {e:?}"))?;
                let mut gone = Vec::new();
                for (id, _) in &candidates {
                    match self.store().get_message(&MessageRef::Id(*id)).await {
                        Err(StoreError::NotFound(_)) => gone.push(*id),
                        Ok(_) => {}
                        Err(e) => return Err(format!("get_message: {e:?}")),
                    }
                }
                if deleted != gone.len() as u64 {
                    return Err(format!("retention said {deleted}, but {gone:?} are gone"));
                }
                check_choice("retention", &candidates, *limit as usize, &gone)?;
                for id in gone {
                    self.model.delete(id);
                }
            }
            Op::Restart => {
                let (store, wakeups) = self.test.replica().await;
                self.test.store = store;
                self.test.wakeups = wakeups;
            }
        }
        Ok(())
    }
}
