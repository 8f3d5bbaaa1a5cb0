//! The outbox on SQLite and PostgreSQL: sends in one local transaction, the Checker's answers
//! from the table, the tombstone that makes "absent" a safe ROLLBACK, and Courier's check-back
//! against a producer that died before Confirm.

use std::panic::AssertUnwindSafe;
use std::time::Duration;

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

async fn a_committed_send_is_confirmed_and_checked_as_commit<DB: Backend>(pool: Pool<DB>) {
    let test = OutboxTest::start(pool).await;
    let sent = test
        .outbox
        .send_in_transaction(
            &test.courier.producer(),
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
        test.courier.status(&sent.message_id).await.state(),
        MessageState::Confirmed
    );
    assert_eq!(orders(&test.pool).await, 1);
    assert_eq!(
        outbox_state(&test.pool, &sent.message_id).await.as_deref(),
        Some("COMMITTED")
    );

    assert_eq!(test.check(&sent.message_id).await, Decision::Commit);
    assert_eq!(
        test.courier
            .receive(SUB, Duration::from_secs(5))
            .await
            .len(),
        1
    );
}

async fn a_failed_send_is_cancelled_and_checked_as_rollback<DB: Backend>(pool: Pool<DB>) {
    let test = OutboxTest::start(pool).await;
    let mut seen_id = String::new();
    let error = test
        .outbox
        .send_in_transaction(
            &test.courier.producer(),
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
        test.courier.status(&seen_id).await.state(),
        MessageState::Cancelled
    );
    assert_eq!(orders(&test.pool).await, 0, "the order rolled back");
    assert_eq!(
        outbox_state(&test.pool, &seen_id).await.as_deref(),
        Some("ROLLED_BACK")
    );

    assert_eq!(test.check(&seen_id).await, Decision::Rollback);
}

async fn a_panicking_send_is_cancelled<DB: Backend>(pool: Pool<DB>) {
    let test = OutboxTest::start(pool).await;
    let (id_sender, id_receiver) = oneshot::channel();
    let producer = test.courier.producer();
    let outcome = AssertUnwindSafe(test.outbox.send_in_transaction(
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
        test.courier.status(&message_id).await.state(),
        MessageState::Cancelled
    );
    assert_eq!(orders(&test.pool).await, 0);
}

/// The Checker asks while the producer's transaction (outbox row written) is still open: its
/// answer waits for the transaction and is COMMIT once it commits.
async fn a_check_during_the_local_transaction_waits_for_its_commit<DB: Backend>(pool: Pool<DB>) {
    let test = OutboxTest::start(pool).await;
    let send = test.send_held_open("order-4", Ok(())).await;
    let asked = test.check_waiting(&send.message_id).await;
    let message_id = send.message_id.clone();

    let sent = send.finish().await.expect("sent");
    assert!(matches!(sent.confirmation, Confirmation::Confirmed));
    assert_eq!(asked.await.unwrap(), Decision::Commit);
    assert_eq!(
        test.courier.status(&message_id).await.state(),
        MessageState::Confirmed
    );
    assert_eq!(orders(&test.pool).await, 1);
}

/// Same race, but the transaction fails: the Checker answers ROLLBACK and the send cancels.
async fn a_check_during_a_failing_local_transaction_answers_rollback<DB: Backend>(pool: Pool<DB>) {
    let test = OutboxTest::start(pool).await;
    let declined = sqlx::Error::Protocol("payment declined".into());
    let send = test.send_held_open("order-5", Err(declined)).await;
    let asked = test.check_waiting(&send.message_id).await;
    let message_id = send.message_id.clone();

    assert!(matches!(send.finish().await, Err(SendError::Local(_))));
    assert_eq!(asked.await.unwrap(), Decision::Rollback);
    assert_eq!(
        test.courier.status(&message_id).await.state(),
        MessageState::Cancelled
    );
    assert_eq!(orders(&test.pool).await, 0);
}

/// The Checker asks before the producer's transaction wrote its outbox row (it was slow to
/// start): ROLLBACK, with a tombstone under the message id; the transaction then fails on that
/// key, rolls back, and the message is cancelled, never confirmed.
async fn a_tombstone_makes_a_late_local_transaction_fail_and_cancel<DB: Backend>(pool: Pool<DB>) {
    let test = OutboxTest::start(pool).await;
    let mut seen_id = String::new();
    let error = test
        .courier
        .producer()
        .send(OutgoingMessage::new(TOPIC, "order-6"), async |message_id| {
            seen_id = message_id.clone();
            assert_eq!(test.check(&message_id).await, Decision::Rollback);
            let mut transaction = test.pool.begin().await?;
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
        test.courier.status(&seen_id).await.state(),
        MessageState::Cancelled
    );
    assert_eq!(orders(&test.pool).await, 0);
    assert_eq!(test.check(&seen_id).await, Decision::Rollback);
}

/// A producer that committed locally and died before Confirm, and one that died before
/// committing: Courier's scheduler asks the outbox Checker (with a token it verifies against
/// Courier's JWKS) and confirms the first, cancels the second.
async fn courier_checks_back_on_a_producer_that_died_before_confirm<DB: Backend>(pool: Pool<DB>) {
    let OutboxTest {
        courier,
        outbox,
        pool,
        ..
    } = OutboxTest::start(pool).await;
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
