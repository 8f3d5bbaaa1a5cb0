//! A small OpenTelemetry collector: a real tonic server implementing the OTLP TraceService
//! (the `opentelemetry-proto` server types) that keeps every span it is sent.

use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode as Code;
use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

/// One span as the collector got it; ids in lowercase hex, as a `traceparent` writes them.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    /// The exporting process's `service.name`.
    pub service: String,
    /// The trace ids of the spans it links to.
    pub linked_traces: Vec<String>,
    /// Whether the span says it failed (`STATUS_CODE_ERROR`).
    pub failed: bool,
}

#[derive(Clone, Default)]
pub struct Collector {
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
}

impl Collector {
    /// Serves on 127.0.0.1:0 for the rest of the test; returns its `http://` URL.
    pub async fn serve(&self) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("local address"));
        let router = Server::builder().add_service(TraceServiceServer::new(self.clone()));
        tokio::spawn(router.serve_with_incoming(TcpIncoming::from(listener)));
        url
    }

    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().unwrap().clone()
    }

    /// The span with id `span_id`, if it was received.
    pub fn span(&self, span_id: &str) -> Option<ReceivedSpan> {
        self.spans()
            .into_iter()
            .find(|span| span.span_id == span_id)
    }
}

fn service_name(resource: Option<&Resource>) -> String {
    let attributes = resource.map(|resource| resource.attributes.as_slice());
    attributes
        .unwrap_or_default()
        .iter()
        .filter(|attribute| attribute.key == "service.name")
        .find_map(
            |attribute| match attribute.value.as_ref()?.value.as_ref()? {
                Value::StringValue(name) => Some(name.clone()),
                _ => None,
            },
        )
        .unwrap_or_default()
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let mut received = Vec::new();
        for resource_spans in request.into_inner().resource_spans {
            let service = service_name(resource_spans.resource.as_ref());
            for scope_spans in resource_spans.scope_spans {
                for span in scope_spans.spans {
                    received.push(ReceivedSpan {
                        name: span.name,
                        trace_id: hex::encode(span.trace_id),
                        span_id: hex::encode(span.span_id),
                        parent_span_id: hex::encode(span.parent_span_id),
                        service: service.clone(),
                        failed: span
                            .status
                            .as_ref()
                            .is_some_and(|status| status.code == Code::Error as i32),
                        linked_traces: span
                            .links
                            .iter()
                            .map(|link| hex::encode(&link.trace_id))
                            .collect(),
                    });
                }
            }
        }
        self.spans.lock().unwrap().extend(received);
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}
