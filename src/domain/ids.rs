use std::fmt;

use uuid::Uuid;

/// Courier's id for a message: a UUIDv7, so ids sort by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId(Uuid);

#[derive(Debug, thiserror::Error)]
#[error("is not a message id (a UUID such as 0190b6c4-7d1e-7c3a-9f2e-5a1b2c3d4e5f)")]
pub struct ParseIdError;

impl MessageId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    pub fn parse(value: &str) -> Result<Self, ParseIdError> {
        Uuid::try_parse(value).map(Self).map_err(|_| ParseIdError)
    }

    /// For ids read back from a store that keeps them as UUIDs.
    pub fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl Default for MessageId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}
