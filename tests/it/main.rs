//! Courier's integration tests: each test starts a real server (`courier::run` on
//! `127.0.0.1:0`, or the `courier` binary for durability) with its own temporary database and
//! talks to it through real tonic clients. See `harness/`.
//!
//! `cargo test --test it` runs them on SQLite. `COURIER_TEST_BACKEND=postgres` with
//! `COURIER_TEST_POSTGRES_URL=postgres://user@host/db` runs the same tests on PostgreSQL, one
//! fresh database per test (named `courier_test_*`; drop them when done).

mod admin;
mod auth;
mod callbacks;
mod certs;
mod cli;
mod concurrency;
mod console;
mod consumer;
mod durability;
mod edges;
mod harness;
mod metrics;
mod ordering;
mod overload;
mod postgres;
// Shared with tests/faults; not every helper is used here.
#[allow(dead_code)]
#[path = "../support/process.rs"]
mod process;
mod producer;
mod scheduler;
mod scopes;
mod secure_binary;
mod standard_services;
mod tls;
mod traces;
mod validation;
