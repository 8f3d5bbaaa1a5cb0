//! Admin's Resolve: an operator commits or rolls back a prepared message.

use std::time::Duration;

use courier::proto::{Decision, MessageOutcome, MessageState, ResolveRequest};
use tonic::Code;

use crate::harness::*;

async fn resolve(
    server: &TestServer,
    message_id: &str,
    decision: Decision,
) -> Result<MessageState, tonic::Status> {
    server
        .admin()
        .resolve(ResolveRequest {
            message: by_id(message_id),
            decision: decision as i32,
        })
        .await
        .map(|r| r.into_inner().state())
}

#[tokio::test]
async fn resolve_commits_or_rolls_back_a_prepared_message() {
    let server = TestServer::start().await;
    server.create_subscription(subscription(SUB, TOPIC)).await;
    let committed = server.prepare(TOPIC, "commit-me").await;
    let rolled_back = server.prepare(TOPIC, "roll-me-back").await;

    assert_eq!(
        resolve(&server, &committed, Decision::Commit)
            .await
            .unwrap(),
        MessageState::Confirmed
    );
    assert_eq!(
        resolve(&server, &committed, Decision::Commit)
            .await
            .unwrap(),
        MessageState::Confirmed
    );
    assert_precondition_names(
        resolve(&server, &committed, Decision::Rollback).await,
        "CONFIRMED",
    );
    assert_eq!(
        server.receive_one(SUB, Duration::ZERO).await.message_id,
        committed
    );

    assert_eq!(
        resolve(&server, &rolled_back, Decision::Rollback)
            .await
            .unwrap(),
        MessageState::Cancelled
    );
    assert_eq!(
        resolve(&server, &rolled_back, Decision::Rollback)
            .await
            .unwrap(),
        MessageState::Cancelled
    );
    assert_precondition_names(
        resolve(&server, &rolled_back, Decision::Commit).await,
        "CANCELLED",
    );
    assert_precondition_names(server.confirm(&rolled_back).await, "CANCELLED");
    assert_eq!(
        server.status(&rolled_back).await.outcome(),
        MessageOutcome::Cancelled
    );

    let by_producer_key = server.prepare(TOPIC, "by-key").await;
    let state = server
        .admin()
        .resolve(ResolveRequest {
            message: by_key(PRODUCER, "by-key"),
            decision: Decision::Commit as i32,
        })
        .await
        .unwrap()
        .into_inner()
        .state();
    assert_eq!(state, MessageState::Confirmed);
    assert_eq!(
        server.status(&by_producer_key).await.state(),
        MessageState::Confirmed
    );

    let unknown = uuid::Uuid::now_v7().to_string();
    assert_code(
        resolve(&server, &unknown, Decision::Commit).await,
        Code::NotFound,
    );
}
