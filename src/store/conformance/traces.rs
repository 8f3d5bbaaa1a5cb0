//! Conformance: the trace context kept with a message and handed out with its checks and
//! deliveries, on every write path (batched Prepare, one-statement Publish, transactional
//! keyed Publish).

use std::collections::HashMap;

use super::TestStore;
use super::helpers::*;
use crate::domain::{Decision, OrderingKey, Timestamp, TraceContext};
use crate::store::{Batch, NewMessage};

const WITH_STATE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const WITHOUT_STATE: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";
const KEYED: &str = "00-11111111111111111111111111111111-2222222222222222-01";

fn context(traceparent: &str, tracestate: Option<&str>) -> Option<TraceContext> {
    Some(TraceContext::from_stored(traceparent, tracestate).unwrap())
}

pub async fn trace_context_is_kept_and_handed_out(t: &TestStore) {
    let store = t.store.as_ref();
    let now = Timestamp::now();
    let sub = subscribe(store, 5, now).await;
    let traced = |key: &str, publish: bool, trace: Option<TraceContext>| NewMessage {
        trace,
        ..message(TOPIC, key, publish, now)
    };
    let prepared_trace = context(WITH_STATE, Some("vendor=1,other@sys=x y"));
    let prepared = store
        .insert_message(traced("prepared", false, prepared_trace.clone()))
        .await
        .unwrap()
        .message_id;
    let published_trace = context(WITHOUT_STATE, None);
    let published = store
        .insert_message(traced("published", true, published_trace.clone()))
        .await
        .unwrap()
        .message_id;
    let keyed_trace = context(KEYED, Some("k=v"));
    let keyed = NewMessage {
        ordering_key: OrderingKey::parse("ordering_key", "lane-1").unwrap(),
        ..traced("keyed", true, keyed_trace.clone())
    };
    let keyed = store.insert_message(keyed).await.unwrap().message_id;
    let untraced = store
        .insert_message(traced("untraced", true, None))
        .await
        .unwrap()
        .message_id;

    // A retried Prepare with another trace is the same message; the first trace stays.
    let retried = store
        .insert_message(traced("prepared", false, published_trace.clone()))
        .await
        .unwrap();
    assert!(!retried.created);
    assert_eq!(retried.message_id, prepared);

    let claimed = store
        .claim_due_checks(now.plus(CHECK_AFTER), 10, HOLD)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].message_id, prepared);
    assert_eq!(claimed[0].trace, prepared_trace);

    store
        .decide(&by_id(prepared), Decision::Commit, now)
        .await
        .unwrap();
    let leased: HashMap<_, _> = store
        .lease(&sub, Batch::messages(10), now)
        .await
        .unwrap()
        .into_iter()
        .map(|delivery| (delivery.receipt.message_id, delivery.trace))
        .collect();
    let expected = HashMap::from([
        (prepared, prepared_trace),
        (published, published_trace),
        (keyed, keyed_trace),
        (untraced, None),
    ]);
    assert_eq!(leased, expected);
}
