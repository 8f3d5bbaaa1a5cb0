//! The JWT every Check and Deliver call carries (`authorization: Bearer <JWT>`), so a checker
//! or receiver can tell Courier's calls from anyone else's: EdDSA over the header and claims,
//! verifiable with the public keys Courier publishes as JWKS.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;

use super::keys::{SigningKey, TOKEN_LIFETIME};

/// The `iss` of every callback token.
pub const ISSUER: &str = "courier";

/// What one call's token says.
#[derive(Debug, Clone, Copy)]
pub struct CallClaims<'a> {
    /// The endpoint called, exactly as registered: the receiver checks it is its own URL.
    pub audience: &'a str,
    /// The producer (checks) or the subscription (deliveries).
    pub subject: &'a str,
    pub message_id: &'a str,
}

/// A signed compact JWT for one call, issued at `now`.
pub fn sign(key: &SigningKey, claims: CallClaims<'_>, now: SystemTime) -> String {
    let issued_at = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let header = serde_json::json!({ "alg": "EdDSA", "typ": "JWT", "kid": key.kid() });
    let payload = serde_json::json!({
        "iss": ISSUER,
        "aud": claims.audience,
        "sub": claims.subject,
        "iat": issued_at,
        "exp": issued_at + TOKEN_LIFETIME.as_secs(),
        "message_id": claims.message_id,
    });
    let mut token = BASE64URL.encode(header.to_string());
    token.push('.');
    token.push_str(&BASE64URL.encode(payload.to_string()));
    let signature = key.sign(token.as_bytes());
    token.push('.');
    token.push_str(&BASE64URL.encode(signature));
    token
}

#[cfg(test)]
mod tests {
    use ring::signature::{ED25519, UnparsedPublicKey};

    use super::*;

    #[test]
    fn tokens_verify_with_the_published_key_and_carry_the_claims() {
        let key = SigningKey::from_pkcs8(&SigningKey::generate_pkcs8()).unwrap();
        let claims = CallClaims {
            audience: "https://checker.shop:7001",
            subject: "shop",
            message_id: "0190f0a0-0000-7000-8000-000000000001",
        };
        let now = UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let token = sign(&key, claims, now);

        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let public = BASE64URL.decode(&key.public().x).unwrap();
        let signature = BASE64URL.decode(parts[2]).unwrap();
        let signed = format!("{}.{}", parts[0], parts[1]);
        UnparsedPublicKey::new(&ED25519, public)
            .verify(signed.as_bytes(), &signature)
            .expect("the signature verifies");

        let header: serde_json::Value =
            serde_json::from_slice(&BASE64URL.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["alg"], "EdDSA");
        assert_eq!(header["kid"], key.kid());
        let payload: serde_json::Value =
            serde_json::from_slice(&BASE64URL.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(payload["iss"], "courier");
        assert_eq!(payload["aud"], "https://checker.shop:7001");
        assert_eq!(payload["sub"], "shop");
        assert_eq!(payload["message_id"], claims.message_id);
        assert_eq!(payload["iat"], 1_700_000_000);
        assert_eq!(payload["exp"], 1_700_000_300);
    }

    /// The cost of one callback's token (reported, not asserted):
    /// `cargo test --release --lib sign_cost -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement; run it in release"]
    fn sign_cost() {
        let key = SigningKey::from_pkcs8(&SigningKey::generate_pkcs8()).unwrap();
        let ids: Vec<String> = (0..20_000)
            .map(|i| format!("0190f0a0-0000-7000-8000-{i:012}"))
            .collect();
        let started = std::time::Instant::now();
        let mut bytes = 0;
        for id in &ids {
            let claims = CallClaims {
                audience: "http://receiver.billing.svc.cluster.local:7002",
                subject: "billing",
                message_id: id,
            };
            bytes += sign(&key, claims, SystemTime::now()).len();
        }
        let each = started.elapsed() / ids.len() as u32;
        println!(
            "signing one callback token: {each:?} ({} bytes)",
            bytes / ids.len()
        );
    }
}
