//! Fault injection: the real `courier` binary, over real gRPC on loopback, while things go
//! wrong underneath it. Each test runs a load (producers and consumers) and keeps a ledger of
//! what the server answered; at the end nothing answered may be lost and nothing the producers
//! never committed may be delivered (`load.rs`).
//!
//! - `sigkill.rs`: SIGKILL and restart under load, on SQLite and on PostgreSQL (two replicas,
//!   one killed while it holds leases);
//! - `outage.rs`: PostgreSQL cut (reset) and blackholed through an in-test TCP proxy;
//! - `disk.rs`: SQLite on a full filesystem (a small tmpfs the test mounts);
//! - `descriptors.rs`: the server out of file descriptors (`ulimit -n`).
//!
//! `cargo test --test faults` runs the short versions (what CI runs). The SIGKILL loops run as
//! long as asked: `COURIER_TEST_FAULT_CYCLES` (kills, default 3) and
//! `COURIER_TEST_FAULT_SECONDS` (seconds of load between kills, default 2). PostgreSQL tests
//! need `COURIER_TEST_POSTGRES_URL` (they skip without it, and fail under `CI=true`).

// The integration suite's harness: clients, request builders, readiness probes. Not every
// helper is used here.
#[allow(dead_code, unused_imports)]
#[path = "../it"]
mod integration {
    pub mod harness;
}
use integration::harness;

mod descriptors;
mod disk;
mod load;
mod outage;
#[path = "../support/process.rs"]
mod process;
mod sigkill;

use std::time::Duration;

/// How many SIGKILLs a loop runs, from `COURIER_TEST_FAULT_CYCLES`.
pub fn fault_cycles() -> usize {
    env_number("COURIER_TEST_FAULT_CYCLES", 3)
}

/// How long the load runs between two kills, from `COURIER_TEST_FAULT_SECONDS`.
pub fn fault_interval() -> Duration {
    Duration::from_secs(env_number("COURIER_TEST_FAULT_SECONDS", 2) as u64)
}

fn env_number(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => value
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?}: expected a whole number")),
        _ => default,
    }
}
