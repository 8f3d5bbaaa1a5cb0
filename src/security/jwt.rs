//! `auth.jwks_file`: JWTs signed by an identity provider. Accepted when the signature verifies
//! with a key of the JWKS (RS256, ES256 or EdDSA), `iss` and `aud` are the configured ones, and
//! `exp`/`nbf` hold within 30 s of leeway. The principal is `sub`; its scopes come from `scope`
//! (space-separated) or `scp` (an array). Scopes Courier does not know (`openid`, …) are
//! ignored: identity providers add their own.

use std::path::Path;

use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde::Deserialize;
use tracing::warn;

use super::principal::{Principal, Scope};

/// Clock skew allowed on `exp` and `nbf`.
const LEEWAY_SECONDS: u64 = 30;

#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    /// The cause is in the message (the reload log shows only the message), not a source.
    #[error("cannot read {path}: {cause}")]
    Read { path: String, cause: std::io::Error },
    #[error("{path} is not a valid JWKS: {problem}")]
    Invalid { path: String, problem: String },
}

/// Why a JWT was refused; shown to the caller, never logged with the token.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwtRejection {
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token is for another audience")]
    WrongAudience,
    #[error("the token is from another issuer")]
    WrongIssuer,
    #[error("the token's signature does not verify with any known key")]
    BadSignature,
    #[error("the token is malformed or lacks a required claim")]
    Malformed,
}

struct VerifyingKey {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

/// The keys of one JWKS file and the claims every token must carry.
pub struct JwtVerifier {
    keys: Vec<VerifyingKey>,
    validation_template: Validation,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("keys", &self.keys.len())
            .finish()
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    scp: Option<StringOrList>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StringOrList {
    One(String),
    Many(Vec<String>),
}

impl JwtVerifier {
    pub fn load(path: &Path, issuer: &str, audience: &str) -> Result<Self, JwksError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|cause| JwksError::Read {
            path: shown.clone(),
            cause,
        })?;
        Self::parse(&text, issuer, audience).map_err(|problem| JwksError::Invalid {
            path: shown,
            problem,
        })
    }

    pub fn parse(json: &str, issuer: &str, audience: &str) -> Result<Self, String> {
        let set: JwkSet = serde_json::from_str(json).map_err(|e| e.to_string())?;
        let mut keys = Vec::new();
        for (index, jwk) in set.keys.iter().enumerate() {
            match verifying_key(jwk) {
                Ok(key) => keys.push(key),
                Err(problem) => {
                    let kid = jwk.common.key_id.as_deref().unwrap_or("");
                    warn!(index, kid, problem, "jwks key skipped");
                }
            }
        }
        if keys.is_empty() {
            return Err("it holds no RS256, ES256 or EdDSA signing key".into());
        }
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        Ok(Self {
            keys,
            validation_template: validation,
        })
    }

    /// The principal a valid token names.
    pub fn verify(&self, token: &str) -> Result<Principal, JwtRejection> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| JwtRejection::Malformed)?;
        // Only keys made for the header's algorithm, so a token cannot pick a weaker reading
        // of a key (algorithm confusion); the kid, when given, narrows to that key.
        let candidates = self.keys.iter().filter(|key| {
            key.algorithm == header.alg
                && (header.kid.is_none() || key.kid.is_none() || header.kid == key.kid)
        });
        let mut rejection = JwtRejection::BadSignature;
        for key in candidates {
            let mut validation = self.validation_template.clone();
            validation.algorithms = vec![key.algorithm];
            match jsonwebtoken::decode::<Claims>(token, &key.key, &validation) {
                Ok(data) => return principal_of(data.claims),
                Err(error) => match rejection_of(error.kind()) {
                    // Another key may still verify it.
                    JwtRejection::BadSignature => {}
                    other => {
                        rejection = other;
                        break;
                    }
                },
            }
        }
        Err(rejection)
    }
}

fn rejection_of(kind: &ErrorKind) -> JwtRejection {
    match kind {
        ErrorKind::ExpiredSignature => JwtRejection::Expired,
        ErrorKind::ImmatureSignature => JwtRejection::NotYetValid,
        ErrorKind::InvalidAudience => JwtRejection::WrongAudience,
        ErrorKind::InvalidIssuer => JwtRejection::WrongIssuer,
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat => JwtRejection::BadSignature,
        _ => JwtRejection::Malformed,
    }
}

fn principal_of(claims: Claims) -> Result<Principal, JwtRejection> {
    if claims.sub.trim().is_empty() {
        return Err(JwtRejection::Malformed);
    }
    let granted: Vec<String> = match (claims.scope, claims.scp) {
        (Some(scope), _) => scope.split_whitespace().map(str::to_owned).collect(),
        (None, Some(StringOrList::Many(list))) => list,
        (None, Some(StringOrList::One(scope))) => {
            scope.split_whitespace().map(str::to_owned).collect()
        }
        (None, None) => Vec::new(),
    };
    Ok(Principal {
        name: claims.sub,
        scopes: granted
            .iter()
            .filter_map(|s| Scope::parse(s).ok())
            .collect(),
    })
}

/// The algorithm a JWK is for, from its `alg` or, without one, its key type and curve.
fn verifying_key(jwk: &Jwk) -> Result<VerifyingKey, &'static str> {
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return Err("an encryption key (use = enc)");
    }
    let by_type = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            Algorithm::ES256
        }
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
            Algorithm::EdDSA
        }
        _ => return Err("not an RSA, P-256 or Ed25519 public key"),
    };
    let named = match jwk.common.key_algorithm {
        None => None,
        Some(KeyAlgorithm::RS256) => Some(Algorithm::RS256),
        Some(KeyAlgorithm::ES256) => Some(Algorithm::ES256),
        Some(KeyAlgorithm::EdDSA) => Some(Algorithm::EdDSA),
        Some(_) => return Err("alg is not RS256, ES256 or EdDSA"),
    };
    if named.is_some_and(|named| named != by_type) {
        return Err("alg does not fit the key type");
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|_| "the key's parameters are invalid")?;
    // Raw point sizes: an Ed25519 key is 32 bytes, a P-256 point 65 (uncompressed); a key of
    // another size would fail (or worse) only when a token arrives.
    let raw_len = key.try_get_as_bytes().map(<[u8]>::len);
    match (by_type, raw_len) {
        (Algorithm::EdDSA, Ok(32)) | (Algorithm::ES256, Ok(65)) | (Algorithm::RS256, _) => {}
        _ => return Err("the key has the wrong length for its curve"),
    }
    Ok(VerifyingKey {
        kid: jwk.common.key_id.clone(),
        algorithm: by_type,
        key,
    })
}
