//! What a client or operator can see, read from the store after every step and compared with
//! the model: each message (state, outcome, check-back fields) and each of its deliveries
//! (state, attempts, due time, lease end, last error, lane), the stats (counts per state,
//! blocked lanes, oldest pending age) and the next due times the scheduler sleeps until.
//! A due time the model only bounds (a jittered backoff) is pinned to the store's value here.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::future::Future;

use super::state::{DeliveryModel, Due, MessageModel, Model, TOPIC};
use crate::domain::{
    DeadHeadPolicy, DeliveryState, DeliveryStatus, MessageOutcome, MessageRef, MessageState,
    Timestamp,
};
use crate::store::{Stats, StatsScope, Store, StoreError, SubscriptionStats, TopicStats};

fn same<T: PartialEq + Debug>(what: &str, store: T, model: T) -> Result<(), String> {
    if store == model {
        Ok(())
    } else {
        Err(format!(
            "{what}: the store has {store:?}, the model {model:?}"
        ))
    }
}

/// Reads again when the store answers UNAVAILABLE (a read changes nothing, so a client may
/// retry it): on a machine shared with other loads a PostgreSQL connection occasionally
/// breaks, which is not a disagreement with the model. Any other answer is final.
async fn read<T, F: Future<Output = Result<T, StoreError>>>(
    mut call: impl FnMut() -> F,
) -> Result<T, StoreError> {
    let mut tries = 0;
    loop {
        match call().await {
            Err(StoreError::Unavailable(_)) if tries < 3 => tries += 1,
            answer => return answer,
        }
    }
}

pub async fn compare(store: &dyn Store, model: &mut Model) -> Result<(), String> {
    for message in &mut model.messages {
        compare_message(store, message)
            .await
            .map_err(|e| format!("message {} ({}): {e}", message.id, message.key))?;
    }
    let stats = read(|| store.stats(model.now, StatsScope::Full))
        .await
        .map_err(|e| format!("{e:?}"))?;
    same("stats", stats, expected_stats(model))?;
    lanes_flow(model)?;
    compare_next_times(store, model).await
}

async fn compare_message(store: &dyn Store, message: &mut MessageModel) -> Result<(), String> {
    let by_id = MessageRef::Id(message.id);
    let record = match read(|| store.get_message(&by_id)).await {
        Err(StoreError::NotFound(_)) if message.deleted => return Ok(()),
        Ok(_) if message.deleted => return Err("deleted by retention, still there".into()),
        Err(e) => return Err(format!("get_message: {e:?}")),
        Ok(record) => record,
    };
    same("state", record.state, message.state)?;
    same(
        "check attempts",
        record.check_attempts,
        message.check_attempts,
    )?;
    same("next check", record.next_check_at, message.next_check_at)?;
    same(
        "last check error",
        record.last_check_error.as_deref(),
        message.last_check_error.as_deref(),
    )?;
    same(
        "ordering key",
        record.ordering_key.as_str(),
        message.lane.as_deref().unwrap_or(""),
    )?;
    same("outcome", record.outcome(), outcome(message))?;
    let names: Vec<&str> = record
        .deliveries
        .iter()
        .map(|d| d.subscription.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let expected: Vec<&str> = message.deliveries.keys().map(String::as_str).collect();
    same("deliveries", names, expected)?;
    for status in &record.deliveries {
        let name = status.subscription.as_str();
        let lane = message.lane.clone();
        let delivery = message.deliveries.get_mut(name).expect("compared above");
        compare_delivery(status, delivery, lane).map_err(|e| format!("delivery to {name}: {e}"))?;
    }
    Ok(())
}

fn compare_delivery(
    status: &DeliveryStatus,
    delivery: &mut DeliveryModel,
    lane: Option<String>,
) -> Result<(), String> {
    same("state", status.state, delivery.state)?;
    same("attempts", status.attempts, delivery.attempts)?;
    same(
        "lease end",
        status.lease_expires_at,
        delivery.lease_expires_at,
    )?;
    same(
        "last error",
        status.last_error.as_deref(),
        delivery.last_error.as_deref(),
    )?;
    same(
        "lane",
        status.ordering_key.as_ref().map(|k| k.as_str().to_owned()),
        delivery.lane_seq.and(lane),
    )?;
    match (status.next_attempt_at, delivery.next_attempt_at) {
        (None, None) => Ok(()),
        (Some(at), Some(due)) if due.admits(at) => {
            delivery.next_attempt_at = Some(Due::At(at));
            Ok(())
        }
        (store, model) => Err(format!(
            "next attempt: the store has {store:?}, the model {model:?}"
        )),
    }
}

/// The outcome by the documented rule: a confirmed message is delivering while it has no
/// delivery or an open one, dead-lettered if one was given up, delivered when all are acked.
fn outcome(message: &MessageModel) -> MessageOutcome {
    let states = || message.deliveries.values().map(|d| d.state);
    match message.state {
        MessageState::Prepared => MessageOutcome::Prepared,
        MessageState::Cancelled => MessageOutcome::Cancelled,
        MessageState::Unresolved => MessageOutcome::Unresolved,
        MessageState::Confirmed => {
            let open =
                states().any(|s| matches!(s, DeliveryState::Pending | DeliveryState::Leased));
            let given_up =
                states().any(|s| matches!(s, DeliveryState::Dead | DeliveryState::Discarded));
            if message.deliveries.is_empty() || open {
                MessageOutcome::Delivering
            } else if given_up {
                MessageOutcome::DeadLettered
            } else {
                MessageOutcome::Delivered
            }
        }
    }
}

/// What the model and the store now agree on must also keep the lanes' promise: at most one
/// delivery of a lane due or leased, and no lane left waiting with nothing in flight (it
/// would never move again).
fn lanes_flow(model: &Model) -> Result<(), String> {
    for (name, sub) in &model.subscriptions {
        let mut lanes: std::collections::BTreeMap<&str, (u32, u32, bool)> = Default::default();
        for message in live_messages(model) {
            let (Some(d), Some(key)) = (message.deliveries.get(name), message.lane.as_deref())
            else {
                continue;
            };
            if d.lane_seq.is_none() || !d.live() {
                continue;
            }
            let (moving, waiting, blocked) = lanes.entry(key).or_default();
            match (d.state, d.next_attempt_at) {
                (DeliveryState::Leased, _) | (DeliveryState::Pending, Some(_)) => *moving += 1,
                (DeliveryState::Pending, None) => *waiting += 1,
                _ => *blocked |= sub.dead_head == DeadHeadPolicy::Block,
            }
        }
        for (key, (moving, waiting, blocked)) in lanes {
            if moving > 1 {
                return Err(format!(
                    "lane {key} of {name} has {moving} deliveries in flight"
                ));
            }
            if waiting > 0 && moving == 0 && !blocked {
                return Err(format!("lane {key} of {name} is stuck: {waiting} waiting"));
            }
        }
    }
    Ok(())
}

fn live_messages(model: &Model) -> impl Iterator<Item = &MessageModel> {
    model.messages.iter().filter(|m| !m.deleted)
}

fn expected_stats(model: &Model) -> Stats {
    let mut topic = TopicStats {
        topic: TOPIC.to_owned(),
        ..TopicStats::default()
    };
    for message in live_messages(model) {
        match message.state {
            MessageState::Prepared => topic.prepared += 1,
            MessageState::Confirmed => topic.confirmed += 1,
            MessageState::Cancelled => topic.cancelled += 1,
            MessageState::Unresolved => topic.unresolved += 1,
        }
    }
    let topics = if live_messages(model).next().is_some() {
        vec![topic]
    } else {
        Vec::new()
    };
    let subscriptions = model
        .subscriptions
        .iter()
        .map(|(name, sub)| {
            let mut stats = SubscriptionStats {
                subscription: name.clone(),
                topic: TOPIC.to_owned(),
                ..SubscriptionStats::default()
            };
            let mut blocked = BTreeSet::new();
            let mut oldest_due: Option<Timestamp> = None;
            for message in live_messages(model) {
                let Some(d) = message.deliveries.get(name) else {
                    continue;
                };
                match d.state {
                    DeliveryState::Pending => stats.pending += 1,
                    DeliveryState::Leased => stats.leased += 1,
                    DeliveryState::Acked => stats.acked += 1,
                    DeliveryState::Dead => stats.dead += 1,
                    DeliveryState::Discarded => stats.discarded += 1,
                }
                if d.state == DeliveryState::Dead
                    && d.lane_seq.is_some()
                    && sub.dead_head == DeadHeadPolicy::Block
                {
                    blocked.insert(message.lane.clone());
                }
                if let Some(at) = d.next_attempt_at.map(Due::at)
                    && d.state == DeliveryState::Pending
                    && at <= model.now
                {
                    oldest_due = Some(oldest_due.map_or(at, |oldest| oldest.min(at)));
                }
            }
            stats.blocked_lanes = blocked.len() as u64;
            stats.oldest_pending_age = oldest_due.map(|at| model.now.since(at));
            stats
        })
        .collect();
    Stats {
        topics,
        subscriptions,
        unrouted_confirms: 0,
    }
}

/// The times the scheduler and long polls sleep until.
async fn compare_next_times(store: &dyn Store, model: &Model) -> Result<(), String> {
    let fail = |e: StoreError| format!("{e:?}");
    let deliveries = || {
        live_messages(model).flat_map(|m| m.deliveries.iter().map(|(name, d)| (name.as_str(), d)))
    };
    for name in model.subscriptions.keys() {
        let subscription = crate::domain::Name::from_trusted(name.clone());
        let next_due = deliveries()
            .filter(|(sub, d)| *sub == name && d.state == DeliveryState::Pending)
            .filter_map(|(_, d)| d.next_attempt_at.map(Due::at))
            .min();
        let store_due = read(|| store.next_due(&subscription)).await.map_err(fail)?;
        same(&format!("next due of {name}"), store_due, next_due)?;
    }
    let next_expiry = deliveries()
        .filter(|(_, d)| d.state == DeliveryState::Leased)
        .filter_map(|(_, d)| d.lease_expires_at)
        .min();
    let store_expiry = read(|| store.next_lease_expiry()).await.map_err(fail)?;
    same("next lease expiry", store_expiry, next_expiry)?;
    let next_check = live_messages(model)
        .filter(|m| m.state == MessageState::Prepared)
        .filter_map(|m| m.next_check_at)
        .min();
    let store_check = read(|| store.next_check_due()).await.map_err(fail)?;
    same("next check", store_check, next_check)?;
    let oldest_final = live_messages(model).filter_map(|m| m.final_at).min();
    let store_final = read(|| store.oldest_final_at()).await.map_err(fail)?;
    same("oldest final", store_final, oldest_final)
}
