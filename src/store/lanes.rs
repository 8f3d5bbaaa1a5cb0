//! Lanes of ordered subscriptions, written once for both backends as SQL with `$N`
//! placeholders (SQLite reads them as `?N`, see `sql::for_sqlite`).
//!
//! In a subscription created `ordered`, the deliveries of messages that share an ordering key
//! form a lane. Each joins its lane at confirm (`lane_seq` one past the lane's last live
//! delivery, so the lane's order is the commit order) and waits, PENDING with no due time,
//! until it heads the lane. At most one delivery of a lane is in flight: due, leased, or DEAD
//! where the subscription blocks on a dead head. Whatever takes the head out of flight (an
//! Ack, a Discard, a dead head the subscription skips, a Redrive) calls [`PROMOTE`] for its
//! lane, which makes the next waiting delivery due. On PostgreSQL every write that adds to a
//! lane or promotes in it first takes the lane's lock (`postgres/lanes.rs`), so they run one
//! at a time per lane and each sees the others' commits.

/// Routes a message with an ordering key: one PENDING delivery per subscription of topic $5.
/// In an ordered subscription it joins the lane of key $4 and waits; elsewhere it is due at
/// $2. $1 is the message id, $3 now. Returns each subscription and the lane place (NULL
/// outside a lane).
pub const ROUTE_KEYED: &str = "\
INSERT INTO deliveries (subscription, message_id, state, next_attempt_at, updated_at, \
  ordering_key, lane_seq) \
SELECT s.name, $1, 'PENDING', CASE WHEN s.ordered THEN NULL ELSE CAST($2 AS BIGINT) END, $3, \
  CASE WHEN s.ordered THEN CAST($4 AS TEXT) END, \
  CASE WHEN s.ordered THEN ( \
    SELECT COALESCE(MAX(l.lane_seq), 0) + 1 FROM deliveries l \
    WHERE l.subscription = s.name AND l.ordering_key = $4 \
      AND l.state IN ('PENDING', 'LEASED', 'DEAD')) END \
FROM subscriptions s WHERE s.topic = $5 \
RETURNING subscription, lane_seq";

/// Makes the first waiting delivery of lane ($1 subscription, $2 key) due at `now` ($3), or at
/// its own delivery time if that is later, unless a delivery of the lane is in flight.
/// Changes at most one row.
pub const PROMOTE: &str = "\
UPDATE deliveries SET \
  next_attempt_at = (SELECT CASE WHEN m.decided_at + m.deliver_after_ms > $3 \
    THEN m.decided_at + m.deliver_after_ms ELSE $3 END \
    FROM messages m WHERE m.id = deliveries.message_id), \
  updated_at = $3 \
WHERE subscription = $1 AND next_attempt_at IS NULL AND state = 'PENDING' \
  AND message_id = ( \
    SELECT w.message_id FROM deliveries w /* lane index */ \
    WHERE w.subscription = $1 AND w.ordering_key = $2 \
      AND w.state IN ('PENDING', 'LEASED', 'DEAD') \
      AND w.state = 'PENDING' AND w.next_attempt_at IS NULL \
    ORDER BY w.lane_seq LIMIT 1) \
  AND NOT EXISTS ( \
    SELECT 1 FROM deliveries a /* lane index */ \
    WHERE a.subscription = $1 AND a.ordering_key = $2 \
      AND a.state IN ('PENDING', 'LEASED', 'DEAD') \
      AND (a.state = 'LEASED' OR a.next_attempt_at IS NOT NULL \
        OR (a.state = 'DEAD' AND EXISTS ( \
          SELECT 1 FROM subscriptions s WHERE s.name = $1 AND s.dead_head = 'BLOCK'))))";

/// The due time a delivery gets back when a Redrive makes it PENDING: due at once ($1) if it
/// is in no lane; in a lane it waits for [`PROMOTE`], which puts a blocking head first.
pub const REDRIVEN_DUE_AT: &str = "CASE WHEN ordering_key IS NULL THEN $1 END";

/// The lanes (subscription, key) among `deliveries`, each once, in key order: the order in
/// which PostgreSQL locks them, so two writers never wait on each other in a cycle.
pub fn distinct_lanes<'a>(
    deliveries: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
) -> Vec<(String, String)> {
    let mut lanes: Vec<(String, String)> = deliveries
        .into_iter()
        .filter_map(|(subscription, key)| Some((subscription.to_owned(), key?.to_owned())))
        .collect();
    lanes.sort();
    lanes.dedup();
    lanes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_are_listed_once_in_lock_order() {
        let lanes = distinct_lanes([
            ("b", Some("k1")),
            ("a", Some("k2")),
            ("b", Some("k1")),
            ("a", None),
        ]);
        assert_eq!(
            lanes,
            vec![("a".into(), "k2".into()), ("b".into(), "k1".into())]
        );
    }
}
