//! Choosing dead letters to redrive, discard or count, written once for both backends.
//!
//! An operator names a subscription and narrows its DEAD deliveries by message ids, by a piece
//! of their last error, by when they died, and by the message's producer key or ordering key.
//! A Redrive may be paced: the i-th redriven delivery (in message order) is due at
//! `now + i / rate`, so a flood of redriven work reaches the consumers at the rate chosen, and
//! the pace is durable (due times in the rows) with no background job to keep.

use std::time::Duration;

use crate::domain::{MessageId, MessageKey, Name, OrderingKey, Timestamp};

/// Which DEAD deliveries of `subscription` an action applies to. Every filter that is set must
/// hold; none set means all of them.
#[derive(Debug, Clone)]
pub struct DeadLetters {
    pub subscription: Name,
    /// Only the deliveries of these messages (empty: any message).
    pub message_ids: Vec<MessageId>,
    /// Only those whose last error contains this text (ASCII letters in either case).
    pub error_contains: Option<String>,
    /// Only those that died at or after this time.
    pub dead_from: Option<Timestamp>,
    /// Only those that died before this time.
    pub dead_until: Option<Timestamp>,
    /// Only those of the message with this producer key.
    pub key: Option<MessageKey>,
    /// Only those in the lane of this ordering key.
    pub ordering_key: Option<OrderingKey>,
}

impl DeadLetters {
    /// Every dead letter of `subscription`, or only those of `message_ids` when it is not empty.
    pub fn of(subscription: Name, message_ids: Vec<MessageId>) -> Self {
        Self {
            subscription,
            message_ids,
            error_contains: None,
            dead_from: None,
            dead_until: None,
            key: None,
            ordering_key: None,
        }
    }

    /// The binds of [`select`]'s $3 to $7, in order.
    pub fn filter_binds(&self) -> FilterBinds<'_> {
        (
            self.error_contains.as_ref().map(|text| text.to_lowercase()),
            self.dead_from.map(Timestamp::as_millis),
            self.dead_until.map(Timestamp::as_millis),
            self.key.as_ref().map(MessageKey::as_str),
            self.ordering_key.as_ref().map(OrderingKey::as_str),
        )
    }
}

/// The values of [`select`]'s $3 to $7: the error text (lowercased), the dead-from and
/// dead-until times in ms, the producer key and the ordering key.
pub type FilterBinds<'a> = (
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<&'a str>,
    Option<&'a str>,
);

/// The chosen dead letters, oldest message first: their message id and lane key first, then
/// the columns of a [`DeadLetter`]. `ids` is the
/// dialect's condition on `d.message_id` and the list bound as $2 (empty: any), `contains`
/// its function that finds text $3 in `d.last_error` (`instr` or `strpos`). Binds: $1 the
/// subscription, then [`DeadLetters::filter_binds`].
pub fn select(ids: &str, contains: &str) -> String {
    format!(
        "SELECT d.message_id, d.ordering_key, m.key, d.attempts, d.last_error, \
         d.updated_at AS dead_at FROM deliveries d /* dead index */ \
         JOIN messages m ON m.id = d.message_id \
         WHERE d.subscription = $1 AND d.state = 'DEAD' AND {ids} \
         AND (CAST($3 AS TEXT) IS NULL OR {contains}(lower(COALESCE(d.last_error, '')), $3) > 0) \
         AND (CAST($4 AS BIGINT) IS NULL OR d.updated_at >= $4) \
         AND (CAST($5 AS BIGINT) IS NULL OR d.updated_at < $5) \
         AND (CAST($6 AS TEXT) IS NULL OR m.key = $6) \
         AND (CAST($7 AS TEXT) IS NULL OR m.ordering_key = $7) \
         ORDER BY d.message_id"
    )
}

/// One dead letter as an operator sees it in a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub message_id: MessageId,
    pub key: MessageKey,
    pub ordering_key: Option<String>,
    pub attempts: u32,
    pub last_error: Option<String>,
    /// When it went DEAD.
    pub dead_at: Timestamp,
}

/// Most dead letters one listing shows.
pub const LISTING_LIMIT: u32 = 200;

/// When each of `count` redriven deliveries becomes due: all at `now` when `rate` (per second)
/// is zero, else the i-th at `now + i / rate`.
pub fn paced(now: Timestamp, count: usize, rate: f64) -> Vec<Timestamp> {
    (0..count)
        .map(|i| {
            if rate > 0.0 {
                now.plus(Duration::from_secs_f64(i as f64 / rate))
            } else {
                now
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_spreads_the_due_times() {
        let now = Timestamp::from_millis(1_000);
        let due: Vec<i64> = paced(now, 4, 2.0).iter().map(|t| t.as_millis()).collect();
        assert_eq!(due, vec![1_000, 1_500, 2_000, 2_500]);
    }

    #[test]
    fn no_rate_makes_all_due_now() {
        let now = Timestamp::from_millis(7);
        assert!(paced(now, 3, 0.0).iter().all(|t| *t == now));
    }

    #[test]
    fn the_error_filter_ignores_case() {
        let mut chosen = DeadLetters::of(Name::from_trusted("s".into()), Vec::new());
        chosen.error_contains = Some("TimeOut".into());
        assert_eq!(chosen.filter_binds().0.as_deref(), Some("timeout"));
    }
}
