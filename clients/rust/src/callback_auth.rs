//! Checks that a Check or Deliver call comes from Courier: every such call carries
//! `authorization: Bearer <JWT>`, signed by Courier with Ed25519 (`alg` EdDSA, the key id in
//! `kid`), with `iss` "courier", `aud` the endpoint's URL exactly as registered, `sub` the
//! producer (checks) or the subscription (deliveries), `message_id`, `iat` and `exp`. The keys
//! come from the JWKS Courier serves at `/.well-known/jwks.json` on its HTTP listener, fetched
//! again when a token names a key id not seen yet.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use tokio::sync::Mutex as AsyncMutex;
use tonic::Status;
use tonic::metadata::MetadataMap;
use tracing::warn;

/// The `iss` of Courier's callback tokens.
const ISSUER: &str = "courier";
/// Seconds of clock difference tolerated on `exp` and `iat`.
const LEEWAY_SECONDS: u64 = 5;
/// A token naming an unknown key fetches the JWKS again, at most this often.
const REFETCH_INTERVAL: Duration = Duration::from_secs(10);
/// How long a JWKS fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// How a Checker or Receiver tells Courier's calls from anyone else's.
#[derive(Clone)]
pub struct CallbackAuth {
    verifier: Option<Arc<Verifier>>,
}

/// A JWKS that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct JwksError(String);

struct Verifier {
    audience: String,
    source: Option<String>,
    keys: Mutex<HashMap<String, DecodingKey>>,
    /// Held while fetching, so concurrent calls with a new kid fetch once.
    fetching: AsyncMutex<Option<Instant>>,
}

impl CallbackAuth {
    /// Verifies tokens against the JWKS at `jwks_url` (`http://courier-host:9464/.well-known/jwks.json`),
    /// fetched on the first call and again when a token names a key id not seen yet.
    /// `audience` is this endpoint's URL exactly as registered with Courier.
    pub fn jwks_url(jwks_url: impl Into<String>, audience: impl Into<String>) -> Self {
        Self::with(Some(jwks_url.into()), HashMap::new(), audience.into())
    }

    /// Verifies tokens against the keys of a JWKS document (`courier keys` prints it); never
    /// fetches.
    pub fn jwks_json(jwks: &str, audience: impl Into<String>) -> Result<Self, JwksError> {
        Ok(Self::with(None, parse_jwks(jwks)?, audience.into()))
    }

    /// Accepts every call without a token: for development against a local Courier only.
    pub fn accept_any() -> Self {
        Self { verifier: None }
    }

    fn with(source: Option<String>, keys: HashMap<String, DecodingKey>, audience: String) -> Self {
        Self {
            verifier: Some(Arc::new(Verifier {
                audience,
                source,
                keys: Mutex::new(keys),
                fetching: AsyncMutex::new(None),
            })),
        }
    }

    /// Ok when `metadata` carries a valid token from Courier for `subject` and `message_id`;
    /// UNAUTHENTICATED otherwise.
    pub async fn verify(
        &self,
        metadata: &MetadataMap,
        subject: &str,
        message_id: &str,
    ) -> Result<(), Status> {
        let Some(verifier) = &self.verifier else {
            return Ok(());
        };
        verifier
            .verify(metadata, subject, message_id)
            .await
            .map_err(|problem| {
                warn!(%message_id, problem, "refused a callback that is not from Courier");
                Status::unauthenticated("not a call from Courier")
            })
    }
}

impl std::fmt::Debug for CallbackAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.verifier {
            None => f.write_str("CallbackAuth::accept_any()"),
            Some(verifier) => write!(f, "CallbackAuth(audience {})", verifier.audience),
        }
    }
}

impl Verifier {
    async fn verify(
        &self,
        metadata: &MetadataMap,
        subject: &str,
        message_id: &str,
    ) -> Result<(), String> {
        let token = metadata
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .ok_or("no bearer token")?
            .trim();
        let header = jsonwebtoken::decode_header(token).map_err(|e| format!("malformed: {e}"))?;
        let kid = header.kid.ok_or("the token names no key id")?;
        let key = self.key(&kid).await?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = LEEWAY_SECONDS;
        let claims = jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation)
            .map_err(|e| format!("rejected: {e}"))?
            .claims;
        if claims["sub"] != subject || claims["message_id"] != message_id {
            return Err(format!(
                "token for {}/{}, call for {subject}/{message_id}",
                claims["sub"], claims["message_id"]
            ));
        }
        Ok(())
    }

    /// The key `kid` names, fetching the JWKS again if it is new and the last fetch is old.
    async fn key(&self, kid: &str) -> Result<DecodingKey, String> {
        if let Some(key) = self.known(kid) {
            return Ok(key);
        }
        let Some(url) = &self.source else {
            return Err(format!("unknown key id {kid}"));
        };
        let mut last_fetch = self.fetching.lock().await;
        // Another call may have fetched while this one waited.
        if let Some(key) = self.known(kid) {
            return Ok(key);
        }
        if last_fetch.is_some_and(|at| at.elapsed() < REFETCH_INTERVAL) {
            return Err(format!("unknown key id {kid}"));
        }
        *last_fetch = Some(Instant::now());
        let keys = fetch_jwks(url)
            .await
            .map_err(|e| format!("cannot fetch the JWKS: {e}"))?;
        *self.keys.lock().unwrap_or_else(|p| p.into_inner()) = keys;
        self.known(kid)
            .ok_or_else(|| format!("unknown key id {kid}"))
    }

    fn known(&self, kid: &str) -> Option<DecodingKey> {
        self.keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(kid)
            .cloned()
    }
}

/// The Ed25519 keys of a JWKS document, by key id.
fn parse_jwks(json: &str) -> Result<HashMap<String, DecodingKey>, JwksError> {
    let set: JwkSet =
        serde_json::from_str(json).map_err(|e| JwksError(format!("not a JWKS document: {e}")))?;
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        let Some(kid) = &jwk.common.key_id else {
            continue;
        };
        let key = DecodingKey::from_jwk(jwk)
            .map_err(|e| JwksError(format!("key {kid} is not usable: {e}")))?;
        keys.insert(kid.clone(), key);
    }
    Ok(keys)
}

/// GETs the JWKS at an `http://` URL (Courier's HTTP listener speaks plain HTTP/1.1).
async fn fetch_jwks(url: &str) -> Result<HashMap<String, DecodingKey>, JwksError> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| JwksError(format!("{url:?} is not a URL: {e}")))?;
    if uri.scheme_str() != Some("http") {
        return Err(JwksError(format!(
            "{url}: only http:// is fetched; read an https JWKS yourself and use CallbackAuth::jwks_json"
        )));
    }
    let host = uri
        .host()
        .ok_or_else(|| JwksError(format!("{url} names no host")))?;
    let port = uri.port_u16().unwrap_or(80);
    let body = tokio::time::timeout(FETCH_TIMEOUT, async {
        let stream = tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(|e| JwksError(format!("cannot connect to {host}:{port}: {e}")))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| JwksError(e.to_string()))?;
        tokio::spawn(connection);
        let request = http::Request::get(uri.clone())
            .header(http::header::HOST, format!("{host}:{port}"))
            .body(Empty::<Bytes>::new())
            .map_err(|e| JwksError(e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| JwksError(e.to_string()))?;
        if !response.status().is_success() {
            return Err(JwksError(format!("{url} answered {}", response.status())));
        }
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| JwksError(e.to_string()))?
            .to_bytes();
        Ok(body)
    })
    .await
    .map_err(|_| JwksError(format!("{url} did not answer within {FETCH_TIMEOUT:?}")))??;
    let text = std::str::from_utf8(&body).map_err(|_| JwksError("the JWKS is not UTF-8".into()))?;
    parse_jwks(text)
}
