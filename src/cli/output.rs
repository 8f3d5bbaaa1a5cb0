//! Printing for the operator commands: aligned tables and key/value blocks for people, and
//! explicit JSON for scripts. JSON uses the proto field names, enum values without their
//! prefix (`"PREPARED"`, `"DEAD"`), times as RFC 3339 strings and durations as numbers of
//! seconds (fields ending in `_seconds`); unset values are `null`.

use std::io::Write;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use super::CliError;
use crate::proto;

/// Longest text shown in one table cell (an error, a key); the JSON carries it whole.
const MAX_CELL_CHARS: usize = 60;

/// Writes `text` to stdout; a closed pipe (`| head`) is not an error worth a message.
pub fn print(text: &str) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => Err(error.into()),
        _ => Ok(()),
    }
}

pub fn print_json(value: &Value) -> Result<(), CliError> {
    let mut text = serde_json::to_string_pretty(value).map_err(std::io::Error::other)?;
    text.push('\n');
    print(&text)
}

/// Columns aligned with spaces, a header row in capitals.
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&'static str]) -> Self {
        Self {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows
            .push(cells.into_iter().map(|cell| clip(&cell)).collect());
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut text = String::new();
        let headers = self.headers.iter().map(|h| h.to_string()).collect();
        for row in std::iter::once(&headers).chain(&self.rows) {
            let mut line = String::new();
            for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                if i + 1 < row.len() {
                    line.extend(std::iter::repeat_n(' ', width - cell.chars().count()));
                }
            }
            text.push_str(line.trim_end());
            text.push('\n');
        }
        text
    }
}

/// `key: value` lines with the values aligned.
pub fn fields(pairs: &[(&str, String)]) -> String {
    // Room for the longest key and its colon.
    let width = pairs.iter().map(|(k, _)| k.len() + 1).max().unwrap_or(0);
    pairs
        .iter()
        .map(|(key, value)| format!("{key:width$}  {value}\n", key = format!("{key}:")))
        .collect()
}

/// One line, at most [`MAX_CELL_CHARS`] characters, without control characters.
fn clip(text: &str) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() <= MAX_CELL_CHARS {
        return flat;
    }
    let mut clipped: String = flat.chars().take(MAX_CELL_CHARS - 1).collect();
    clipped.push('…');
    clipped
}

/// `-` for an empty value in a table.
pub fn or_dash(text: &str) -> String {
    if text.is_empty() {
        "-".to_owned()
    } else {
        text.to_owned()
    }
}

pub fn system_time(timestamp: &Option<prost_types::Timestamp>) -> Option<SystemTime> {
    timestamp.and_then(|t| SystemTime::try_from(t).ok())
}

/// RFC 3339 to the second for tables; `-` when unset.
pub fn time_cell(timestamp: &Option<prost_types::Timestamp>) -> String {
    system_time(timestamp).map_or_else(
        || "-".to_owned(),
        |t| humantime::format_rfc3339_seconds(t).to_string(),
    )
}

/// RFC 3339 with milliseconds, or null.
pub fn time_json(timestamp: &Option<prost_types::Timestamp>) -> Value {
    system_time(timestamp).map_or(Value::Null, |t| {
        json!(humantime::format_rfc3339_millis(t).to_string())
    })
}

pub fn std_duration(duration: &Option<prost_types::Duration>) -> Option<Duration> {
    duration.and_then(|d| Duration::try_from(d).ok())
}

/// `30s`, `10m`, `1m 5s`, `250ms`; `-` when unset or zero.
pub fn duration_cell(duration: &Option<prost_types::Duration>) -> String {
    match std_duration(duration) {
        None => "-".to_owned(),
        Some(d) if d.is_zero() => "-".to_owned(),
        Some(d) if d < Duration::from_secs(1) => format!("{}ms", d.as_millis()),
        Some(d) if d < Duration::from_secs(60) && d.subsec_millis() != 0 => {
            format!("{:.1}s", d.as_secs_f64())
        }
        Some(d) => humantime::format_duration(Duration::from_secs(d.as_secs())).to_string(),
    }
}

/// Seconds as a number, or null.
pub fn seconds_json(duration: &Option<prost_types::Duration>) -> Value {
    std_duration(duration).map_or(Value::Null, |d| json!(d.as_secs_f64()))
}

/// An enum value's name without its type prefix: `MESSAGE_STATE_PREPARED` → `PREPARED`.
fn short_name(full: &str, prefix: &str) -> String {
    full.strip_prefix(prefix).unwrap_or(full).to_owned()
}

pub fn message_state(value: i32) -> String {
    proto::MessageState::try_from(value).map_or_else(
        |_| format!("UNKNOWN({value})"),
        |s| short_name(s.as_str_name(), "MESSAGE_STATE_"),
    )
}

pub fn message_outcome(value: i32) -> String {
    proto::MessageOutcome::try_from(value).map_or_else(
        |_| format!("UNKNOWN({value})"),
        |s| short_name(s.as_str_name(), "MESSAGE_OUTCOME_"),
    )
}

pub fn dead_head(value: i32) -> String {
    match proto::DeadHead::try_from(value) {
        Ok(proto::DeadHead::Unspecified) => "BLOCK".to_owned(),
        Ok(policy) => short_name(policy.as_str_name(), "DEAD_HEAD_"),
        Err(_) => format!("UNKNOWN({value})"),
    }
}

pub fn delivery_state(value: i32) -> String {
    proto::DeliveryState::try_from(value).map_or_else(
        |_| format!("UNKNOWN({value})"),
        |s| short_name(s.as_str_name(), "DELIVERY_STATE_"),
    )
}

fn non_empty(text: &str) -> Value {
    if text.is_empty() {
        Value::Null
    } else {
        json!(text)
    }
}

// --- shared shapes ---

pub fn subscription_json(subscription: &proto::Subscription) -> Value {
    let retry = subscription.retry_policy.unwrap_or_default();
    json!({
        "name": subscription.name,
        "topic": subscription.topic,
        "ack_deadline_seconds": seconds_json(&subscription.ack_deadline),
        "retry_policy": {
            "max_attempts": retry.max_attempts,
            "initial_backoff_seconds": seconds_json(&retry.initial_backoff),
            "max_backoff_seconds": seconds_json(&retry.max_backoff),
            "multiplier": retry.multiplier,
        },
        "push_endpoint": non_empty(&subscription.push_endpoint),
        "ordered": subscription.ordered,
        "dead_head": dead_head(subscription.dead_head),
        "created_at": time_json(&subscription.created_at),
    })
}

pub fn subscription_fields(subscription: &proto::Subscription) -> String {
    let retry = subscription.retry_policy.unwrap_or_default();
    fields(&[
        ("name", subscription.name.clone()),
        ("topic", subscription.topic.clone()),
        ("ack deadline", duration_cell(&subscription.ack_deadline)),
        ("max attempts", retry.max_attempts.to_string()),
        (
            "backoff",
            format!(
                "{}, ×{} per attempt, up to {}",
                duration_cell(&retry.initial_backoff),
                retry.multiplier,
                duration_cell(&retry.max_backoff)
            ),
        ),
        (
            "delivery",
            if subscription.push_endpoint.is_empty() {
                "pull (Consumer.Receive)".to_owned()
            } else {
                format!("push to {}", subscription.push_endpoint)
            },
        ),
        (
            "order",
            if subscription.ordered {
                format!(
                    "one at a time per ordering key; a dead head {}",
                    match dead_head(subscription.dead_head).as_str() {
                        "SKIP" => "is skipped",
                        _ => "blocks its lane",
                    }
                )
            } else {
                "none".to_owned()
            },
        ),
        ("created", time_cell(&subscription.created_at)),
    ])
}

pub fn delivery_json(delivery: &proto::DeliveryStatus) -> Value {
    json!({
        "subscription": delivery.subscription,
        "message_id": delivery.message_id,
        "state": delivery_state(delivery.state),
        "attempts": delivery.attempts,
        "next_attempt_at": time_json(&delivery.next_attempt_at),
        "lease_expires_at": time_json(&delivery.lease_expires_at),
        "last_error": non_empty(&delivery.last_error),
        "ordering_key": non_empty(&delivery.ordering_key),
    })
}

pub fn message_json(message: &proto::Message) -> Value {
    let mut headers: Vec<_> = message.headers.iter().collect();
    headers.sort();
    let headers: serde_json::Map<String, Value> = headers
        .into_iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    json!({
        "message_id": message.message_id,
        "producer": message.producer,
        "topic": message.topic,
        "key": message.key,
        "headers": headers,
        "state": message_state(message.state),
        "outcome": message_outcome(message.outcome),
        "created_at": time_json(&message.created_at),
        "updated_at": time_json(&message.updated_at),
        "check_attempts": message.check_attempts,
        "next_check_at": time_json(&message.next_check_at),
        "last_check_error": non_empty(&message.last_check_error),
        "payload_bytes": message.payload_bytes,
        "deliveries": message.deliveries.iter().map(delivery_json).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns_and_clip_long_cells() {
        let mut table = Table::new(&["NAME", "TOPIC"]);
        table.row(vec!["billing".into(), "orders".into()]);
        table.row(vec!["b".into(), "x\ny".into()]);
        assert_eq!(
            table.render(),
            "NAME     TOPIC\nbilling  orders\nb        x y\n"
        );
        let long = "e".repeat(100);
        assert_eq!(clip(&long).chars().count(), MAX_CELL_CHARS);
    }

    #[test]
    fn enum_names_lose_their_prefix() {
        assert_eq!(
            message_state(proto::MessageState::Prepared as i32),
            "PREPARED"
        );
        assert_eq!(
            message_outcome(proto::MessageOutcome::DeadLettered as i32),
            "DEAD_LETTERED"
        );
        assert_eq!(delivery_state(proto::DeliveryState::Dead as i32), "DEAD");
        assert_eq!(delivery_state(42), "UNKNOWN(42)");
    }

    #[test]
    fn durations_read_naturally() {
        let d = |ms: u64| Some(prost_types::Duration::try_from(Duration::from_millis(ms)).unwrap());
        assert_eq!(duration_cell(&d(30_000)), "30s");
        assert_eq!(duration_cell(&d(250)), "250ms");
        assert_eq!(duration_cell(&d(1_500)), "1.5s");
        assert_eq!(duration_cell(&d(600_000)), "10m");
        assert_eq!(duration_cell(&None), "-");
    }
}
