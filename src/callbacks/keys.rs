//! The Ed25519 keys that sign callback JWTs, and the key ring published as JWKS: the current
//! key, plus each retired key until the last token it signed has expired.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject as _;

use crate::domain::Timestamp;

/// How long a callback token is valid.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(300);
/// Slack for verifiers whose clocks run behind (and JWKS caches): a retired key stays published
/// this much longer than its last token's lifetime.
pub const RETIRED_KEY_LEEWAY: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("not a PEM PKCS#8 private key (write it with `openssl genpkey -algorithm ed25519`)")]
    Pem(#[source] rustls_pki_types::pem::Error),
    #[error("not an Ed25519 PKCS#8 private key: {0}")]
    Rejected(String),
}

/// A private key and its key id, the JWK thumbprint (RFC 7638) of its public key: replicas
/// reading the same key agree on the `kid` without talking to each other.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    public: PublicKey,
}

/// What the JWKS publishes of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub kid: String,
    /// The raw 32-byte Ed25519 public key, base64url (the JWK's `x`).
    pub x: String,
}

impl SigningKey {
    /// A new random key as PKCS#8 DER, the form [`SigningKey::from_pkcs8`] reads and the
    /// database stores.
    pub fn generate_pkcs8() -> Vec<u8> {
        Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
            .expect("the system's random source works")
            .as_ref()
            .to_vec()
    }

    /// Reads PKCS#8 DER, v1 (what `openssl genpkey` writes) or v2 (what ring generates).
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, KeyError> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map_err(|e| KeyError::Rejected(e.to_string()))?;
        let x = BASE64URL.encode(pair.public_key().as_ref());
        // Members in lexicographic order, no spaces: the thumbprint's canonical form.
        let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
        let kid = BASE64URL.encode(ring::digest::digest(
            &ring::digest::SHA256,
            canonical.as_bytes(),
        ));
        Ok(Self {
            pair,
            public: PublicKey { kid, x },
        })
    }

    pub fn from_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let der = PrivatePkcs8KeyDer::from_pem_slice(pem).map_err(KeyError::Pem)?;
        Self::from_pkcs8(der.secret_pkcs8_der())
    }

    pub fn kid(&self) -> &str {
        &self.public.kid
    }

    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.pair.sign(message).as_ref().to_vec()
    }
}

/// The key that signs now and the retired keys still published.
pub struct Keyring {
    state: RwLock<Ring>,
}

struct Ring {
    current: Arc<SigningKey>,
    /// Retired keys and when they leave the JWKS.
    retired: Vec<(PublicKey, Timestamp)>,
}

impl Keyring {
    pub fn new(key: SigningKey) -> Self {
        Self {
            state: RwLock::new(Ring {
                current: Arc::new(key),
                retired: Vec::new(),
            }),
        }
    }

    pub fn current(&self) -> Arc<SigningKey> {
        self.state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .current
            .clone()
    }

    /// Makes `key` the signing key as of `now`; the old one stays published until every token
    /// it may have signed has expired. Returns false (and changes nothing) when `key` is the
    /// current key already.
    pub fn rotate(&self, key: SigningKey, now: Timestamp) -> bool {
        let mut ring = self.state.write().unwrap_or_else(|p| p.into_inner());
        if ring.current.kid() == key.kid() {
            return false;
        }
        let until = now.plus(TOKEN_LIFETIME + RETIRED_KEY_LEEWAY);
        // A key coming back from retirement is current again, not listed twice.
        ring.retired.retain(|(public, _)| public.kid != key.kid());
        let old = std::mem::replace(&mut ring.current, Arc::new(key));
        ring.retired.push((old.public().clone(), until));
        true
    }

    /// The published keys as of `now`, current first; retired keys past their time are dropped.
    pub fn published(&self, now: Timestamp) -> Vec<PublicKey> {
        let mut ring = self.state.write().unwrap_or_else(|p| p.into_inner());
        ring.retired.retain(|(_, until)| *until > now);
        std::iter::once(ring.current.public().clone())
            .chain(ring.retired.iter().map(|(public, _)| public.clone()))
            .collect()
    }

    /// The JWKS document (`GET /.well-known/jwks.json`, `courier keys`).
    pub fn jwks(&self, now: Timestamp) -> String {
        jwks(&self.published(now))
    }
}

pub fn jwks(keys: &[PublicKey]) -> String {
    let keys: Vec<_> = keys
        .iter()
        .map(|key| {
            serde_json::json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "x": key.x,
                "kid": key.kid,
                "alg": "EdDSA",
                "use": "sig",
            })
        })
        .collect();
    serde_json::json!({ "keys": keys }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        SigningKey::from_pkcs8(&SigningKey::generate_pkcs8()).unwrap()
    }

    #[test]
    fn the_kid_is_the_rfc7638_thumbprint() {
        // RFC 8037 appendix A.3: the thumbprint of its example Ed25519 key.
        let x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
        let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
        let kid = BASE64URL.encode(ring::digest::digest(
            &ring::digest::SHA256,
            canonical.as_bytes(),
        ));
        assert_eq!(kid, "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
        // And the same key read from PKCS#8 gets the same id.
        let seed = BASE64URL
            .decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A")
            .unwrap();
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed).unwrap();
        assert_eq!(BASE64URL.encode(pair.public_key().as_ref()), x);
    }

    #[test]
    fn pem_keys_from_openssl_and_rcgen_are_read() {
        // `openssl genpkey -algorithm ed25519`: PKCS#8 v1, without the public key.
        let openssl = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIFd0DcOQo5VWWiyupRs8N6LVRx7QcsJSqMWQB5ZeCBBN\n-----END PRIVATE KEY-----\n";
        let key = SigningKey::from_pem(openssl.as_bytes()).unwrap();
        assert_eq!(key.kid().len(), 43, "a base64url SHA-256");
        let rcgen = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        SigningKey::from_pem(rcgen.serialize_pem().as_bytes()).unwrap();

        assert!(matches!(
            SigningKey::from_pem(b"not a key"),
            Err(KeyError::Pem(_))
        ));
        let p256 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        assert!(matches!(
            SigningKey::from_pem(p256.serialize_pem().as_bytes()),
            Err(KeyError::Rejected(_))
        ));
    }

    #[test]
    fn a_retired_key_stays_published_until_its_tokens_expired() {
        let first = key();
        let first_kid = first.kid().to_owned();
        let ring = Keyring::new(first);
        let start = Timestamp::now();
        assert_eq!(ring.published(start).len(), 1);

        let second = key();
        let second_kid = second.kid().to_owned();
        assert!(ring.rotate(second, start));
        assert_eq!(ring.current().kid(), second_kid);
        let kids = |at| {
            ring.published(at)
                .into_iter()
                .map(|k| k.kid)
                .collect::<Vec<_>>()
        };
        assert_eq!(kids(start), [second_kid.clone(), first_kid.clone()]);
        let last_token_expiry = start.plus(TOKEN_LIFETIME);
        assert_eq!(
            kids(last_token_expiry).len(),
            2,
            "kept past the last token's expiry"
        );
        let gone = start.plus(TOKEN_LIFETIME + RETIRED_KEY_LEEWAY);
        assert_eq!(kids(gone), [second_kid]);
    }

    #[test]
    fn rotating_to_the_same_key_changes_nothing() {
        let der = SigningKey::generate_pkcs8();
        let ring = Keyring::new(SigningKey::from_pkcs8(&der).unwrap());
        assert!(!ring.rotate(SigningKey::from_pkcs8(&der).unwrap(), Timestamp::now()));
        assert_eq!(ring.published(Timestamp::now()).len(), 1);
    }
}
