//! Callback security: the JWT on every Check and Deliver call (verified here against the JWKS
//! fetched over HTTP), the signing key's sources and rotation, TLS and mutual TLS to
//! `https://` endpoints with certificates made in the test, and `callbacks.allowed_hosts`.
//! Checkers and Receivers are real tonic servers in the test that record what each call
//! carried.

mod hosts;
mod signed;
mod tls;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;
use courier::proto::checker_server::{Checker, CheckerServer};
use courier::proto::receiver_server::{Receiver, ReceiverServer};
use courier::proto::{CheckRequest, CheckResponse, Decision, DeliverResponse, Delivery};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use ring::signature::{ED25519, UnparsedPublicKey};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status};

use crate::harness::eventually;

/// What one call to a recorded endpoint carried.
#[derive(Debug, Clone)]
pub struct Call {
    pub authorization: Option<String>,
    pub message_id: String,
    /// The producer of a check, the subscription of a delivery.
    pub subject: String,
    /// The `traceparent` and `tracestate` metadata of the call.
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
    /// A delivery's own `traceparent` and `tracestate` fields.
    pub delivery_trace: Option<(String, String)>,
}

/// A Checker (answering COMMIT) and Receiver (answering OK) that records every call.
#[derive(Clone, Default)]
pub struct Recorder {
    calls: Arc<Mutex<Vec<Call>>>,
}

impl Recorder {
    fn record<T>(
        &self,
        request: &Request<T>,
        message_id: &str,
        subject: &str,
        delivery_trace: Option<(String, String)>,
    ) {
        let metadata = |key| {
            request
                .metadata()
                .get(key)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        };
        self.calls.lock().unwrap().push(Call {
            authorization: metadata("authorization"),
            message_id: message_id.to_owned(),
            subject: subject.to_owned(),
            traceparent: metadata("traceparent"),
            tracestate: metadata("tracestate"),
            delivery_trace,
        });
    }

    /// Serves Checker and Receiver on 127.0.0.1:0, over TLS when `tls` is given; returns the
    /// endpoint URL (`https://127.0.0.1:port` with TLS).
    pub async fn serve(&self, tls: Option<ServerTlsConfig>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local address");
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut builder = Server::builder();
        if let Some(tls) = tls {
            builder = builder.tls_config(tls).expect("server TLS settings");
        }
        let router = builder
            .add_service(CheckerServer::new(self.clone()))
            .add_service(ReceiverServer::new(self.clone()));
        tokio::spawn(router.serve_with_incoming(TcpIncoming::from(listener)));
        format!("{scheme}://{addr}")
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// The first call, once it came (within 20 s).
    pub async fn first_call(&self) -> Call {
        eventually(Duration::from_secs(20), "a callback arrives", || async {
            self.calls().first().cloned()
        })
        .await
    }
}

#[tonic::async_trait]
impl Checker for Recorder {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        let (id, producer) = (&request.get_ref().message_id, &request.get_ref().producer);
        self.record(&request, id, producer, None);
        Ok(Response::new(CheckResponse {
            decision: Decision::Commit as i32,
        }))
    }
}

#[tonic::async_trait]
impl Receiver for Recorder {
    async fn deliver(
        &self,
        request: Request<Delivery>,
    ) -> Result<Response<DeliverResponse>, Status> {
        let delivery = request.get_ref();
        let trace = (delivery.traceparent.clone(), delivery.tracestate.clone());
        let (id, subscription) = (&delivery.message_id, &delivery.subscription);
        self.record(&request, id, subscription, Some(trace));
        Ok(Response::new(DeliverResponse {}))
    }
}

// --- JWKS and JWT, checked independently of Courier's code ---

/// `GET /.well-known/jwks.json` from the HTTP listener at `addr`.
pub async fn fetch_jwks(addr: SocketAddr) -> Value {
    let mut stream = TcpStream::connect(addr)
        .await
        .expect("connect to the HTTP listener");
    let request =
        format!("GET /.well-known/jwks.json HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    serde_json::from_str(body).expect("the JWKS is JSON")
}

/// The `kid`s a JWKS lists, in order.
pub fn kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|key| key["kid"].as_str().expect("a kid").to_owned())
        .collect()
}

/// Verifies a `Bearer` JWT's EdDSA signature with the JWKS key its `kid` names and checks
/// `iss`, `aud`, the lifetime and `exp`; returns the header and the claims.
#[track_caller]
pub fn verify(authorization: &str, jwks: &Value, audience: &str) -> (Value, Value) {
    check_token(authorization, jwks, audience).unwrap_or_else(|problem| panic!("{problem}"))
}

/// What [`verify`] checks, as an error instead of a panic.
pub fn check_token(
    authorization: &str,
    jwks: &Value,
    audience: &str,
) -> Result<(Value, Value), String> {
    let token = authorization
        .strip_prefix("Bearer ")
        .ok_or("not authorization: Bearer <JWT>")?;
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return Err(format!("not a compact JWT: {token}"));
    }
    let decode = |part: &str| -> Result<Value, String> {
        let bytes = BASE64URL.decode(part).map_err(|e| e.to_string())?;
        serde_json::from_slice(&bytes).map_err(|e| e.to_string())
    };
    let (header, claims) = (decode(parts[0])?, decode(parts[1])?);
    let expect = |what: &str, ok: bool| {
        if ok {
            Ok(())
        } else {
            Err(format!("{what}: {header} {claims}"))
        }
    };
    expect("alg EdDSA", header["alg"] == "EdDSA")?;
    let kid = header["kid"].as_str().ok_or("no kid in the header")?;
    let jwk = jwks["keys"]
        .as_array()
        .ok_or("a JWKS without keys")?
        .iter()
        .find(|key| key["kid"] == kid)
        .ok_or(format!("the JWKS does not publish kid {kid}: {jwks}"))?;
    let shape = jwk["kty"] == "OKP" && jwk["crv"] == "Ed25519" && jwk["alg"] == "EdDSA";
    expect("an Ed25519 signing JWK", shape && jwk["use"] == "sig")?;
    let public = BASE64URL
        .decode(jwk["x"].as_str().ok_or("no x")?)
        .map_err(|e| e.to_string())?;
    let signature = BASE64URL.decode(parts[2]).map_err(|e| e.to_string())?;
    UnparsedPublicKey::new(&ED25519, public)
        .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
        .map_err(|_| "the signature does not verify with the published key".to_owned())?;

    expect("iss courier", claims["iss"] == "courier")?;
    expect(&format!("aud {audience}"), claims["aud"] == audience)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let issued = claims["iat"].as_u64().ok_or("no iat")?;
    let expires = claims["exp"].as_u64().ok_or("no exp")?;
    expect(
        "a 5-minute lifetime",
        expires.checked_sub(issued) == Some(300),
    )?;
    expect("valid now", issued <= now + 1 && expires > now)?;
    Ok((header, claims))
}

// --- certificates made in the test ---

/// A CA, and certificates it signs for 127.0.0.1 (servers) or for a client.
pub struct TestPki {
    pub ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl TestPki {
    pub fn new() -> Self {
        let key = KeyPair::generate().expect("a CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "courier test CA");
        let ca = params.self_signed(&key).expect("the CA certificate");
        Self {
            ca_pem: ca.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// Certificate and key PEM for `purpose`.
    fn issue(&self, names: &[&str], purpose: ExtendedKeyUsagePurpose) -> (String, String) {
        let key = KeyPair::generate().expect("a key");
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("certificate parameters");
        params.extended_key_usages = vec![purpose];
        let cert = params.signed_by(&key, &self.issuer).expect("a certificate");
        (cert.pem(), key.serialize_pem())
    }

    /// A server's TLS settings for 127.0.0.1; with `client_ca` it requires a client
    /// certificate signed by that CA.
    pub fn server_tls(&self, client_ca: Option<&str>) -> ServerTlsConfig {
        let (cert, key) = self.issue(&["127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth);
        let tls = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
        match client_ca {
            Some(ca) => tls.client_ca_root(Certificate::from_pem(ca)),
            None => tls,
        }
    }

    /// A client certificate and key, as PEM.
    pub fn client_identity(&self) -> (String, String) {
        self.issue(&["courier"], ExtendedKeyUsagePurpose::ClientAuth)
    }
}
