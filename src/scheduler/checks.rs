//! Check-back: asks the producer's Checker about each PREPARED message whose check is due.
//! COMMIT confirms, ROLLBACK cancels; anything else (UNKNOWN, an error, a timeout, no checker)
//! asks again after the check backoff, and after `checks.max_attempts` the message becomes
//! UNRESOLVED. Every verdict is recorded as a compare-and-set on PREPARED and the attempt, so
//! a producer's own Confirm or Cancel that lands meanwhile always wins.

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

use super::sleep::{failure_backoff, until_due};
use super::{clip_error, take_permits};
use crate::callbacks::{Callbacks, CheckAnswer};
use crate::config::ChecksConfig;
use crate::domain::{
    Decision, DueCheck, MessageState, RedeliveryPlan, RetryPolicy, Timestamp, plan_redelivery,
    random_jitter,
};
use crate::metrics;
use crate::store::{CheckRecorded, CheckVerdict, Store, StoreError};
use crate::telemetry::context;
use crate::wakeups::Wakeups;

/// The longest timeout a producer may register for its checker (RegisterChecker's limit).
const LONGEST_CHECKER_TIMEOUT: Duration = Duration::from_secs(60);
/// Added to the longest call, so a claim outlives any check in flight.
const HOLD_MARGIN: Duration = Duration::from_secs(10);
/// Most checks claimed in one statement.
const CLAIM_BATCH: usize = 100;

/// What check-back did in one pass.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CheckCounts {
    /// Checks answered COMMIT: the message is CONFIRMED.
    pub confirmed: u64,
    /// Checks answered ROLLBACK: the message is CANCELLED.
    pub cancelled: u64,
    /// Checks without a decision, asked again later.
    pub rescheduled: u64,
    /// Checks without a decision on the last attempt: the message is UNRESOLVED.
    pub unresolved: u64,
    /// Answers that came after the message was decided otherwise: ignored.
    pub stale: u64,
}

impl CheckCounts {
    fn add(&mut self, outcome: Option<CheckOutcome>) {
        match outcome {
            Some(CheckOutcome::Applied(MessageState::Confirmed)) => self.confirmed += 1,
            Some(CheckOutcome::Applied(MessageState::Cancelled)) => self.cancelled += 1,
            Some(CheckOutcome::Applied(MessageState::Prepared)) => self.rescheduled += 1,
            Some(CheckOutcome::Applied(MessageState::Unresolved)) => self.unresolved += 1,
            Some(CheckOutcome::Stale) => self.stale += 1,
            None => {}
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum CheckOutcome {
    Applied(MessageState),
    Stale,
}

pub struct CheckBack {
    store: Arc<dyn Store>,
    wakeups: Wakeups,
    callbacks: Arc<Callbacks>,
    schedule: RetryPolicy,
    default_timeout: Duration,
    /// One permit per check in flight.
    slots: Arc<Semaphore>,
    /// Signalled when a check in flight ends, freeing its slot.
    finished: Notify,
}

impl CheckBack {
    pub fn new(
        store: Arc<dyn Store>,
        wakeups: Wakeups,
        callbacks: Arc<Callbacks>,
        config: &ChecksConfig,
    ) -> Self {
        Self {
            store,
            wakeups,
            callbacks,
            schedule: config.retry_policy(),
            default_timeout: config.timeout,
            slots: Arc::new(Semaphore::new(config.concurrency)),
            finished: Notify::new(),
        }
    }

    /// How long a claim keeps other schedulers off a message: past the longest check call.
    fn hold(&self) -> Duration {
        self.default_timeout.max(LONGEST_CHECKER_TIMEOUT) + HOLD_MARGIN
    }

    /// Claims as many due checks as there are free slots, each with its slot.
    async fn claim(
        &self,
        now: Timestamp,
    ) -> Result<Vec<(DueCheck, OwnedSemaphorePermit)>, StoreError> {
        let slots = take_permits(&self.slots, CLAIM_BATCH);
        if slots.is_empty() {
            return Ok(Vec::new());
        }
        let limit = u32::try_from(slots.len()).unwrap_or(u32::MAX);
        let claimed = self.store.claim_due_checks(now, limit, self.hold()).await?;
        Ok(claimed.into_iter().zip(slots).collect())
    }

    /// Runs every check due by `now` and waits for all of them; verdicts are recorded as of
    /// `now`, so a test can step through the schedule without sleeping.
    pub async fn pass(&self, now: Timestamp) -> Result<CheckCounts, StoreError> {
        let mut counts = CheckCounts::default();
        loop {
            let claimed = self.claim(now).await?;
            if claimed.is_empty() {
                return Ok(counts);
            }
            let checks = claimed.into_iter().map(|(due, slot)| async move {
                let outcome = self.check(due, Some(now)).await;
                drop(slot);
                outcome
            });
            for outcome in join_all(checks).await {
                counts.add(outcome);
            }
        }
    }

    /// The background loop: claims due checks while slots are free and runs each as its own
    /// task, so one slow checker never holds up the others; sleeps until the next check is due,
    /// a Prepare makes one due sooner, or a slot frees up.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken, tracker: TaskTracker) {
        let mut failures = 0;
        loop {
            let signal = self.wakeups.checks();
            let mut woken = pin!(signal.notified());
            woken.as_mut().enable();
            let mut slot_freed = pin!(self.finished.notified());
            slot_freed.as_mut().enable();
            signal.looking();

            let claimed = match self.claim(Timestamp::now()).await {
                Ok(claimed) => claimed,
                Err(error) => {
                    failures += 1;
                    warn!(error = %error, failures, "claiming due checks failed");
                    let retry = Some(Timestamp::now().plus(failure_backoff(failures)));
                    if !until_due(retry, woken, &shutdown).await {
                        return;
                    }
                    continue;
                }
            };
            let batch_full = claimed.len() == CLAIM_BATCH;
            for (due, slot) in claimed {
                let this = self.clone();
                let shutdown = shutdown.clone();
                tracker.spawn(async move {
                    // At shutdown the check is dropped; its claim runs out and it is asked again.
                    tokio::select! {
                        _ = this.check(due, None) => {}
                        () = shutdown.cancelled() => {}
                    }
                    drop(slot);
                    this.finished.notify_waiters();
                });
            }

            if self.slots.available_permits() == 0 {
                // Every slot is busy: nothing can start before one frees up.
                signal.plan(None);
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = slot_freed => {}
                }
                continue;
            }
            if batch_full {
                continue; // more may be due right now
            }
            let next = match self.store.next_check_due().await {
                Ok(next) => {
                    failures = 0;
                    next
                }
                Err(error) => {
                    failures += 1;
                    warn!(error = %error, failures, "reading the next check time failed");
                    Some(Timestamp::now().plus(failure_backoff(failures)))
                }
            };
            signal.plan(next);
            if !until_due(next, woken, &shutdown).await {
                return;
            }
        }
    }

    /// Asks the checker about one claimed message, in a span that continues the message's
    /// trace (the Check call names it as parent), and records the verdict as of `fixed_now`
    /// (or the time the answer came).
    async fn check(&self, due: DueCheck, fixed_now: Option<Timestamp>) -> Option<CheckOutcome> {
        let span = info_span!(
            "check",
            message_id = %due.message_id,
            producer = %due.producer,
            attempt = due.attempt,
        );
        context::set_parent(&span, due.trace.as_ref());
        self.ask(due, fixed_now).instrument(span).await
    }

    /// The check itself. Failures to record are logged: the claim runs out and the check is
    /// simply done again.
    async fn ask(&self, due: DueCheck, fixed_now: Option<Timestamp>) -> Option<CheckOutcome> {
        let answer = match &due.checker {
            None => {
                metrics::check_answered(metrics::CheckOutcome::NoChecker);
                warn!(
                    message_id = %due.message_id,
                    producer = %due.producer,
                    attempt = due.attempt,
                    "no checker registered for the producer of a prepared message"
                );
                Err(format!(
                    "no checker registered for producer {}",
                    due.producer
                ))
            }
            Some(checker) => {
                let timeout = if checker.timeout.is_zero() {
                    self.default_timeout
                } else {
                    checker.timeout
                };
                let answer = self.callbacks.check(&checker.endpoint, &due, timeout).await;
                metrics::check_answered(answer_label(&answer));
                match answer {
                    Ok(CheckAnswer::Decided(decision)) => Ok(decision),
                    Ok(CheckAnswer::Unknown) => Err("the checker answered UNKNOWN".to_owned()),
                    Ok(CheckAnswer::Unspecified) => {
                        Err("the checker answered no decision (DECISION_UNSPECIFIED)".to_owned())
                    }
                    Err(error) => {
                        warn!(
                            message_id = %due.message_id,
                            producer = %due.producer,
                            endpoint = %checker.endpoint,
                            attempt = due.attempt,
                            error = %error,
                            "check call failed"
                        );
                        Err(clip_error(format!("checker {}: {error}", checker.endpoint)))
                    }
                }
            }
        };
        let now = fixed_now.unwrap_or_else(Timestamp::now);
        let verdict = match answer {
            Ok(decision) => CheckVerdict::Decided(decision),
            Err(error) => {
                match plan_redelivery(&self.schedule, due.attempt, now, None, random_jitter()) {
                    RedeliveryPlan::RetryAt(at) => CheckVerdict::RetryAt { at, error },
                    RedeliveryPlan::Dead => CheckVerdict::GiveUp { error },
                }
            }
        };
        let recorded = self
            .store
            .record_check(due.message_id, due.attempt, verdict.clone(), now)
            .await;
        match recorded {
            Ok(CheckRecorded::Applied(state)) => {
                metrics::message_decided(state, metrics::Source::Check);
                log_applied(&due, &verdict, now);
                Some(CheckOutcome::Applied(state))
            }
            Ok(CheckRecorded::Stale(current)) => {
                debug!(
                    message_id = %due.message_id,
                    attempt = due.attempt,
                    current = %current,
                    "check answer came after the message was decided; ignored"
                );
                Some(CheckOutcome::Stale)
            }
            Err(error) => {
                warn!(
                    message_id = %due.message_id,
                    attempt = due.attempt,
                    error = %error,
                    "recording a check failed; it will be done again"
                );
                None
            }
        }
    }
}

fn log_applied(due: &DueCheck, verdict: &CheckVerdict, now: Timestamp) {
    let (message_id, producer, attempt) = (&due.message_id, &due.producer, due.attempt);
    match verdict {
        CheckVerdict::Decided(Decision::Commit) => {
            info!(%message_id, %producer, attempt, "check answered COMMIT: message confirmed");
        }
        CheckVerdict::Decided(Decision::Rollback) => {
            info!(%message_id, %producer, attempt, "check answered ROLLBACK: message cancelled");
        }
        CheckVerdict::RetryAt { at, error } => {
            let next_in = at.since(now);
            debug!(%message_id, %producer, attempt, ?next_in, %error, "no decision; asking again later");
        }
        CheckVerdict::GiveUp { error } => {
            warn!(
                %message_id,
                %producer,
                attempts = attempt,
                %error,
                "checks exhausted: message is UNRESOLVED, held for Admin.Resolve or the producer"
            );
        }
    }
}

/// The `outcome` label of a Checker call's result.
fn answer_label<E>(answer: &Result<CheckAnswer, E>) -> metrics::CheckOutcome {
    match answer {
        Ok(CheckAnswer::Decided(Decision::Commit)) => metrics::CheckOutcome::Commit,
        Ok(CheckAnswer::Decided(Decision::Rollback)) => metrics::CheckOutcome::Rollback,
        Ok(CheckAnswer::Unknown) => metrics::CheckOutcome::Unknown,
        Ok(CheckAnswer::Unspecified) | Err(_) => metrics::CheckOutcome::Error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_without_a_decision_count_as_errors() {
        let label = |answer: Result<CheckAnswer, &str>| answer_label(&answer);
        assert_eq!(
            label(Ok(CheckAnswer::Decided(Decision::Rollback))),
            metrics::CheckOutcome::Rollback
        );
        assert_eq!(
            label(Ok(CheckAnswer::Unknown)),
            metrics::CheckOutcome::Unknown
        );
        assert_eq!(
            label(Ok(CheckAnswer::Unspecified)),
            metrics::CheckOutcome::Error
        );
        assert_eq!(label(Err("timed out")), metrics::CheckOutcome::Error);
    }
}
