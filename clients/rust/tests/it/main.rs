//! courier-client against a live Courier: `courier::run` in-process on 127.0.0.1:0 (SQLite),
//! real tonic servers for the Checker and the Receiver, and the outbox and inbox on real
//! SQLite and PostgreSQL databases (PostgreSQL at COURIER_TEST_POSTGRES_URL; those tests skip
//! without it, except under CI=true).

mod consumer;
mod databases;
mod harness;
mod inbox;
mod outbox;
mod producer;
mod push;
