//! Reads, served by the pool of read-only connections (WAL lets them run beside the writer).

use std::collections::HashMap;

use sqlx::{AssertSqlSafe, QueryBuilder, Row, Sqlite, SqlitePool};

use super::rows::{self, DELIVERY_COLUMNS, MESSAGE_COLUMNS, SUBSCRIPTION_COLUMNS, next_cursor};
use crate::domain::{DeliveryStatus, MessageRecord, MessageRef, Name, Subscription, Timestamp};
use crate::store::sql::{delivery_page, message_page};
use crate::store::{
    CheckerRegistration, DeliveryQuery, MessageQuery, Page, Stats, StoreError, SubscriptionStats,
    TopicStats,
};

pub async fn subscription(pool: &SqlitePool, name: &Name) -> Result<Subscription, StoreError> {
    let sql = format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE name = ?");
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(name.as_str())
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("subscription {name}")))?;
    rows::subscription(&row)
}

pub async fn subscriptions(
    pool: &SqlitePool,
    topic: Option<&Name>,
) -> Result<Vec<Subscription>, StoreError> {
    let mut query =
        QueryBuilder::<Sqlite>::new(format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions"));
    if let Some(topic) = topic {
        query.push(" WHERE topic = ").push_bind(topic.as_str());
    }
    query.push(" ORDER BY name");
    let found = query.build().fetch_all(pool).await?;
    found.iter().map(rows::subscription).collect()
}

pub async fn message(pool: &SqlitePool, message: &MessageRef) -> Result<MessageRecord, StoreError> {
    let mut query =
        QueryBuilder::<Sqlite>::new(format!("SELECT {MESSAGE_COLUMNS} FROM messages m"));
    match message {
        MessageRef::Id(id) => {
            query.push(" WHERE m.id = ").push_bind(id.to_string());
        }
        MessageRef::ProducerKey { producer, key } => {
            query
                .push(" WHERE m.producer = ")
                .push_bind(producer.as_str())
                .push(" AND m.key = ")
                .push_bind(key.as_str());
        }
    }
    let row = query
        .build()
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(message.to_string()))?;
    let mut records = vec![rows::message(&row)?];
    attach_deliveries(pool, &mut records).await?;
    Ok(records.remove(0))
}

/// Fills in the deliveries of each message with one query.
async fn attach_deliveries(
    pool: &SqlitePool,
    records: &mut [MessageRecord],
) -> Result<(), StoreError> {
    if records.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = records.iter().map(|r| r.id.to_string()).collect();
    let ids = serde_json::to_string(&ids).map_err(StoreError::internal)?;
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries d \
         WHERE d.message_id IN (SELECT value FROM json_each(?)) ORDER BY d.subscription"
    );
    let found = sqlx::query(AssertSqlSafe(sql))
        .bind(ids)
        .fetch_all(pool)
        .await?;
    let mut by_message: HashMap<_, Vec<DeliveryStatus>> = HashMap::new();
    for row in &found {
        let delivery = rows::delivery(row)?;
        by_message
            .entry(delivery.message_id)
            .or_default()
            .push(delivery);
    }
    for record in records {
        record.deliveries = by_message.remove(&record.id).unwrap_or_default();
    }
    Ok(())
}

pub async fn messages(
    pool: &SqlitePool,
    filter: MessageQuery,
) -> Result<Page<MessageRecord>, StoreError> {
    let mut query = message_page::<Sqlite, _>(MESSAGE_COLUMNS, &filter, |id| id.to_string());
    let found = query.build().fetch_all(pool).await?;
    let mut records = found
        .iter()
        .map(rows::message)
        .collect::<Result<Vec<_>, _>>()?;
    let next = next_cursor(&mut records, filter.page_size, |r| r.id);
    attach_deliveries(pool, &mut records).await?;
    Ok(Page {
        items: records,
        next,
    })
}

pub async fn deliveries(
    pool: &SqlitePool,
    filter: DeliveryQuery,
) -> Result<Page<DeliveryStatus>, StoreError> {
    subscription(pool, &filter.subscription).await?;
    let mut query = delivery_page::<Sqlite, _>(DELIVERY_COLUMNS, &filter, |id| id.to_string());
    let found = query.build().fetch_all(pool).await?;
    let mut items = found
        .iter()
        .map(rows::delivery)
        .collect::<Result<Vec<_>, _>>()?;
    let next = next_cursor(&mut items, filter.page_size, |d| d.message_id);
    Ok(Page { items, next })
}

pub async fn checker(
    pool: &SqlitePool,
    producer: &Name,
) -> Result<Option<CheckerRegistration>, StoreError> {
    let row = sqlx::query("SELECT producer, endpoint, timeout_ms FROM checkers WHERE producer = ?")
        .bind(producer.as_str())
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(rows::checker).transpose()
}

pub async fn next_due(
    pool: &SqlitePool,
    subscription: &Name,
) -> Result<Option<Timestamp>, StoreError> {
    let due: Option<i64> = sqlx::query_scalar(
        "SELECT MIN(next_attempt_at) FROM deliveries WHERE subscription = ? AND state = 'PENDING'",
    )
    .bind(subscription.as_str())
    .fetch_one(pool)
    .await?;
    Ok(due.map(Timestamp::from_millis))
}

pub async fn next_lease_expiry(pool: &SqlitePool) -> Result<Option<Timestamp>, StoreError> {
    let due: Option<i64> =
        sqlx::query_scalar("SELECT MIN(lease_expires_at) FROM deliveries WHERE state = 'LEASED'")
            .fetch_one(pool)
            .await?;
    Ok(due.map(Timestamp::from_millis))
}

pub async fn stats(pool: &SqlitePool, now: Timestamp) -> Result<Stats, StoreError> {
    let mut topics: Vec<TopicStats> = Vec::new();
    let counts = sqlx::query(
        "SELECT topic, state, COUNT(*) AS n, \
         SUM(CASE WHEN state = 'CONFIRMED' AND routed = 0 THEN 1 ELSE 0 END) AS unrouted \
         FROM messages GROUP BY topic, state ORDER BY topic",
    )
    .fetch_all(pool)
    .await?;
    for row in &counts {
        let topic: String = row.try_get("topic")?;
        if topics.last().is_none_or(|t| t.topic != topic) {
            topics.push(TopicStats {
                topic: topic.clone(),
                ..TopicStats::default()
            });
        }
        let entry = topics.last_mut().expect("pushed above");
        let n = row.try_get::<i64, _>("n")? as u64;
        match rows::message_state(&row.try_get::<String, _>("state")?)? {
            crate::domain::MessageState::Prepared => entry.prepared = n,
            crate::domain::MessageState::Confirmed => entry.confirmed = n,
            crate::domain::MessageState::Cancelled => entry.cancelled = n,
            crate::domain::MessageState::Unresolved => entry.unresolved = n,
        }
        entry.unrouted += row.try_get::<Option<i64>, _>("unrouted")?.unwrap_or(0) as u64;
    }

    let mut subscriptions: Vec<SubscriptionStats> = Vec::new();
    let counts = sqlx::query(
        "SELECT s.name, s.topic, d.state, COUNT(d.message_id) AS n, \
         MIN(CASE WHEN d.state = 'PENDING' AND d.next_attempt_at <= ? THEN d.next_attempt_at END) \
           AS oldest_due \
         FROM subscriptions s LEFT JOIN deliveries d ON d.subscription = s.name \
         GROUP BY s.name, s.topic, d.state ORDER BY s.name",
    )
    .bind(now.as_millis())
    .fetch_all(pool)
    .await?;
    for row in &counts {
        let name: String = row.try_get("name")?;
        if subscriptions.last().is_none_or(|s| s.subscription != name) {
            subscriptions.push(SubscriptionStats {
                subscription: name.clone(),
                topic: row.try_get("topic")?,
                ..SubscriptionStats::default()
            });
        }
        let entry = subscriptions.last_mut().expect("pushed above");
        let Some(state) = row.try_get::<Option<String>, _>("state")? else {
            continue; // a subscription without deliveries
        };
        let n = row.try_get::<i64, _>("n")? as u64;
        match rows::delivery_state(&state)? {
            crate::domain::DeliveryState::Pending => entry.pending = n,
            crate::domain::DeliveryState::Leased => entry.leased = n,
            crate::domain::DeliveryState::Acked => entry.acked = n,
            crate::domain::DeliveryState::Dead => entry.dead = n,
        }
        if let Some(oldest) = row.try_get::<Option<i64>, _>("oldest_due")? {
            entry.oldest_pending_age = Some(now.since(Timestamp::from_millis(oldest)));
        }
    }
    let unrouted_confirms = topics.iter().map(|t| t.unrouted).sum();
    Ok(Stats {
        topics,
        subscriptions,
        unrouted_confirms,
    })
}
