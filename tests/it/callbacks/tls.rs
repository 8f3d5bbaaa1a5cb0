//! `https://` checkers and receivers: server certificates from a CA given as
//! `callbacks.ca_file`, and Courier's client certificate for receivers that require one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use courier::config::Config;
use courier::proto::{DeliveryState, MessageState};

use super::signed::{push_subscription, register_checker};
use super::*;
use crate::harness::*;

fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write a PEM file");
    path
}

async fn server(tweak: impl FnOnce(&mut Config)) -> TestServer {
    TestServer::start_with(|config| {
        config.checks.first_after = Duration::ZERO;
        config.checks.initial_backoff = Duration::from_secs(60);
        tweak(config);
    })
    .await
}

#[tokio::test]
async fn an_https_checker_with_a_certificate_from_callbacks_ca_file_is_asked() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = write(dir.path(), "ca.pem", &pki.ca_pem);
    let recorder = Recorder::default();
    let endpoint = recorder.serve(Some(pki.server_tls(None))).await;
    assert!(endpoint.starts_with("https://127.0.0.1:"));

    let server = server(|config| config.callbacks.ca_file = Some(ca_file)).await;
    server.create_subscription(subscription(SUB, TOPIC)).await;
    register_checker(&server, &endpoint).await;
    let message_id = server.prepare(TOPIC, "tls-1").await;
    eventually(Duration::from_secs(20), "COMMIT over TLS", || async {
        (server.status(&message_id).await.state() == MessageState::Confirmed).then_some(())
    })
    .await;
    assert!(recorder.first_call().await.authorization.is_some());
}

#[tokio::test]
async fn an_https_checker_whose_ca_is_not_trusted_is_not_asked() {
    let pki = TestPki::new();
    let recorder = Recorder::default();
    let endpoint = recorder.serve(Some(pki.server_tls(None))).await;

    let server = server(|_| {}).await;
    server.create_subscription(subscription(SUB, TOPIC)).await;
    register_checker(&server, &endpoint).await;
    let message_id = server.prepare(TOPIC, "tls-untrusted").await;
    let error = eventually(Duration::from_secs(20), "the check fails", || async {
        let message = server.status(&message_id).await;
        (!message.last_check_error.is_empty()).then_some(message.last_check_error)
    })
    .await;
    assert!(error.to_lowercase().contains("certificate"), "{error}");
    assert!(recorder.calls().is_empty());
    assert_eq!(
        server.status(&message_id).await.state(),
        MessageState::Prepared
    );
}

/// A receiver that requires a client certificate from the test CA, and the subscription
/// pushing to it; returns the recorder and the endpoint.
async fn mutual_tls_receiver(pki: &TestPki) -> (Recorder, String) {
    let recorder = Recorder::default();
    let endpoint = recorder
        .serve(Some(pki.server_tls(Some(&pki.ca_pem))))
        .await;
    (recorder, endpoint)
}

#[tokio::test]
async fn a_receiver_requiring_a_client_certificate_gets_courier_s() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = pki.client_identity();
    let ca_file = write(dir.path(), "ca.pem", &pki.ca_pem);
    let cert_file = write(dir.path(), "client.pem", &cert);
    let key_file = write(dir.path(), "client.key", &key);
    let (recorder, endpoint) = mutual_tls_receiver(&pki).await;

    let server = server(|config| {
        config.callbacks.ca_file = Some(ca_file);
        config.callbacks.client_cert_file = Some(cert_file);
        config.callbacks.client_key_file = Some(key_file);
    })
    .await;
    server
        .create_subscription(push_subscription(&endpoint))
        .await;
    let message_id = server.publish(TOPIC, "mtls-1").await;
    eventually(
        Duration::from_secs(20),
        "the push is acknowledged",
        || async {
            (server.delivery_status(&message_id, SUB).await.state() == DeliveryState::Acked)
                .then_some(())
        },
    )
    .await;
    assert_eq!(recorder.first_call().await.message_id, message_id);
}

#[tokio::test]
async fn without_a_client_certificate_the_receiver_refuses_the_push() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = write(dir.path(), "ca.pem", &pki.ca_pem);
    let (recorder, endpoint) = mutual_tls_receiver(&pki).await;

    let server = server(|config| config.callbacks.ca_file = Some(ca_file)).await;
    server
        .create_subscription(push_subscription(&endpoint))
        .await;
    let message_id = server.publish(TOPIC, "mtls-refused").await;
    let delivery = eventually(Duration::from_secs(20), "the push fails", || async {
        let delivery = server.delivery_status(&message_id, SUB).await;
        (!delivery.last_error.is_empty()).then_some(delivery)
    })
    .await;
    assert_ne!(delivery.state(), DeliveryState::Acked);
    assert!(recorder.calls().is_empty());
}

/// A change to the server's configuration.
type ConfigTweak<'a> = Box<dyn Fn(&mut Config) + 'a>;

#[tokio::test]
async fn unusable_tls_files_stop_the_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let not_pem = write(dir.path(), "ca.pem", "not a certificate");
    let cases: [(&str, ConfigTweak); 3] = [
        (
            "callbacks.ca_file",
            Box::new(|c: &mut Config| c.callbacks.ca_file = Some(dir.path().join("missing.pem"))),
        ),
        (
            "callbacks.ca_file",
            Box::new(|c: &mut Config| c.callbacks.ca_file = Some(not_pem.clone())),
        ),
        (
            "callbacks.signing_key_file",
            Box::new(|c: &mut Config| c.callbacks.signing_key_file = Some(not_pem.clone())),
        ),
    ];
    for (key, tweak) in cases {
        let database = Backend::from_env().fresh_database(&dir).await;
        let mut config = test_config();
        config.database_url = database.url.clone();
        tweak(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let shutdown = tokio_util::sync::CancellationToken::new();
        let error = courier::run(config, listener, shutdown)
            .await
            .expect_err("the start fails");
        let chain = format!("{:#}", anyhow::Error::from(error));
        assert!(chain.contains(key), "{chain}");
    }
}
