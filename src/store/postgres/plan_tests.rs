//! Plans that live as long as a connection: the lease's and the Ack's (functions planned once,
//! migration 0015) and the statements of the trigger that finishes messages. Plans made while
//! the tables and the batches were small must not make every later call pay for the tables as
//! they grew. Nothing but the time a call takes would show it, so the tests read what
//! PostgreSQL did: the buffers a call touched (`EXPLAIN ANALYZE`), and the plans it ran inside
//! a trigger (`auto_explain`, sent to the connection as notices).

use std::sync::{Arc, Mutex};

use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tracing::field::{Field, Visit};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};

use super::tests::{store_with_subscription, subscription};
use crate::domain::Timestamp;
use crate::store::{Batch, Store};

/// Collects the notices PostgreSQL sends to connections on this thread (sqlx reports each as
/// an event of `sqlx::postgres::notice`).
#[derive(Clone, Default)]
struct Notices(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> Layer<S> for Notices {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() == "sqlx::postgres::notice" {
            let mut message = Message(String::new());
            event.record(&mut message);
            self.0.lock().unwrap().push(message.0);
        }
    }
}

struct Message(String);

impl Visit for Message {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0 = value.to_owned();
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

async fn run(connection: &mut PgConnection, sql: &str) {
    sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
        .execute(connection)
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"));
}

/// `count` confirmed messages with keys `{prefix}{n}`, each with a PENDING delivery.
fn messages_with_deliveries(prefix: &str, count: u32) -> String {
    format!(
        "INSERT INTO messages (id, producer, topic, key, payload, headers, state, \
           deliver_after_ms, created_at, updated_at, decided_at, routed) \
         SELECT gen_random_uuid(), 'shop', 'orders', '{prefix}' || i, '\\x00', '{{}}', \
           'CONFIRMED', 0, 1, 1, 1, 1 FROM generate_series(1, {count}) AS i; \
         INSERT INTO deliveries (subscription, message_id, state, next_attempt_at, updated_at) \
         SELECT 'billing', id, 'PENDING', 1, 1 FROM messages WHERE key LIKE '{prefix}%'"
    )
}

/// The largest "Rows Removed by Join Filter" in `plan`: the rows a join compared and threw
/// away, which grows with the product of its two sides when it should have looked rows up.
fn most_rows_a_join_threw_away(plan: &str) -> u64 {
    plan.lines()
        .filter_map(|line| line.trim().strip_prefix("Rows Removed by Join Filter: "))
        .map(|count| count.parse::<u64>().expect("a count"))
        .max()
        .unwrap_or(0)
}

#[tokio::test]
async fn acks_after_the_tables_grew_do_not_pay_for_plans_made_while_they_were_small() {
    let Some((database, _store)) = store_with_subscription().await else {
        return;
    };
    let mut connection = PgConnection::connect(database.url()).await.unwrap();
    // Ten Acks of one delivery each while the tables are nearly empty: the trigger's plans
    // are made now, on this connection, and kept.
    run(&mut connection, &messages_with_deliveries("early", 10)).await;
    let early: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT message_id FROM deliveries")
        .fetch_all(&mut connection)
        .await
        .unwrap();
    for id in early {
        let ack = format!(
            "UPDATE deliveries SET state = 'ACKED', updated_at = 2 WHERE message_id = '{id}'"
        );
        run(&mut connection, &ack).await;
    }
    run(&mut connection, &messages_with_deliveries("late", 20_000)).await;

    let notices = Notices::default();
    let _capture =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(notices.clone()));
    run(
        &mut connection,
        "LOAD 'auto_explain'; SET auto_explain.log_min_duration = 0; \
         SET auto_explain.log_analyze = on; SET auto_explain.log_nested_statements = on; \
         SET auto_explain.log_level = notice; SET client_min_messages = notice",
    )
    .await;
    // An Ack of 256, as a consumer's batch is.
    run(
        &mut connection,
        "UPDATE deliveries SET state = 'ACKED', updated_at = 3 WHERE subscription = 'billing' \
         AND message_id IN (SELECT message_id FROM deliveries WHERE state = 'PENDING' \
         ORDER BY message_id LIMIT 256)",
    )
    .await;
    run(&mut connection, "SET auto_explain.log_min_duration = -1").await;

    let finished: i64 = sqlx::query_scalar("SELECT count(*) FROM final_messages")
        .fetch_one(&mut connection)
        .await
        .unwrap();
    assert_eq!(finished, 10 + 256, "every acked message is final");
    let plans = notices.0.lock().unwrap().clone();
    let trigger_plans: Vec<&String> = plans
        .iter()
        .filter(|plan| plan.contains("Query Text:") && !plan.contains("UPDATE deliveries"))
        .collect();
    assert!(
        trigger_plans.len() >= 3,
        "the trigger's statements were explained: {plans:#?}"
    );
    for plan in trigger_plans {
        // Looked up by key, an Ack of 256 throws away nothing; paired by nested loops it
        // threw away 65,280 (old and new rows) and 5,120,000 (messages) rows.
        let thrown_away = most_rows_a_join_threw_away(plan);
        assert!(
            thrown_away < 1_000,
            "{thrown_away} rows compared in vain:\n{plan}"
        );
    }
}

/// Buffers `statement` touches on `connection`, from its plan's count (`EXPLAIN ANALYZE`).
async fn buffers_of(connection: &mut PgConnection, statement: &str) -> u64 {
    let explain = format!("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {statement}");
    let plan: serde_json::Value = sqlx::query_scalar(AssertSqlSafe(explain))
        .fetch_one(&mut *connection)
        .await
        .unwrap();
    let top = &plan[0]["Plan"];
    ["Shared Hit Blocks", "Shared Read Blocks"]
        .iter()
        .map(|count| top[count].as_u64().unwrap())
        .sum()
}

/// A lease of 10 due deliveries of `billing`.
const LEASE_TEN: &str = "SELECT * FROM courier_lease('billing', 'orders', \
    (extract(epoch FROM now()) * 1000)::bigint, 10, 0, false, 'courier_x', 512, 4000000)";

/// An Ack of the deliveries of `billing` that `ids` name, at generation 1.
fn ack_of(ids: &[uuid::Uuid]) -> String {
    let ids: Vec<String> = ids.iter().map(|id| format!("'{id}'")).collect();
    format!(
        "SELECT * FROM courier_ack(array_fill('billing'::text, ARRAY[{count}]), \
         ARRAY[{ids}]::uuid[], array_fill(1::bigint, ARRAY[{count}]), 0, false)",
        count = ids.len(),
        ids = ids.join(", "),
    )
}

#[tokio::test]
async fn leases_and_acks_planned_on_empty_vacuumed_tables_still_find_rows_by_key() {
    let Some((database, store)) = store_with_subscription().await else {
        return;
    };
    // The statistics of empty tables: every scan looks free to the planner.
    let mut connection = PgConnection::connect(database.url()).await.unwrap();
    // VACUUM runs alone, not in a string of statements (an implicit transaction).
    for vacuum in ["VACUUM ANALYZE deliveries", "VACUUM ANALYZE messages"] {
        run(&mut connection, vacuum).await;
    }
    // The connection's plans are made now, on those statistics, and kept.
    buffers_of(&mut connection, LEASE_TEN).await;
    buffers_of(&mut connection, &ack_of(&[uuid::Uuid::nil()])).await;
    run(&mut connection, &messages_with_deliveries("k", 20_000)).await;
    // Ten rows by key cost a few hundred buffers; any scan of 20,000 would cost tens of
    // thousands.
    let leased = buffers_of(&mut connection, LEASE_TEN).await;
    assert!(leased < 1_000, "a lease of 10 touched {leased} buffers");
    let ids: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT message_id FROM deliveries WHERE state = 'LEASED'")
            .fetch_all(&mut connection)
            .await
            .unwrap();
    assert_eq!(ids.len(), 10);
    let acked = buffers_of(&mut connection, &ack_of(&ids)).await;
    assert!(acked < 1_000, "an Ack of 10 touched {acked} buffers");
    let acked_rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE state = 'ACKED'")
            .fetch_one(&mut connection)
            .await
            .unwrap();
    assert_eq!(acked_rows, 10);
    // And the store's own calls, on the pool's connections, lease what is left.
    let leased = store
        .lease(
            &subscription(Timestamp::now()),
            Batch {
                messages: 5,
                bytes: 1 << 20,
            },
            Timestamp::now(),
        )
        .await
        .unwrap();
    assert_eq!(leased.len(), 5);
}
