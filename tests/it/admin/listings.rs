//! Admin's listings: ListMessages and ListDeliveries, their pages and filters.

use std::future::Future;
use std::time::Duration;

use courier::proto::{
    AckStatus, DeliveryState, ListDeliveriesRequest, ListMessagesRequest, MessageOutcome,
    MessageState,
};
use tonic::Code;

use crate::harness::*;

/// Reads a listing page by page: `page(token)` answers the message ids of one page and the
/// next page's token. Answers every id, and how many each page held.
async fn read_pages<F, Fut>(mut page: F) -> (Vec<String>, Vec<usize>)
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = (Vec<String>, String)>,
{
    let (mut ids, mut sizes) = (Vec::new(), Vec::new());
    let mut token = String::new();
    loop {
        let (page_ids, next) = page(token).await;
        sizes.push(page_ids.len());
        ids.extend(page_ids);
        if next.is_empty() {
            return (ids, sizes);
        }
        assert!(sizes.len() < 10, "paging does not end");
        token = next;
    }
}

#[tokio::test]
async fn list_messages_pages_newest_first() {
    let server = TestServer::start().await;
    server.create_subscription(subscription(SUB, TOPIC)).await;
    let mut published = Vec::new();
    for n in 0..5 {
        published.push(server.publish(TOPIC, &format!("order-{n}")).await);
    }

    let mut admin = server.admin();
    let (seen, page_sizes) = read_pages(|page_token| {
        let mut admin = server.admin();
        async move {
            let page = admin
                .list_messages(ListMessagesRequest {
                    page_size: 2,
                    page_token,
                    ..Default::default()
                })
                .await
                .expect("ListMessages")
                .into_inner();
            let ids = page.messages.into_iter().map(|m| m.message_id);
            (ids.collect(), page.next_page_token)
        }
    })
    .await;
    assert_eq!(page_sizes, [2, 2, 1]);
    published.reverse();
    assert_eq!(seen, published, "every message once, newest first");

    let bad = admin
        .list_messages(ListMessagesRequest {
            page_size: 2,
            page_token: "not-a-token".into(),
            ..Default::default()
        })
        .await;
    assert_code(bad, Code::InvalidArgument);
}

#[tokio::test]
async fn list_messages_filters_by_topic_producer_state_and_outcome() {
    let server = TestServer::start().await;
    server.create_subscription(subscription(SUB, TOPIC)).await;
    server
        .create_subscription(subscription("audit", "payments"))
        .await;
    let prepared = server.prepare(TOPIC, "prepared").await;
    let cancelled = server.prepare(TOPIC, "cancelled").await;
    server.cancel(&cancelled).await.unwrap();
    let published = server.publish(TOPIC, "published").await;
    let payment = server
        .producer()
        .publish(publish_request("cashier", "payments", "payment-1"))
        .await
        .unwrap()
        .into_inner()
        .message_id;

    let list = |request: ListMessagesRequest| {
        let mut admin = server.admin();
        async move {
            let mut ids: Vec<_> = admin
                .list_messages(request)
                .await
                .expect("ListMessages")
                .into_inner()
                .messages
                .into_iter()
                .map(|m| m.message_id)
                .collect();
            ids.sort();
            ids
        }
    };
    let sorted = |mut ids: Vec<&String>| {
        ids.sort();
        ids.into_iter().cloned().collect::<Vec<_>>()
    };
    assert_eq!(
        list(ListMessagesRequest {
            topic: TOPIC.into(),
            ..Default::default()
        })
        .await,
        sorted(vec![&prepared, &cancelled, &published])
    );
    assert_eq!(
        list(ListMessagesRequest {
            producer: "cashier".into(),
            ..Default::default()
        })
        .await,
        sorted(vec![&payment])
    );
    assert_eq!(
        list(ListMessagesRequest {
            state: MessageState::Confirmed as i32,
            ..Default::default()
        })
        .await,
        sorted(vec![&published, &payment])
    );
    assert_eq!(
        list(ListMessagesRequest {
            outcome: MessageOutcome::Cancelled as i32,
            ..Default::default()
        })
        .await,
        sorted(vec![&cancelled])
    );
    assert_eq!(
        list(ListMessagesRequest {
            topic: TOPIC.into(),
            state: MessageState::Prepared as i32,
            ..Default::default()
        })
        .await,
        sorted(vec![&prepared])
    );
}

#[tokio::test]
async fn list_deliveries_pages_oldest_first_and_filters_by_state() {
    let server = TestServer::start().await;
    server.create_subscription(subscription(SUB, TOPIC)).await;
    let mut published = Vec::new();
    for n in 0..5 {
        published.push(server.publish(TOPIC, &format!("order-{n}")).await);
    }
    let mut admin = server.admin();

    let (seen, page_sizes) = read_pages(|page_token| {
        let mut admin = server.admin();
        async move {
            let page = admin
                .list_deliveries(ListDeliveriesRequest {
                    subscription: SUB.into(),
                    page_size: 2,
                    page_token,
                    ..Default::default()
                })
                .await
                .expect("ListDeliveries")
                .into_inner();
            let ids = page.deliveries.into_iter().map(|d| d.message_id);
            (ids.collect(), page.next_page_token)
        }
    })
    .await;
    assert_eq!(page_sizes, [2, 2, 1]);
    assert_eq!(seen, published, "every delivery once, oldest message first");
    assert_eq!(
        server.deliveries(SUB).await.len(),
        5,
        "one default-sized page holds all"
    );

    let delivery = server.receive_one(SUB, Duration::ZERO).await;
    assert_eq!(server.ack(SUB, &[&delivery.receipt]).await, [AckStatus::Ok]);
    let acked = admin
        .list_deliveries(ListDeliveriesRequest {
            subscription: SUB.into(),
            state: DeliveryState::Acked as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .deliveries;
    assert_eq!(acked.len(), 1);
    assert_eq!(acked[0].message_id, delivery.message_id);
    assert_eq!(acked[0].state(), DeliveryState::Acked);

    let bad = admin
        .list_deliveries(ListDeliveriesRequest {
            subscription: SUB.into(),
            page_token: "not-a-token".into(),
            ..Default::default()
        })
        .await;
    assert_code(bad, Code::InvalidArgument);
    let unknown = admin
        .list_deliveries(ListDeliveriesRequest {
            subscription: "nobody".into(),
            ..Default::default()
        })
        .await;
    assert_code(unknown, Code::NotFound);
}
