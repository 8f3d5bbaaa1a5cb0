//! Durations written as text: `250ms`, `10s`, `10m`, `7d`.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer, de::Error};

pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&humantime::format_duration(*value).to_string())
}

pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    humantime::parse_duration(text.trim()).map_err(|e| {
        D::Error::custom(format!(
            "{} is not a duration ({e}); write it like 250ms, 10s, 10m or 7d",
            crate::domain::Quoted(&text)
        ))
    })
}
