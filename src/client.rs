//! How Courier's own tools (the operator commands and `courier bench`) connect to a server:
//! `http://` or `https://` addresses (a bare `host:port` is `http://`), the CA to trust for
//! `https://` (the system's roots otherwise), an optional client certificate for mutual TLS,
//! and a bearer token sent with every call.

use std::path::PathBuf;

use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Request, Status};

/// What a tool needs besides the address.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// Sent as `authorization: Bearer <token>`.
    pub token: Option<String>,
    /// PEM CA certificate(s) to trust for `https://`, instead of the system's roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate and key, for a server that requires client certificates.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

/// A channel whose every call carries the token.
pub type AuthChannel<T = Channel> = InterceptedService<T, BearerToken>;

/// A usage problem with the address, token or files, in the words of the flags.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ClientError(pub String);

/// `host:port` becomes `http://host:port`; a URL is kept as it is.
pub fn endpoint_uri(addr: &str) -> String {
    let addr = addr.trim();
    if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    }
}

/// The endpoint for `addr`, with TLS set up for an `https://` address.
pub fn endpoint(addr: &str, options: &ClientOptions) -> Result<Endpoint, ClientError> {
    let uri = endpoint_uri(addr);
    let endpoint = Endpoint::from_shared(uri.clone())
        .map_err(|e| ClientError(format!("--addr {addr:?} is not an address: {e}")))?;
    if !uri.starts_with("https://") {
        if options.ca_file.is_some() || options.client_cert.is_some() {
            return Err(ClientError(format!(
                "--ca-file and --client-cert need an https:// address, not {uri}"
            )));
        }
        return Ok(endpoint);
    }
    endpoint
        .tls_config(tls_config(options)?)
        .map_err(|e| ClientError(format!("cannot set up TLS: {e}")))
}

fn tls_config(options: &ClientOptions) -> Result<ClientTlsConfig, ClientError> {
    let mut tls = ClientTlsConfig::new();
    tls = match &options.ca_file {
        Some(file) => tls.ca_certificate(Certificate::from_pem(read("--ca-file", file)?)),
        None => tls.with_native_roots(),
    };
    match (&options.client_cert, &options.client_key) {
        (Some(cert), Some(key)) => {
            tls = tls.identity(Identity::from_pem(
                read("--client-cert", cert)?,
                read("--client-key", key)?,
            ));
        }
        (None, None) => {}
        _ => {
            return Err(ClientError(
                "--client-cert and --client-key go together".into(),
            ));
        }
    }
    Ok(tls)
}

fn read(flag: &str, file: &std::path::Path) -> Result<Vec<u8>, ClientError> {
    std::fs::read(file).map_err(|e| ClientError(format!("{flag} {}: {e}", file.display())))
}

/// Wraps `channel` so every call carries `options.token`.
pub fn with_token<T>(channel: T, options: &ClientOptions) -> Result<AuthChannel<T>, ClientError> {
    let header = match &options.token {
        None => None,
        Some(token) => {
            let mut value: AsciiMetadataValue =
                MetadataValue::try_from(format!("Bearer {}", token.trim())).map_err(|_| {
                    ClientError("--token holds characters a header cannot carry".into())
                })?;
            value.set_sensitive(true);
            Some(value)
        }
    };
    Ok(InterceptedService::new(channel, BearerToken(header)))
}

/// Adds `authorization: Bearer <token>` to each call, when there is a token.
#[derive(Clone)]
pub struct BearerToken(Option<AsciiMetadataValue>);

impl Interceptor for BearerToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_addresses_become_http_urls() {
        assert_eq!(endpoint_uri("127.0.0.1:50051"), "http://127.0.0.1:50051");
        assert_eq!(endpoint_uri("https://courier:7000"), "https://courier:7000");
    }

    #[test]
    fn tls_files_need_an_https_address() {
        let options = ClientOptions {
            ca_file: Some("ca.pem".into()),
            ..ClientOptions::default()
        };
        let error = endpoint("127.0.0.1:50051", &options).unwrap_err();
        assert!(error.0.contains("https://"), "{error}");
    }
}
