//! Operator actions on dead letters, shared by the Admin service and the console so both
//! record the same metrics and describe the choice the same way in the audit log.

use crate::convert::DeadLetterAction;
use crate::domain::Timestamp;
use crate::metrics;
use crate::store::{DeadLetters, Store, StoreError};

/// Redrives the chosen dead letters at the action's rate; answers how many.
pub async fn redrive(
    store: &dyn Store,
    action: &DeadLetterAction,
    now: Timestamp,
) -> Result<u64, StoreError> {
    let redriven = store.redrive(&action.chosen, action.rate, now).await?;
    metrics::deliveries_redriven(action.chosen.subscription.as_str(), redriven);
    Ok(redriven)
}

/// The choice in an audit record: `all`, or the ids and filters that narrowed it.
pub fn describe(chosen: &DeadLetters) -> String {
    let mut parts = Vec::new();
    if !chosen.message_ids.is_empty() {
        parts.push(format!(
            "message_ids={}",
            crate::api::auth::audit::ids(&chosen.message_ids)
        ));
    }
    if let Some(text) = &chosen.error_contains {
        parts.push(format!("error_contains={text:?}"));
    }
    if let Some(at) = chosen.dead_from {
        parts.push(format!("dead_after={}", at.as_millis()));
    }
    if let Some(at) = chosen.dead_until {
        parts.push(format!("dead_before={}", at.as_millis()));
    }
    if let Some(key) = &chosen.key {
        parts.push(format!("key={:?}", key.as_str()));
    }
    if let Some(key) = &chosen.ordering_key {
        parts.push(format!("ordering_key={:?}", key.as_str()));
    }
    if parts.is_empty() {
        "all".to_owned()
    } else {
        parts.join(" ")
    }
}
