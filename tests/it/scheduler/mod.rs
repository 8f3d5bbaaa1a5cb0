//! The scheduler: check-back through producers' Checkers, push delivery to Receivers, and
//! retention. Checkers and Receivers are real tonic servers inside the tests (`fakes.rs`).
//!
//! Most tests run a [`Driven`] server: the real services on the real store, with the
//! scheduler's background loops left off, so the test runs one pass at a time
//! (`Scheduler::run_once`) at a `now` of its choosing and steps through backoffs and retention
//! without sleeping. A few (`running.rs`) run the whole server to show that the loops wake and
//! act by themselves.

mod checks;
mod fakes;
mod push;
mod retention;
mod running;

use std::time::Duration;

use courier::config::Config;
use courier::domain::Timestamp;
use courier::proto::Subscription;
use courier::scheduler::{CheckCounts, PassReport, PushCounts};

use crate::harness::{DrivenScheduler, TOPIC, TestServer, fast_subscription};

const PUSH_SUB: &str = "webhook";

/// A test server whose scheduler the test drives: [`Driven::pass`] runs one pass of every loop.
/// It dereferences to the [`TestServer`], so the harness's shortcuts work on it.
struct Driven {
    server: TestServer,
    scheduler: DrivenScheduler,
}

impl std::ops::Deref for Driven {
    type Target = TestServer;

    fn deref(&self) -> &TestServer {
        &self.server
    }
}

impl Driven {
    async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let (server, scheduler) = TestServer::start_driven(|config| {
            // A message is due for its first check as soon as it is prepared, so the first pass
            // can run at the real `now`: a check's COMMIT dates the deliveries it creates, and a
            // pull consumer leases them in real time.
            config.checks.first_after = Duration::ZERO;
            tweak(config);
        })
        .await;
        Self { server, scheduler }
    }

    /// One pass of every loop as of `now`.
    async fn pass(&self, now: Timestamp) -> PassReport {
        self.scheduler.pass(now).await
    }
}

/// `seconds` from now: a `now` for [`Driven::pass`].
fn after(seconds: u64) -> Timestamp {
    Timestamp::now().plus(Duration::from_secs(seconds))
}

/// When a message prepared on a [`Driven`] server is due for its first check: at once.
fn first_check() -> Timestamp {
    Timestamp::now()
}

/// A push subscription of `TOPIC` to `endpoint` with the fast retries of `fast_subscription`.
fn push_subscription(name: &str, endpoint: &str, max_attempts: u32) -> Subscription {
    Subscription {
        push_endpoint: endpoint.into(),
        ..fast_subscription(name, TOPIC, max_attempts)
    }
}

/// A pass report of checks only, counted by `count`: `checks(|c| c.confirmed = 1)`.
fn checks(count: impl FnOnce(&mut CheckCounts)) -> PassReport {
    let mut report = PassReport::default();
    count(&mut report.checks);
    report
}

/// A pass report of pushes only, counted by `count`: `pushes(|p| p.acked = 1)`.
fn pushes(count: impl FnOnce(&mut PushCounts)) -> PassReport {
    let mut report = PassReport::default();
    count(&mut report.pushes);
    report
}
