use std::time::Duration;

use super::RetryPolicy;

/// Share of the backoff added or removed at random, so retries of many deliveries spread out.
pub const JITTER: f64 = 0.2;

/// Wait after failed attempt `attempt` (1-based): `initial * multiplier^(attempt-1)`, capped at
/// `max_backoff`, then scaled by `1 + jitter` where `jitter` is in `[-JITTER, JITTER]` (pass a
/// random value; tests pass 0).
pub fn backoff(policy: &RetryPolicy, attempt: u32, jitter: f64) -> Duration {
    let exponent = attempt.saturating_sub(1).min(1_000) as i32;
    let raw = policy.initial_backoff.as_secs_f64() * policy.multiplier.powi(exponent);
    let capped = raw.min(policy.max_backoff.as_secs_f64());
    let jittered = capped * (1.0 + jitter.clamp(-JITTER, JITTER));
    Duration::from_secs_f64(jittered.max(0.0))
}

/// A uniformly random jitter factor for [`backoff`].
pub fn random_jitter() -> f64 {
    rand::random_range(-JITTER..=JITTER)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 16,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(600),
            multiplier: 2.0,
        }
    }

    #[test]
    fn doubles_then_caps() {
        let policy = policy();
        assert_eq!(backoff(&policy, 1, 0.0), Duration::from_secs(1));
        assert_eq!(backoff(&policy, 2, 0.0), Duration::from_secs(2));
        assert_eq!(backoff(&policy, 4, 0.0), Duration::from_secs(8));
        assert_eq!(backoff(&policy, 15, 0.0), Duration::from_secs(600));
        assert_eq!(backoff(&policy, u32::MAX, 0.0), Duration::from_secs(600));
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        let policy = policy();
        for _ in 0..1000 {
            let wait = backoff(&policy, 3, random_jitter()).as_secs_f64();
            assert!((3.2..=4.8).contains(&wait), "{wait}");
        }
        assert_eq!(backoff(&policy, 1, 5.0), Duration::from_secs_f64(1.2));
    }
}
