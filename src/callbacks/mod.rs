//! Outbound calls to the services users run: producers' Checkers and push subscriptions'
//! Receivers. One cached channel per endpoint URL (a tonic channel reconnects by itself, so a
//! receiver that restarts is reached again without any bookkeeping here), and a deadline on
//! every call. Proto types stop here: callers pass and get store and domain values.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use tonic::Request;
use tonic::transport::{Channel, Endpoint};

use crate::api::convert;
use crate::domain::{Decision, DueCheck, LeasedDelivery};
use crate::metrics::code_name;
use crate::proto::checker_client::CheckerClient;
use crate::proto::receiver_client::ReceiverClient;
use crate::proto::{self, CheckRequest};

/// How long opening a connection may take; the call's own deadline bounds it too.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What a Checker answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckAnswer {
    Decided(Decision),
    /// DECISION_UNKNOWN: the producer cannot tell yet.
    Unknown,
    /// DECISION_UNSPECIFIED (or a value this build does not know): no decision either.
    Unspecified,
}

/// Why a call brought no answer.
#[derive(Debug)]
pub enum CallError {
    /// The endpoint is not a URL tonic can connect to.
    BadEndpoint(String),
    /// No answer within the deadline.
    Timeout(Duration),
    /// The call ended with an error status: the service's own, or UNAVAILABLE when the endpoint
    /// cannot be reached.
    Status(tonic::Status),
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadEndpoint(reason) => write!(f, "the endpoint is not a usable URL: {reason}"),
            Self::Timeout(timeout) => write!(
                f,
                "no answer within {}",
                humantime::format_duration(*timeout)
            ),
            Self::Status(status) => {
                write!(f, "{}", code_name(status.code()))?;
                if !status.message().is_empty() {
                    write!(f, ": {}", status.message())?;
                }
                // Transport failures say "transport error"; the cause says what happened.
                let mut source = std::error::Error::source(status);
                while let Some(cause) = source {
                    write!(f, ": {cause}")?;
                    source = cause.source();
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for CallError {}

/// Clients for every endpoint Courier calls, sharing one channel per URL.
#[derive(Default)]
pub struct Callbacks {
    channels: Mutex<HashMap<String, Channel>>,
}

impl Callbacks {
    pub fn new() -> Self {
        Self::default()
    }

    /// The cached channel to `endpoint`, created lazily: it connects on the first call and
    /// reconnects by itself after the endpoint goes away and comes back.
    fn channel(&self, endpoint: &str) -> Result<Channel, CallError> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(channel) = channels.get(endpoint) {
            return Ok(channel.clone());
        }
        let channel = Endpoint::from_shared(endpoint.to_owned())
            .map_err(|e| CallError::BadEndpoint(e.to_string()))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .connect_lazy();
        channels.insert(endpoint.to_owned(), channel.clone());
        Ok(channel)
    }

    /// Asks the producer's Checker at `endpoint` about a prepared message.
    pub async fn check(
        &self,
        endpoint: &str,
        due: &DueCheck,
        timeout: Duration,
    ) -> Result<CheckAnswer, CallError> {
        let mut client = CheckerClient::new(self.channel(endpoint)?);
        let response = within(timeout, client.check(deadline(check_request(due), timeout))).await?;
        Ok(match response.into_inner().decision() {
            proto::Decision::Commit => CheckAnswer::Decided(Decision::Commit),
            proto::Decision::Rollback => CheckAnswer::Decided(Decision::Rollback),
            proto::Decision::Unknown => CheckAnswer::Unknown,
            proto::Decision::Unspecified => CheckAnswer::Unspecified,
        })
    }

    /// Pushes one delivery to the Receiver at `endpoint`; `Ok` means the receiver acknowledged it.
    pub async fn deliver(
        &self,
        endpoint: &str,
        delivery: LeasedDelivery,
        timeout: Duration,
    ) -> Result<(), CallError> {
        let mut client = ReceiverClient::new(self.channel(endpoint)?);
        let request = deadline(convert::delivery(delivery), timeout);
        within(timeout, client.deliver(request)).await.map(|_| ())
    }
}

/// Tells the server the deadline (`grpc-timeout`), so it can give up in time too.
fn deadline<T>(message: T, timeout: Duration) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(timeout);
    request
}

/// Bounds the call on this side as well: a server that ignores `grpc-timeout`, or a connection
/// that hangs, must not hold a check or a push slot past its deadline.
async fn within<T>(
    timeout: Duration,
    call: impl Future<Output = Result<T, tonic::Status>>,
) -> Result<T, CallError> {
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(status)) if is_timeout(&status) => Err(CallError::Timeout(timeout)),
        Ok(Err(status)) => Err(CallError::Status(status)),
        Err(_) => Err(CallError::Timeout(timeout)),
    }
}

/// Whether the call ended at its deadline: the server's DEADLINE_EXCEEDED, or tonic's own
/// client-side `grpc-timeout` enforcement (CANCELLED with a `TimeoutExpired` cause).
fn is_timeout(status: &tonic::Status) -> bool {
    if status.code() == tonic::Code::DeadlineExceeded {
        return true;
    }
    let mut source = std::error::Error::source(status);
    while let Some(cause) = source {
        if cause.is::<tonic::TimeoutExpired>() {
            return true;
        }
        source = cause.source();
    }
    false
}

fn check_request(due: &DueCheck) -> CheckRequest {
    CheckRequest {
        message_id: due.message_id.to_string(),
        producer: due.producer.to_string(),
        topic: due.topic.to_string(),
        key: due.key.as_str().to_owned(),
        headers: due.headers.clone().into_iter().collect(),
        prepared_at: Some(convert::timestamp(due.prepared_at)),
        check_attempt: due.attempt,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_print_as_grpc_names_and_plain_durations() {
        let error = CallError::Status(tonic::Status::internal("boom"));
        assert_eq!(error.to_string(), "INTERNAL: boom");
        let error = CallError::Timeout(Duration::from_millis(1500));
        assert_eq!(error.to_string(), "no answer within 1s 500ms");
    }

    #[test]
    fn bad_endpoints_fail_without_a_call() {
        let callbacks = Callbacks::new();
        assert!(matches!(
            callbacks.channel("not a url"),
            Err(CallError::BadEndpoint(_))
        ));
    }

    #[tokio::test]
    async fn channels_are_cached_per_endpoint() {
        let callbacks = Callbacks::new();
        callbacks.channel("http://127.0.0.1:1").unwrap();
        callbacks.channel("http://127.0.0.1:1").unwrap();
        callbacks.channel("http://127.0.0.1:2").unwrap();
        assert_eq!(callbacks.channels.lock().unwrap().len(), 2);
    }
}
