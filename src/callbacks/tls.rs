//! TLS for `https://` checkers and receivers: the system's roots plus `callbacks.ca_file`, and
//! the client certificate of `callbacks.client_cert_file` / `client_key_file` for endpoints
//! that require one. Files are read and checked once at start, so a bad path or PEM fails the
//! start naming the key instead of every call.

use std::path::Path;

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use tracing::warn;

use crate::config::CallbacksConfig;

use super::SetupError;

/// The TLS settings every `https://` channel uses.
pub fn client_tls(config: &CallbacksConfig) -> Result<ClientTlsConfig, SetupError> {
    let mut tls = ClientTlsConfig::new();
    if let Some(path) = &config.ca_file {
        let pem = read("callbacks.ca_file", path)?;
        certificates("callbacks.ca_file", path, &pem)?;
        tls = tls.ca_certificate(Certificate::from_pem(pem));
    }
    if let (Some(cert_path), Some(key_path)) = (&config.client_cert_file, &config.client_key_file) {
        let cert = read("callbacks.client_cert_file", cert_path)?;
        certificates("callbacks.client_cert_file", cert_path, &cert)?;
        let key = read("callbacks.client_key_file", key_path)?;
        PrivateKeyDer::from_pem_slice(&key).map_err(|e| SetupError::File {
            key: "callbacks.client_key_file",
            path: key_path.display().to_string(),
            problem: format!("no PEM private key ({e})"),
        })?;
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    // tonic refuses native roots when the system has none (a minimal container): then only
    // callbacks.ca_file is trusted.
    let with_system_roots = tls.clone().with_native_roots();
    match probe(with_system_roots.clone()) {
        Ok(()) => Ok(with_system_roots),
        Err(error) => {
            warn!(%error, "no system CA certificates; https callbacks trust callbacks.ca_file only");
            probe(tls.clone()).map_err(|e| SetupError::Tls(e.to_string()))?;
            Ok(tls)
        }
    }
}

/// Builds a connector once, so a certificate and key that do not match fail at start.
fn probe(tls: ClientTlsConfig) -> Result<(), tonic::transport::Error> {
    Endpoint::from_static("https://localhost")
        .tls_config(tls)
        .map(|_| ())
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, SetupError> {
    std::fs::read(path).map_err(|e| SetupError::File {
        key,
        path: path.display().to_string(),
        problem: e.to_string(),
    })
}

fn certificates(key: &'static str, path: &Path, pem: &[u8]) -> Result<(), SetupError> {
    let found = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SetupError::File {
            key,
            path: path.display().to_string(),
            problem: format!("not PEM certificates ({e})"),
        })?;
    if found.is_empty() {
        return Err(SetupError::File {
            key,
            path: path.display().to_string(),
            problem: "holds no PEM certificate".into(),
        });
    }
    Ok(())
}
