//! A real Courier server for one test: `courier::run` on `127.0.0.1:0` with its own temporary
//! database, real tonic clients over loopback, and small builders and assertions shared by
//! every module. The server is cancelled when the `TestServer` is dropped.
//!
//! One file per job: `database.rs` (the test's own database, on either backend), `server.rs`
//! (the server and its driven scheduler), `api.rs` (clients and the shortcuts most tests call),
//! `waiting.rs` (readiness probes and polling), `requests.rs` (request builders),
//! `assertions.rs` (error answers). Every test module imports them all with
//! `use crate::harness::*`.

mod api;
mod assertions;
mod database;
mod requests;
mod server;
mod waiting;

pub use api::*;
pub use assertions::*;
pub use database::*;
pub use requests::*;
pub use server::*;
pub use waiting::*;

/// Names most tests use; every test has its own server and database, so they never collide.
pub const PRODUCER: &str = "shop";
pub const TOPIC: &str = "orders";
pub const SUB: &str = "billing";
