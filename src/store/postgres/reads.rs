//! Reads, each on the connection of its call; they take no locks.

use std::collections::HashMap;

use sqlx::{AssertSqlSafe, PgConnection, Postgres, QueryBuilder};
use uuid::Uuid;

use super::rows::{
    self, Columns, DELIVERY_COLUMNS, MESSAGE_COLUMNS, SUBSCRIPTION_COLUMNS, next_cursor,
};
use crate::domain::{
    DeliveryState, DeliveryStatus, MessageRecord, MessageRef, MessageState, Name, Subscription,
    Timestamp,
};
use crate::store::sql::{delivery_page, message_page};
use crate::store::{
    CheckerRegistration, DeliveryQuery, MessageQuery, Page, Stats, StoreError, SubscriptionStats,
    TopicStats, rules,
};

pub async fn subscription(
    conn: &mut PgConnection,
    name: &Name,
) -> Result<Subscription, StoreError> {
    let sql = format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE name = $1");
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(name.as_str())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| rules::subscription_not_found(name))?;
    rows::subscription(&row)
}

pub async fn subscriptions(
    conn: &mut PgConnection,
    topic: Option<&Name>,
) -> Result<Vec<Subscription>, StoreError> {
    let mut query =
        QueryBuilder::<Postgres>::new(format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions"));
    if let Some(topic) = topic {
        query.push(" WHERE topic = ").push_bind(topic.as_str());
    }
    query.push(" ORDER BY name");
    let found = query.build().fetch_all(&mut *conn).await?;
    found.iter().map(rows::subscription).collect()
}

pub async fn message(
    conn: &mut PgConnection,
    message: &MessageRef,
) -> Result<MessageRecord, StoreError> {
    let mut query =
        QueryBuilder::<Postgres>::new(format!("SELECT {MESSAGE_COLUMNS} FROM messages m"));
    match message {
        MessageRef::Id(id) => {
            query.push(" WHERE m.id = ").push_bind(id.as_uuid());
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
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::NotFound(message.to_string()))?;
    let mut records = vec![rows::message(&row)?];
    attach_deliveries(conn, &mut records).await?;
    Ok(records.remove(0))
}

/// Fills in the deliveries of each message with one query.
async fn attach_deliveries(
    conn: &mut PgConnection,
    records: &mut [MessageRecord],
) -> Result<(), StoreError> {
    if records.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = records.iter().map(|r| r.id.as_uuid()).collect();
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries d WHERE d.message_id = ANY($1) \
         ORDER BY d.subscription"
    );
    let found = sqlx::query(AssertSqlSafe(sql))
        .bind(ids)
        .fetch_all(&mut *conn)
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
    conn: &mut PgConnection,
    filter: &MessageQuery,
) -> Result<Page<MessageRecord>, StoreError> {
    let mut query = message_page::<Postgres, _>(MESSAGE_COLUMNS, filter, |id| id.as_uuid());
    let found = query.build().fetch_all(&mut *conn).await?;
    let mut records = found
        .iter()
        .map(rows::message)
        .collect::<Result<Vec<_>, _>>()?;
    let next = next_cursor(&mut records, filter.page_size, |r| r.id);
    attach_deliveries(conn, &mut records).await?;
    Ok(Page {
        items: records,
        next,
    })
}

pub async fn deliveries(
    conn: &mut PgConnection,
    filter: &DeliveryQuery,
) -> Result<Page<DeliveryStatus>, StoreError> {
    subscription(conn, &filter.subscription).await?;
    let mut query = delivery_page::<Postgres, _>(DELIVERY_COLUMNS, filter, |id| id.as_uuid());
    let found = query.build().fetch_all(&mut *conn).await?;
    let mut items = found
        .iter()
        .map(rows::delivery)
        .collect::<Result<Vec<_>, _>>()?;
    let next = next_cursor(&mut items, filter.page_size, |d| d.message_id);
    Ok(Page { items, next })
}

pub async fn checker(
    conn: &mut PgConnection,
    producer: &Name,
) -> Result<Option<CheckerRegistration>, StoreError> {
    let row =
        sqlx::query("SELECT producer, endpoint, timeout_ms FROM checkers WHERE producer = $1")
            .bind(producer.as_str())
            .fetch_optional(&mut *conn)
            .await?;
    row.as_ref().map(rows::checker).transpose()
}

pub async fn next_due(
    conn: &mut PgConnection,
    subscription: &Name,
) -> Result<Option<Timestamp>, StoreError> {
    let due: Option<i64> = sqlx::query_scalar(
        "SELECT MIN(next_attempt_at) FROM deliveries WHERE subscription = $1 AND state = 'PENDING'",
    )
    .bind(subscription.as_str())
    .fetch_one(&mut *conn)
    .await?;
    Ok(due.map(Timestamp::from_millis))
}

pub async fn next_lease_expiry(conn: &mut PgConnection) -> Result<Option<Timestamp>, StoreError> {
    let due: Option<i64> =
        sqlx::query_scalar("SELECT MIN(lease_expires_at) FROM deliveries WHERE state = 'LEASED'")
            .fetch_one(&mut *conn)
            .await?;
    Ok(due.map(Timestamp::from_millis))
}

pub async fn stats(conn: &mut PgConnection, now: Timestamp) -> Result<Stats, StoreError> {
    let mut topics: Vec<TopicStats> = Vec::new();
    let counts = sqlx::query(
        "SELECT topic, state, COUNT(*) AS n, \
         SUM(CASE WHEN state = 'CONFIRMED' AND routed = 0 THEN 1 ELSE 0 END) AS unrouted \
         FROM messages GROUP BY topic, state ORDER BY topic",
    )
    .fetch_all(&mut *conn)
    .await?;
    for row in &counts {
        let topic = row.text("topic")?;
        if topics.last().is_none_or(|t| t.topic != topic) {
            topics.push(TopicStats {
                topic: topic.clone(),
                ..TopicStats::default()
            });
        }
        let entry = topics.last_mut().expect("pushed above");
        let n = row.int("n")? as u64;
        match rows::message_state(&row.text("state")?)? {
            MessageState::Prepared => entry.prepared = n,
            MessageState::Confirmed => entry.confirmed = n,
            MessageState::Cancelled => entry.cancelled = n,
            MessageState::Unresolved => entry.unresolved = n,
        }
        entry.unrouted += row.opt_int("unrouted")?.unwrap_or(0) as u64;
    }

    let mut subscriptions: Vec<SubscriptionStats> = Vec::new();
    let counts = sqlx::query(
        "SELECT s.name, s.topic, d.state, COUNT(d.message_id) AS n, \
         MIN(CASE WHEN d.state = 'PENDING' AND d.next_attempt_at <= $1 THEN d.next_attempt_at END) \
           AS oldest_due \
         FROM subscriptions s LEFT JOIN deliveries d ON d.subscription = s.name \
         GROUP BY s.name, s.topic, d.state ORDER BY s.name",
    )
    .bind(now.as_millis())
    .fetch_all(&mut *conn)
    .await?;
    for row in &counts {
        let name = row.text("name")?;
        if subscriptions.last().is_none_or(|s| s.subscription != name) {
            subscriptions.push(SubscriptionStats {
                subscription: name.clone(),
                topic: row.text("topic")?,
                ..SubscriptionStats::default()
            });
        }
        let entry = subscriptions.last_mut().expect("pushed above");
        let Some(state) = row.opt_text("state")? else {
            continue; // a subscription without deliveries
        };
        let n = row.int("n")? as u64;
        match rows::delivery_state(&state)? {
            DeliveryState::Pending => entry.pending = n,
            DeliveryState::Leased => entry.leased = n,
            DeliveryState::Acked => entry.acked = n,
            DeliveryState::Dead => entry.dead = n,
        }
        if let Some(oldest) = row.opt_int("oldest_due")? {
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
