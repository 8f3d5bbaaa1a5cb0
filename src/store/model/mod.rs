//! A model-based test of the Store (issue 16, part 1): random sequences of operations are
//! applied to each backend and to a small in-memory model of the message and delivery state
//! machines (`state`, `producer`, `consumer`); after every step the answers and the observable
//! state must agree (`runner`, `observe`). proptest generates the sequences (`ops`) and, on a
//! disagreement, shrinks them to a minimal one, printed with the seed that found it.
//!
//! CI runs a fixed number of sequences per backend. For long runs:
//!
//! ```text
//! COURIER_MODEL_CASES=200000 COURIER_MODEL_STEPS=100 cargo test --lib store::model -- --nocapture
//! ```
//!
//! `COURIER_MODEL_SEED=<n>` replays the sequences of the run a failure names (the store's random
//! backoff jitter aside). Time is the model's clock, passed to every store call, so nothing
//! sleeps. PostgreSQL runs fewer sequences in CI: each step costs it round trips to a server.

mod consumer;
mod databases;
mod observe;
mod ops;
mod producer;
mod runner;
mod state;

use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};

use super::conformance::{open_postgres, open_sqlite};
use crate::domain::Timestamp;

/// A number from the environment variable `name`, or `default`.
fn setting(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(value) => value
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a whole number, not {value:?}")),
        Err(_) => default,
    }
}

/// Runs `COURIER_MODEL_CASES` (or `cases`) sequences of up to `COURIER_MODEL_STEPS` operations
/// against the backend `open` opens.
fn check_backend(backend: &str, open: databases::Open, cases: u64) {
    let cases = setting("COURIER_MODEL_CASES", cases) as u32;
    let steps = setting("COURIER_MODEL_STEPS", 60) as usize;
    let seed = setting("COURIER_MODEL_SEED", rand::random::<u32>().into());
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    let seed_bytes: Vec<u8> = seed.to_le_bytes().repeat(4);
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes);
    let mut cases_runner = TestRunner::new_with_rng(config, rng);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let databases = databases::Databases::new(open);
    let result = cases_runner.run(&ops::sequence(steps), |sequence| {
        runtime.block_on(async {
            let Some(test) = databases.take().await else {
                return Ok(());
            };
            let mut run = runner::Run::new(test, Timestamp::now());
            run.sequence(&sequence).await.map_err(TestCaseError::fail)?;
            let (test, model) = run.into_parts();
            databases
                .give_back(test, &model)
                .await
                .map_err(TestCaseError::fail)
        })
    });
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, sequence)) => {
            let steps: Vec<String> = sequence
                .iter()
                .enumerate()
                .map(|(step, op)| format!("  {step}: {op:?}"))
                .collect();
            panic!(
                "{backend} disagrees with the model (replay: COURIER_MODEL_SEED={seed})\n\
                 {reason}\nminimal sequence:\n{}",
                steps.join("\n")
            );
        }
        Err(TestError::Abort(reason)) => panic!("{backend}: model run aborted: {reason}"),
    }
}

#[test]
fn sqlite_agrees_with_the_model() {
    check_backend("SQLite", || Box::pin(open_sqlite()), 200);
}

#[test]
fn postgres_agrees_with_the_model() {
    if crate::store::testing::postgres_url().is_none() {
        return;
    }
    check_backend("PostgreSQL", || Box::pin(open_postgres()), 60);
}
