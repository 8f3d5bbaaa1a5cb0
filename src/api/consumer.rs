//! Consumer: pull delivery with a long-polling Receive, and the lease calls (Ack, Nack,
//! ExtendLease, Reject).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};
use tracing::field::Empty;
use tracing::{debug, error, instrument};

use super::ApiContext;
use super::auth::Caller;
use crate::convert;
use crate::domain::{AckStatus, LeasedDelivery, Receipt, RedeliveryPlan, Subscription, Timestamp};
use crate::long_poll;
use crate::metrics;
use crate::proto::{self, consumer_server::Consumer};
use crate::store::{Batch, StoreError};

/// Time kept back from the client's own deadline to send an empty answer before it expires.
const DEADLINE_MARGIN: Duration = Duration::from_millis(100);

pub struct ConsumerService {
    context: Arc<ApiContext>,
}

impl ConsumerService {
    pub(super) fn new(context: Arc<ApiContext>) -> Self {
        Self { context }
    }

    /// Leases due deliveries, waiting up to `wait` for some (see `long_poll`).
    async fn long_poll(
        &self,
        subscription: &Subscription,
        batch: Batch,
        wait: Duration,
    ) -> Result<Vec<LeasedDelivery>, StoreError> {
        let context = &self.context;
        long_poll::lease_or_wait(
            context.store.as_ref(),
            &context.wakeups,
            Some(&context.lease_ahead),
            subscription,
            batch,
            Instant::now() + wait,
            &context.shutdown,
        )
        .await
    }

    /// The receipt of a single-lease call, once the caller may consume the subscription, it is
    /// known to exist (NOT_FOUND otherwise, as for every consumer call) and owns the receipt.
    async fn lease_receipt<'a>(
        &self,
        caller: &Caller,
        target: &'a convert::LeaseTarget,
    ) -> Result<&'a Receipt, Status> {
        crate::telemetry::record("subscription", &target.subscription);
        crate::telemetry::record("message_id", target.receipt.message_id);
        caller.authorize(Some(target.subscription.as_str()))?;
        self.context
            .store
            .get_subscription(&target.subscription)
            .await?;
        target.check_owner()?;
        Ok(&target.receipt)
    }
}

/// The client's deadline from the `grpc-timeout` header (`<digits><H|M|S|m|u|n>`), if any.
/// A long poll ends a little before it, so the client gets an empty answer rather than
/// DEADLINE_EXCEEDED (and a lease handed out into a cancelled call).
fn client_timeout(metadata: &MetadataMap) -> Option<Duration> {
    let value = metadata.get("grpc-timeout")?.to_str().ok()?;
    let split = value.len().checked_sub(1)?;
    let (digits, unit) = value.split_at(split);
    let amount: u64 = digits.parse().ok()?;
    let timeout = match unit {
        "H" => Duration::from_secs(amount.saturating_mul(3600)),
        "M" => Duration::from_secs(amount.saturating_mul(60)),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    };
    Some(timeout)
}

fn push_subscription(subscription: &Subscription, endpoint: &str) -> Status {
    Status::failed_precondition(format!(
        "subscription {} is push; deliveries go to {endpoint}",
        subscription.name
    ))
}

#[tonic::async_trait]
impl Consumer for ConsumerService {
    #[instrument(skip_all, fields(subscription = Empty))]
    async fn receive(
        &self,
        request: Request<proto::ReceiveRequest>,
    ) -> Result<Response<proto::ReceiveResponse>, Status> {
        let caller = Caller::of(&request)?;
        let client_timeout = client_timeout(request.metadata());
        let ceiling = self.context.config.limits.max_receive_bytes;
        let mut params = convert::receive(request.into_inner(), ceiling)?;
        crate::telemetry::record("subscription", &params.subscription);
        caller.authorize(Some(params.subscription.as_str()))?;
        if let Some(timeout) = client_timeout {
            params.wait = params.wait.min(timeout.saturating_sub(DEADLINE_MARGIN));
        }
        let subscription = self
            .context
            .store
            .get_subscription(&params.subscription)
            .await?;
        if let Some(endpoint) = &subscription.push_endpoint {
            return Err(push_subscription(&subscription, endpoint));
        }
        let leased = self
            .long_poll(&subscription, params.batch, params.wait)
            .await?;
        metrics::deliveries_leased(subscription.name.as_str(), &leased);
        debug!(subscription = %subscription.name, count = leased.len(), "received");
        Ok(Response::new(proto::ReceiveResponse {
            deliveries: leased.into_iter().map(convert::delivery).collect(),
        }))
    }

    #[instrument(skip_all, fields(subscription = Empty))]
    async fn ack(
        &self,
        request: Request<proto::AckRequest>,
    ) -> Result<Response<proto::AckResponse>, Status> {
        let caller = Caller::of(&request)?;
        let params = convert::ack(request.into_inner())?;
        crate::telemetry::record("subscription", &params.subscription);
        caller.authorize(Some(params.subscription.as_str()))?;
        self.context
            .store
            .get_subscription(&params.subscription)
            .await?;
        params.check_owner()?;
        let store = &self.context.store;
        let statuses = store.ack(&params.receipts, Timestamp::now()).await?;
        if statuses.len() != params.receipts.len() {
            error!(
                subscription = %params.subscription,
                receipts = params.receipts.len(),
                statuses = statuses.len(),
                "store answered a different number of ack statuses than receipts"
            );
            return Err(Status::internal("internal error"));
        }
        let acked = statuses.iter().filter(|s| **s == AckStatus::Ok).count();
        metrics::deliveries_acked(params.subscription.as_str(), acked as u64);
        Ok(Response::new(convert::ack_response(
            &params.receipts,
            statuses,
        )))
    }

    #[instrument(skip_all, fields(subscription = Empty, message_id = Empty))]
    async fn nack(
        &self,
        request: Request<proto::NackRequest>,
    ) -> Result<Response<proto::NackResponse>, Status> {
        let caller = Caller::of(&request)?;
        let params = convert::nack(request.into_inner())?;
        let receipt = self.lease_receipt(&caller, &params.target).await?;
        let store = &self.context.store;
        let reason = params.reason.as_deref();
        let plan = store
            .nack(receipt, params.delay, reason, Timestamp::now())
            .await?;
        metrics::delivery_nacked(receipt.subscription.as_str());
        // Counted once: a repeat of this Nack changes nothing and answers no plan.
        if plan == Some(RedeliveryPlan::Dead) {
            metrics::delivery_dead(receipt.subscription.as_str(), metrics::DeadReason::Nacked);
            debug!(%receipt, "nacked on the last attempt: delivery is DEAD until redriven");
        }
        Ok(Response::new(proto::NackResponse {}))
    }

    #[instrument(skip_all, fields(subscription = Empty, message_id = Empty))]
    async fn extend_lease(
        &self,
        request: Request<proto::ExtendLeaseRequest>,
    ) -> Result<Response<proto::ExtendLeaseResponse>, Status> {
        let caller = Caller::of(&request)?;
        let params = convert::extend_lease(request.into_inner())?;
        let receipt = self.lease_receipt(&caller, &params.target).await?;
        let store = &self.context.store;
        let lease_expires_at = store
            .extend_lease(receipt, params.extension, Timestamp::now())
            .await?;
        Ok(Response::new(convert::extend_lease_response(
            lease_expires_at,
        )))
    }

    #[instrument(skip_all, fields(subscription = Empty, message_id = Empty))]
    async fn reject(
        &self,
        request: Request<proto::RejectRequest>,
    ) -> Result<Response<proto::RejectResponse>, Status> {
        let caller = Caller::of(&request)?;
        let params = convert::reject(request.into_inner())?;
        let receipt = self.lease_receipt(&caller, &params.target).await?;
        let store = &self.context.store;
        store
            .reject(receipt, &params.reason, Timestamp::now())
            .await?;
        metrics::delivery_dead(receipt.subscription.as_str(), metrics::DeadReason::Rejected);
        debug!(%receipt, "rejected");
        Ok(Response::new(proto::RejectResponse {}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeout_of(value: &str) -> Option<Duration> {
        let mut metadata = MetadataMap::new();
        metadata.insert("grpc-timeout", value.parse().unwrap());
        client_timeout(&metadata)
    }

    #[test]
    fn reads_grpc_timeouts() {
        assert_eq!(timeout_of("5S"), Some(Duration::from_secs(5)));
        assert_eq!(timeout_of("250m"), Some(Duration::from_millis(250)));
        assert_eq!(timeout_of("2M"), Some(Duration::from_secs(120)));
        assert_eq!(timeout_of("x"), None);
        assert_eq!(timeout_of("10q"), None);
        assert_eq!(client_timeout(&MetadataMap::new()), None);
    }
}
