//! gRPC over TLS and mutual TLS, with certificates made in the test, and the reload that
//! SIGHUP triggers: new connections get the new certificate, open ones keep theirs, and a bad
//! new file leaves the old certificate in force.

use std::time::Duration;

use courier::proto::ListSubscriptionsRequest;
use courier::proto::admin_client::AdminClient;
use tonic::transport::Endpoint;

use crate::certs::{CertFiles, TestCa, tls_endpoint, with_identity};
use crate::harness::*;

/// Whether a fresh connection through `endpoint` gets an answer to a plain read.
async fn answers(endpoint: Endpoint) -> Result<(), String> {
    let channel = endpoint
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    AdminClient::new(channel)
        .list_subscriptions(ListSubscriptionsRequest::default())
        .await
        .map(|_| ())
        .map_err(|status| format!("{status:?}"))
}

fn serve_tls(config: &mut courier::config::Config, server: &CertFiles) {
    config.tls.cert_file = Some(server.cert.clone());
    config.tls.key_file = Some(server.key.clone());
}

#[tokio::test]
async fn serves_grpc_over_tls_and_refuses_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "tls");
    let files = ca.server("server");
    let server = TestServer::start_connecting(
        |config| serve_tls(config, &files),
        |addr| tls_endpoint(addr, ca.trusting()),
    )
    .await;

    server.create_subscription(subscription(SUB, TOPIC)).await;
    let id = server.publish(TOPIC, "over-tls").await;
    let delivery = server.receive_one(SUB, Duration::from_secs(5)).await;
    assert_eq!(delivery.message_id, id);

    let plaintext = answers(plain_endpoint(server.addr)).await;
    assert!(plaintext.is_err(), "a plaintext client must not be served");
    let other_ca = TestCa::new(dir.path(), "stranger");
    let untrusted = answers(tls_endpoint(server.addr, other_ca.trusting())).await;
    assert!(untrusted.is_err(), "a client trusting another CA must fail");
}

#[tokio::test]
async fn mutual_tls_refuses_clients_without_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "mtls");
    let clients = TestCa::new(dir.path(), "clients");
    let files = ca.server("server");
    let client = clients.client("client");
    let client_ca = clients.ca_file.clone();
    let server = TestServer::start_connecting(
        |config| {
            serve_tls(config, &files);
            config.tls.client_ca_file = Some(client_ca);
        },
        |addr| tls_endpoint(addr, with_identity(ca.trusting(), &client)),
    )
    .await;
    server.assert_still_serving().await;

    let without = answers(tls_endpoint(server.addr, ca.trusting())).await;
    assert!(without.is_err(), "no client certificate: refused");
    let wrong_issuer = with_identity(ca.trusting(), &ca.client("self-made"));
    let wrong = answers(tls_endpoint(server.addr, wrong_issuer)).await;
    assert!(
        wrong.is_err(),
        "a client certificate from another CA: refused"
    );
    answers(tls_endpoint(
        server.addr,
        with_identity(ca.trusting(), &client),
    ))
    .await
    .expect("a certificate from the client CA is accepted");
}

#[tokio::test]
async fn reload_serves_the_new_certificate_and_keeps_open_connections() {
    let dir = tempfile::tempdir().unwrap();
    let old_ca = TestCa::new(dir.path(), "old");
    let new_ca = TestCa::new(dir.path(), "new");
    let files = old_ca.server("server");
    let server = TestServer::start_connecting(
        |config| serve_tls(config, &files),
        |addr| tls_endpoint(addr, old_ca.trusting()),
    )
    .await;
    // An open connection from before the rotation.
    let open = tls_endpoint(server.addr, old_ca.trusting())
        .connect()
        .await
        .expect("connect before the rotation");
    let mut open_admin = AdminClient::new(open);
    open_admin
        .list_subscriptions(ListSubscriptionsRequest::default())
        .await
        .expect("a call before the rotation");

    // A broken certificate file: logged, and the old certificate stays.
    std::fs::write(&files.cert, "not a certificate").unwrap();
    server.reload.notify_one();
    tokio::time::sleep(Duration::from_millis(300)).await;
    answers(tls_endpoint(server.addr, old_ca.trusting()))
        .await
        .expect("after a bad file the old certificate is still served");

    // The rotation: the same paths now hold a certificate from the new CA.
    let rotated = new_ca.server("rotated");
    std::fs::copy(&rotated.cert, &files.cert).unwrap();
    std::fs::copy(&rotated.key, &files.key).unwrap();
    server.reload.notify_one();
    eventually(
        Duration::from_secs(10),
        "new connections get the new certificate",
        || async {
            answers(tls_endpoint(server.addr, new_ca.trusting()))
                .await
                .ok()
        },
    )
    .await;
    assert!(
        answers(tls_endpoint(server.addr, old_ca.trusting()))
            .await
            .is_err(),
        "new connections no longer get the old certificate"
    );
    open_admin
        .list_subscriptions(ListSubscriptionsRequest::default())
        .await
        .expect("the connection opened before the rotation still works");
}
