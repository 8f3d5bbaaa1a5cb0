use std::fmt;

use super::storable_text;

/// A field that failed validation, reported to clients as a field violation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

impl fmt::Display for FieldViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.description)
    }
}

const MAX_NAME_LEN: usize = 128;
const MAX_KEY_BYTES: usize = 256;

/// A topic, subscription or producer name: `[A-Za-z0-9._-]{1,128}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(String);

impl Name {
    pub fn parse(field: &str, value: &str) -> Result<Self, FieldViolation> {
        if value.is_empty() {
            return Err(FieldViolation::new(field, "is required"));
        }
        if value.len() > MAX_NAME_LEN {
            return Err(FieldViolation::new(
                field,
                format!(
                    "is {} characters; at most {MAX_NAME_LEN} are allowed",
                    value.len()
                ),
            ));
        }
        if let Some(bad) = value
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(FieldViolation::new(
                field,
                format!(
                    "contains '{}'; only letters, digits, '.', '_' and '-' are allowed",
                    bad.escape_debug()
                ),
            ));
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// For values read back from the store, which only ever holds parsed names.
    pub fn from_trusted(value: String) -> Self {
        Self(value)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A producer's business key: 1 to 256 bytes of UTF-8 without U+0000.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MessageKey(String);

impl MessageKey {
    pub fn parse(field: &str, value: &str) -> Result<Self, FieldViolation> {
        if value.is_empty() {
            return Err(FieldViolation::new(field, "is required"));
        }
        key_text(field, value)?;
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn from_trusted(value: String) -> Self {
        Self(value)
    }
}

impl fmt::Display for MessageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The rule producer keys and ordering keys share: at most `MAX_KEY_BYTES` bytes of UTF-8
/// that can be stored, so without U+0000.
fn key_text(field: &str, value: &str) -> Result<(), FieldViolation> {
    if value.len() > MAX_KEY_BYTES {
        return Err(FieldViolation::new(
            field,
            format!(
                "is {} bytes; at most {MAX_KEY_BYTES} are allowed",
                value.len()
            ),
        ));
    }
    storable_text(field, value)
}

/// A message's ordering key: 0 to 256 bytes of UTF-8 without U+0000. Empty means unordered;
/// in an ordered subscription, deliveries that share a key form a lane.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct OrderingKey(String);

impl OrderingKey {
    pub fn parse(field: &str, value: &str) -> Result<Self, FieldViolation> {
        key_text(field, value)?;
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key as a lane names it: `None` when the message is unordered.
    pub fn lane(&self) -> Option<&str> {
        (!self.0.is_empty()).then_some(self.0.as_str())
    }

    pub fn from_trusted(value: String) -> Self {
        Self(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_accept_the_allowed_alphabet() {
        assert!(Name::parse("topic", "orders.v1_eu-west").is_ok());
        assert!(Name::parse("topic", &"a".repeat(128)).is_ok());
    }

    #[test]
    fn names_reject_empty_long_and_odd_characters() {
        assert_eq!(
            Name::parse("topic", "").unwrap_err().description,
            "is required"
        );
        assert!(Name::parse("topic", &"a".repeat(129)).is_err());
        let violation = Name::parse("topic", "a/b").unwrap_err();
        assert_eq!(violation.field, "topic");
        assert!(violation.description.contains("'/'"));
    }

    #[test]
    fn keys_are_limited_in_bytes() {
        assert!(MessageKey::parse("key", &"é".repeat(128)).is_ok());
        assert!(MessageKey::parse("key", &"é".repeat(129)).is_err());
        assert!(MessageKey::parse("key", "").is_err());
        assert!(MessageKey::parse("key", "order\0").is_err());
    }

    #[test]
    fn ordering_keys_may_be_empty_but_not_long_or_nul() {
        assert_eq!(OrderingKey::parse("ordering_key", "").unwrap().lane(), None);
        assert_eq!(
            OrderingKey::parse("ordering_key", "account-7")
                .unwrap()
                .lane(),
            Some("account-7")
        );
        assert!(OrderingKey::parse("ordering_key", &"k".repeat(257)).is_err());
        assert!(OrderingKey::parse("ordering_key", "a\0").is_err());
    }
}
