//! Durations and times: protobuf's well-known types checked by their specification, ranges
//! checked with a message in the configuration's units, and domain times back to proto.

use std::ops::RangeInclusive;
use std::time::Duration;

use crate::domain::{FieldViolation, Timestamp};

pub(super) const SECOND: Duration = Duration::from_secs(1);
pub(super) const MINUTE: Duration = Duration::from_secs(60);
pub(super) const HOUR: Duration = Duration::from_secs(3600);
pub(super) const DAY: Duration = Duration::from_secs(24 * 3600);

/// Nanoseconds in a second, the bound of `google.protobuf.Duration.nanos`.
const NANOS_PER_SECOND: u32 = 1_000_000_000;

/// Whether a `google.protobuf.Duration` is one its specification allows: `nanos` within
/// ±999,999,999 and, when both are non-zero, of the same sign as `seconds`. prost would
/// normalize the others silently, so `{seconds: 1, nanos: -2_000_000_000}` would mean -1 s.
fn is_valid_duration(value: &prost_types::Duration) -> bool {
    let nanos_in_range = value.nanos.unsigned_abs() < NANOS_PER_SECOND;
    let signs_agree =
        value.seconds == 0 || value.nanos == 0 || (value.seconds > 0) == (value.nanos > 0);
    nanos_in_range && signs_agree
}

/// An optional duration, checked against its allowed range; `None` when unset.
pub(super) fn duration(
    field: &str,
    value: Option<prost_types::Duration>,
    range: &RangeInclusive<Duration>,
) -> Result<Option<Duration>, FieldViolation> {
    let Some(value) = value else {
        return Ok(None);
    };
    if !is_valid_duration(&value) {
        return Err(FieldViolation::new(
            field,
            "is not a valid duration: nanos must be within ±999,999,999 and share the sign of seconds",
        ));
    }
    let duration = Duration::try_from(value).map_err(|error| match error {
        prost_types::DurationError::NegativeDuration(_) => {
            FieldViolation::new(field, "must not be negative")
        }
        _ => FieldViolation::new(field, "is not a valid duration"),
    })?;
    if range.contains(&duration) {
        Ok(Some(duration))
    } else {
        Err(FieldViolation::new(
            field,
            format!(
                "is {}; it must be between {} and {}",
                human(duration),
                human(*range.start()),
                human(*range.end())
            ),
        ))
    }
}

pub(super) fn required_duration(
    field: &str,
    value: Option<prost_types::Duration>,
    range: &RangeInclusive<Duration>,
) -> Result<Duration, FieldViolation> {
    duration(field, value, range)?.ok_or_else(|| FieldViolation::new(field, "is required"))
}

/// Durations the way the configuration writes them: `250ms`, `10s`, `12h`, `7d`.
pub(super) fn human(duration: Duration) -> String {
    if duration.is_zero() {
        return "0s".to_owned();
    }
    let units = [(DAY, "d"), (HOUR, "h"), (MINUTE, "m"), (SECOND, "s")];
    for (unit, suffix) in units {
        if duration >= unit && duration.as_nanos().is_multiple_of(unit.as_nanos()) {
            return format!("{}{suffix}", duration.as_nanos() / unit.as_nanos());
        }
    }
    if duration.subsec_nanos().is_multiple_of(1_000_000) {
        format!("{}ms", duration.as_millis())
    } else {
        format!("{}ns", duration.as_nanos())
    }
}

pub fn timestamp(time: Timestamp) -> prost_types::Timestamp {
    let millis = time.as_millis();
    prost_types::Timestamp {
        seconds: millis.div_euclid(1000),
        // The remainder is below 1000, so the product fits an i32.
        nanos: (millis.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// An optional `google.protobuf.Timestamp`, checked by its specification (nanos within
/// 0..=999,999,999, years 1 to 9999), to the millisecond.
pub fn optional_time(
    field: &str,
    value: Option<prost_types::Timestamp>,
) -> Result<Option<Timestamp>, FieldViolation> {
    let Some(value) = value else {
        return Ok(None);
    };
    // 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z, the specification's range.
    const EARLIEST: i64 = -62_135_596_800;
    const LATEST: i64 = 253_402_300_799;
    if !(0..1_000_000_000).contains(&value.nanos) {
        return Err(FieldViolation::new(
            field,
            format!("has nanos {}; they must be 0 to 999999999", value.nanos),
        ));
    }
    if !(EARLIEST..=LATEST).contains(&value.seconds) {
        return Err(FieldViolation::new(field, "is outside the years 1 to 9999"));
    }
    Ok(Some(Timestamp::from_millis(
        value.seconds * 1000 + i64::from(value.nanos / 1_000_000),
    )))
}

pub(super) fn proto_duration(duration: Duration) -> prost_types::Duration {
    prost_types::Duration::try_from(duration).unwrap_or(prost_types::Duration {
        seconds: i64::MAX,
        nanos: 0,
    })
}

pub(super) fn optional_duration(duration: Duration) -> Option<prost_types::Duration> {
    Some(proto_duration(duration))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::messages::CHECK_AFTER;
    use crate::convert::test_support::seconds;

    fn proto(seconds: i64, nanos: i32) -> prost_types::Duration {
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
            assert!(is_valid_duration(&proto(valid.0, valid.1)), "{valid:?}");
        }
        for invalid in [
            (0, 1_000_000_000),
            (0, -1_000_000_000),
            (0, i32::MIN),
            (1, -1),
            (-1, 1),
        ] {
            assert!(
                !is_valid_duration(&proto(invalid.0, invalid.1)),
                "{invalid:?}"
            );
        }
    }

    #[test]
    fn durations_must_be_in_range() {
        let range = CHECK_AFTER;
        assert_eq!(duration("d", None, &range), Ok(None));
        assert_eq!(duration("d", seconds(1), &range), Ok(Some(SECOND)));
        let violation = duration("d", seconds(8 * 24 * 3600), &range).unwrap_err();
        assert_eq!(violation.description, "is 8d; it must be between 1s and 7d");
        let negative = prost_types::Duration {
            seconds: 0,
            nanos: -5,
        };
        assert!(duration("d", Some(negative), &range).is_err());
    }

    #[test]
    fn timestamps_convert_before_and_after_the_epoch() {
        let ts = timestamp(Timestamp::from_millis(1_500));
        assert_eq!((ts.seconds, ts.nanos), (1, 500_000_000));
        let ts = timestamp(Timestamp::from_millis(-1));
        assert_eq!((ts.seconds, ts.nanos), (-1, 999_000_000));
    }
}
