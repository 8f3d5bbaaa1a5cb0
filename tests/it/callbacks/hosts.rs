//! `callbacks.allowed_hosts`: RegisterChecker, CreateSubscription and UpdateSubscription refuse
//! endpoints on other hosts with INVALID_ARGUMENT naming the key.

use courier::proto::{
    CreateSubscriptionRequest, RegisterCheckerRequest, Subscription, UpdateSubscriptionRequest,
};
use tonic::Code;

use crate::harness::*;

const ALLOWED: &str = "http://checker.shop.svc.cluster.local:7001";
const INTERNAL: &str = "http://169.254.169.254";

async fn narrowed_server() -> TestServer {
    TestServer::start_with(|config| {
        config.callbacks.allowed_hosts = vec!["*.svc.cluster.local".into(), "10.1.*".into()];
    })
    .await
}

#[track_caller]
fn assert_refused<T: std::fmt::Debug>(result: Result<T, tonic::Status>, field: &str) {
    let status = assert_invalid_field(result, field);
    assert!(
        status.message().contains("callbacks.allowed_hosts")
            && status.message().contains("169.254.169.254"),
        "the message names the host and the key: {:?}",
        status.message()
    );
}

fn register(endpoint: &str) -> RegisterCheckerRequest {
    RegisterCheckerRequest {
        producer: PRODUCER.into(),
        endpoint: endpoint.into(),
        timeout: None,
    }
}

fn push_to(name: &str, endpoint: &str) -> Subscription {
    Subscription {
        push_endpoint: endpoint.into(),
        ..subscription(name, TOPIC)
    }
}

#[tokio::test]
async fn register_checker_outside_allowed_hosts_is_invalid() {
    let server = narrowed_server().await;
    let mut producer = server.producer();
    assert_refused(
        producer.register_checker(register(INTERNAL)).await,
        "endpoint",
    );
    producer
        .register_checker(register(ALLOWED))
        .await
        .expect("an allowed host");
    producer
        .register_checker(register("https://10.1.0.7:7001"))
        .await
        .expect("an allowed address");
}

#[tokio::test]
async fn push_endpoints_outside_allowed_hosts_are_invalid_on_create_and_update() {
    let server = narrowed_server().await;
    let mut admin = server.admin();
    let create = |subscription| CreateSubscriptionRequest {
        subscription: Some(subscription),
    };
    assert_refused(
        admin
            .create_subscription(create(push_to("internal", INTERNAL)))
            .await,
        "subscription.push_endpoint",
    );
    admin
        .create_subscription(create(push_to(SUB, ALLOWED)))
        .await
        .expect("an allowed push endpoint");
    admin
        .create_subscription(create(subscription("pull", TOPIC)))
        .await
        .expect("a pull subscription names no host");

    let update = |subscription| UpdateSubscriptionRequest {
        subscription: Some(subscription),
    };
    assert_refused(
        admin
            .update_subscription(update(push_to(SUB, INTERNAL)))
            .await,
        "subscription.push_endpoint",
    );
    assert_refused(
        admin
            .update_subscription(update(push_to("pull", INTERNAL)))
            .await,
        "subscription.push_endpoint",
    );
    let unchanged = admin
        .get_subscription(courier::proto::GetSubscriptionRequest { name: SUB.into() })
        .await
        .expect("GetSubscription")
        .into_inner();
    assert_eq!(unchanged.push_endpoint, ALLOWED);
    let refused = admin
        .update_subscription(update(push_to(SUB, "http://10.2.0.1")))
        .await;
    assert_eq!(refused.unwrap_err().code(), Code::InvalidArgument);
}
