//! Authentication: bearer tokens from `auth.tokens_file`, JWTs checked against
//! `auth.jwks_file`, what an unauthenticated caller sees, what stays open, and the reload of
//! the tokens file.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use courier::client::{AuthChannel, ClientOptions, with_token};
use courier::proto::admin_client::AdminClient;
use courier::proto::producer_client::ProducerClient;
use courier::proto::{GetStatsRequest, ListSubscriptionsRequest};
use courier::security::token_sha256;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rcgen::KeyPair;
use serde_json::json;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::harness::*;

/// Writes a tokens file of (name, token, scopes).
pub fn write_tokens(path: &Path, principals: &[(&str, &str, &[&str])]) {
    let text: String = principals
        .iter()
        .map(|(name, token, scopes)| {
            format!(
                "[[tokens]]\nname = {name:?}\nsha256 = {:?}\nscopes = {scopes:?}\n\n",
                token_sha256(token)
            )
        })
        .collect();
    std::fs::write(path, text).expect("write the tokens file");
}

/// A channel to `server` whose calls carry `token`.
pub fn as_token(server: &TestServer, token: &str) -> AuthChannel {
    let options = ClientOptions {
        token: Some(token.to_owned()),
        ..ClientOptions::default()
    };
    with_token(server.channel(), &options).expect("a header-safe token")
}

async fn list(channel: AuthChannel) -> Result<(), tonic::Status> {
    AdminClient::new(channel)
        .list_subscriptions(ListSubscriptionsRequest::default())
        .await
        .map(|_| ())
}

#[tokio::test]
async fn calls_without_a_known_token_are_unauthenticated_and_health_stays_open() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.toml");
    write_tokens(&tokens, &[("ops", "ops-secret-1", &["admin"])]);
    let server = TestServer::start_with(|config| {
        config.auth.tokens_file = Some(tokens.clone());
    })
    .await;

    let status = assert_code(
        AdminClient::new(server.channel())
            .list_subscriptions(ListSubscriptionsRequest::default())
            .await,
        Code::Unauthenticated,
    );
    assert!(
        status.message().contains("authorization: Bearer"),
        "{status:?}"
    );
    let status = assert_code(
        list(as_token(&server, "ops-secret-2")).await,
        Code::Unauthenticated,
    );
    assert_eq!(status.message(), "unknown token");
    assert!(!status.message().contains("ops-secret"));

    let mut basic = tonic::Request::new(GetStatsRequest {});
    basic
        .metadata_mut()
        .insert("authorization", "Basic b3BzOm9wcw==".parse().unwrap());
    assert_code(
        AdminClient::new(server.channel()).get_stats(basic).await,
        Code::Unauthenticated,
    );

    list(as_token(&server, "ops-secret-1"))
        .await
        .expect("the admin token works");
    // The scheme is case-insensitive (RFC 6750).
    let mut lower = tonic::Request::new(GetStatsRequest {});
    lower
        .metadata_mut()
        .insert("authorization", "bearer ops-secret-1".parse().unwrap());
    AdminClient::new(server.channel())
        .get_stats(lower)
        .await
        .expect("`bearer` in lower case");

    // Probes and reflection need no token.
    HealthClient::new(server.channel())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health is open");
}

#[tokio::test]
async fn a_reloaded_tokens_file_replaces_the_tokens_and_a_bad_one_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.toml");
    write_tokens(&tokens, &[("ops", "first-token", &["admin"])]);
    let server = TestServer::start_with(|config| {
        config.auth.tokens_file = Some(tokens.clone());
    })
    .await;
    list(as_token(&server, "first-token")).await.unwrap();

    std::fs::write(&tokens, "[[tokens]]\nname = \"broken\"\n").unwrap();
    server.reload.notify_one();
    tokio::time::sleep(Duration::from_millis(300)).await;
    list(as_token(&server, "first-token"))
        .await
        .expect("a broken tokens file keeps the old tokens");

    write_tokens(&tokens, &[("ops", "second-token", &["admin"])]);
    server.reload.notify_one();
    eventually(
        Duration::from_secs(10),
        "the new token is accepted",
        || async { list(as_token(&server, "second-token")).await.ok() },
    )
    .await;
    assert_code(
        list(as_token(&server, "first-token")).await,
        Code::Unauthenticated,
    );
}

// --- JWTs ---

const ISSUER: &str = "https://id.example.test";
const AUDIENCE: &str = "courier";

/// A signing key and the JWK of its public half.
struct JwtKey {
    kid: String,
    algorithm: Algorithm,
    encoding: EncodingKey,
    jwk: serde_json::Value,
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl JwtKey {
    fn ed25519(kid: &str) -> Self {
        let pair = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        Self {
            kid: kid.into(),
            algorithm: Algorithm::EdDSA,
            encoding: EncodingKey::from_ed_der(&pair.serialize_der()),
            jwk: json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64(pair.public_key_raw())}),
        }
    }

    fn p256(kid: &str) -> Self {
        let pair = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let point = pair.public_key_raw();
        Self {
            kid: kid.into(),
            algorithm: Algorithm::ES256,
            encoding: EncodingKey::from_ec_der(&pair.serialize_der()),
            jwk: json!({
                "kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256",
                "x": b64(&point[1..33]), "y": b64(&point[33..65]),
            }),
        }
    }

    /// A fixed test key: ring (rcgen's provider) cannot generate RSA keys.
    fn rsa(kid: &str) -> Self {
        Self {
            kid: kid.into(),
            algorithm: Algorithm::RS256,
            encoding: EncodingKey::from_rsa_der(include_bytes!("fixtures/rsa-test-key.der")),
            jwk: json!({
                "kty": "RSA", "kid": kid, "use": "sig",
                "n": include_str!("fixtures/rsa-test-key.n").trim(), "e": "AQAB",
            }),
        }
    }

    fn sign(&self, claims: serde_json::Value) -> String {
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding).expect("sign")
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(scope: &str, exp_from_now: i64) -> serde_json::Value {
    json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "svc-shop",
        "iat": now(), "exp": (now() as i64 + exp_from_now), "scope": scope,
    })
}

async fn jwt_server(dir: &Path, keys: &[&JwtKey]) -> TestServer {
    let jwks = dir.join("jwks.json");
    let set = json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() });
    std::fs::write(&jwks, set.to_string()).unwrap();
    TestServer::start_with(|config| {
        config.auth.jwks_file = Some(jwks);
        config.auth.jwt_issuer = Some(ISSUER.into());
        config.auth.jwt_audience = Some(AUDIENCE.into());
    })
    .await
}

async fn publish_as(server: &TestServer, token: &str, producer: &str) -> Result<(), tonic::Status> {
    ProducerClient::new(as_token(server, token))
        .publish(publish_request(producer, TOPIC, "jwt-key"))
        .await
        .map(|_| ())
}

#[tokio::test]
async fn jwts_signed_by_a_jwks_key_carry_their_scopes() {
    let dir = tempfile::tempdir().unwrap();
    let (ed, ec, rsa) = (
        JwtKey::ed25519("ed"),
        JwtKey::p256("ec"),
        JwtKey::rsa("rsa"),
    );
    let server = jwt_server(dir.path(), &[&ed, &ec, &rsa]).await;
    let admin = ed.sign(claims("openid admin", 300));
    AdminClient::new(as_token(&server, &admin))
        .create_subscription(courier::proto::CreateSubscriptionRequest {
            subscription: Some(subscription(SUB, TOPIC)),
        })
        .await
        .expect("an EdDSA admin token");

    for key in [&ed, &ec, &rsa] {
        let token = key.sign(claims("produce:shop", 300));
        publish_as(&server, &token, "shop")
            .await
            .unwrap_or_else(|e| panic!("{:?} token: {e:?}", key.algorithm));
        let status = assert_code(
            publish_as(&server, &token, "bank").await,
            Code::PermissionDenied,
        );
        assert!(status.message().contains("produce:bank"), "{status:?}");
    }
    // `scp` as an array works as well as `scope`.
    let mut scp = claims("", 300);
    scp["scp"] = json!(["produce:shop"]);
    scp.as_object_mut().unwrap().remove("scope");
    publish_as(&server, &ec.sign(scp), "shop")
        .await
        .expect("scp array");
}

#[tokio::test]
async fn expired_misaddressed_and_foreign_jwts_are_unauthenticated() {
    let dir = tempfile::tempdir().unwrap();
    let key = JwtKey::ed25519("ed");
    let server = jwt_server(dir.path(), &[&key]).await;
    let cases = [
        ("expired beyond the leeway", key.sign(claims("admin", -120))),
        ("wrong audience", {
            let mut c = claims("admin", 300);
            c["aud"] = json!("another-service");
            key.sign(c)
        }),
        ("wrong issuer", {
            let mut c = claims("admin", 300);
            c["iss"] = json!("https://evil.example");
            key.sign(c)
        }),
        ("not yet valid", {
            let mut c = claims("admin", 600);
            c["nbf"] = json!(now() + 300);
            key.sign(c)
        }),
        (
            "signed by a key outside the JWKS",
            JwtKey::ed25519("ed").sign(claims("admin", 300)),
        ),
        ("no expiry", {
            let mut c = claims("admin", 300);
            c.as_object_mut().unwrap().remove("exp");
            key.sign(c)
        }),
    ];
    for (what, token) in cases {
        let status = assert_code(list(as_token(&server, &token)).await, Code::Unauthenticated);
        assert!(
            status.message().starts_with("invalid JWT"),
            "{what}: {status:?}"
        );
    }
    // Within the 30 s leeway an expired token still passes.
    list(as_token(&server, &key.sign(claims("admin", -10))))
        .await
        .expect("expired 10 s ago: inside the leeway");
}
