//! The `tls.*` and `auth.*` keys: how the gRPC port is protected, and the rule that an open
//! (unauthenticated) Courier listens on loopback only.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// Transport security of the gRPC listener. Unset: plaintext HTTP/2.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain the server presents; with `key_file`, gRPC is served over TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file` (PKCS#8, PKCS#1 or SEC1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// PEM CA certificates; when set, every client must present a certificate they issued.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ca_file: Option<PathBuf>,
}

impl TlsConfig {
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some()
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) => invalid("tls.key_file", "is needed with tls.cert_file"),
            (None, Some(_)) => invalid("tls.cert_file", "is needed with tls.key_file"),
            (None, None) if self.client_ca_file.is_some() => invalid(
                "tls.client_ca_file",
                "needs tls.cert_file and tls.key_file (client certificates are checked inside TLS)",
            ),
            _ => Ok(()),
        }
    }
}

/// Who may call Courier. With neither `tokens_file` nor `jwks_file`, every call is allowed,
/// and only on a loopback `listen` unless `allow_unauthenticated` says otherwise.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// TOML file of `[[tokens]]` (name, sha256 of the token, scopes). Re-read on SIGHUP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_file: Option<PathBuf>,
    /// JWKS JSON file of the keys (RS256, ES256, EdDSA) that sign accepted JWTs. Re-read on
    /// SIGHUP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks_file: Option<PathBuf>,
    /// The `iss` every accepted JWT must carry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_issuer: Option<String>,
    /// The `aud` every accepted JWT must carry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_audience: Option<String>,
    /// Serve without authentication on a non-loopback `listen`: anyone who reaches the port
    /// may do anything.
    pub allow_unauthenticated: bool,
}

impl AuthConfig {
    /// Whether callers must authenticate.
    pub fn enabled(&self) -> bool {
        self.tokens_file.is_some() || self.jwks_file.is_some()
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.jwks_file.is_some() {
            // Without both, a token minted by the same identity provider for another service
            // would be accepted here.
            if self.jwt_issuer.as_deref().is_none_or(str::is_empty) {
                return invalid("auth.jwt_issuer", "is needed with auth.jwks_file");
            }
            if self.jwt_audience.as_deref().is_none_or(str::is_empty) {
                return invalid("auth.jwt_audience", "is needed with auth.jwks_file");
            }
        } else if self.jwt_issuer.is_some() || self.jwt_audience.is_some() {
            return invalid(
                "auth.jwks_file",
                "is needed with auth.jwt_issuer and auth.jwt_audience",
            );
        }
        Ok(())
    }

    /// Refuses an open server on an address other machines can reach, unless the operator
    /// said so (`allow_unauthenticated`).
    pub fn check_exposure(&self, listen: SocketAddr) -> Result<(), ConfigError> {
        if self.enabled() || self.allow_unauthenticated || listen.ip().is_loopback() {
            return Ok(());
        }
        invalid(
            "auth.tokens_file",
            format!(
                "listen {listen} is not a loopback address, and without auth.tokens_file (or \
                 auth.jwks_file) anyone who reaches it could publish, consume and administer \
                 everything; set auth.tokens_file, or auth.allow_unauthenticated = true to \
                 serve without authentication anyway"
            ),
        )
    }
}

fn invalid(key: &'static str, problem: impl Into<String>) -> Result<(), ConfigError> {
    Err(ConfigError::Invalid {
        key,
        problem: problem.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn an_open_server_listens_on_loopback_only() {
        let open = AuthConfig::default();
        open.check_exposure(addr("127.0.0.1:50051")).unwrap();
        open.check_exposure(addr("[::1]:50051")).unwrap();
        for listen in ["0.0.0.0:50051", "[::]:50051", "10.1.2.3:50051"] {
            let error = open.check_exposure(addr(listen)).unwrap_err();
            assert!(error.to_string().contains("auth.tokens_file"), "{error}");
        }
        let allowed = AuthConfig {
            allow_unauthenticated: true,
            ..AuthConfig::default()
        };
        allowed.check_exposure(addr("0.0.0.0:50051")).unwrap();
        let tokens = AuthConfig {
            tokens_file: Some("tokens.toml".into()),
            ..AuthConfig::default()
        };
        tokens.check_exposure(addr("0.0.0.0:50051")).unwrap();
    }

    #[test]
    fn jwts_need_an_issuer_and_an_audience() {
        let mut auth = AuthConfig {
            jwks_file: Some("jwks.json".into()),
            ..AuthConfig::default()
        };
        let error = auth.validate().unwrap_err();
        assert!(error.to_string().contains("auth.jwt_issuer"), "{error}");
        auth.jwt_issuer = Some("https://id.example".into());
        let error = auth.validate().unwrap_err();
        assert!(error.to_string().contains("auth.jwt_audience"), "{error}");
        auth.jwt_audience = Some("courier".into());
        auth.validate().unwrap();
    }

    #[test]
    fn tls_needs_both_files() {
        let tls = TlsConfig {
            cert_file: Some("cert.pem".into()),
            ..TlsConfig::default()
        };
        let error = tls.validate().unwrap_err();
        assert!(error.to_string().contains("tls.key_file"), "{error}");
        let mtls_without_tls = TlsConfig {
            client_ca_file: Some("ca.pem".into()),
            ..TlsConfig::default()
        };
        let error = mtls_without_tls.validate().unwrap_err();
        assert!(error.to_string().contains("tls.client_ca_file"), "{error}");
    }
}
