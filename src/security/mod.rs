//! Who may connect and call: TLS on the gRPC port ([`tls`], [`incoming`]), and the credentials
//! a call carries ([`tokens`], [`jwt`]) turned into a [`Principal`]. The files are re-read on
//! SIGHUP ([`reload_on_signal`]); a file that fails to load is logged and the old one kept.
//! Applying scopes to RPCs is the transport's business (`api::auth`).

pub mod incoming;
pub mod jwt;
pub mod principal;
pub mod tls;
pub mod tokens;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use http::HeaderValue;
use tokio::sync::Notify;
use tokio_rustls::rustls::ServerConfig;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{AuthConfig, Config, TlsConfig};

pub use jwt::{JwtRejection, JwtVerifier};
pub use principal::{NamePattern, Principal, Scope};
pub use tokens::{TokenTable, token_sha256};

#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("auth.tokens_file")]
    Tokens(#[from] tokens::TokensError),
    #[error("auth.jwks_file")]
    Jwks(#[from] jwt::JwksError),
}

/// A value replaced whole on reload; readers take the current one cheaply.
#[derive(Debug)]
pub struct Swappable<T>(RwLock<Arc<T>>);

impl<T> Swappable<T> {
    pub fn new(value: Arc<T>) -> Self {
        Self(RwLock::new(value))
    }

    pub fn current(&self) -> Arc<T> {
        // A poisoned lock still holds a whole value: replace() never leaves half of one.
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn replace(&self, value: Arc<T>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = value;
    }
}

/// Who a call is from, once its credentials were checked.
#[derive(Debug, Clone)]
pub enum Authenticated {
    /// Authentication is off (no `auth.tokens_file` or `auth.jwks_file`): anyone may do
    /// anything.
    Anyone,
    Principal(Arc<Principal>),
}

/// Why a call's credentials were refused. The texts go to the caller; nothing about the
/// token is logged.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Rejection {
    #[error("missing credentials: send the header `authorization: Bearer <token>`")]
    Missing,
    #[error("the authorization header must be `Bearer <token>`")]
    NotBearer,
    #[error("unknown token")]
    UnknownToken,
    #[error("invalid JWT: {0}")]
    Jwt(#[from] JwtRejection),
}

/// Checks the credentials of calls against the tokens file and the JWKS in force.
#[derive(Debug)]
pub struct Authenticator {
    tokens: Option<(PathBuf, Swappable<TokenTable>)>,
    jwt: Option<JwtSource>,
}

#[derive(Debug)]
struct JwtSource {
    file: PathBuf,
    issuer: String,
    audience: String,
    verifier: Swappable<JwtVerifier>,
}

impl JwtSource {
    fn load(&self) -> Result<JwtVerifier, jwt::JwksError> {
        JwtVerifier::load(&self.file, &self.issuer, &self.audience)
    }
}

impl Authenticator {
    pub fn load(config: &AuthConfig) -> Result<Self, SecurityError> {
        let tokens = match &config.tokens_file {
            None => None,
            Some(file) => {
                let table = TokenTable::load(file)?;
                Some((file.clone(), Swappable::new(Arc::new(table))))
            }
        };
        let jwt = match &config.jwks_file {
            None => None,
            Some(file) => {
                let issuer = config.jwt_issuer.clone().unwrap_or_default();
                let audience = config.jwt_audience.clone().unwrap_or_default();
                let verifier = JwtVerifier::load(file, &issuer, &audience)?;
                Some(JwtSource {
                    file: file.clone(),
                    issuer,
                    audience,
                    verifier: Swappable::new(Arc::new(verifier)),
                })
            }
        };
        Ok(Self { tokens, jwt })
    }

    /// Whether calls must carry credentials.
    pub fn required(&self) -> bool {
        self.tokens.is_some() || self.jwt.is_some()
    }

    /// The caller named by an `authorization` header. A token with the shape of a JWT goes to
    /// the JWKS when one is configured; any other token is looked up in the tokens file.
    pub fn authenticate(
        &self,
        authorization: Option<&HeaderValue>,
    ) -> Result<Authenticated, Rejection> {
        if !self.required() {
            return Ok(Authenticated::Anyone);
        }
        let header = authorization.ok_or(Rejection::Missing)?;
        let token = bearer_token(header).ok_or(Rejection::NotBearer)?;
        if let Some(jwt) = &self.jwt
            && token.bytes().filter(|&b| b == b'.').count() == 2
        {
            let principal = jwt.verifier.current().verify(token)?;
            return Ok(Authenticated::Principal(Arc::new(principal)));
        }
        let (_, table) = self.tokens.as_ref().ok_or(Rejection::UnknownToken)?;
        table
            .current()
            .find(token)
            .map(Authenticated::Principal)
            .ok_or(Rejection::UnknownToken)
    }

    /// Re-reads the tokens file and the JWKS; each that fails keeps its old contents.
    fn reload(&self) {
        if let Some((file, table)) = &self.tokens {
            match TokenTable::load(file) {
                Ok(loaded) => {
                    info!(tokens = loaded.len(), file = %file.display(), "tokens file reloaded");
                    table.replace(Arc::new(loaded));
                }
                Err(error) => {
                    warn!(%error, "tokens file not reloaded; the previous tokens stay in force")
                }
            }
        }
        if let Some(jwt) = &self.jwt {
            match jwt.load() {
                Ok(loaded) => {
                    info!(file = %jwt.file.display(), "jwks reloaded");
                    jwt.verifier.replace(Arc::new(loaded));
                }
                Err(error) => warn!(%error, "jwks not reloaded; the previous keys stay in force"),
            }
        }
    }
}

/// `Bearer <token>`, the scheme in any letter case (RFC 6750).
fn bearer_token(header: &HeaderValue) -> Option<&str> {
    let text = header.to_str().ok()?;
    let (scheme, token) = text.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Everything the server's security reads from files, kept current by [`Security::reload`].
#[derive(Debug)]
pub struct Security {
    tls_files: TlsConfig,
    /// The rustls configuration new connections get; `None` serves plaintext.
    pub tls: Option<Arc<Swappable<ServerConfig>>>,
    pub auth: Arc<Authenticator>,
}

impl Security {
    /// Reads every file the configuration names; any failure stops the start.
    pub fn load(config: &Config) -> Result<Self, SecurityError> {
        let tls = match config.tls.enabled() {
            true => Some(Arc::new(Swappable::new(tls::server_config(&config.tls)?))),
            false => None,
        };
        Ok(Self {
            tls_files: config.tls.clone(),
            tls,
            auth: Arc::new(Authenticator::load(&config.auth)?),
        })
    }

    /// Whether there is any file to re-read.
    pub fn reloadable(&self) -> bool {
        self.tls.is_some() || self.auth.required()
    }

    /// Re-reads the certificate, key, client CA, tokens and JWKS files. New connections and
    /// calls use what loaded; open connections keep their session. A file that fails to load
    /// is logged and its old contents stay in force.
    pub fn reload(&self) {
        if let Some(current) = &self.tls {
            match tls::server_config(&self.tls_files) {
                Ok(loaded) => {
                    info!("tls certificate reloaded");
                    current.replace(loaded);
                }
                Err(error) => {
                    warn!(%error, "tls files not reloaded; the previous certificate stays in force")
                }
            }
        }
        self.auth.reload();
    }
}

/// Reloads `security` on every SIGHUP, and whenever `trigger` is notified (tests), until
/// `stop` is cancelled.
pub async fn reload_on_signal(
    security: Arc<Security>,
    trigger: Arc<Notify>,
    stop: CancellationToken,
) {
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(hangup) => Some(hangup),
        Err(error) => {
            warn!(%error, "cannot listen for SIGHUP; certificates and tokens will not reload");
            None
        }
    };
    loop {
        let hangup_received = async {
            match hangup.as_mut() {
                Some(hangup) => hangup.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = hangup_received => info!("SIGHUP: reloading certificates and credentials"),
            () = trigger.notified() => {}
            () = stop.cancelled() => return,
        }
        security.reload();
    }
}
