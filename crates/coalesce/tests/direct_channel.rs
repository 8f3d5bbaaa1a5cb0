//! `DirectChannel` against a real tonic server on loopback: calls reach it, a stopped server
//! is UNAVAILABLE, and a server started again on the same address is reached again; and
//! against a bare HTTP/2 server that goes away mid-call.

use std::net::SocketAddr;

use courier_coalesce::DirectChannel;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// tonic's health service on `listener` until `stop` fires (or is dropped).
fn serve(listener: TcpListener) -> (oneshot::Sender<()>, JoinHandle<()>) {
    let (stop, stopped) = oneshot::channel::<()>();
    let (_, health) = tonic_health::server::health_reporter();
    let server = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                let _ = stopped.await;
            })
            .await
            .expect("the server runs");
    });
    (stop, server)
}

async fn check(client: &mut HealthClient<DirectChannel>) -> Result<ServingStatus, tonic::Status> {
    let answer = client
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await?;
    Ok(answer.into_inner().status())
}

fn uri(address: SocketAddr) -> http::Uri {
    format!("http://{address}").parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_reach_the_server_and_a_restarted_server_again() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, server) = serve(listener);
    let mut client = HealthClient::new(DirectChannel::lazy(&uri(address)).unwrap());

    // Calls made together share the one connection.
    let together = (0..16).map(|_| {
        let mut client = client.clone();
        tokio::spawn(async move { check(&mut client).await })
    });
    for call in together {
        assert_eq!(call.await.unwrap().unwrap(), ServingStatus::Serving);
    }

    stop.send(()).unwrap();
    server.await.unwrap();
    let refused = check(&mut client).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(
        refused.message().contains(&address.to_string()),
        "the status names the address: {refused:?}"
    );

    let (_stop, _server) = serve(TcpListener::bind(address).await.unwrap());
    assert_eq!(check(&mut client).await.unwrap(), ServingStatus::Serving);
}

#[tokio::test]
async fn a_connection_lost_mid_call_is_unavailable_and_names_the_address() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let mut connection = h2::server::handshake(socket).await.unwrap();
        // Takes the call, then closes the connection without an answer.
        let call = connection.accept().await;
        assert!(matches!(call, Some(Ok(_))), "the call arrived");
        drop(connection);
    });
    let mut client = HealthClient::new(DirectChannel::lazy(&uri(address)).unwrap());
    let lost = check(&mut client).await.unwrap_err();
    server.await.unwrap();
    assert_eq!(lost.code(), Code::Unavailable, "{lost:?}");
    assert!(
        lost.message().contains(&address.to_string()),
        "the status names the address: {lost:?}"
    );
}

#[tokio::test]
async fn connecting_now_to_nobody_fails_with_the_address() {
    let nobody = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = nobody.local_addr().unwrap();
    drop(nobody);
    let error = DirectChannel::connect(&uri(address)).await.unwrap_err();
    assert!(error.to_string().contains(&address.to_string()), "{error}");
}

#[test]
fn only_plain_http_addresses_are_taken() {
    let error = DirectChannel::lazy(&"https://127.0.0.1:1".parse().unwrap()).unwrap_err();
    assert!(
        error.to_string().contains("not an http:// address"),
        "{error}"
    );
}
