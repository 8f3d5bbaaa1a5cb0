//! The Store conformance suite: one set of tests written against `dyn Store`, run against
//! every backend by [`store_test_suite!`], split by topic into modules (the pattern of quickwit's `metastore_test_suite!`).
//! A backend is correct when it passes all of them; SQLite and PostgreSQL must behave alike.
//!
//! Each test gets a [`TestStore`] on a database of its own and can open a second store on
//! the same database ([`TestStore::replica`]), as another Courier replica would. Times are
//! passed explicitly, so nothing here sleeps, except the long poll's tests (the long poll
//! reads the clock itself).

mod admin;
mod checks;
mod consumer;
pub(in crate::store) mod helpers;
mod history;
mod lanes;
mod producer;
mod scheduler;
mod subscriptions;
mod traces;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::Store;
use crate::config::{PostgresConfig, SqliteConfig};
use crate::wakeups::Wakeups;

type Opening = Pin<Box<dyn Future<Output = Arc<dyn Store>>>>;
type OpenReplica = Box<dyn Fn(Wakeups) -> Opening + Send + Sync>;

/// A store on a database of its own; the database goes away with it.
pub struct TestStore {
    pub store: Arc<dyn Store>,
    pub wakeups: Wakeups,
    open_replica: OpenReplica,
    /// Keeps the database (a temporary directory or a PostgreSQL test database) alive; declared
    /// last so the store is dropped first.
    _database: Box<dyn Send + Sync>,
}

impl TestStore {
    /// Another store on the same database, with wake-ups of its own: another replica.
    pub async fn replica(&self) -> (Arc<dyn Store>, Wakeups) {
        let wakeups = Wakeups::default();
        ((self.open_replica)(wakeups.clone()).await, wakeups)
    }
}

pub async fn open_sqlite() -> Option<TestStore> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}/courier.db", dir.path().display());
    let open = move |wakeups: Wakeups| {
        let url = url.clone();
        Box::pin(async move {
            let store =
                crate::store::sqlite::SqliteStore::open(&url, &SqliteConfig::default(), wakeups)
                    .await
                    .expect("open SQLite store");
            Arc::new(store) as Arc<dyn Store>
        }) as Opening
    };
    let wakeups = Wakeups::default();
    Some(TestStore {
        store: open(wakeups.clone()).await,
        wakeups,
        open_replica: Box::new(open),
        _database: Box::new(dir),
    })
}

pub async fn open_postgres() -> Option<TestStore> {
    let database = crate::store::testing::TestDatabase::create().await?;
    let url = database.url().to_owned();
    let open = move |wakeups: Wakeups| {
        let url = url.clone();
        Box::pin(async move {
            let store = crate::store::postgres::PostgresStore::open(
                &url,
                &PostgresConfig::default(),
                wakeups,
            )
            .await
            .expect("open PostgreSQL store");
            store.listening().await;
            Arc::new(store) as Arc<dyn Store>
        }) as Opening
    };
    let wakeups = Wakeups::default();
    Some(TestStore {
        store: open(wakeups.clone()).await,
        wakeups,
        open_replica: Box::new(open),
        _database: Box::new(database),
    })
}

/// Declares one `#[tokio::test]` per conformance test for the backend that `$open` opens.
macro_rules! store_test_suite {
    ($open:path) => {
        store_test_suite!(@tests $open;
            subscriptions_create_get_list_update_delete,
            subscription_names_sort_bytewise,
            insert_requires_a_subscription,
            insert_dedups_on_producer_key_and_rejects_other_content,
            publish_routes_to_every_subscription,
            concurrent_inserts_of_one_key_create_one_message,
            decide_moves_open_messages_and_repeats_idempotently,
            decide_rejects_contradictions_and_unknown_messages,
            concurrent_decisions_have_one_winner,
            concurrent_calls_of_every_kind_each_get_their_own_answer,
            concurrent_prepares_and_publishes_each_get_their_own_answer,
            deliver_after_delays_the_first_delivery,
            lease_then_ack,
            ack_statuses_for_stale_unknown_and_repeated_receipts,
            ack_with_the_latest_receipt_after_expiry,
            nack_with_delay_then_dead_on_the_last_attempt,
            extend_lease_keeps_the_lease,
            reject_parks_the_delivery,
            expire_leases_checks_state_and_generation,
            expire_leases_on_the_last_attempt_is_dead,
            redrive_dead_deliveries,
            list_messages_pages_and_filters,
            list_deliveries_pages_and_filters,
            stats_count_by_state,
            unrouted_confirm_is_counted,
            live_stats_are_full_stats_without_retained_totals,
            delete_subscription_removes_its_deliveries,
            checkers_register_and_replace,
            confirm_wakes_the_subscription,
            a_drained_long_poll_still_finds_work_due_by_time_and_by_commit,
            a_long_poll_waits_for_a_running_lease_only_when_it_has_time,
            on_a_backlog_a_long_poll_leases_beside_the_running_lease,
            returned_leases_are_due_again_in_their_place,
            a_full_long_poll_leases_the_next_batch_ahead,
            concurrent_leasers_never_share_a_delivery,
            check_claims_take_due_messages_and_hold_them,
            record_check_applies_once_and_never_undoes_a_decision,
            concurrent_check_claims_never_share_a_message,
            fail_delivery_retries_then_parks_and_ignores_stale_receipts,
            final_messages_are_kept_then_deleted,
            concurrent_acks_on_two_subscriptions_finish_the_message,
            lanes_follow_confirm_order_not_id_order,
            failed_heads_hold_their_lane,
            lanes_never_wait_for_each_other,
            unordered_subscriptions_do_not_hold_keys,
            dead_head_blocks_until_redrive_or_discard,
            dead_head_skip_lets_the_lane_go_on,
            switching_to_skip_releases_blocked_lanes,
            deliver_after_delays_the_lane,
            lanes_survive_a_restart,
            lease_stops_at_the_byte_budget,
            concurrent_acks_in_and_out_of_lanes_each_get_their_own_answer,
            trace_context_is_kept_and_handed_out,
            history_keeps_check_answers_failures_and_the_decider,
            resolve_records_the_operator_once,
            history_keeps_only_the_newest_events,
            dead_letter_filters_choose_what_is_counted_and_acted_on,
        );
    };
    (@tests $open:path; $($test:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                let Some(store) = $open().await else { return };
                $crate::store::conformance::$test(&store).await;
            }
        )*
    };
}

pub use admin::*;
pub use checks::*;
pub use consumer::*;
pub use history::*;
pub use lanes::*;
pub use producer::*;
pub use scheduler::*;
pub use subscriptions::*;
pub use traces::*;

mod sqlite {
    store_test_suite!(crate::store::conformance::open_sqlite);
}

mod postgres {
    store_test_suite!(crate::store::conformance::open_postgres);
}
