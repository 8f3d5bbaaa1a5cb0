//! The audit trail: every Admin mutation, Resolve, Redrive and RegisterChecker, on the tracing
//! target `courier::audit`, with the principal, the RPC and its arguments (never payloads).
//! Filter it out of the rest with `RUST_LOG=courier::audit=info` or route it by target.

/// Writes one audit record after the call succeeded:
/// `audit!(caller, subscription = %name, "subscription deleted")`.
#[macro_export]
macro_rules! audit {
    ($caller:expr, $($fields:tt)+) => {
        ::tracing::info!(
            target: "courier::audit",
            principal = %$caller.name(),
            rpc = %$caller.rpc(),
            $($fields)+
        )
    };
}

/// Message ids for an audit record: `all` for an empty list (Redrive's "every dead delivery").
pub fn ids(ids: &[crate::domain::MessageId]) -> String {
    if ids.is_empty() {
        return "all".to_owned();
    }
    ids.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}
