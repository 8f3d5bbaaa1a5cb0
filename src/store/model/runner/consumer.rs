//! Steps on leases and dead letters: Receive, Ack, Nack, ExtendLease, Reject, failed pushes,
//! lease expiry, Redrive and Discard.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{Run, agree, name, same_plan};
use crate::domain::{MessageId, Receipt};
use crate::store::model::consumer::check_choice;
use crate::store::model::ops::Pick;
use crate::store::model::state::ACK_DEADLINE;
use crate::store::{Batch, DeadLetters};

impl Run {
    /// Leases up to `max` deliveries of subscription `sub`; among equally due ones the store
    /// chooses, and the model follows its choice.
    pub(super) async fn lease(&mut self, sub: usize, max: u32) -> Result<(), String> {
        let sub_name = format!("s{sub}");
        let Some(model_sub) = self.model.subscriptions.get(&sub_name) else {
            return Ok(());
        };
        let subscription = model_sub.subscription(&sub_name);
        let now = self.model.now;
        let due = self.model.due(&sub_name);
        let leased = self
            .store()
            .lease(&subscription, Batch::messages(max), now)
            .await
            .map_err(|e| format!("lease: {e:?}"))?;
        let chosen: Vec<MessageId> = leased.iter().map(|d| d.receipt.message_id).collect();
        check_choice("lease", &due, max as usize, &chosen)?;
        let expected = self.model.lease(&sub_name, &chosen);
        let expires = now.plus(ACK_DEADLINE);
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
        Ok(())
    }

    pub(super) async fn ack(&mut self, picks: &[Pick]) -> Result<(), String> {
        let receipts: Option<Vec<Receipt>> = picks.iter().map(|r| self.receipt(r)).collect();
        let Some(receipts) = receipts else {
            return Ok(());
        };
        let answer = self.store().ack(&receipts, self.model.now).await;
        agree("ack", answer, Ok(self.model.ack(&receipts)))
    }

    pub(super) async fn nack(&mut self, pick: &Pick, delay_ms: Option<u64>) -> Result<(), String> {
        let Some(receipt) = self.receipt(pick) else {
            return Ok(());
        };
        let delay = delay_ms.map(Duration::from_millis);
        // Both kinds of Nack from one generated step: with a delay the consumer says why.
        let reason = delay.map(|_| "the handler failed");
        let answer = self
            .store()
            .nack(&receipt, delay, reason, self.model.now)
            .await;
        match (answer, self.model.nack(&receipt, delay, reason)) {
            (Ok(store), Ok(model)) => same_plan("nack", store, model),
            (answer, model) => agree("nack", answer.map(|_| ()), model.map(|_| ())),
        }
    }

    pub(super) async fn extend_lease(&mut self, pick: &Pick, secs: u64) -> Result<(), String> {
        let Some(receipt) = self.receipt(pick) else {
            return Ok(());
        };
        let extension = Duration::from_secs(secs);
        let now = self.model.now;
        let answer = self.store().extend_lease(&receipt, extension, now).await;
        let model = self.model.extend_lease(&receipt, extension);
        agree("extend", answer, model)
    }

    pub(super) async fn reject(&mut self, pick: &Pick) -> Result<(), String> {
        let Some(receipt) = self.receipt(pick) else {
            return Ok(());
        };
        let answer = self
            .store()
            .reject(&receipt, "poison", self.model.now)
            .await;
        agree("reject", answer, self.model.reject(&receipt, "poison"))
    }

    pub(super) async fn fail_delivery(&mut self, pick: &Pick) -> Result<(), String> {
        let Some(receipt) = self.receipt(pick) else {
            return Ok(());
        };
        let sub_name = receipt.subscription.as_str();
        let subscription = self.model.subscriptions[sub_name].subscription(sub_name);
        let error = "receiver unavailable";
        let answer = self
            .store()
            .fail_delivery(&subscription, &receipt, error, self.model.now)
            .await
            .map_err(|e| format!("fail_delivery: {e:?}"))?;
        same_plan("fail", answer, self.model.fail_delivery(&receipt, error))
    }

    pub(super) async fn expire_leases(&mut self) -> Result<(), String> {
        let ended = self
            .store()
            .expire_leases(self.model.now)
            .await
            .map_err(|e| format!("expire: {e:?}"))?;
        let dead: BTreeMap<String, u64> = ended
            .dead
            .iter()
            .map(|(sub, n)| (sub.as_str().to_owned(), *n))
            .collect();
        let model = self.model.expire_leases();
        agree("expire", Ok((ended.ended, dead)), Ok(model))
    }

    /// Redrive, or with `discard` DiscardDeadLetters, on subscription `sub`: every DEAD
    /// delivery, or only that of one message.
    pub(super) async fn end_dead(
        &mut self,
        sub: usize,
        message: Option<&Pick>,
        discard: bool,
    ) -> Result<(), String> {
        let sub_name = format!("s{sub}");
        let only = message.and_then(|m| self.message_id(m));
        let ids: Vec<MessageId> = only.into_iter().collect();
        let subscription = name(sub_name.clone());
        let now = self.model.now;
        let chosen = DeadLetters::of(subscription, ids);
        let answer = if discard {
            let store = self.store();
            store.discard_dead_letters(&chosen, now).await
        } else {
            self.store().redrive(&chosen, 0.0, now).await
        };
        let model = self.model.end_dead(&sub_name, only, discard);
        agree(if discard { "discard" } else { "redrive" }, answer, model)
    }
}
