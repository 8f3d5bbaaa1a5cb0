//! The server's rustls configuration from `tls.cert_file`, `tls.key_file` and
//! `tls.client_ca_file`: HTTP/2 over TLS 1.2 or 1.3 (ring, the provider sqlx also uses),
//! client certificates required when a client CA is given.

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};

use crate::config::TlsConfig;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{key} {path}: {problem}")]
    File {
        key: &'static str,
        path: String,
        problem: String,
    },
    /// rustls's words are the message (the reload log shows only the message), not a source.
    #[error("tls: {0}")]
    Rustls(rustls::Error),
    #[error("tls.client_ca_file: {0}")]
    ClientVerifier(String),
    #[error("tls.cert_file and tls.key_file are both needed")]
    Incomplete,
}

impl From<rustls::Error> for TlsError {
    fn from(error: rustls::Error) -> Self {
        Self::Rustls(error)
    }
}

fn file_error(key: &'static str, path: &Path, problem: impl ToString) -> TlsError {
    TlsError::File {
        key,
        path: path.display().to_string(),
        problem: problem.to_string(),
    }
}

/// Reads the files named by `config` (which must have `cert_file` and `key_file`).
pub fn server_config(config: &TlsConfig) -> Result<Arc<ServerConfig>, TlsError> {
    let (Some(cert_file), Some(key_file)) = (&config.cert_file, &config.key_file) else {
        return Err(TlsError::Incomplete);
    };
    let chain = certificates("tls.cert_file", cert_file)?;
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| file_error("tls.key_file", key_file, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match &config.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca_file) => {
            let mut roots = RootCertStore::empty();
            for certificate in certificates("tls.client_ca_file", ca_file)? {
                roots
                    .add(certificate)
                    .map_err(|e| file_error("tls.client_ca_file", ca_file, e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::ClientVerifier(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut server = builder.with_single_cert(chain, key).map_err(|e| {
        file_error(
            "tls.key_file",
            key_file,
            format!("does not fit tls.cert_file: {e}"),
        )
    })?;
    // gRPC is HTTP/2 only.
    server.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(server))
}

fn certificates(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(key, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(key, path, e))?;
    if certificates.is_empty() {
        return Err(file_error(key, path, "holds no PEM certificate"));
    }
    Ok(certificates)
}
