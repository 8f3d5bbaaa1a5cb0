//! How the client reaches Courier: an `http://` or `https://` address (a bare `host:port` is
//! `http://`), the CA to trust for `https://` (the system's roots otherwise), and a bearer
//! token sent with every call. Every call also carries the caller's OpenTelemetry context.

use std::path::PathBuf;

use courier_coalesce::{ClientChannel, DirectChannel};
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
use tonic::{Request, Status};

use crate::trace;

/// A channel to Courier whose every call carries the token and the trace context.
pub type CourierChannel = InterceptedService<ClientChannel, CallMetadata>;

/// Where Courier is and how to talk to it.
#[derive(Debug, Clone)]
pub struct Connection {
    address: String,
    ca_file: Option<PathBuf>,
    token: Option<String>,
}

/// A problem with the address, the CA file or the token, found before any call.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConnectionError(String);

impl Connection {
    /// Courier at `address`: `https://courier:7000`, `http://127.0.0.1:50051`, or
    /// `127.0.0.1:50051` (plain HTTP/2).
    pub fn new(address: impl Into<String>) -> Self {
        Self {
            address: address.into(),
            ca_file: None,
            token: None,
        }
    }

    /// Trusts the PEM CA certificate(s) in `file` for an `https://` address, instead of the
    /// system's roots.
    pub fn ca_file(mut self, file: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(file.into());
        self
    }

    /// Sends `authorization: Bearer <token>` with every call.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// A channel that connects on its first call (and reconnects as needed).
    /// Needs a Tokio runtime.
    pub fn connect_lazy(&self) -> Result<CourierChannel, ConnectionError> {
        let metadata = self.metadata()?;
        let endpoint = self.endpoint()?;
        let channel = if self.is_tls() {
            ClientChannel::Tls(endpoint.connect_lazy())
        } else {
            let channel = DirectChannel::lazy(endpoint.uri())
                .map_err(|e| ConnectionError(format!("{:?} is not an address: {e}", self.uri())))?;
            ClientChannel::Plain(channel)
        };
        Ok(InterceptedService::new(channel, metadata))
    }

    /// A channel, connected now: an unreachable server is an error here rather than on the
    /// first call.
    pub async fn connect(&self) -> Result<CourierChannel, ConnectionError> {
        let metadata = self.metadata()?;
        let endpoint = self.endpoint()?;
        let channel = if self.is_tls() {
            let channel = endpoint
                .connect()
                .await
                .map_err(|e| ConnectionError(format!("cannot connect to {}: {e}", self.uri())))?;
            ClientChannel::Tls(channel)
        } else {
            // Its error names the address.
            let channel = DirectChannel::connect(endpoint.uri())
                .await
                .map_err(|e| ConnectionError(e.to_string()))?;
            ClientChannel::Plain(channel)
        };
        Ok(InterceptedService::new(channel, metadata))
    }

    /// Whether the address is `https://`. Over plain HTTP/2 the channel is a
    /// [`DirectChannel`]: each call goes onto the connection from the caller's task, and the
    /// requests of calls made together (a producer's concurrent sends) leave in one write, as
    /// Courier's answers do. Over TLS, tonic's own channel.
    fn is_tls(&self) -> bool {
        self.uri().starts_with("https://")
    }

    fn uri(&self) -> String {
        let address = self.address.trim();
        if address.contains("://") {
            address.to_owned()
        } else {
            format!("http://{address}")
        }
    }

    fn endpoint(&self) -> Result<Endpoint, ConnectionError> {
        let uri = self.uri();
        let endpoint = Endpoint::from_shared(uri.clone())
            .map_err(|e| ConnectionError(format!("{uri:?} is not an address: {e}")))?;
        if !self.is_tls() {
            if self.ca_file.is_some() {
                return Err(ConnectionError(format!(
                    "a CA file needs an https:// address, not {uri}"
                )));
            }
            return Ok(endpoint);
        }
        let tls = match &self.ca_file {
            Some(file) => {
                let pem = std::fs::read(file).map_err(|e| {
                    ConnectionError(format!("cannot read the CA file {}: {e}", file.display()))
                })?;
                ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem))
            }
            None => ClientTlsConfig::new().with_native_roots(),
        };
        endpoint
            .tls_config(tls)
            .map_err(|e| ConnectionError(format!("cannot set up TLS: {e}")))
    }

    fn metadata(&self) -> Result<CallMetadata, ConnectionError> {
        let token = match &self.token {
            None => None,
            Some(token) => {
                let mut value: AsciiMetadataValue =
                    MetadataValue::try_from(format!("Bearer {}", token.trim())).map_err(|_| {
                        ConnectionError("the token holds characters a header cannot carry".into())
                    })?;
                value.set_sensitive(true);
                Some(value)
            }
        };
        Ok(CallMetadata { token })
    }
}

/// Adds the bearer token (when there is one) and the current OpenTelemetry context
/// (`traceparent`, `tracestate`) to each call.
#[derive(Clone)]
pub struct CallMetadata {
    token: Option<AsciiMetadataValue>,
}

impl Interceptor for CallMetadata {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(token) = &self.token {
            request
                .metadata_mut()
                .insert("authorization", token.clone());
        }
        trace::inject_current(request.metadata_mut());
        Ok(request)
    }
}

impl std::fmt::Debug for CallMetadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CallMetadata(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_address_is_plain_http_and_a_ca_file_needs_https() {
        assert_eq!(Connection::new("127.0.0.1:1").uri(), "http://127.0.0.1:1");
        let error = Connection::new("127.0.0.1:1")
            .ca_file("ca.pem")
            .connect_lazy()
            .unwrap_err();
        assert!(error.to_string().contains("https://"), "{error}");
    }

    #[test]
    fn every_call_carries_the_token_and_the_current_trace_context() {
        use opentelemetry::trace::TraceContextExt as _;

        let connection = Connection::new("127.0.0.1:1").token("s3cret");
        let mut metadata = connection.metadata().unwrap();
        let untraced = metadata.call(Request::new(())).unwrap();
        assert_eq!(
            untraced.metadata().get("authorization").unwrap(),
            "Bearer s3cret"
        );
        assert!(untraced.metadata().get(trace::TRACEPARENT).is_none());

        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let remote = trace::parse(parent, "vendor=1").unwrap();
        let _attached = opentelemetry::Context::new()
            .with_remote_span_context(remote)
            .attach();
        let traced = metadata.call(Request::new(())).unwrap();
        assert_eq!(traced.metadata().get(trace::TRACEPARENT).unwrap(), parent);
        assert_eq!(
            traced.metadata().get(trace::TRACESTATE).unwrap(),
            "vendor=1"
        );
    }

    #[test]
    fn a_token_that_cannot_be_a_header_is_refused() {
        let error = Connection::new("127.0.0.1:1")
            .token("line\nbreak")
            .connect_lazy()
            .unwrap_err();
        assert!(error.to_string().contains("token"), "{error}");
    }
}
