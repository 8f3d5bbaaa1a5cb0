//! Standard services an operator's tools expect: grpc.health.v1 and server reflection (v1, and
//! v1alpha for older grpcurl); and a clean stop on cancellation.

use prost::Message as _;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::harness::*;

const COURIER_SERVICES: [&str; 3] = [
    "courier.v1.Admin",
    "courier.v1.Consumer",
    "courier.v1.Producer",
];

#[tokio::test]
async fn health_reports_serving() {
    let server = TestServer::start().await;
    let response = HealthClient::new(server.channel())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("grpc.health.v1.Health/Check")
        .into_inner();
    assert_eq!(response.status(), ServingStatus::Serving);
    for service in [courier::LIVENESS_SERVICE, "courier.v1.Producer"] {
        let response = HealthClient::new(server.channel())
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .expect("grpc.health.v1.Health/Check")
            .into_inner();
        assert_eq!(response.status(), ServingStatus::Serving, "{service}");
    }
}

/// Asks one reflection version for its services and for the file declaring
/// `courier.v1.Producer`; returns the service names and that file's package.
macro_rules! reflect {
    ($version:ident, $channel:expr) => {{
        use tonic_reflection::pb::$version::ServerReflectionRequest;
        use tonic_reflection::pb::$version::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::$version::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::$version::server_reflection_response::MessageResponse;

        let request = |message_request| ServerReflectionRequest {
            host: String::new(),
            message_request: Some(message_request),
        };
        let requests = vec![
            request(MessageRequest::ListServices(String::new())),
            request(MessageRequest::FileContainingSymbol(
                "courier.v1.Producer".into(),
            )),
        ];
        let mut responses = ServerReflectionClient::new($channel)
            .server_reflection_info(tokio_stream::iter(requests))
            .await
            .expect(concat!("reflection ", stringify!($version)))
            .into_inner();
        let services = match responses
            .message()
            .await
            .unwrap()
            .and_then(|r| r.message_response)
        {
            Some(MessageResponse::ListServicesResponse(list)) => {
                list.service.into_iter().map(|s| s.name).collect::<Vec<_>>()
            }
            other => panic!("expected a service list, got {other:?}"),
        };
        let package = match responses
            .message()
            .await
            .unwrap()
            .and_then(|r| r.message_response)
        {
            Some(MessageResponse::FileDescriptorResponse(files)) => {
                let file = files
                    .file_descriptor_proto
                    .first()
                    .expect("at least the declaring file");
                prost_types::FileDescriptorProto::decode(file.as_slice())
                    .expect("a file descriptor")
                    .package
                    .unwrap_or_default()
            }
            other => panic!("expected a file descriptor, got {other:?}"),
        };
        (services, package)
    }};
}

#[tokio::test]
async fn reflection_v1_lists_the_courier_services() {
    let server = TestServer::start().await;
    let (services, package) = reflect!(v1, server.channel());
    for service in COURIER_SERVICES {
        assert!(
            services.iter().any(|s| s == service),
            "{service} missing from {services:?}"
        );
    }
    assert_eq!(package, "courier.v1");
}

#[tokio::test]
async fn reflection_v1alpha_lists_the_courier_services() {
    let server = TestServer::start().await;
    let (services, package) = reflect!(v1alpha, server.channel());
    for service in COURIER_SERVICES {
        assert!(
            services.iter().any(|s| s == service),
            "{service} missing from {services:?}"
        );
    }
    assert_eq!(package, "courier.v1");
}

#[tokio::test]
async fn the_server_stops_cleanly_when_cancelled() {
    let server = TestServer::start().await;
    server.create_subscription(subscription(SUB, TOPIC)).await;
    let channel = server.channel();
    server
        .stop()
        .await
        .expect("run returns Ok after cancellation");
    let after = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await;
    assert!(
        after.is_err(),
        "a stopped server answers nothing: {after:?}"
    );
}
