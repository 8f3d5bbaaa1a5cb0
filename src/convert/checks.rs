//! How a request's problems are collected: every field violation and every limit it exceeds,
//! reported together so a client can fix them all in one round trip.

use crate::domain::FieldViolation;

/// Why a request was refused before reaching the store.
#[derive(Debug)]
pub enum RequestError {
    /// Missing or malformed fields (INVALID_ARGUMENT).
    Invalid(Vec<FieldViolation>),
    /// Well-formed, but over a configured limit (RESOURCE_EXHAUSTED).
    OverLimit(Vec<LimitViolation>),
}

/// A configured limit that a request exceeds; `limit` is the configuration key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitViolation {
    pub limit: &'static str,
    pub description: String,
}

/// Collects the problems of one request. Field violations outrank limit violations: a
/// malformed request is reported as malformed even if it is also too big.
#[derive(Debug, Default)]
pub(super) struct Checks {
    fields: Vec<FieldViolation>,
    limits: Vec<LimitViolation>,
}

impl Checks {
    /// Keeps the value, or records the violation and gives `None`.
    pub(super) fn take<T>(&mut self, result: Result<T, FieldViolation>) -> Option<T> {
        result.map_err(|violation| self.fields.push(violation)).ok()
    }

    pub(super) fn field(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.fields.push(FieldViolation::new(field, description));
    }

    pub(super) fn limit(&mut self, limit: &'static str, description: String) {
        self.limits.push(LimitViolation { limit, description });
    }

    /// The error for a request whose checks left some value unset. Every `None` from
    /// [`Checks::take`] recorded a violation, so the list is never empty in practice.
    pub(super) fn into_error(self) -> RequestError {
        if self.fields.is_empty() && !self.limits.is_empty() {
            RequestError::OverLimit(self.limits)
        } else {
            RequestError::Invalid(self.fields)
        }
    }

    pub(super) fn finish(self) -> Result<(), RequestError> {
        if self.fields.is_empty() && self.limits.is_empty() {
            Ok(())
        } else {
            Err(self.into_error())
        }
    }
}
