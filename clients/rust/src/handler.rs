//! What a consumer's handler is and how it says a delivery failed.

use std::error::Error;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use futures::future::BoxFuture;

use crate::proto::Delivery;

/// Processes one delivery. Any `Fn(Delivery) -> impl Future<Output = Result<(), HandlerError>>`
/// that is `Send + Sync + 'static` is one.
pub trait Handler: Send + Sync + 'static {
    /// Does the work of `delivery`. `Ok` acknowledges it; see [`HandlerError`] for errors.
    fn handle(&self, delivery: Delivery) -> BoxFuture<'static, Result<(), HandlerError>>;
}

impl<F, Fut> Handler for F
where
    F: Fn(Delivery) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    fn handle(&self, delivery: Delivery) -> BoxFuture<'static, Result<(), HandlerError>> {
        Box::pin(self(delivery))
    }
}

/// Why a handler did not finish a delivery: retry it later (the default, what `?` gives
/// for any error), or give up on it at once ([`HandlerError::permanent`]: the delivery is
/// rejected and parked as a dead letter for an operator).
pub struct HandlerError {
    error: Box<dyn Error + Send + Sync>,
    retry: Retry,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// After the subscription's backoff.
    Later,
    /// After this delay.
    After(Duration),
    /// Never: a poison message.
    Never,
}

impl HandlerError {
    /// A failure worth retrying after the subscription's backoff.
    pub fn retry(error: impl Into<Box<dyn Error + Send + Sync>>) -> Self {
        Self {
            error: error.into(),
            retry: Retry::Later,
        }
    }

    /// A failure worth retrying after `delay`.
    pub fn retry_after(error: impl Into<Box<dyn Error + Send + Sync>>, delay: Duration) -> Self {
        Self {
            error: error.into(),
            retry: Retry::After(delay),
        }
    }

    /// A failure no retry will fix (a payload that cannot be parsed, say): the delivery is
    /// rejected with the error's text as the reason.
    pub fn permanent(error: impl Into<Box<dyn Error + Send + Sync>>) -> Self {
        Self {
            error: error.into(),
            retry: Retry::Never,
        }
    }

    /// True for [`HandlerError::permanent`].
    pub fn is_permanent(&self) -> bool {
        self.retry == Retry::Never
    }

    /// The delay asked for by [`HandlerError::retry_after`].
    pub fn retry_delay(&self) -> Option<Duration> {
        match self.retry {
            Retry::After(delay) => Some(delay),
            _ => None,
        }
    }

    /// The underlying error.
    pub fn error(&self) -> &(dyn Error + Send + Sync + 'static) {
        &*self.error
    }
}

impl<E: Into<Box<dyn Error + Send + Sync>>> From<E> for HandlerError {
    fn from(error: E) -> Self {
        Self::retry(error)
    }
}

impl fmt::Display for HandlerError {
    /// The error and its causes, `: `-separated.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.error)?;
        let mut source = self.error.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerError")
            .field("error", &self.to_string())
            .field("retry", &self.retry)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_error_converts_into_a_retry_that_reads_with_its_causes() {
        let parse = "x".parse::<u32>().unwrap_err();
        let failure: HandlerError = std::io::Error::other(parse).into();
        assert!(!failure.is_permanent());
        assert_eq!(failure.retry_delay(), None);
        assert_eq!(failure.to_string(), "invalid digit found in string");

        let later = HandlerError::retry_after("busy", Duration::from_secs(3));
        assert_eq!(later.retry_delay(), Some(Duration::from_secs(3)));
        let poison = HandlerError::permanent("not an order");
        assert!(poison.is_permanent());
        assert_eq!(poison.to_string(), "not an order");
    }
}
