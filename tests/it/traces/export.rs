//! The `courier` binary with `telemetry.otlp_endpoint` set (as a `COURIER_*` variable) joins
//! the producer's trace: its spans go to the in-test collector, the check-back and push spans
//! are children of the producer's span, and the Checker and Receiver get a `traceparent`
//! naming those spans as their parent. The spans still queued are flushed at SIGTERM.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use courier::proto::{ConfirmRequest, PublishRequest, Subscription};

use super::collector::{Collector, ReceivedSpan};
use super::*;
use crate::callbacks::{Call, Recorder};
use crate::process::{courier_command, free_port};

/// The producer span of a call Courier refuses.
const THIRD_SPAN: &str = "00-5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a-1234567812345678-01";

/// `courier serve` with only the given `COURIER_*` variables; killed if the test ends early.
struct Served(Child);

impl Served {
    fn start(log: &std::path::Path, env: &[(&str, &str)]) -> Self {
        let child = courier_command()
            .arg("serve")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).expect("log file"))
            .spawn()
            .expect("start courier serve");
        Self(child)
    }

    /// SIGTERM, then waits for the exit: a graceful stop flushes the queued spans.
    fn terminate(&mut self, log: &std::path::Path) {
        let status = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM");
        let started = Instant::now();
        while self.0.try_wait().expect("the child's status").is_none() {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "no exit: {log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Trace id and parent span id of a `traceparent`.
fn ids(traceparent: &str) -> (&str, &str) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent:?}");
    (parts[1], parts[2])
}

/// Asserts that `call` carries a traceparent of the producer's trace whose parent is a
/// Courier span named `name`, itself a child of the producer's span; returns that span.
fn assert_courier_parent(
    call: &Call,
    spans: &Collector,
    name: &str,
    producer: &str,
) -> ReceivedSpan {
    let traceparent = call.traceparent.as_deref().expect("a traceparent");
    let (trace_id, parent_id) = ids(traceparent);
    let (producer_trace, producer_span) = ids(producer);
    assert_eq!(trace_id, producer_trace, "{name}: same trace");
    let span = spans
        .span(parent_id)
        .unwrap_or_else(|| panic!("{name}: span {parent_id} exported: {:#?}", spans.spans()));
    assert_eq!(span.name, name);
    assert_eq!(span.service, "courier");
    assert_eq!(span.trace_id, producer_trace);
    assert_eq!(
        span.parent_span_id, producer_span,
        "{name}: child of the producer"
    );
    assert_eq!(
        call.tracestate.as_deref(),
        Some(STATE),
        "{name}: tracestate"
    );
    span
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exported_spans_run_from_the_producer_through_courier_to_checker_and_consumer() {
    let collector = Collector::default();
    let otlp = collector.serve().await;
    let recorder = Recorder::default();
    let endpoint = recorder.serve(None).await;
    let dir = tempfile::tempdir().unwrap();
    let database = Backend::from_env().fresh_database(&dir).await;
    let addr = free_port();
    let log = dir.path().join("courier.log");
    let mut served = Served::start(
        &log,
        &[
            ("COURIER_LISTEN", &addr.to_string()),
            ("COURIER_DATABASE_URL", &database.url),
            ("COURIER_METRICS_LISTEN", ""),
            ("COURIER_SHUTDOWN_GRACE", "1s"),
            ("COURIER_TELEMETRY__OTLP_ENDPOINT", &otlp),
        ],
    );
    let api = Api::connect_lazy(addr);
    wait_until_serving(api.channel(), Duration::from_secs(30)).await;
    api.register_checker(&endpoint, None).await;
    api.create_subscription(Subscription {
        push_endpoint: endpoint.clone(),
        ..fast_subscription(SUB, TOPIC, 5)
    })
    .await;

    // Prepared and left to the check-back (COMMIT), then pushed; and a Publish, pushed.
    let request = traced(prepare_checked_soon("exported-1"), PRODUCER_SPAN, STATE);
    let prepared = api.producer().prepare(request).await.expect("Prepare");
    let prepared = prepared.into_inner().message_id;
    let publish = publish_request(PRODUCER, TOPIC, "exported-2");
    let request = traced::<PublishRequest>(publish, OTHER_SPAN, STATE);
    let published = api.producer().publish(request).await.expect("Publish");
    let published = published.into_inner().message_id;
    // A refused call's span says it failed.
    let unknown = ConfirmRequest {
        message: by_id("01a23811-2a9c-71c4-977b-65c045cd9073"),
    };
    let refused = api
        .producer()
        .confirm(traced(unknown, THIRD_SPAN, ""))
        .await;
    assert_eq!(refused.unwrap_err().code(), tonic::Code::NotFound);
    let calls = eventually(
        Duration::from_secs(30),
        "a check and two pushes",
        || async {
            let calls = recorder.calls();
            (calls.len() >= 3).then_some(calls)
        },
    )
    .await;
    served.terminate(&log);

    let call = |message_id: &str, pushed: bool| {
        calls
            .iter()
            .find(|c| c.message_id == message_id && c.delivery_trace.is_some() == pushed)
            .unwrap_or_else(|| panic!("a call for {message_id}: {calls:#?}"))
    };
    let check = assert_courier_parent(call(&prepared, false), &collector, "check", PRODUCER_SPAN);
    let push = assert_courier_parent(call(&prepared, true), &collector, "push", PRODUCER_SPAN);
    assert_ne!(check.span_id, push.span_id);
    assert_courier_parent(call(&published, true), &collector, "push", OTHER_SPAN);
    // A pushed Delivery's fields carry what its metadata carries.
    let pushed = call(&prepared, true);
    let fields = pushed.delivery_trace.clone().unwrap();
    assert_eq!(Some(fields.0.as_str()), pushed.traceparent.as_deref());

    // The RPC spans are children of the producer's spans.
    let spans = collector.spans();
    let rpc = |name: &str, producer: &str| {
        let (trace_id, span_id) = ids(producer);
        spans
            .iter()
            .any(|s| s.name == name && s.trace_id == trace_id && s.parent_span_id == span_id)
    };
    assert!(
        rpc("courier.v1.Producer/Prepare", PRODUCER_SPAN),
        "{spans:#?}"
    );
    let (trace_id, span_id) = ids(THIRD_SPAN);
    let refused = spans
        .iter()
        .find(|s| s.trace_id == trace_id && s.parent_span_id == span_id)
        .unwrap_or_else(|| panic!("the refused Confirm's span: {spans:#?}"));
    assert_eq!(refused.name, "courier.v1.Producer/Confirm");
    assert!(refused.failed, "{refused:?}");
    let succeeded = spans
        .iter()
        .find(|s| s.name == "courier.v1.Producer/Prepare");
    assert!(!succeeded.unwrap().failed);
    assert!(rpc("courier.v1.Producer/Publish", OTHER_SPAN), "{spans:#?}");
    // The group commit that wrote the Prepare links to the Prepare's trace.
    let (producer_trace, _) = ids(PRODUCER_SPAN);
    let links_producer = |s: &ReceivedSpan| s.linked_traces.iter().any(|t| t == producer_trace);
    assert!(
        spans
            .iter()
            .any(|s| s.name == "store_batch" && links_producer(s)),
        "{spans:#?}"
    );
}
