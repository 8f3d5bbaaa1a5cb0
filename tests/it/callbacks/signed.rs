//! The JWT on every callback, the key that signs it (generated and shared through the
//! database, or read from `callbacks.signing_key_file` and rotated on SIGHUP), the JWKS served
//! on the HTTP listener and printed by `courier keys`.

use std::time::Duration;

use courier::config::Config;
use courier::proto::{MessageState, RegisterCheckerRequest, Subscription};
use courier::store::testing::TestDatabase as PostgresDatabase;
use courier::wakeups::Wakeups;
use serde_json::Value;
use tokio::process::Command;

use super::*;
use crate::harness::*;
use crate::process::{courier_command, free_port};

/// A server whose checks start at once, with the HTTP listener on a port of its own.
async fn server_with_jwks(tweak: impl FnOnce(&mut Config)) -> (TestServer, SocketAddr) {
    let http = free_port();
    let server = TestServer::start_with(|config| {
        config.metrics_listen = http.to_string();
        config.checks.first_after = Duration::ZERO;
        tweak(config);
    })
    .await;
    (server, http)
}

pub async fn register_checker(server: &TestServer, endpoint: &str) {
    server
        .producer()
        .register_checker(RegisterCheckerRequest {
            producer: PRODUCER.into(),
            endpoint: endpoint.into(),
            timeout: None,
        })
        .await
        .expect("RegisterChecker");
}

pub fn push_subscription(endpoint: &str) -> Subscription {
    Subscription {
        push_endpoint: endpoint.into(),
        ..fast_subscription(SUB, TOPIC, 5)
    }
}

#[tokio::test]
async fn checks_and_pushes_carry_a_jwt_that_verifies_against_the_served_jwks() {
    let (server, http) = server_with_jwks(|_| {}).await;
    let recorder = Recorder::default();
    let endpoint = recorder.serve(None).await;
    register_checker(&server, &endpoint).await;
    server
        .create_subscription(push_subscription(&endpoint))
        .await;

    // Prepared and left alone: the checker is asked, answers COMMIT, and the delivery is
    // pushed to the same endpoint.
    let message_id = server.prepare(TOPIC, "signed-1").await;
    eventually(Duration::from_secs(20), "a check and a push", || async {
        (recorder.calls().len() >= 2).then_some(())
    })
    .await;
    let jwks = fetch_jwks(http).await;
    assert_eq!(kids(&jwks).len(), 1, "one key: {jwks}");

    let calls = recorder.calls();
    let (check, push) = (&calls[0], &calls[1]);
    assert_eq!(
        (check.subject.as_str(), push.subject.as_str()),
        (PRODUCER, SUB)
    );
    for call in [check, push] {
        assert_eq!(call.message_id, message_id);
        let authorization = call
            .authorization
            .as_deref()
            .expect("an authorization header");
        let (header, claims) = verify(authorization, &jwks, &endpoint);
        assert_eq!(header["kid"], kids(&jwks)[0]);
        assert_eq!(claims["sub"], call.subject);
        assert_eq!(claims["message_id"], message_id);
    }

    // A token is bound to its endpoint, and to the key that signed it.
    let token = check.authorization.as_deref().unwrap();
    assert!(check_token(token, &jwks, "http://elsewhere:7001").is_err());
    let (signed, signature) = token.rsplit_once('.').unwrap();
    let first = if signature.starts_with('A') { 'B' } else { 'A' };
    let forged = format!("{signed}.{first}{}", &signature[1..]);
    assert_eq!(
        check_token(&forged, &jwks, &endpoint).unwrap_err(),
        "the signature does not verify with the published key"
    );
}

/// Stores on one database, each offering its own new key at the same time, end up with one
/// key.
async fn stores_agree_on_the_generated_key(database_url: &str) {
    let mut config = test_config();
    config.database_url = database_url.to_owned();
    // Opened one after the other (two SQLite stores would race on the first migration); the
    // race under test is the keys offered at once.
    let first = courier::store::open(&config, Wakeups::default())
        .await
        .expect("store one");
    let second = courier::store::open(&config, Wakeups::default())
        .await
        .expect("store two");
    let (one, two) = (
        courier::callbacks::SigningKey::generate_pkcs8(),
        courier::callbacks::SigningKey::generate_pkcs8(),
    );
    let (kept_by_first, kept_by_second) = tokio::join!(
        first.shared_signing_key(one.clone()),
        second.shared_signing_key(two.clone()),
    );
    let kept = kept_by_first.expect("first store");
    assert_eq!(kept, kept_by_second.expect("second store"));
    assert!(
        kept == one || kept == two,
        "one of the offered keys is kept"
    );
    // Later offers, from a restart or a new replica, get the same key.
    let again = first
        .shared_signing_key(courier::callbacks::SigningKey::generate_pkcs8())
        .await
        .expect("offered again");
    assert_eq!(again, kept);
}

#[tokio::test]
async fn stores_on_one_database_agree_on_the_generated_key() {
    let dir = tempfile::tempdir().unwrap();
    let database = Backend::from_env().fresh_database(&dir).await;
    stores_agree_on_the_generated_key(&database.url).await;
}

#[tokio::test]
async fn stores_on_one_postgresql_database_agree_on_the_generated_key() {
    let Some(database) = PostgresDatabase::create().await else {
        return;
    };
    stores_agree_on_the_generated_key(database.url()).await;
}

/// `courier keys ARGS`, without the test's own COURIER_* variables.
async fn courier_keys(args: &[&str]) -> std::process::Output {
    let run = Command::from(courier_command())
        .arg("keys")
        .args(args)
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("courier keys ends within 60 s")
        .expect("run the courier binary")
}

#[tokio::test]
async fn courier_keys_prints_the_jwks_the_server_publishes() {
    let (server, http) = server_with_jwks(|_| {}).await;
    let served = fetch_jwks(http).await;
    let output = courier_keys(&["--database-url", &server.config.database_url]).await;
    assert!(output.status.success(), "{output:?}");
    let printed: Value = serde_json::from_slice(&output.stdout).expect("JSON on stdout");
    assert_eq!(printed, served);
}

fn ed25519_pem() -> String {
    rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)
        .expect("an Ed25519 key")
        .serialize_pem()
}

#[tokio::test]
async fn a_rotated_signing_key_file_signs_after_sighup_and_the_old_key_stays_published() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("callbacks.key");
    std::fs::write(&key_file, ed25519_pem()).unwrap();
    let (server, http) = server_with_jwks(|config| {
        config.callbacks.signing_key_file = Some(key_file.clone());
    })
    .await;
    let old = kids(&fetch_jwks(http).await);
    assert_eq!(old.len(), 1);

    // `courier keys` reads the same file.
    let config_file = dir.path().join("courier.toml");
    std::fs::write(
        &config_file,
        format!(
            "[callbacks]\nsigning_key_file = {:?}\n",
            key_file.display().to_string()
        ),
    )
    .unwrap();
    let output = courier_keys(&["--config", config_file.to_str().unwrap()]).await;
    assert!(output.status.success(), "{output:?}");
    let printed: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(kids(&printed), old);

    // This process handles SIGHUP from here on, so the signal cannot end the test binary even
    // before the server's own listener is in place; the server may take a moment, so the
    // signal is sent again until the new key shows.
    let _hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .expect("listen for SIGHUP");
    std::fs::write(&key_file, ed25519_pem()).unwrap();
    let jwks = eventually(
        Duration::from_secs(20),
        "the new key is published",
        || async {
            let sent = std::process::Command::new("kill")
                .args(["-HUP", &std::process::id().to_string()])
                .status()
                .expect("kill -HUP");
            assert!(sent.success());
            let jwks = fetch_jwks(http).await;
            (kids(&jwks).len() == 2).then_some(jwks)
        },
    )
    .await;
    let published = kids(&jwks);
    assert_eq!(published[1], old[0], "the old key stays published: {jwks}");
    let new = published[0].clone();
    assert_ne!(new, old[0]);

    let recorder = Recorder::default();
    let endpoint = recorder.serve(None).await;
    server.create_subscription(subscription(SUB, TOPIC)).await;
    register_checker(&server, &endpoint).await;
    let message_id = server.prepare(TOPIC, "rotated-1").await;
    let call = recorder.first_call().await;
    let (header, claims) = verify(call.authorization.as_deref().unwrap(), &jwks, &endpoint);
    assert_eq!(header["kid"], new, "signed with the new key");
    assert_eq!(claims["message_id"], message_id);
    eventually(Duration::from_secs(20), "the check's COMMIT", || async {
        (server.status(&message_id).await.state() == MessageState::Confirmed).then_some(())
    })
    .await;
}
