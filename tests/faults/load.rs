//! A load of producers and consumers, and the ledger of what the server answered.
//!
//! Each producer cycles through four fates, written into the message key: Publish (`pub-`),
//! Prepare then Confirm (`con-`), Prepare then Cancel (`can-`) and Prepare alone (`hold-`).
//! A key is entered as "may be delivered" before its Publish or Confirm is sent, and as "must
//! be delivered" once that call answers OK. Consumers Receive and Ack on every subscription.
//! At the end (`Load::finish`):
//! - every key answered OK is delivered on every subscription;
//! - no key whose Publish or Confirm was never sent (cancelled or left prepared) is delivered;
//! - no message is delivered again, on a subscription, after an Ack of it answered OK there
//!   (a later attempt number than the acknowledged one);
//! - every payload is the one its producer sent.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use courier::proto::{
    AckRequest, AckResult, AckStatus, CancelRequest, ConfirmRequest, Delivery, ReceiveRequest,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status};

use crate::harness::*;

/// Longest any call may take before the load counts it as unanswered.
pub const CALL_DEADLINE: Duration = Duration::from_secs(5);
/// Deliveries one Receive asks for.
const BATCH: u32 = 50;
/// Pause after a failed call, so a load against a dead server does not spin.
const PAUSE_AFTER_FAILURE: Duration = Duration::from_millis(25);

/// Which failed calls are fine while the fault lasts.
#[derive(Debug, Clone, Copy)]
pub enum Tolerance {
    /// The server is being killed: any transport failure is fine, but never Courier's own
    /// INTERNAL answer.
    Kills,
    /// The server stays up: a failed call answers one of these codes within the deadline.
    Only(&'static [Code]),
}

/// A server the load talks to, under a name for the ledger.
#[derive(Clone)]
pub struct Target {
    pub name: String,
    pub api: Api,
}

impl Target {
    pub fn new(name: &str, api: &Api) -> Self {
        Self {
            name: name.to_owned(),
            api: api.clone(),
        }
    }
}

/// One delivery as a consumer saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub via: String,
    pub subscription: String,
    pub message_id: String,
    pub key: String,
    pub attempt: u32,
}

/// What the server answered, and what went wrong as it happened.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Keys whose Publish or Confirm was sent: they may be delivered.
    may_deliver: HashSet<String>,
    /// Keys whose Publish or Confirm answered OK: they must be delivered.
    pub committed: HashSet<String>,
    pub cancelled: usize,
    pub received: Vec<Received>,
    delivered: HashSet<(String, String)>,
    /// (subscription, message id) → the attempt an Ack answered OK for.
    acked: HashMap<(String, String), u32>,
    /// "Call CODE" → how many times.
    pub answers: BTreeMap<String, usize>,
    pub slowest_failure: Duration,
    pub violations: Vec<String>,
}

impl Ledger {
    fn answered(&mut self, call: &str, outcome: &str) {
        *self.answers.entry(format!("{call} {outcome}")).or_default() += 1;
    }

    fn failed(&mut self, call: &str, status: &Status, elapsed: Duration, tolerance: Tolerance) {
        self.answered(call, &format!("{:?}", status.code()));
        self.slowest_failure = self.slowest_failure.max(elapsed);
        // Courier's own words for a bug: never acceptable, whatever the fault.
        let internal = status.code() == Code::Internal && status.message() == "internal error";
        let unexpected = match tolerance {
            Tolerance::Kills => internal,
            Tolerance::Only(codes) => !codes.contains(&status.code()),
        };
        if unexpected {
            self.violations.push(format!(
                "{call} answered {:?} {:?} after {elapsed:?}",
                status.code(),
                status.message()
            ));
        }
    }

    fn unanswered(&mut self, call: &str, tolerance: Tolerance) {
        self.answered(call, "no answer");
        if let Tolerance::Only(_) = tolerance {
            self.violations
                .push(format!("{call} had no answer within {CALL_DEADLINE:?}"));
        }
    }

    pub fn record(&mut self, via: &str, deliveries: &[Delivery]) {
        for delivery in deliveries {
            if delivery.payload != payload_of(&delivery.key) {
                self.violations.push(format!(
                    "{} arrived on {} with another payload",
                    delivery.key, delivery.subscription
                ));
            }
            self.delivered
                .insert((delivery.subscription.clone(), delivery.key.clone()));
            self.received.push(Received {
                via: via.to_owned(),
                subscription: delivery.subscription.clone(),
                message_id: delivery.message_id.clone(),
                key: delivery.key.clone(),
                attempt: delivery.attempt,
            });
        }
    }

    fn acked(&mut self, deliveries: &[Delivery], results: &[AckResult]) {
        for (delivery, result) in deliveries.iter().zip(results) {
            if result.receipt == delivery.receipt && result.status() == AckStatus::Ok {
                let acked = self
                    .acked
                    .entry((delivery.subscription.clone(), delivery.message_id.clone()))
                    .or_default();
                *acked = (*acked).max(delivery.attempt);
            }
        }
    }

    /// Keys answered OK but not yet delivered on some subscription.
    pub fn missing(&self, subscriptions: &[&str]) -> Vec<(String, String)> {
        let mut missing = Vec::new();
        for key in &self.committed {
            for subscription in subscriptions {
                let pair = (subscription.to_string(), key.clone());
                if !self.delivered.contains(&pair) {
                    missing.push(pair);
                }
            }
        }
        missing.sort();
        missing
    }

    /// Every broken promise, with the ones seen as they happened.
    pub fn verify(&self, subscriptions: &[&str]) -> Vec<String> {
        let mut violations = self.violations.clone();
        let missing = self.missing(subscriptions);
        if !missing.is_empty() {
            violations.push(format!(
                "{} answered Publish or Confirm never delivered, e.g. {:?}",
                missing.len(),
                &missing[..missing.len().min(5)]
            ));
        }
        for received in &self.received {
            if !self.may_deliver.contains(&received.key) {
                violations.push(format!(
                    "{} was delivered on {} but never published or confirmed",
                    received.key, received.subscription
                ));
            }
            let delivery = (received.subscription.clone(), received.message_id.clone());
            if let Some(acked) = self.acked.get(&delivery)
                && received.attempt > *acked
            {
                violations.push(format!(
                    "{} was delivered on {} (attempt {}) after an Ack of attempt {acked} answered OK",
                    received.key, received.subscription, received.attempt
                ));
            }
        }
        violations
    }

    /// Of the `held` deliveries, those delivered again (a later attempt) through a server other
    /// than `victim`.
    pub fn taken_over(&self, held: &[Received], victim: &str) -> usize {
        held.iter()
            .filter(|held| {
                self.received.iter().any(|again| {
                    again.via != victim
                        && again.subscription == held.subscription
                        && again.message_id == held.message_id
                        && again.attempt > held.attempt
                })
            })
            .count()
    }

    /// Calls that did not answer OK.
    pub fn failures(&self) -> usize {
        self.answers
            .iter()
            .filter(|(answer, _)| !answer.ends_with(" OK"))
            .map(|(_, count)| count)
            .sum()
    }

    pub fn summary(&self) -> String {
        let redelivered = self.received.iter().filter(|r| r.attempt > 1).count();
        format!(
            "{} committed, {} cancelled, {} deliveries ({redelivered} redeliveries), slowest failed call {:?}; answers: {:?}",
            self.committed.len(),
            self.cancelled,
            self.received.len(),
            self.slowest_failure,
            self.answers
        )
    }
}

pub type SharedLedger = Arc<Mutex<Ledger>>;

/// Producers and consumers running against one or more servers.
pub struct Load {
    ledger: SharedLedger,
    subscriptions: Vec<&'static str>,
    stop_producers: CancellationToken,
    stop_consumers: CancellationToken,
    producers: Vec<JoinHandle<()>>,
    consumers: Vec<JoinHandle<()>>,
}

impl Load {
    /// `producers` producers per target, and one consumer per target and subscription.
    pub fn start(
        targets: &[Target],
        subscriptions: &[&'static str],
        producers: usize,
        tolerance: Tolerance,
    ) -> Self {
        let ledger = SharedLedger::default();
        let (stop_producers, stop_consumers) = (CancellationToken::new(), CancellationToken::new());
        let mut load = Self {
            ledger: ledger.clone(),
            subscriptions: subscriptions.to_vec(),
            stop_producers: stop_producers.clone(),
            stop_consumers: stop_consumers.clone(),
            producers: Vec::new(),
            consumers: Vec::new(),
        };
        for target in targets {
            for n in 0..producers {
                let name = format!("{}.{n}", target.name);
                load.producers.push(tokio::spawn(produce(
                    target.api.clone(),
                    name,
                    ledger.clone(),
                    tolerance,
                    stop_producers.clone(),
                )));
            }
            for subscription in subscriptions {
                load.consumers.push(tokio::spawn(consume(
                    target.clone(),
                    subscription,
                    ledger.clone(),
                    tolerance,
                    stop_consumers.clone(),
                )));
            }
        }
        load
    }

    pub fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().expect("the ledger")
    }

    pub fn shared_ledger(&self) -> SharedLedger {
        self.ledger.clone()
    }

    /// Stops the producers, lets the consumers drain for at most `drain`, stops them, and
    /// panics with every broken promise. Returns the ledger for more checks.
    pub async fn finish(mut self, drain: Duration) -> Ledger {
        self.stop_producers.cancel();
        for producer in self.producers.drain(..) {
            producer.await.expect("a producer");
        }
        let started = Instant::now();
        while !self.ledger().missing(&self.subscriptions).is_empty() && started.elapsed() < drain {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.stop_consumers.cancel();
        for consumer in self.consumers.drain(..) {
            consumer.await.expect("a consumer");
        }
        let ledger = std::mem::take(&mut *self.ledger());
        let violations = ledger.verify(&self.subscriptions);
        assert!(
            violations.is_empty(),
            "{} broken promises:\n{}\n({})",
            violations.len(),
            violations.join("\n"),
            ledger.summary()
        );
        assert!(
            !ledger.committed.is_empty(),
            "the load committed nothing: {}",
            ledger.summary()
        );
        ledger
    }
}

/// One call under the deadline, entered in the ledger; `Some` when it answered OK.
pub async fn call<T>(
    ledger: &SharedLedger,
    tolerance: Tolerance,
    name: &str,
    call: impl Future<Output = Result<tonic::Response<T>, Status>>,
) -> Option<T> {
    let started = Instant::now();
    let answer = tokio::time::timeout(CALL_DEADLINE, call).await;
    let mut ledger = ledger.lock().expect("the ledger");
    match answer {
        Ok(Ok(response)) => {
            ledger.answered(name, "OK");
            Some(response.into_inner())
        }
        Ok(Err(status)) => {
            ledger.failed(name, &status, started.elapsed(), tolerance);
            None
        }
        Err(_) => {
            ledger.unanswered(name, tolerance);
            None
        }
    }
}

async fn produce(
    api: Api,
    name: String,
    ledger: SharedLedger,
    tolerance: Tolerance,
    stop: CancellationToken,
) {
    let mut n = 0u64;
    while !stop.is_cancelled() {
        n += 1;
        let fates = ["pub", "con", "can", "hold"];
        let fate = fates[(n % 4) as usize];
        let key = format!("{fate}-{name}-{n}");
        if !produce_one(&api, &key, fate, &ledger, tolerance).await {
            tokio::time::sleep(PAUSE_AFTER_FAILURE).await;
        }
    }
}

/// Sends one message to its fate; false when a call failed.
async fn produce_one(
    api: &Api,
    key: &str,
    fate: &str,
    ledger: &SharedLedger,
    tolerance: Tolerance,
) -> bool {
    let mut producer = api.producer();
    let entry = || ledger.lock().expect("the ledger");
    if fate == "pub" {
        // Entered before the call: a delivery may follow as soon as it is sent.
        entry().may_deliver.insert(key.to_owned());
        let request = publish_request(PRODUCER, TOPIC, key);
        let published = call(ledger, tolerance, "Publish", producer.publish(request)).await;
        if published.is_some() {
            entry().committed.insert(key.to_owned());
        }
        return published.is_some();
    }
    let request = prepare_request(PRODUCER, TOPIC, key);
    let Some(prepared) = call(ledger, tolerance, "Prepare", producer.prepare(request)).await else {
        return false;
    };
    let message = by_id(&prepared.message_id);
    match fate {
        "con" => {
            entry().may_deliver.insert(key.to_owned());
            let request = ConfirmRequest { message };
            let confirmed = call(ledger, tolerance, "Confirm", producer.confirm(request)).await;
            if confirmed.is_some() {
                entry().committed.insert(key.to_owned());
            }
            confirmed.is_some()
        }
        "can" => {
            let request = CancelRequest { message };
            let cancelled = call(ledger, tolerance, "Cancel", producer.cancel(request)).await;
            if cancelled.is_some() {
                entry().cancelled += 1;
            }
            cancelled.is_some()
        }
        _ => true,
    }
}

async fn consume(
    target: Target,
    subscription: &'static str,
    ledger: SharedLedger,
    tolerance: Tolerance,
    stop: CancellationToken,
) {
    let mut consumer = target.api.consumer();
    while !stop.is_cancelled() {
        let request = ReceiveRequest {
            max_bytes: 0,
            subscription: subscription.into(),
            max_messages: BATCH,
            wait: ms(500),
        };
        let Some(received) = call(&ledger, tolerance, "Receive", consumer.receive(request)).await
        else {
            tokio::time::sleep(PAUSE_AFTER_FAILURE).await;
            continue;
        };
        let deliveries = received.deliveries;
        if deliveries.is_empty() {
            continue;
        }
        ledger
            .lock()
            .expect("the ledger")
            .record(&target.name, &deliveries);
        let request = AckRequest {
            subscription: subscription.into(),
            receipts: deliveries.iter().map(|d| d.receipt.clone()).collect(),
        };
        if let Some(answer) = call(&ledger, tolerance, "Ack", consumer.ack(request)).await {
            ledger
                .lock()
                .expect("the ledger")
                .acked(&deliveries, &answer.results);
        }
    }
}

/// Receives up to `max` deliveries through `target` and never acks them: a consumer that
/// holds leases when its server dies.
pub async fn hold_leases(
    target: &Target,
    subscription: &str,
    max: u32,
    ledger: &SharedLedger,
) -> Vec<Received> {
    let request = ReceiveRequest {
        max_bytes: 0,
        subscription: subscription.into(),
        max_messages: max,
        wait: ms(1000),
    };
    let tolerance = Tolerance::Kills;
    let mut consumer = target.api.consumer();
    let Some(received) = call(ledger, tolerance, "Receive", consumer.receive(request)).await else {
        return Vec::new();
    };
    let mut ledger = ledger.lock().expect("the ledger");
    let from = ledger.received.len();
    ledger.record(&target.name, &received.deliveries);
    ledger.received[from..].to_vec()
}
