//! Rules of protobuf's well-known types that prost leaves to the receiver.

/// Nanoseconds in a second, the bound of `google.protobuf.Duration.nanos`.
const NANOS_PER_SECOND: u32 = 1_000_000_000;

/// Whether a `google.protobuf.Duration` is one its specification allows: `nanos` within
/// ±999,999,999 and, when both are non-zero, of the same sign as `seconds`. prost would
/// normalize the others silently, so `{seconds: 1, nanos: -2_000_000_000}` would mean -1 s.
pub fn is_valid_duration(value: &prost_types::Duration) -> bool {
    let nanos_in_range = value.nanos.unsigned_abs() < NANOS_PER_SECOND;
    let signs_agree =
        value.seconds == 0 || value.nanos == 0 || (value.seconds > 0) == (value.nanos > 0);
    nanos_in_range && signs_agree
}

#[cfg(test)]
mod tests {
    use super::*;

    fn duration(seconds: i64, nanos: i32) -> prost_types::Duration {
        prost_types::Duration { seconds, nanos }
    }

    #[test]
    fn durations_follow_the_protobuf_specification() {
        for valid in [
            (0, 0),
            (1, 999_999_999),
            (-1, -999_999_999),
            (0, -5),
            (5, 0),
        ] {
            assert!(is_valid_duration(&duration(valid.0, valid.1)), "{valid:?}");
        }
        for invalid in [
            (0, 1_000_000_000),
            (0, -1_000_000_000),
            (0, i32::MIN),
            (1, -1),
            (-1, 1),
        ] {
            assert!(
                !is_valid_duration(&duration(invalid.0, invalid.1)),
                "{invalid:?}"
            );
        }
    }
}
