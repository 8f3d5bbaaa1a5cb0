//! How Courier calls out (`callbacks`): TLS to `https://` endpoints, the signing key, the
//! hosts that may be called.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// How Courier calls Checkers and Receivers: TLS for `https://` endpoints, the key that signs
/// the JWT every call carries, and which hosts may be called at all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CallbacksConfig {
    /// PEM file of CA certificates trusted beside the system roots for `https://` endpoints.
    pub ca_file: Option<PathBuf>,
    /// PEM certificate (chain) Courier presents to endpoints that ask for one (mutual TLS).
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key of `client_cert_file`.
    pub client_key_file: Option<PathBuf>,
    /// PEM PKCS#8 Ed25519 key that signs callback JWTs, re-read on SIGHUP. Unset: a key
    /// generated once and shared by every replica through the database.
    pub signing_key_file: Option<PathBuf>,
    /// Host globs (`*` matches any run of characters) that checker and push endpoints may
    /// name; the default `["*"]` allows any host.
    pub allowed_hosts: Vec<String>,
}

impl Default for CallbacksConfig {
    fn default() -> Self {
        Self {
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
            signing_key_file: None,
            allowed_hosts: vec!["*".into()],
        }
    }
}

impl CallbacksConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.client_cert_file.is_some() != self.client_key_file.is_some() {
            return Err(ConfigError::Invalid {
                key: "callbacks.client_cert_file",
                problem: "callbacks.client_cert_file and callbacks.client_key_file go together"
                    .into(),
            });
        }
        for pattern in &self.allowed_hosts {
            crate::callbacks::HostPattern::parse(pattern).map_err(|problem| {
                ConfigError::Invalid {
                    key: "callbacks.allowed_hosts",
                    problem,
                }
            })?;
        }
        Ok(())
    }
}
