//! Every read, written once for both SQL backends. They differ here only in their
//! [`Dialect`]: the database type (placeholders come from sqlx's `QueryBuilder`), how a message
//! id binds, and how a query names a list of ids. Reads take no locks: SQLite serves them from
//! its read-only pool beside the writer (WAL), PostgreSQL from the connection of its call.

use std::collections::HashMap;
use std::marker::PhantomData;

use sqlx::query::Query;
use sqlx::{AssertSqlSafe, Database, Encode, Executor, IntoArguments, QueryBuilder, Type};

use super::history::{DecidedBy, MessageHistory, PAYLOAD_HEAD_BYTES};
use super::rows::{
    self, Columns, DELIVERY_COLUMNS, SUBSCRIPTION_COLUMNS, message_columns, next_cursor,
};
use super::sql::{self, delivery_page, message_page};
use super::{
    DeadLetter, DeadLetters, DeliveryQuery, MessageQuery, Page, Stats, StatsScope, StoreError,
    SubscriptionStats, TopicStats, rules,
};
use crate::domain::{
    CheckerRegistration, DeliveryStatus, MessageId, MessageRecord, MessageRef, MessageState, Name,
    Subscription, Timestamp,
};

/// What sets one SQL backend's reads apart.
pub trait Dialect: Send + Sync + 'static {
    type Db: Database;
    /// A message id as the schema stores it (text on SQLite, uuid on PostgreSQL).
    type Id: for<'t> Encode<'t, Self::Db> + Type<Self::Db> + Send + 'static;

    fn id(id: MessageId) -> Self::Id;

    /// The payload of the message aliased `m`, as an SQL expression.
    const PAYLOAD: &'static str;

    /// Pushes a condition that holds when `column` is one of `ids`.
    fn push_one_of(
        query: &mut QueryBuilder<Self::Db>,
        column: &str,
        ids: &[MessageId],
    ) -> Result<(), StoreError>;

    /// `sql`, written for both backends, in this dialect (SQLite: the indexes it marks).
    fn statement(sql: &str) -> String;

    /// [`select`](super::dead_letters::select) of `store::dead_letters` in this dialect: how `$2`, the chosen ids, is tested.
    fn dead_letters_sql() -> String;

    /// Binds the parameters of [`Dialect::dead_letters_sql`] in order.
    fn bind_dead_letters<'q>(
        query: Query<'q, Self::Db, Args<Self>>,
        chosen: &'q DeadLetters,
    ) -> Result<Query<'q, Self::Db, Args<Self>>, StoreError>;
}

/// The bind arguments of a dialect's queries.
pub type Args<D> = <<D as Dialect>::Db as Database>::Arguments;

/// A connection of the dialect's database.
pub type Conn<D> = <<D as Dialect>::Db as Database>::Connection;

/// The reads of one dialect (`Reads::<SqliteDialect>::message(..)`): the trait bounds sqlx
/// needs are written once, on this impl.
pub struct Reads<D>(PhantomData<D>);

impl<D: Dialect> Reads<D>
where
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::Db>,
    <D::Db as Database>::Arguments: IntoArguments<D::Db>,
    <D::Db as Database>::Row: Columns,
    for<'t> &'t str: Encode<'t, D::Db> + Type<D::Db>,
    for<'t> i64: Encode<'t, D::Db> + Type<D::Db>,
{
    async fn fetch_all(
        conn: &mut Conn<D>,
        query: &mut QueryBuilder<D::Db>,
    ) -> Result<Vec<<D::Db as Database>::Row>, StoreError> {
        Ok(query.build().fetch_all(&mut *conn).await?)
    }

    async fn fetch_optional(
        conn: &mut Conn<D>,
        query: &mut QueryBuilder<D::Db>,
    ) -> Result<Option<<D::Db as Database>::Row>, StoreError> {
        Ok(query.build().fetch_optional(&mut *conn).await?)
    }

    /// The one timestamp a `SELECT MIN(…) AS at` query answers, if any.
    async fn earliest(
        conn: &mut Conn<D>,
        mut query: QueryBuilder<D::Db>,
    ) -> Result<Option<Timestamp>, StoreError> {
        let row = Self::fetch_optional(conn, &mut query).await?;
        let at = match row {
            Some(row) => row.opt_int("at")?,
            None => None,
        };
        Ok(at.map(Timestamp::from_millis))
    }

    pub async fn subscription(conn: &mut Conn<D>, name: &Name) -> Result<Subscription, StoreError> {
        let mut query = QueryBuilder::new(format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE name = "
        ));
        query.push_bind(name.as_str());
        let row = Self::fetch_optional(conn, &mut query)
            .await?
            .ok_or_else(|| rules::subscription_not_found(name))?;
        rows::subscription(&row)
    }

    /// How many dead letters `chosen` names (`store::dead_letters`); NotFound for an unknown
    /// subscription.
    pub async fn count_dead_letters(
        conn: &mut Conn<D>,
        chosen: &DeadLetters,
    ) -> Result<u64, StoreError> {
        Self::subscription(&mut *conn, &chosen.subscription).await?;
        let sql = format!(
            "SELECT COUNT(*) AS n FROM ({}) chosen",
            D::dead_letters_sql()
        );
        let row = D::bind_dead_letters(sqlx::query(AssertSqlSafe(sql)), chosen)?
            .fetch_one(&mut *conn)
            .await?;
        Ok(u64::try_from(row.int("n")?).unwrap_or(0))
    }

    /// The first `limit` dead letters `chosen` names; NotFound for an unknown subscription.
    pub async fn list_dead_letters(
        conn: &mut Conn<D>,
        chosen: &DeadLetters,
        limit: u32,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        Self::subscription(&mut *conn, &chosen.subscription).await?;
        let sql = format!("{} LIMIT {limit}", D::dead_letters_sql());
        let found = D::bind_dead_letters(sqlx::query(AssertSqlSafe(sql)), chosen)?
            .fetch_all(&mut *conn)
            .await?;
        found.iter().map(rows::dead_letter).collect()
    }

    pub async fn subscriptions(
        conn: &mut Conn<D>,
        topic: Option<&Name>,
    ) -> Result<Vec<Subscription>, StoreError> {
        let mut query =
            QueryBuilder::new(format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions"));
        if let Some(topic) = topic {
            query.push(" WHERE topic = ").push_bind(topic.as_str());
        }
        query.push(" ORDER BY name");
        let found = Self::fetch_all(conn, &mut query).await?;
        found.iter().map(rows::subscription).collect()
    }

    pub async fn message(
        conn: &mut Conn<D>,
        message: &MessageRef,
    ) -> Result<MessageRecord, StoreError> {
        let columns = message_columns(D::PAYLOAD);
        let mut query = QueryBuilder::new(format!("SELECT {columns} FROM messages m"));
        match message {
            MessageRef::Id(id) => {
                query.push(" WHERE m.id = ").push_bind(D::id(*id));
            }
            MessageRef::ProducerKey { producer, key } => {
                query
                    .push(" WHERE m.producer = ")
                    .push_bind(producer.as_str())
                    .push(" AND m.key = ")
                    .push_bind(key.as_str());
            }
        }
        let row = Self::fetch_optional(conn, &mut query)
            .await?
            .ok_or_else(|| StoreError::NotFound(message.to_string()))?;
        let mut records = vec![rows::message(&row)?];
        Self::attach_deliveries(conn, &mut records).await?;
        Ok(records.remove(0))
    }

    /// Fills in the deliveries of each message with one query.
    async fn attach_deliveries(
        conn: &mut Conn<D>,
        records: &mut [MessageRecord],
    ) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let ids: Vec<MessageId> = records.iter().map(|r| r.id).collect();
        let mut query = QueryBuilder::new(format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries d WHERE "
        ));
        D::push_one_of(&mut query, "d.message_id", &ids)?;
        query.push(" ORDER BY d.subscription");
        let found = Self::fetch_all(conn, &mut query).await?;
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
        conn: &mut Conn<D>,
        filter: &MessageQuery,
    ) -> Result<Page<MessageRecord>, StoreError> {
        let columns = message_columns(D::PAYLOAD);
        let mut query = message_page::<D::Db, _>(&columns, filter, D::id);
        let found = Self::fetch_all(conn, &mut query).await?;
        let mut records = found
            .iter()
            .map(rows::message)
            .collect::<Result<Vec<_>, _>>()?;
        let next = next_cursor(&mut records, filter.page_size, |r| r.id);
        Self::attach_deliveries(conn, &mut records).await?;
        Ok(Page {
            items: records,
            next,
        })
    }

    pub async fn deliveries(
        conn: &mut Conn<D>,
        filter: &DeliveryQuery,
    ) -> Result<Page<DeliveryStatus>, StoreError> {
        Self::subscription(conn, &filter.subscription).await?;
        let mut query = delivery_page::<D::Db, _>(DELIVERY_COLUMNS, filter, D::id);
        let found = Self::fetch_all(conn, &mut query).await?;
        let mut items = found
            .iter()
            .map(rows::delivery)
            .collect::<Result<Vec<_>, _>>()?;
        let next = next_cursor(&mut items, filter.page_size, |d| d.message_id);
        Ok(Page { items, next })
    }

    pub async fn history(
        conn: &mut Conn<D>,
        message: MessageId,
    ) -> Result<MessageHistory, StoreError> {
        let mut query = QueryBuilder::new(format!(
            "SELECT decided_at, decided_by, substr({}, 1, {PAYLOAD_HEAD_BYTES}) \
             AS payload_head FROM messages m WHERE m.id = ",
            D::PAYLOAD
        ));
        query.push_bind(D::id(message));
        let row = Self::fetch_optional(conn, &mut query)
            .await?
            .ok_or_else(|| StoreError::NotFound(MessageRef::Id(message).to_string()))?;
        let decided = match row.opt_int("decided_at")? {
            Some(at) => Some((
                Timestamp::from_millis(at),
                DecidedBy::from_stored(row.opt_text("decided_by")?.as_deref()),
            )),
            None => None,
        };
        let mut query = QueryBuilder::new(
            "SELECT at, kind, subscription, attempt, outcome, detail FROM message_events \
             WHERE message_id = ",
        );
        query.push_bind(D::id(message)).push(" ORDER BY seq");
        let events = Self::fetch_all(conn, &mut query)
            .await?
            .iter()
            .map(rows::message_event)
            .collect::<Result<_, _>>()?;
        let mut query = QueryBuilder::new(
            "SELECT subscription, updated_at FROM deliveries WHERE message_id = ",
        );
        query
            .push_bind(D::id(message))
            .push(" ORDER BY subscription");
        let delivery_changes = Self::fetch_all(conn, &mut query)
            .await?
            .iter()
            .map(|row| {
                let subscription = Name::from_trusted(row.text("subscription")?);
                Ok((subscription, Timestamp::from_millis(row.int("updated_at")?)))
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(MessageHistory {
            payload_head: row.bytes("payload_head")?,
            decided,
            events,
            delivery_changes,
        })
    }

    pub async fn checker(
        conn: &mut Conn<D>,
        producer: &Name,
    ) -> Result<Option<CheckerRegistration>, StoreError> {
        let mut query = QueryBuilder::new(
            "SELECT producer, endpoint, timeout_ms FROM checkers WHERE producer = ",
        );
        query.push_bind(producer.as_str());
        let row = Self::fetch_optional(conn, &mut query).await?;
        row.as_ref().map(rows::checker).transpose()
    }

    /// Earliest time a PENDING delivery of the subscription becomes due.
    pub async fn next_due(
        conn: &mut Conn<D>,
        subscription: &Name,
    ) -> Result<Option<Timestamp>, StoreError> {
        let mut query = QueryBuilder::new(
            "SELECT MIN(next_attempt_at) AS at FROM deliveries WHERE state = 'PENDING' \
             AND subscription = ",
        );
        query.push_bind(subscription.as_str());
        Self::earliest(conn, query).await
    }

    /// Earliest lease end among LEASED deliveries.
    pub async fn next_lease_expiry(conn: &mut Conn<D>) -> Result<Option<Timestamp>, StoreError> {
        let query = QueryBuilder::new(
            "SELECT MIN(lease_expires_at) AS at FROM deliveries WHERE state = 'LEASED'",
        );
        Self::earliest(conn, query).await
    }

    /// Earliest `next_check_at` among PREPARED messages.
    pub async fn next_check_due(conn: &mut Conn<D>) -> Result<Option<Timestamp>, StoreError> {
        let query = QueryBuilder::new(
            "SELECT MIN(next_check_at) AS at FROM messages WHERE state = 'PREPARED'",
        );
        Self::earliest(conn, query).await
    }

    /// Earliest `final_at` among retained final messages (both schemas keep those moments in
    /// a table of their own, `final_messages`).
    pub async fn oldest_final_at(conn: &mut Conn<D>) -> Result<Option<Timestamp>, StoreError> {
        let query = QueryBuilder::new("SELECT MIN(final_at) AS at FROM final_messages");
        Self::earliest(conn, query).await
    }

    pub async fn stats(
        conn: &mut Conn<D>,
        now: Timestamp,
        scope: StatsScope,
    ) -> Result<Stats, StoreError> {
        let mut topics = Self::live_topic_stats(conn).await?;
        let mut subscriptions = Self::live_subscription_stats(conn, now).await?;
        if scope == StatsScope::Full {
            Self::add_retained(conn, &mut topics, &mut subscriptions).await?;
        }
        topics.sort_by(|a, b| a.topic.cmp(&b.topic));
        let unrouted_confirms = topics.iter().map(|t| t.unrouted).sum();
        Ok(Stats {
            topics,
            subscriptions,
            unrouted_confirms,
        })
    }

    /// Topics with messages in flight or waiting for an operator.
    async fn live_topic_stats(conn: &mut Conn<D>) -> Result<Vec<TopicStats>, StoreError> {
        let mut topics: Vec<TopicStats> = Vec::new();
        let mut query = QueryBuilder::new(D::statement(sql::LIVE_MESSAGE_COUNTS));
        for row in &Self::fetch_all(conn, &mut query).await? {
            let entry = topic_entry(&mut topics, row.text("topic")?);
            let n = count(row.int("n")?);
            match row.text("state")?.as_str() {
                "PREPARED" => entry.prepared = n,
                "UNRESOLVED" => entry.unresolved = n,
                "UNROUTED" => entry.unrouted = n,
                other => {
                    return Err(StoreError::internal(format!(
                        "a live count of an unknown kind: {other}"
                    )));
                }
            }
        }
        Ok(topics)
    }

    /// Every subscription, sorted by name, with its deliveries in flight or waiting for an
    /// operator, its oldest due delivery's age, and the lanes a dead head holds.
    async fn live_subscription_stats(
        conn: &mut Conn<D>,
        now: Timestamp,
    ) -> Result<Vec<SubscriptionStats>, StoreError> {
        let mut query = QueryBuilder::new(D::statement(sql::LIVE_DELIVERY_COUNTS));
        let mut subscriptions = Vec::new();
        for row in &Self::fetch_all(conn, &mut query).await? {
            let first_due = row.opt_int("first_due")?.map(Timestamp::from_millis);
            subscriptions.push(SubscriptionStats {
                subscription: row.text("subscription")?,
                topic: row.text("topic")?,
                pending: count(row.int("pending")?),
                leased: count(row.int("leased")?),
                dead: count(row.int("dead")?),
                discarded: count(row.int("discarded")?),
                // Due means its time has come; a delivery waiting out its backoff is not late.
                oldest_pending_age: first_due
                    .filter(|due| *due <= now)
                    .map(|due| now.since(due)),
                ..SubscriptionStats::default()
            });
        }
        let mut blocked = QueryBuilder::new(sql::BLOCKED_LANES);
        for row in &Self::fetch_all(conn, &mut blocked).await? {
            let name = row.text("subscription")?;
            if let Some(entry) = subscriptions.iter_mut().find(|s| s.subscription == name) {
                entry.blocked_lanes = count(row.int("lanes")?);
            }
        }
        Ok(subscriptions)
    }

    /// The retained totals: ended messages by topic (adding their topics) and acked
    /// deliveries by subscription.
    async fn add_retained(
        conn: &mut Conn<D>,
        topics: &mut Vec<TopicStats>,
        subscriptions: &mut [SubscriptionStats],
    ) -> Result<(), StoreError> {
        let mut query = QueryBuilder::new(sql::RETAINED_MESSAGE_COUNTS);
        for row in &Self::fetch_all(conn, &mut query).await? {
            let entry = topic_entry(topics, row.text("topic")?);
            let n = count(row.int("n")?);
            match rows::message_state(&row.text("state")?)? {
                MessageState::Confirmed => entry.confirmed = n,
                MessageState::Cancelled => entry.cancelled = n,
                MessageState::Prepared | MessageState::Unresolved => {}
            }
        }
        let mut query = QueryBuilder::new(sql::RETAINED_DELIVERY_COUNTS);
        for row in &Self::fetch_all(conn, &mut query).await? {
            let name = row.text("subscription")?;
            if let Some(entry) = subscriptions.iter_mut().find(|s| s.subscription == name) {
                entry.acked = count(row.int("n")?);
            }
        }
        Ok(())
    }
}

/// The entry of `topic` in `topics`, added if missing.
fn topic_entry(topics: &mut Vec<TopicStats>, topic: String) -> &mut TopicStats {
    let index = match topics.iter().position(|t| t.topic == topic) {
        Some(index) => index,
        None => {
            topics.push(TopicStats {
                topic,
                ..TopicStats::default()
            });
            topics.len() - 1
        }
    };
    &mut topics[index]
}

fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}
