//! Keeps a delivery's lease alive while its handler runs: ExtendLease at half the lease, by
//! the lease's original length, until the handler ends or the lease is lost.

use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;
use tonic::Code;
use tracing::{debug, warn};

use crate::connection::CourierChannel;
use crate::proto::consumer_client::ConsumerClient;
use crate::proto::{self, Delivery, ExtendLeaseRequest};

/// The lease length assumed when a delivery does not say when its lease ends.
const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// ExtendLease takes 1 s at least.
const MIN_EXTENSION: Duration = Duration::from_secs(1);
/// After a failed ExtendLease that may work again (Courier unreachable), try again this soon.
const RETRY_AFTER: Duration = Duration::from_millis(500);

/// How long the lease of `delivery` lasts from now.
pub fn remaining(delivery: &Delivery) -> Duration {
    let Some(expires) = &delivery.lease_expires_at else {
        return DEFAULT_LEASE;
    };
    let expires = SystemTime::UNIX_EPOCH
        + Duration::from_secs(u64::try_from(expires.seconds).unwrap_or(0))
        + Duration::from_nanos(u64::try_from(expires.nanos).unwrap_or(0));
    expires
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO)
}

/// Extends the lease of `receipt` until `done` is cancelled.
pub async fn keep_alive(
    mut client: ConsumerClient<CourierChannel>,
    subscription: String,
    receipt: String,
    lease: Duration,
    done: CancellationToken,
) {
    let extension = lease.max(MIN_EXTENSION);
    let mut next = lease / 2;
    loop {
        tokio::select! {
            () = done.cancelled() => return,
            () = tokio::time::sleep(next) => {}
        }
        let request = ExtendLeaseRequest {
            subscription: subscription.clone(),
            receipt: receipt.clone(),
            extension: Some(proto::duration(extension)),
        };
        match client.extend_lease(request).await {
            Ok(_) => {
                debug!(%receipt, ?extension, "lease extended");
                next = extension / 2;
            }
            Err(status) if matches!(status.code(), Code::FailedPrecondition | Code::NotFound) => {
                warn!(%receipt, error = status.message(), "lease lost while the handler runs; the delivery may be processed twice");
                return;
            }
            Err(status) => {
                warn!(%receipt, error = status.message(), "cannot extend the lease; trying again");
                next = RETRY_AFTER;
            }
        }
    }
}
