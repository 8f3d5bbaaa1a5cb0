//! Steps on subscriptions, messages, check-backs and retention.

use std::time::Duration;

use super::{Run, agree, name};
use crate::domain::{
    DeadHeadPolicy, Decision, MessageId, MessageKey, MessageRef, OrderingKey, Timestamp,
};
use crate::store::model::consumer::check_choice;
use crate::store::model::ops::{Pick, Verdict};
use crate::store::model::producer::Insert;
use crate::store::model::state::{
    CHECK_AFTER, DELIVER_AFTER, HOLD, PRODUCER, SubscriptionModel, TOPIC,
};
use crate::store::{CheckVerdict, NewMessage, StoreError};

impl Run {
    pub(super) async fn create_subscription(
        &mut self,
        sub: usize,
        wanted: SubscriptionModel,
    ) -> Result<(), String> {
        let sub_name = format!("s{sub}");
        let answer = self
            .store()
            .create_subscription(wanted.subscription(&sub_name))
            .await;
        let returned = answer.as_ref().ok().map(|(s, _)| s.clone());
        let model = self.model.create_subscription(&sub_name, wanted);
        agree("create", answer.map(|(_, created)| created), model)?;
        self.same_subscription(&sub_name, returned)
    }

    /// A returned subscription is the one the model holds.
    fn same_subscription(
        &self,
        sub_name: &str,
        returned: Option<crate::domain::Subscription>,
    ) -> Result<(), String> {
        let expected = self.model.subscriptions.get(sub_name);
        if let (Some(returned), Some(expected)) = (returned, expected) {
            let expected = expected.subscription(sub_name);
            if returned != expected {
                return Err(format!("returned {returned:?}, expected {expected:?}"));
            }
        }
        Ok(())
    }

    /// Changes the attempts and, with `switch_dead_head`, the dead-head policy (or, with
    /// `flip_ordered`, tries to change whether it is ordered, which must fail).
    pub(super) async fn update_subscription(
        &mut self,
        sub: usize,
        (switch_dead_head, max_attempts, flip_ordered): (bool, u32, bool),
    ) -> Result<(), String> {
        let sub_name = format!("s{sub}");
        let (mut wanted, existed) = match self.model.subscriptions.get(&sub_name) {
            Some(existing) => (existing.clone(), true),
            None => (SubscriptionModel::unknown(self.model.now), false),
        };
        if switch_dead_head {
            wanted.dead_head = match wanted.dead_head {
                DeadHeadPolicy::Block => DeadHeadPolicy::Skip,
                DeadHeadPolicy::Skip => DeadHeadPolicy::Block,
            };
        }
        wanted.max_attempts = max_attempts;
        wanted.ordered ^= flip_ordered;
        // The store promotes with its own clock here (the call takes no `now`).
        let before = Timestamp::now();
        let answer = self
            .store()
            .update_subscription(wanted.subscription(&sub_name))
            .await;
        let after = Timestamp::now();
        let returned = answer.as_ref().ok().cloned();
        let model = if !existed {
            Err(crate::store::model::state::Refusal::NotFound)
        } else {
            self.model
                .update_subscription(&sub_name, wanted, (before, after))
        };
        agree("update", answer.map(|_| ()), model)?;
        self.same_subscription(&sub_name, returned)
    }

    /// Prepares or publishes a message under `key`: new, or a repeat of an existing key with
    /// the same content (`same`) or other content.
    pub(super) async fn insert(
        &mut self,
        key: String,
        lane: Option<String>,
        delayed: bool,
        publish: bool,
        same: bool,
    ) -> Result<(), String> {
        let id = MessageId::new();
        let payload = if same {
            key.clone().into_bytes()
        } else {
            b"other content".to_vec()
        };
        let message = NewMessage {
            id,
            producer: name(PRODUCER.to_owned()),
            topic: name(TOPIC.to_owned()),
            key: MessageKey::from_trusted(key.clone()),
            ordering_key: OrderingKey::from_trusted(lane.clone().unwrap_or_default()),
            payload: payload.clone(),
            headers: Default::default(),
            check_after: CHECK_AFTER,
            deliver_after: if delayed {
                DELIVER_AFTER
            } else {
                Duration::ZERO
            },
            publish,
            trace: None,
            now: self.model.now,
        };
        let answer = self.store().insert_message(message).await;
        let model = self.model.insert(Insert {
            id,
            key,
            lane,
            payload,
            delayed,
            publish,
        });
        let answer = answer.map(|o| (o.message_id, o.state, o.created));
        agree("insert", answer, model)
    }

    pub(super) async fn decide(
        &mut self,
        message: &Pick,
        commit: bool,
        by_key: bool,
    ) -> Result<(), String> {
        let Some(index) = message.position(self.model.messages.len()) else {
            return Ok(());
        };
        let picked = &self.model.messages[index];
        let decision = if commit {
            Decision::Commit
        } else {
            Decision::Rollback
        };
        let (reference, id) = if by_key {
            // The key names the live message that holds it, if any (retention frees keys).
            let holder = self.model.holder(&picked.key).map(|m| m.id);
            let reference = MessageRef::ProducerKey {
                producer: name(PRODUCER.to_owned()),
                key: MessageKey::from_trusted(picked.key.clone()),
            };
            (reference, holder)
        } else {
            (MessageRef::Id(picked.id), Some(picked.id))
        };
        let answer = self
            .store()
            .decide(&reference, decision, self.model.now)
            .await;
        let model = match id {
            Some(id) => self.model.decide(id, decision),
            None => Err(crate::store::model::state::Refusal::NotFound),
        };
        agree("decide", answer, model)
    }

    pub(super) async fn claim_checks(&mut self, limit: u32) -> Result<(), String> {
        let due = self.model.due_checks();
        let claimed = self
            .store()
            .claim_due_checks(self.model.now, limit, HOLD)
            .await
            .map_err(|e| format!("claim: {e:?}"))?;
        let chosen: Vec<MessageId> = claimed.iter().map(|c| c.message_id).collect();
        check_choice("claim", &due, limit as usize, &chosen)?;
        let attempts = self.model.claim_checks(&chosen);
        for (check, attempt) in claimed.iter().zip(attempts) {
            if check.attempt != attempt {
                return Err(format!("claimed {check:?}, expected attempt {attempt}"));
            }
            self.claims.push((check.message_id, attempt));
        }
        Ok(())
    }

    pub(super) async fn record_check(
        &mut self,
        claim: &Pick,
        verdict: Verdict,
    ) -> Result<(), String> {
        let Some((id, attempt)) = claim.of(&self.claims) else {
            return Ok(());
        };
        let now = self.model.now;
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
        agree("record_check", answer, model)
    }

    /// Retention with a cutoff `keep_ms` ago: deletes the oldest final messages, at most
    /// `limit`; which ones, among messages final at the same time, is the store's choice.
    pub(super) async fn delete_final(&mut self, keep_ms: u64, limit: u32) -> Result<(), String> {
        let cutoff = Timestamp::from_millis(self.model.now.as_millis() - keep_ms as i64);
        let candidates = self.model.final_by(cutoff);
        let deleted = self
            .store()
            .delete_final_messages(cutoff, limit)
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
        check_choice("retention", &candidates, limit as usize, &gone)?;
        for id in gone {
            self.model.delete(id);
        }
        Ok(())
    }
}
