//! SQL text shared by both backends (no placeholders, so it fits either dialect).

use crate::domain::MessageOutcome;

/// A WHERE condition on messages aliased `m` that holds when the message has `outcome`.
pub fn outcome_condition(outcome: MessageOutcome) -> &'static str {
    match outcome {
        MessageOutcome::Prepared => "m.state = 'PREPARED'",
        MessageOutcome::Cancelled => "m.state = 'CANCELLED'",
        MessageOutcome::Unresolved => "m.state = 'UNRESOLVED'",
        MessageOutcome::Delivering => {
            "m.state = 'CONFIRMED' AND (EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = m.id \
             AND d.state IN ('PENDING', 'LEASED')) OR NOT EXISTS (SELECT 1 FROM deliveries d \
             WHERE d.message_id = m.id))"
        }
        MessageOutcome::Delivered => {
            "m.state = 'CONFIRMED' AND EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = m.id) \
             AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = m.id \
             AND d.state <> 'ACKED')"
        }
        MessageOutcome::DeadLettered => {
            "m.state = 'CONFIRMED' AND EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = m.id \
             AND d.state = 'DEAD') AND NOT EXISTS (SELECT 1 FROM deliveries d \
             WHERE d.message_id = m.id AND d.state IN ('PENDING', 'LEASED'))"
        }
    }
}
