//! Authorization of Courier's RPCs. A tower layer ([`AuthLayer`]) authenticates every call
//! once and puts the [`Caller`] into the request; each handler then calls
//! [`Caller::authorize`] once, with the producer or subscription the call acts on, and the
//! [`rules`] table decides which scopes allow it. Calls that change what operators manage are
//! written to the audit log ([`audit`]).

pub mod audit;
mod layer;
pub mod rules;

use tonic::{Request, Status};
use tracing::error;

use crate::security::{Authenticated, Principal, Scope};

pub use layer::AuthLayer;
pub use rules::Rule;

/// The name the audit log gives callers when authentication is off.
const ANYONE: &str = "anonymous";

/// Who is calling and what the RPC they called needs.
#[derive(Debug, Clone)]
pub struct Caller {
    who: Authenticated,
    rpc: &'static str,
    rule: Rule,
}

impl Caller {
    fn new(who: Authenticated, rpc: &'static str, rule: Rule) -> Self {
        Self { who, rpc, rule }
    }

    /// The caller the auth layer put into `request`. A request without one (a service served
    /// without the layer) is refused rather than let through.
    pub fn of<T>(request: &Request<T>) -> Result<Self, Status> {
        request.extensions().get::<Self>().cloned().ok_or_else(|| {
            error!("a call reached a handler without passing the auth layer");
            Status::unauthenticated("unauthenticated")
        })
    }

    /// The principal's name, for logs and the audit trail.
    pub fn name(&self) -> &str {
        match &self.who {
            Authenticated::Anyone => ANYONE,
            Authenticated::Principal(principal) => &principal.name,
        }
    }

    /// The RPC's path, `/courier.v1.Service/Method`.
    pub fn rpc(&self) -> &'static str {
        self.rpc
    }

    /// Allows the call when a scope of the caller covers it on `resource` (the producer or
    /// subscription, for the rules that name one); PERMISSION_DENIED names the scope needed.
    pub fn authorize(&self, resource: Option<&str>) -> Result<(), Status> {
        let principal = match &self.who {
            Authenticated::Anyone => return Ok(()),
            Authenticated::Principal(principal) => principal,
        };
        if allows(principal, self.rule, resource) {
            return Ok(());
        }
        Err(Status::permission_denied(format!(
            "{} needs scope {}; principal {:?} does not have it",
            method_name(self.rpc),
            needed(self.rule, resource),
            principal.name,
        )))
    }

    /// Whether the call is allowed whatever resource it acts on (open server, `admin`, `read`
    /// where it suffices, or a `*` pattern), so looking the resource up can be skipped.
    pub fn allowed_on_any(&self) -> bool {
        match &self.who {
            Authenticated::Anyone => true,
            Authenticated::Principal(principal) => allows(principal, self.rule, None),
        }
    }
}

/// Whether `principal` may make a call under `rule` on `resource`; with no resource, only
/// grants that cover every name count.
fn allows(principal: &Principal, rule: Rule, resource: Option<&str>) -> bool {
    let covers = |pattern: &crate::security::NamePattern| match resource {
        Some(name) => pattern.matches(name),
        None => pattern.matches_everything(),
    };
    principal.scopes.iter().any(|scope| match (scope, rule) {
        (Scope::Admin, _) => true,
        (Scope::Read, Rule::Read | Rule::ReadOrProduce) => true,
        (Scope::Produce(pattern), Rule::Produce | Rule::ReadOrProduce) => covers(pattern),
        (Scope::Consume(pattern), Rule::Consume) => covers(pattern),
        _ => false,
    })
}

/// The scope the message names: the narrowest that would have allowed the call.
fn needed(rule: Rule, resource: Option<&str>) -> String {
    let name = resource.unwrap_or("*");
    match rule {
        Rule::Produce => format!("produce:{name}"),
        Rule::Consume => format!("consume:{name}"),
        Rule::ReadOrProduce => format!("read (or produce:{name})"),
        Rule::Read => "read".to_owned(),
        Rule::Admin => "admin".to_owned(),
    }
}

/// `Producer/Prepare` from `/courier.v1.Producer/Prepare`.
fn method_name(rpc: &str) -> &str {
    rpc.strip_prefix(rules::PROTECTED_PREFIX).unwrap_or(rpc)
}

#[cfg(test)]
impl Caller {
    /// A caller for `rpc` with these scopes, for unit tests of handlers' rules.
    fn with_scopes(rpc: &str, scopes: &[&str]) -> Self {
        let principal = Principal {
            name: "test".into(),
            scopes: scopes.iter().map(|s| Scope::parse(s).unwrap()).collect(),
        };
        let (rpc, rule) = rules::lookup(rpc);
        Self::new(
            Authenticated::Principal(std::sync::Arc::new(principal)),
            rpc,
            rule,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn admin_allows_everything_and_read_only_reads() {
        for (rpc, _) in rules::RULES {
            let admin = Caller::with_scopes(rpc, &["admin"]);
            admin.authorize(Some("anything")).unwrap();
            assert!(admin.allowed_on_any());
        }
        let read = Caller::with_scopes("/courier.v1.Admin/ListMessages", &["read"]);
        read.authorize(None).unwrap();
        let read = Caller::with_scopes("/courier.v1.Admin/Redrive", &["read"]);
        let status = read.authorize(Some("billing")).unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);
        assert!(status.message().contains("needs scope admin"), "{status:?}");
    }

    #[test]
    fn produce_and_consume_match_their_names() {
        let shop = Caller::with_scopes("/courier.v1.Producer/Prepare", &["produce:shop-*"]);
        shop.authorize(Some("shop-eu")).unwrap();
        assert!(!shop.allowed_on_any());
        let status = shop.authorize(Some("bank")).unwrap_err();
        assert!(status.message().contains("produce:bank"), "{status:?}");
        let consume = Caller::with_scopes("/courier.v1.Producer/Prepare", &["consume:*"]);
        assert!(consume.authorize(Some("shop-eu")).is_err());
        let any = Caller::with_scopes("/courier.v1.Producer/Confirm", &["produce:*"]);
        assert!(any.allowed_on_any());
        let status_by_producer =
            Caller::with_scopes("/courier.v1.Producer/CheckStatus", &["produce:shop"]);
        status_by_producer.authorize(Some("shop")).unwrap();
        assert!(status_by_producer.authorize(Some("bank")).is_err());
    }
}
