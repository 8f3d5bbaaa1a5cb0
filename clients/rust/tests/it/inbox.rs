//! The inbox on SQLite and PostgreSQL: the handler's work and the message's row commit
//! together, and a redelivered message is acked without running the work again.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use courier_client::proto::MessageOutcome;
use courier_client::{Backend, DedupOn, Delivery, Inbox, OutgoingMessage, Processed};
use sqlx::Pool;
use tokio_util::sync::CancellationToken;

use crate::databases::*;
use crate::harness::*;
use crate::on_both_databases;

on_both_databases!(
    a_message_is_processed_once,
    failed_work_records_nothing,
    dedup_on_the_producer_key_spans_message_ids,
    a_redelivery_after_the_work_committed_is_acked_without_running_it,
    old_inbox_rows_are_pruned,
);

async fn inbox<DB: Backend>(pool: &Pool<DB>) -> Inbox<DB> {
    create_orders(pool).await;
    let inbox = Inbox::new(pool.clone());
    inbox.install().await.expect("the inbox installs");
    inbox
}

fn delivery(message_id: &str, key: &str) -> Delivery {
    Delivery {
        message_id: message_id.into(),
        subscription: SUB.into(),
        producer: PRODUCER.into(),
        key: key.into(),
        ..Delivery::default()
    }
}

async fn a_message_is_processed_once<DB: Backend>(pool: Pool<DB>) {
    let inbox = inbox(&pool).await;
    let first = delivery("m-1", "order-1");
    for expected in [Processed::Done("invoiced"), Processed::AlreadyProcessed] {
        let processed = inbox
            .process(&first, async |connection| {
                insert_order::<DB>(connection, "order-1", "m-1").await?;
                Ok::<_, sqlx::Error>("invoiced")
            })
            .await
            .expect("processed");
        assert_eq!(processed, expected);
    }
    assert_eq!(orders(&pool).await, 1);
    // The same message in another subscription is another piece of work.
    let other = Delivery {
        subscription: "audit".into(),
        ..first
    };
    let processed = inbox
        .process(&other, async |_| Ok::<_, sqlx::Error>(()))
        .await
        .unwrap();
    assert_eq!(processed, Processed::Done(()));
}

async fn failed_work_records_nothing<DB: Backend>(pool: Pool<DB>) {
    let inbox = inbox(&pool).await;
    let message = delivery("m-2", "order-2");
    let error = inbox
        .process(&message, async |connection| {
            insert_order::<DB>(connection, "order-2", "m-2").await?;
            Err::<(), _>(sqlx::Error::Protocol("ledger closed".into()))
        })
        .await
        .expect_err("the work failed");
    assert!(matches!(error, sqlx::Error::Protocol(_)));
    assert_eq!(orders(&pool).await, 0);
    assert_eq!(
        count(&pool, "SELECT CAST(COUNT(*) AS TEXT) FROM courier_inbox").await,
        0,
        "not marked as seen"
    );
    let processed = inbox
        .process(&message, async |connection| {
            insert_order::<DB>(connection, "order-2", "m-2").await
        })
        .await
        .expect("the retry works");
    assert_eq!(processed, Processed::Done(()));
    assert_eq!(orders(&pool).await, 1);
}

async fn dedup_on_the_producer_key_spans_message_ids<DB: Backend>(pool: Pool<DB>) {
    let inbox = inbox(&pool).await.dedup_on(DedupOn::ProducerKey);
    let work = async |_: &mut DB::Connection| Ok::<_, sqlx::Error>(());
    assert_eq!(
        inbox
            .process(&delivery("m-3", "order-3"), work)
            .await
            .unwrap(),
        Processed::Done(())
    );
    let work = async |_: &mut DB::Connection| Ok::<_, sqlx::Error>(());
    assert_eq!(
        inbox
            .process(&delivery("m-4", "order-3"), work)
            .await
            .unwrap(),
        Processed::AlreadyProcessed,
        "same producer and key, another message id"
    );
}

/// The consumer's work commits with its inbox row, then the consumer fails before its ack
/// (here: the handler errs after the commit). Courier redelivers; the inbox recognises the
/// message and the handler acks it without doing the work twice.
async fn a_redelivery_after_the_work_committed_is_acked_without_running_it<DB: Backend>(
    pool: Pool<DB>,
) {
    let courier = Courier::start().await;
    courier.subscribe(SUB, Duration::from_secs(30), 5).await;
    let inbox = inbox(&pool).await;
    let work_runs = Arc::new(AtomicUsize::new(0));
    let handler = {
        let (inbox, work_runs) = (inbox.clone(), work_runs.clone());
        move |delivery: Delivery| {
            let (inbox, work_runs) = (inbox.clone(), work_runs.clone());
            async move {
                inbox
                    .process(&delivery, async |connection| {
                        work_runs.fetch_add(1, Ordering::SeqCst);
                        insert_order::<DB>(connection, &delivery.key, &delivery.message_id).await
                    })
                    .await?;
                if delivery.attempt == 1 {
                    Err(std::io::Error::other("crashed before the ack"))?;
                }
                Ok(())
            }
        }
    };
    let shutdown = CancellationToken::new();
    let consumer = courier.consumer(SUB);
    let running = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { consumer.run(handler, shutdown).await }
    });
    let message_id = courier
        .producer()
        .publish(OutgoingMessage::new(TOPIC, "order-9"))
        .await
        .expect("Publish")
        .message_id;
    let message = courier
        .wait_for(&message_id, "delivered", |m| {
            m.outcome() == MessageOutcome::Delivered
        })
        .await;
    assert_eq!(message.deliveries[0].attempts, 2, "delivered twice");
    shutdown.cancel();
    running.await.unwrap().unwrap();
    assert_eq!(work_runs.load(Ordering::SeqCst), 1, "the work ran once");
    assert_eq!(orders(&pool).await, 1);
}

async fn old_inbox_rows_are_pruned<DB: Backend>(pool: Pool<DB>) {
    let inbox = inbox(&pool).await;
    let work = async |_: &mut DB::Connection| Ok::<_, sqlx::Error>(());
    inbox
        .process(&delivery("m-5", "order-5"), work)
        .await
        .unwrap();
    assert_eq!(inbox.prune(Duration::from_secs(3600)).await.unwrap(), 0);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(inbox.prune(Duration::from_millis(10)).await.unwrap(), 1);
    let work = async |_: &mut DB::Connection| Ok::<_, sqlx::Error>(());
    assert_eq!(
        inbox
            .process(&delivery("m-5", "order-5"), work)
            .await
            .unwrap(),
        Processed::Done(()),
        "forgotten once pruned"
    );
}
