//! `callbacks.allowed_hosts` at the API: RegisterChecker and push endpoints naming a host
//! outside it are INVALID_ARGUMENT, so a caller cannot aim Courier at an internal address.
//! (The call itself is refused as well, in `callbacks`, for endpoints stored before.)

use crate::callbacks::AllowedHosts;
use crate::config::Config;
use crate::convert::RequestError;
use crate::domain::FieldViolation;

/// Refuses `endpoint` (already validated as a URL) unless its host is allowed.
pub fn must_be_allowed(field: &str, endpoint: &str, config: &Config) -> Result<(), RequestError> {
    let hosts = AllowedHosts::new(&config.callbacks.allowed_hosts);
    if hosts.permits(endpoint) {
        Ok(())
    } else {
        Err(RequestError::Invalid(vec![FieldViolation::new(
            field,
            hosts.refusal(endpoint),
        )]))
    }
}
