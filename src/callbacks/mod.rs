//! Outbound calls to the services users run: producers' Checkers and push subscriptions'
//! Receivers. One cached channel per endpoint URL (a tonic channel reconnects by itself, so a
//! receiver that restarts is reached again without any bookkeeping here), TLS for `https://`
//! endpoints, a JWT signed by Courier on every call, only hosts in `callbacks.allowed_hosts`,
//! a deadline on every call, and the message's trace context (`traceparent`, `tracestate`),
//! naming the calling span as parent when spans are exported. Proto types stop here: callers
//! pass and get store and domain values.

mod hosts;
pub mod keys;
pub mod signer;
mod tls;
pub mod token;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tonic::Request;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

pub use hosts::{AllowedHosts, HostPattern};
pub use keys::{Keyring, SigningKey};

use crate::config::CallbacksConfig;
use crate::convert;
use crate::domain::{Decision, DueCheck, LeasedDelivery, TraceContext};
use crate::metrics::code_name;
use crate::proto::checker_client::CheckerClient;
use crate::proto::receiver_client::ReceiverClient;
use crate::proto::{self, CheckRequest};
use crate::store::StoreError;
use crate::telemetry::context;

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

/// Why callbacks cannot be set up; the server does not start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("configuration key `{key}`: {path}: {problem}")]
    File {
        key: &'static str,
        path: String,
        problem: String,
    },
    #[error("callbacks TLS settings: {0}")]
    Tls(String),
    #[error("the callback signing key stored in the database is not usable")]
    StoredKey(#[source] keys::KeyError),
    #[error("cannot read or store the shared callback signing key")]
    Store(#[from] StoreError),
}

/// Why a call brought no answer.
#[derive(Debug)]
pub enum CallError {
    /// The endpoint is not a URL tonic can connect to.
    BadEndpoint(String),
    /// The endpoint's host is outside `callbacks.allowed_hosts`; it is not called.
    NotAllowed(String),
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
            Self::NotAllowed(reason) => write!(f, "not called: {reason}"),
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
pub struct Callbacks {
    channels: Mutex<HashMap<String, Channel>>,
    tls: ClientTlsConfig,
    keyring: Arc<Keyring>,
    allowed_hosts: AllowedHosts,
}

impl Callbacks {
    /// Reads and checks the TLS files of `config`; calls are signed with `keyring`'s key.
    pub fn new(config: &CallbacksConfig, keyring: Arc<Keyring>) -> Result<Self, SetupError> {
        Ok(Self {
            channels: Mutex::default(),
            tls: tls::client_tls(config)?,
            keyring,
            allowed_hosts: AllowedHosts::new(&config.allowed_hosts),
        })
    }

    /// The cached channel to `endpoint`, created lazily: it connects on the first call and
    /// reconnects by itself after the endpoint goes away and comes back.
    fn channel(&self, endpoint: &str) -> Result<Channel, CallError> {
        if !self.allowed_hosts.permits(endpoint) {
            return Err(CallError::NotAllowed(self.allowed_hosts.refusal(endpoint)));
        }
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(channel) = channels.get(endpoint) {
            return Ok(channel.clone());
        }
        let mut builder = Endpoint::from_shared(endpoint.to_owned())
            .map_err(|e| CallError::BadEndpoint(e.to_string()))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true);
        if endpoint.starts_with("https://") {
            builder = builder
                .tls_config(self.tls.clone())
                .map_err(|e| CallError::BadEndpoint(e.to_string()))?;
        }
        let channel = builder.connect_lazy();
        channels.insert(endpoint.to_owned(), channel.clone());
        Ok(channel)
    }

    /// A request for `endpoint` with its deadline, a token naming the call and the trace
    /// context it carries on.
    fn request<T>(
        &self,
        message: T,
        timeout: Duration,
        endpoint: &str,
        subject: &str,
        message_id: &str,
        trace: Option<&TraceContext>,
    ) -> Request<T> {
        let mut request = deadline(message, timeout);
        if let Some(trace) = trace {
            context::inject(request.metadata_mut(), trace);
        }
        let claims = token::CallClaims {
            audience: endpoint,
            subject,
            message_id,
        };
        let jwt = token::sign(&self.keyring.current(), claims, SystemTime::now());
        let value =
            MetadataValue::try_from(format!("Bearer {jwt}")).expect("a JWT is printable ASCII");
        request.metadata_mut().insert("authorization", value);
        request
    }

    /// Asks the producer's Checker at `endpoint` about a prepared message.
    pub async fn check(
        &self,
        endpoint: &str,
        due: &DueCheck,
        timeout: Duration,
    ) -> Result<CheckAnswer, CallError> {
        let mut client = CheckerClient::new(self.channel(endpoint)?);
        let trace = context::outgoing(due.trace.as_ref());
        let request = self.request(
            check_request(due),
            timeout,
            endpoint,
            due.producer.as_str(),
            &due.message_id.to_string(),
            trace.as_ref(),
        );
        let response = within(timeout, client.check(request)).await?;
        Ok(match response.into_inner().decision() {
            proto::Decision::Commit => CheckAnswer::Decided(Decision::Commit),
            proto::Decision::Rollback => CheckAnswer::Decided(Decision::Rollback),
            proto::Decision::Unknown => CheckAnswer::Unknown,
            proto::Decision::Unspecified => CheckAnswer::Unspecified,
        })
    }

    /// Pushes one delivery to the Receiver at `endpoint`; `Ok` means the receiver acknowledged it.
    /// The delivery's trace fields carry the same context as the call's metadata.
    pub async fn deliver(
        &self,
        endpoint: &str,
        mut delivery: LeasedDelivery,
        timeout: Duration,
    ) -> Result<(), CallError> {
        let mut client = ReceiverClient::new(self.channel(endpoint)?);
        let message_id = delivery.receipt.message_id.to_string();
        let subscription = delivery.receipt.subscription.to_string();
        delivery.trace = context::outgoing(delivery.trace.as_ref());
        let trace = delivery.trace.clone();
        let request = self.request(
            convert::delivery(delivery),
            timeout,
            endpoint,
            &subscription,
            &message_id,
            trace.as_ref(),
        );
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
    let started = std::time::Instant::now();
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(answer)) => Ok(answer),
        // tonic's own `grpc-timeout` timer races this one and may win; its CANCELLED does not
        // always keep a `TimeoutExpired` cause, so an error at the deadline is the deadline.
        Ok(Err(status)) if is_timeout(&status) || started.elapsed() >= timeout => {
            Err(CallError::Timeout(timeout))
        }
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

    fn callbacks(allowed_hosts: &[&str]) -> Callbacks {
        let config = CallbacksConfig {
            allowed_hosts: allowed_hosts.iter().map(|h| h.to_string()).collect(),
            ..CallbacksConfig::default()
        };
        let key = SigningKey::from_pkcs8(&SigningKey::generate_pkcs8()).unwrap();
        Callbacks::new(&config, Arc::new(Keyring::new(key))).unwrap()
    }

    #[test]
    fn bad_endpoints_fail_without_a_call() {
        assert!(matches!(
            callbacks(&["*"]).channel("not a url"),
            Err(CallError::NotAllowed(_))
        ));
        assert!(matches!(
            callbacks(&["*"]).channel("http://[::1"),
            Err(CallError::NotAllowed(_))
        ));
    }

    #[tokio::test]
    async fn hosts_outside_the_allowed_list_are_not_called() {
        let callbacks = callbacks(&["*.internal"]);
        callbacks.channel("http://checker.internal:7001").unwrap();
        let error = callbacks.channel("http://169.254.169.254").unwrap_err();
        assert_eq!(
            error.to_string(),
            "not called: host \"169.254.169.254\" is not in the server's callbacks.allowed_hosts"
        );
    }

    #[tokio::test]
    async fn channels_are_cached_per_endpoint() {
        let callbacks = callbacks(&["*"]);
        callbacks.channel("http://127.0.0.1:1").unwrap();
        callbacks.channel("http://127.0.0.1:1").unwrap();
        callbacks.channel("https://127.0.0.1:2").unwrap();
        assert_eq!(callbacks.channels.lock().unwrap().len(), 2);
    }
}
