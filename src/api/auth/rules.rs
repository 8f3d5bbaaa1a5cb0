//! The one table of what each RPC needs. `admin` grants everything.

/// The scopes that allow a call, given the resource it acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// `produce:<producer>`.
    Produce,
    /// `consume:<subscription>`.
    Consume,
    /// `read`, or `produce:<producer>` of the message's producer.
    ReadOrProduce,
    /// `read`.
    Read,
    /// `admin` only.
    Admin,
}

/// Every Courier RPC and its rule. An RPC missing here needs `admin` (see [`rule_for`]).
pub const RULES: &[(&str, Rule)] = &[
    ("/courier.v1.Producer/Prepare", Rule::Produce),
    ("/courier.v1.Producer/Confirm", Rule::Produce),
    ("/courier.v1.Producer/Cancel", Rule::Produce),
    ("/courier.v1.Producer/Publish", Rule::Produce),
    ("/courier.v1.Producer/RegisterChecker", Rule::Produce),
    ("/courier.v1.Producer/CheckStatus", Rule::ReadOrProduce),
    ("/courier.v1.Consumer/Receive", Rule::Consume),
    ("/courier.v1.Consumer/Ack", Rule::Consume),
    ("/courier.v1.Consumer/Nack", Rule::Consume),
    ("/courier.v1.Consumer/ExtendLease", Rule::Consume),
    ("/courier.v1.Consumer/Reject", Rule::Consume),
    ("/courier.v1.Admin/GetSubscription", Rule::Read),
    ("/courier.v1.Admin/ListSubscriptions", Rule::Read),
    ("/courier.v1.Admin/ListMessages", Rule::Read),
    ("/courier.v1.Admin/ListDeliveries", Rule::Read),
    ("/courier.v1.Admin/GetStats", Rule::Read),
    ("/courier.v1.Admin/CreateSubscription", Rule::Admin),
    ("/courier.v1.Admin/UpdateSubscription", Rule::Admin),
    ("/courier.v1.Admin/DeleteSubscription", Rule::Admin),
    ("/courier.v1.Admin/Redrive", Rule::Admin),
    ("/courier.v1.Admin/DiscardDeadLetters", Rule::Admin),
    ("/courier.v1.Admin/Resolve", Rule::Admin),
];

/// Paths under this prefix are Courier's own and need credentials; health and reflection do
/// not (probes, `grpcurl list`).
pub const PROTECTED_PREFIX: &str = "/courier.v1.";

/// The table's own copy of a request path and its rule. Unknown Courier paths fail closed:
/// `admin`.
pub fn lookup(path: &str) -> (&'static str, Rule) {
    RULES
        .iter()
        .find(|(rpc, _)| *rpc == path)
        .copied()
        .unwrap_or(("unknown RPC", Rule::Admin))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    /// The table names every method of the three services, and nothing else.
    #[test]
    fn every_served_rpc_has_a_rule() {
        let set = prost_types::FileDescriptorSet::decode(crate::proto::FILE_DESCRIPTOR_SET)
            .expect("descriptor set");
        let mut served = Vec::new();
        for file in set.file.iter().filter(|f| f.package() == "courier.v1") {
            for service in &file.service {
                if matches!(service.name(), "Producer" | "Consumer" | "Admin") {
                    for method in &service.method {
                        served.push(format!("/courier.v1.{}/{}", service.name(), method.name()));
                    }
                }
            }
        }
        served.sort();
        let mut listed: Vec<String> = RULES.iter().map(|(rpc, _)| rpc.to_string()).collect();
        listed.sort();
        assert_eq!(served, listed);
    }
}
