//! The outbox on SQLite and PostgreSQL: sends in one local transaction, the Checker's answers
//! from the table, the tombstone that makes "absent" a safe ROLLBACK, and Courier's check-back
//! against a producer that died before Confirm.

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use courier_client::proto::CheckRequest;
use courier_client::proto::checker_client::CheckerClient;
use courier_client::{
    Backend, CallbackAuth, Confirmation, Decision, MessageState, Outbox, OutgoingMessage, SendError,
};
use futures::FutureExt as _;
use sqlx::Pool;
use tokio::sync::oneshot;
use tonic::transport::Server;

use crate::databases::*;
use crate::harness::*;
use crate::on_both_databases;

on_both_databases!(
    a_committed_send_is_confirmed_and_checked_as_commit,
    a_failed_send_is_cancelled_and_checked_as_rollback,
    a_panicking_send_is_cancelled,
    a_check_during_the_local_transaction_waits_for_its_commit,
    a_check_during_a_failing_local_transaction_answers_rollback,
    a_tombstone_makes_a_late_local_transaction_fail_and_cancel,
    courier_checks_back_on_a_producer_that_died_before_confirm,
    old_outbox_rows_are_pruned,
);

/// Courier with a subscription, the business table and the outbox installed.
async fn setup<DB: Backend>(pool: &Pool<DB>) -> (Courier, Outbox<DB>) {
    let courier = Courier::start().await;
    courier.subscribe(SUB, Duration::from_secs(30), 5).await;
    create_orders(pool).await;
    let outbox = Outbox::new(pool.clone());
    outbox.install().await.expect("the outbox installs");
    outbox
        .install()
        .await
        .expect("installing again is harmless");
    (courier, outbox)
}

/// Serves the outbox's Checker (no token checks) and answers a Check client for it.
async fn checker<DB: Backend>(
    outbox: &Outbox<DB>,
) -> (
    CheckerClient<tonic::transport::Channel>,
    tokio_util::sync::DropGuard,
) {
    let router =
        Server::builder().add_service(outbox.checker(CallbackAuth::accept_any()).into_server());
    let (url, guard) = serve(router).await;
    let channel = tonic::transport::Endpoint::from_shared(url)
        .expect("a URL")
        .connect_lazy();
    (CheckerClient::new(channel), guard)
}

async fn check(
    client: &mut CheckerClient<tonic::transport::Channel>,
    message_id: &str,
) -> Decision {
    client
        .check(CheckRequest {
            message_id: message_id.into(),
            producer: PRODUCER.into(),
            ..CheckRequest::default()
        })
        .await
        .expect("Check")
        .into_inner()
        .decision()
}

async fn a_committed_send_is_confirmed_and_checked_as_commit<DB: Backend>(pool: Pool<DB>) {
    let (courier, outbox) = setup(&pool).await;
    let sent = outbox
        .send_in_transaction(
            &courier.producer(),
            OutgoingMessage::new(TOPIC, "order-1"),
            async |connection, message_id| {
                insert_order::<DB>(connection, "order-1", message_id).await?;
                Ok::<_, sqlx::Error>("order-1")
            },
        )
        .await
        .expect("sent");
    assert_eq!(sent.value, "order-1");
    assert!(matches!(sent.confirmation, Confirmation::Confirmed));
    assert_eq!(
        courier.status(&sent.message_id).await.state(),
        MessageState::Confirmed
    );
    assert_eq!(orders(&pool).await, 1);
    assert_eq!(
        outbox_state(&pool, &sent.message_id).await.as_deref(),
        Some("COMMITTED")
    );

    let (mut client, _server) = checker(&outbox).await;
    assert_eq!(check(&mut client, &sent.message_id).await, Decision::Commit);
    assert_eq!(courier.receive(SUB, Duration::from_secs(5)).await.len(), 1);
}

async fn a_failed_send_is_cancelled_and_checked_as_rollback<DB: Backend>(pool: Pool<DB>) {
    let (courier, outbox) = setup(&pool).await;
    let mut seen_id = String::new();
    let error = outbox
        .send_in_transaction(
            &courier.producer(),
            OutgoingMessage::new(TOPIC, "order-2"),
            async |connection, message_id| {
                seen_id = message_id.to_owned();
                insert_order::<DB>(connection, "order-2", message_id).await?;
                // A second order with the same number: the local transaction fails.
                insert_order::<DB>(connection, "order-2", message_id).await?;
                Ok::<_, sqlx::Error>(())
            },
        )
        .await
        .expect_err("the local transaction failed");
    assert!(
        matches!(error, SendError::Local(sqlx::Error::Database(_))),
        "{error:?}"
    );
    assert_eq!(
        courier.status(&seen_id).await.state(),
        MessageState::Cancelled
    );
    assert_eq!(orders(&pool).await, 0, "the order rolled back");
    assert_eq!(
        outbox_state(&pool, &seen_id).await.as_deref(),
        Some("ROLLED_BACK")
    );

    let (mut client, _server) = checker(&outbox).await;
    assert_eq!(check(&mut client, &seen_id).await, Decision::Rollback);
}

async fn a_panicking_send_is_cancelled<DB: Backend>(pool: Pool<DB>) {
    let (courier, outbox) = setup(&pool).await;
    let (id_sender, id_receiver) = oneshot::channel();
    let producer = courier.producer();
    let outcome = AssertUnwindSafe(outbox.send_in_transaction(
        &producer,
        OutgoingMessage::new(TOPIC, "order-3"),
        async move |connection, message_id| -> Result<(), sqlx::Error> {
            insert_order::<DB>(connection, "order-3", message_id).await?;
            id_sender.send(message_id.to_owned()).unwrap();
            panic!("bug after the insert");
        },
    ))
    .catch_unwind()
    .await;
    assert!(outcome.is_err(), "the panic goes on");
    let message_id = id_receiver.await.unwrap();
    assert_eq!(
        courier.status(&message_id).await.state(),
        MessageState::Cancelled
    );
    assert_eq!(orders(&pool).await, 0);
}

/// The Checker asks while the producer's transaction (outbox row written) is still open: its
/// answer waits for the transaction and is COMMIT once it commits.
async fn a_check_during_the_local_transaction_waits_for_its_commit<DB: Backend>(pool: Pool<DB>) {
    let (courier, outbox) = setup(&pool).await;
    let (mut client, _server) = checker(&outbox).await;
    let (in_transaction, inside) = oneshot::channel();
    let (release, released) = oneshot::channel::<()>();
    let send = tokio::spawn({
        let outbox = outbox.clone();
        let producer = courier.producer();
        async move {
            outbox
                .send_in_transaction(
                    &producer,
                    OutgoingMessage::new(TOPIC, "order-4"),
                    async move |connection, message_id| {
                        insert_order::<DB>(connection, "order-4", message_id).await?;
                        in_transaction.send(message_id.to_owned()).unwrap();
                        released.await.unwrap();
                        Ok::<_, sqlx::Error>(())
                    },
                )
                .await
        }
    });
    let message_id = inside.await.unwrap();
    let asked = tokio::spawn({
        let message_id = message_id.clone();
        async move { check(&mut client, &message_id).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !asked.is_finished(),
        "the check waits for the open transaction"
    );
    release.send(()).unwrap();

    let sent = send.await.unwrap().expect("sent");
    assert!(matches!(sent.confirmation, Confirmation::Confirmed));
    assert_eq!(asked.await.unwrap(), Decision::Commit);
    assert_eq!(
        courier.status(&message_id).await.state(),
        MessageState::Confirmed
    );
    assert_eq!(orders(&pool).await, 1);
}

/// Same race, but the transaction fails: the Checker answers ROLLBACK and the send cancels.
async fn a_check_during_a_failing_local_transaction_answers_rollback<DB: Backend>(pool: Pool<DB>) {
    let (courier, outbox) = setup(&pool).await;
    let (mut client, _server) = checker(&outbox).await;
    let (in_transaction, inside) = oneshot::channel();
    let (release, released) = oneshot::channel::<()>();
    let send = tokio::spawn({
        let outbox = outbox.clone();
        let producer = courier.producer();
        async move {
            outbox
                .send_in_transaction(
                    &producer,
                    OutgoingMessage::new(TOPIC, "order-5"),
                    async move |connection, message_id| {
                        insert_order::<DB>(connection, "order-5", message_id).await?;
                        in_transaction.send(message_id.to_owned()).unwrap();
                        released.await.unwrap();
                        Err::<(), _>(sqlx::Error::Protocol("payment declined".into()))
                    },
                )
                .await
        }
    });
    let message_id = inside.await.unwrap();
    let asked = tokio::spawn({
        let message_id = message_id.clone();
        async move { check(&mut client, &message_id).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !asked.is_finished(),
        "the check waits for the open transaction"
    );
    release.send(()).unwrap();

    assert!(matches!(send.await.unwrap(), Err(SendError::Local(_))));
    assert_eq!(asked.await.unwrap(), Decision::Rollback);
    assert_eq!(
        courier.status(&message_id).await.state(),
        MessageState::Cancelled
    );
    assert_eq!(orders(&pool).await, 0);
}

/// The Checker asks before the producer's transaction wrote its outbox row (it was slow to
/// start): ROLLBACK, with a tombstone under the message id; the transaction then fails on that
/// key, rolls back, and the message is cancelled, never confirmed.
async fn a_tombstone_makes_a_late_local_transaction_fail_and_cancel<DB: Backend>(pool: Pool<DB>) {
    let (courier, outbox) = setup(&pool).await;
    let (mut client, _server) = checker(&outbox).await;
    let mut seen_id = String::new();
    let error = courier
        .producer()
        .send(OutgoingMessage::new(TOPIC, "order-6"), async |message_id| {
            seen_id = message_id.clone();
            assert_eq!(check(&mut client, &message_id).await, Decision::Rollback);
            let mut transaction = pool.begin().await?;
            insert_order::<DB>(&mut transaction, "order-6", &message_id).await?;
            Outbox::<DB>::record(&mut transaction, &message_id).await?;
            transaction.commit().await?;
            Ok::<_, sqlx::Error>(())
        })
        .await
        .expect_err("the outbox row collides with the tombstone");
    assert!(
        matches!(error, SendError::Local(sqlx::Error::Database(_))),
        "{error:?}"
    );
    assert_eq!(
        courier.status(&seen_id).await.state(),
        MessageState::Cancelled
    );
    assert_eq!(orders(&pool).await, 0);
    assert_eq!(check(&mut client, &seen_id).await, Decision::Rollback);
}

/// A producer that committed locally and died before Confirm, and one that died before
/// committing: Courier's scheduler asks the outbox Checker (with a token it verifies against
/// Courier's JWKS) and confirms the first, cancels the second.
async fn courier_checks_back_on_a_producer_that_died_before_confirm<DB: Backend>(pool: Pool<DB>) {
    let (courier, outbox) = setup(&pool).await;
    let (listener, endpoint) = bind().await;
    let auth = CallbackAuth::jwks_url(courier.jwks_url.clone(), endpoint.clone());
    let router = Server::builder().add_service(outbox.checker(auth).into_server());
    let _server = serve_on(listener, router);
    let producer = courier.producer();
    producer
        .register_checker(&endpoint, None)
        .await
        .expect("RegisterChecker");

    let committed = producer
        .prepare(OutgoingMessage::new(TOPIC, "order-7").check_after(Duration::from_secs(1)))
        .await
        .expect("Prepare");
    let mut transaction = pool.begin().await.unwrap();
    insert_order::<DB>(&mut transaction, "order-7", &committed.message_id)
        .await
        .unwrap();
    Outbox::<DB>::record(&mut transaction, &committed.message_id)
        .await
        .unwrap();
    transaction.commit().await.unwrap();
    let never_committed = producer
        .prepare(OutgoingMessage::new(TOPIC, "order-8").check_after(Duration::from_secs(1)))
        .await
        .expect("Prepare");

    let message = courier
        .wait_for_state(&committed.message_id, MessageState::Confirmed)
        .await;
    assert!(message.check_attempts >= 1);
    courier
        .wait_for_state(&never_committed.message_id, MessageState::Cancelled)
        .await;
    assert_eq!(
        outbox_state(&pool, &never_committed.message_id)
            .await
            .as_deref(),
        Some("ROLLED_BACK")
    );
}

async fn old_outbox_rows_are_pruned<DB: Backend>(pool: Pool<DB>) {
    let outbox = Outbox::new(pool.clone());
    outbox.install().await.unwrap();
    let mut connection = pool.acquire().await.unwrap();
    Outbox::<DB>::record(&mut connection, "m-old")
        .await
        .unwrap();
    drop(connection);
    assert_eq!(outbox.decide("m-absent").await.unwrap(), Decision::Rollback);
    assert_eq!(
        outbox.prune(Duration::from_secs(3600)).await.unwrap(),
        0,
        "all recent"
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(outbox.prune(Duration::from_millis(10)).await.unwrap(), 2);
    assert_eq!(outbox_state(&pool, "m-old").await, None);
}
