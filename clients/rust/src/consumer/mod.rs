//! The pull consumer: a loop that receives deliveries (long poll), runs a handler on each with
//! bounded concurrency while keeping its lease alive, and acknowledges by the result: Ack on
//! `Ok`, Nack on a retryable error, Reject on a permanent one. On shutdown it stops receiving,
//! lets running handlers finish within a deadline, and gives back the rest (Nack without
//! delay) so they are redelivered at once.

mod lease;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt as _;
use opentelemetry::context::FutureExt as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::{Code, Status};
use tracing::{error, warn};

use crate::connection::CourierChannel;
use crate::handler::{Handler, HandlerError};
use crate::proto::consumer_client::ConsumerClient;
use crate::proto::{
    self, AckRequest, AckStatus, Delivery, NackRequest, ReceiveRequest, RejectRequest,
};
use crate::trace;

/// The most Courier accepts in a Reject reason.
const MAX_REASON_BYTES: usize = 1024;
/// Backoff between failed Receives that may work again (Courier restarting, say).
const RECEIVE_BACKOFF_START: Duration = Duration::from_millis(100);
const RECEIVE_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// A consumer of one pull subscription.
#[derive(Debug, Clone)]
pub struct Consumer {
    client: ConsumerClient<CourierChannel>,
    subscription: String,
    concurrency: usize,
    poll_wait: Duration,
    shutdown_deadline: Duration,
}

impl Consumer {
    /// A consumer of `subscription` over a channel from [`Connection`](crate::Connection),
    /// with 8 handlers at most at a time, 20 s long polls and 30 s to finish on shutdown.
    pub fn new(channel: CourierChannel, subscription: impl Into<String>) -> Self {
        Self {
            client: ConsumerClient::new(channel),
            subscription: subscription.into(),
            concurrency: 8,
            poll_wait: Duration::from_secs(20),
            shutdown_deadline: Duration::from_secs(30),
        }
    }

    /// At most `handlers` deliveries in hand at once (at least 1).
    pub fn concurrency(mut self, handlers: usize) -> Self {
        self.concurrency = handlers.max(1);
        self
    }

    /// How long one Receive waits for a delivery (at most 30 s).
    pub fn poll_wait(mut self, wait: Duration) -> Self {
        self.poll_wait = wait.min(Duration::from_secs(30));
        self
    }

    /// How long running handlers may take to finish after shutdown is asked for; the
    /// deliveries of those still running then are given back for redelivery.
    pub fn shutdown_deadline(mut self, deadline: Duration) -> Self {
        self.shutdown_deadline = deadline;
        self
    }

    /// Runs `handler` on every delivery until `shutdown` is cancelled, then shuts down
    /// gracefully. Returns an error when Receive fails in a way retrying cannot fix (unknown
    /// subscription, missing permission); failures that may pass (Courier unreachable) are
    /// retried with backoff.
    pub async fn run<H: Handler>(
        &self,
        handler: H,
        shutdown: CancellationToken,
    ) -> Result<(), Status> {
        let handler = Arc::new(handler);
        let slots = Arc::new(Semaphore::new(self.concurrency));
        let tasks = TaskTracker::new();
        let give_back = CancellationToken::new();
        let mut backoff = RECEIVE_BACKOFF_START;
        let result = loop {
            let Some(permits) = self.free_slots(&slots, &shutdown).await else {
                break Ok(());
            };
            let request = ReceiveRequest {
                subscription: self.subscription.clone(),
                max_messages: u32::try_from(permits.len()).unwrap_or(1000).min(1000),
                wait: Some(proto::duration(self.poll_wait)),
                max_bytes: 0,
            };
            let mut client = self.client.clone();
            let answer = tokio::select! {
                answer = client.receive(request) => answer,
                () = shutdown.cancelled() => break Ok(()),
            };
            match answer {
                Ok(response) => {
                    backoff = RECEIVE_BACKOFF_START;
                    for (delivery, permit) in
                        response.into_inner().deliveries.into_iter().zip(permits)
                    {
                        tasks.spawn(self.clone().process(
                            delivery,
                            handler.clone(),
                            permit,
                            give_back.clone(),
                        ));
                    }
                }
                Err(status) if may_pass(&status) => {
                    warn!(subscription = %self.subscription, error = status.message(), ?backoff, "receive failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = shutdown.cancelled() => break Ok(()),
                    }
                    backoff = (backoff * 2).min(RECEIVE_BACKOFF_MAX);
                }
                Err(status) => break Err(status),
            }
        };
        tasks.close();
        if tokio::time::timeout(self.shutdown_deadline, tasks.wait())
            .await
            .is_err()
        {
            warn!(subscription = %self.subscription, running = tasks.len(), "handlers still running at the shutdown deadline; giving their deliveries back");
            give_back.cancel();
            tasks.wait().await;
        }
        result
    }

    /// Waits for at least one free handler slot and takes every free one; None on shutdown.
    async fn free_slots(
        &self,
        slots: &Arc<Semaphore>,
        shutdown: &CancellationToken,
    ) -> Option<Vec<OwnedSemaphorePermit>> {
        let first = tokio::select! {
            permit = slots.clone().acquire_owned() => permit.ok()?,
            () = shutdown.cancelled() => return None,
        };
        let mut permits = vec![first];
        while let Ok(permit) = slots.clone().try_acquire_owned() {
            permits.push(permit);
        }
        Some(permits)
    }

    /// Runs the handler on one delivery, keeping its lease alive, and settles it.
    async fn process(
        self,
        delivery: Delivery,
        handler: Arc<impl Handler>,
        _slot: OwnedSemaphorePermit,
        give_back: CancellationToken,
    ) {
        let receipt = delivery.receipt.clone();
        let message_id = delivery.message_id.clone();
        let handled = CancellationToken::new();
        let keeper = tokio::spawn(lease::keep_alive(
            self.client.clone(),
            self.subscription.clone(),
            receipt.clone(),
            lease::remaining(&delivery),
            handled.clone(),
        ));
        let context = trace::handler_context(&delivery);
        let work = AssertUnwindSafe(handler.handle(delivery).with_context(context)).catch_unwind();
        let outcome = tokio::select! {
            outcome = work => Some(outcome),
            () = give_back.cancelled() => None,
        };
        handled.cancel();
        let _ = keeper.await;
        let settled = match outcome {
            Some(Ok(Ok(()))) => self.ack(&receipt).await,
            Some(Ok(Err(failure))) if failure.is_permanent() => {
                warn!(%message_id, error = %failure, "handler failed for good; rejecting");
                self.reject(&receipt, &failure).await
            }
            Some(Ok(Err(failure))) => {
                warn!(%message_id, error = %failure, "handler failed; the delivery will be retried");
                let reason = failure.to_string();
                self.nack(&receipt, failure.retry_delay(), &reason).await
            }
            Some(Err(_panic)) => {
                error!(%message_id, "handler panicked; the delivery will be retried");
                self.nack(&receipt, None, "the handler panicked").await
            }
            None => {
                let reason = "the consumer shut down before the handler finished";
                self.nack(&receipt, Some(Duration::ZERO), reason).await
            }
        };
        if let Err(status) = settled {
            warn!(%message_id, error = status.message(), "could not settle the delivery; it is redelivered when its lease ends");
        }
    }

    async fn ack(&self, receipt: &str) -> Result<(), Status> {
        let request = AckRequest {
            subscription: self.subscription.clone(),
            receipts: vec![receipt.to_owned()],
        };
        let response = self.client.clone().ack(request).await?.into_inner();
        let status = response.results.first().map(|result| result.status());
        if status != Some(AckStatus::Ok) {
            warn!(%receipt, ?status, "ack not taken: the delivery was leased again, so it may be processed twice");
        }
        Ok(())
    }

    /// Gives the delivery back, saying why (kept in the message's history).
    async fn nack(&self, receipt: &str, delay: Option<Duration>, why: &str) -> Result<(), Status> {
        let request = NackRequest {
            subscription: self.subscription.clone(),
            receipt: receipt.to_owned(),
            delay: delay.map(proto::duration),
            reason: reason(why),
        };
        self.client.clone().nack(request).await?;
        Ok(())
    }

    async fn reject(&self, receipt: &str, failure: &HandlerError) -> Result<(), Status> {
        let request = RejectRequest {
            subscription: self.subscription.clone(),
            receipt: receipt.to_owned(),
            reason: reason(&failure.to_string()),
        };
        self.client.clone().reject(request).await?;
        Ok(())
    }
}

/// Receive failures that may pass by themselves.
fn may_pass(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Aborted
            | Code::Internal
            | Code::Unknown
            | Code::Cancelled
    )
}

/// `text` as a Nack or Reject reason: without NUL, cut at a character boundary to what
/// Courier keeps.
fn reason(text: &str) -> String {
    let text = text.replace('\0', " ");
    if text.len() <= MAX_REASON_BYTES {
        return text;
    }
    let mut end = MAX_REASON_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_fit_what_courier_keeps() {
        assert_eq!(reason("bad\0json"), "bad json");
        let long = "é".repeat(600);
        let reason = reason(&long);
        assert!(reason.len() <= MAX_REASON_BYTES);
        assert_eq!(reason.chars().count(), 512);
    }
}
