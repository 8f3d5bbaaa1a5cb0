//! Which `COURIER_*` environment variables are not configuration keys.
//!
//! Kubernetes gives every pod service-link variables for each Service in its namespace; with
//! a Service named `courier` they land in Courier's own prefix (`COURIER_SERVICE_HOST`,
//! `COURIER_PORT`, `COURIER_PORT_50051_TCP_ADDR`, …). Those shapes are skipped with one
//! warning; any other unknown `COURIER_*` variable is still refused.

/// The prefix of every configuration variable.
pub const PREFIX: &str = "COURIER_";

/// Why a `COURIER_*` variable is not read as configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotConfiguration {
    /// `COURIER_TEST_*` (the test suites') or `COURIER_CLI_TOKEN` (the operator commands').
    OtherTool,
    /// A Kubernetes service-link variable.
    ServiceLink,
}

/// Classifies `name` (the whole variable name, any letter case); `None` means it is
/// configuration.
pub fn not_configuration(name: &str) -> Option<NotConfiguration> {
    let name = name.to_ascii_uppercase();
    let rest = name.strip_prefix(PREFIX)?;
    if rest.starts_with("TEST_") || rest == "CLI_TOKEN" {
        return Some(NotConfiguration::OtherTool);
    }
    is_service_link(&name).then_some(NotConfiguration::ServiceLink)
}

/// The service-link variables among this process's environment, for the start-up warning.
pub fn service_links_in_env() -> Vec<String> {
    let mut names: Vec<String> = std::env::vars_os()
        .filter_map(|(name, _)| name.into_string().ok())
        .filter(|name| not_configuration(name) == Some(NotConfiguration::ServiceLink))
        .collect();
    names.sort();
    names
}

/// `<SVC>_SERVICE_HOST`, `<SVC>_SERVICE_PORT[_<NAME>]`, `<SVC>_PORT` and
/// `<SVC>_PORT_<n>_<TCP|UDP|SCTP>[_ADDR|_PORT|_PROTO]`, as Kubernetes writes them (uppercase).
/// Kubernetes never writes `__`, which Courier's nested keys always have.
fn is_service_link(name: &str) -> bool {
    if name.contains("__") {
        return false;
    }
    if name.ends_with("_SERVICE_HOST") || name.ends_with("_PORT") {
        return true;
    }
    if let Some((_, after)) = name.split_once("_SERVICE_PORT") {
        return after.is_empty() || after.starts_with('_');
    }
    port_protocol_suffix(name)
}

/// `…_PORT_<digits>_<TCP|UDP|SCTP>` optionally followed by `_ADDR`, `_PORT` or `_PROTO`.
fn port_protocol_suffix(name: &str) -> bool {
    name.match_indices("_PORT_").any(|(at, marker)| {
        let mut parts = name[at + marker.len()..].splitn(3, '_');
        let number = parts.next().unwrap_or_default();
        let protocol = parts.next().unwrap_or_default();
        let field = parts.next();
        !number.is_empty()
            && number.bytes().all(|b| b.is_ascii_digit())
            && matches!(protocol, "TCP" | "UDP" | "SCTP")
            && matches!(field, None | Some("ADDR" | "PORT" | "PROTO"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_shapes_are_service_links() {
        for name in [
            "COURIER_SERVICE_HOST",
            "COURIER_SERVICE_PORT",
            "COURIER_SERVICE_PORT_GRPC",
            "COURIER_SERVICE_PORT_METRICS",
            "COURIER_PORT",
            "COURIER_PORT_50051_TCP",
            "COURIER_PORT_50051_TCP_ADDR",
            "COURIER_PORT_50051_TCP_PORT",
            "COURIER_PORT_50051_TCP_PROTO",
            "COURIER_PORT_9464_UDP",
            "COURIER_POSTGRES_SERVICE_HOST",
            "COURIER_POSTGRES_PORT_5432_TCP_ADDR",
            "courier_port",
        ] {
            assert_eq!(
                not_configuration(name),
                Some(NotConfiguration::ServiceLink),
                "{name}"
            );
        }
    }

    #[test]
    fn configuration_and_typos_are_not_service_links() {
        for name in [
            "COURIER_LISTEN",
            "COURIER_DATABASE_URL",
            "COURIER_CHECKS__TIMEOUT",
            "COURIER_LISTEN_PORT_X",
            "COURIER_PORT_50051",
            "COURIER_PORT_X_TCP",
            "COURIER_PORT_50051_TCP_HOST",
            "COURIER_TLS__PORT",
            "COURIER_SERVICE_PORTS",
            "OTHER_SERVICE_HOST",
        ] {
            assert_eq!(not_configuration(name), None, "{name}");
        }
    }

    #[test]
    fn other_tools_variables_are_skipped_silently() {
        assert_eq!(
            not_configuration("COURIER_CLI_TOKEN"),
            Some(NotConfiguration::OtherTool)
        );
        assert_eq!(
            not_configuration("COURIER_TEST_POSTGRES_URL"),
            Some(NotConfiguration::OtherTool)
        );
    }
}
