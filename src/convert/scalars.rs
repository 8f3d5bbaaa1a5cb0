//! Names, ids, receipts, endpoints and message references: request strings parsed into the
//! domain's validated values.

use crate::domain::{FieldViolation, MessageId, MessageKey, MessageRef, Name, Receipt};
use crate::proto;

use super::checks::{Checks, RequestError};

/// A name that is required: `[A-Za-z0-9._-]{1,128}`.
pub fn name(field: &str, value: &str) -> Result<Name, RequestError> {
    Name::parse(field, value).map_err(|violation| RequestError::Invalid(vec![violation]))
}

/// An optional filter: empty means "no filter".
pub(super) fn optional_name(field: &str, value: &str) -> Result<Option<Name>, FieldViolation> {
    if value.is_empty() {
        Ok(None)
    } else {
        Name::parse(field, value).map(Some)
    }
}

pub(super) fn message_id(field: &str, value: &str) -> Result<MessageId, FieldViolation> {
    if value.is_empty() {
        return Err(FieldViolation::new(field, "is required"));
    }
    MessageId::parse(value).map_err(|error| FieldViolation::new(field, error.to_string()))
}

pub(super) fn receipt(field: &str, value: &str) -> Result<Receipt, FieldViolation> {
    if value.is_empty() {
        return Err(FieldViolation::new(field, "is required"));
    }
    Receipt::parse(value).ok_or_else(|| {
        FieldViolation::new(field, "is not a receipt handed out by Receive or Deliver")
    })
}

/// A gRPC endpoint: `http(s)://host[:port]`. A path, query or credentials would be silently
/// ignored by the gRPC client, so they are refused rather than stored.
pub(super) fn endpoint(field: &str, value: &str) -> Result<String, FieldViolation> {
    if value.is_empty() {
        return Err(FieldViolation::new(field, "is required"));
    }
    let invalid = |problem: &str| {
        FieldViolation::new(
            field,
            format!("{problem}; write it like http://10.0.0.7:7001 or https://host:443"),
        )
    };
    let url =
        url::Url::parse(value).map_err(|error| invalid(&format!("is not a URL ({error})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("must use http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("must not carry credentials"));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("must not have a path, query or fragment"));
    }
    // The normalized form (lowercase host, no default port, no trailing slash), so equal
    // endpoints compare equal when a subscription is created again.
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

pub(super) fn message_ref_in(
    checks: &mut Checks,
    field: &str,
    value: Option<proto::MessageRef>,
) -> Option<MessageRef> {
    use proto::message_ref::Ref;
    match value.and_then(|value| value.r#ref) {
        None => {
            checks.field(field, "is required: set message_id or producer_key");
            None
        }
        Some(Ref::MessageId(id)) => checks
            .take(message_id(&format!("{field}.message_id"), &id))
            .map(MessageRef::Id),
        Some(Ref::ProducerKey(producer_key)) => {
            let producer = checks.take(Name::parse(
                &format!("{field}.producer_key.producer"),
                &producer_key.producer,
            ));
            let key = checks.take(MessageKey::parse(
                &format!("{field}.producer_key.key"),
                &producer_key.key,
            ));
            Some(MessageRef::ProducerKey {
                producer: producer?,
                key: key?,
            })
        }
    }
}

/// The `message` field of Confirm, Cancel and CheckStatus.
pub fn message_ref(value: Option<proto::MessageRef>) -> Result<MessageRef, RequestError> {
    let mut checks = Checks::default();
    let Some(message) = message_ref_in(&mut checks, "message", value) else {
        return Err(checks.into_error());
    };
    checks.finish()?;
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::test_support::fields;

    #[test]
    fn endpoints_must_be_plain_http_urls() {
        assert_eq!(
            endpoint("e", "http://10.0.0.7:7001").unwrap(),
            "http://10.0.0.7:7001"
        );
        assert_eq!(
            endpoint("e", "https://checker/").unwrap(),
            "https://checker"
        );
        assert_eq!(
            endpoint("e", " HTTP://Checker:80 ").unwrap(),
            "http://checker"
        );
        for bad in [
            "",
            "10.0.0.7:7001",
            "ftp://host:1",
            "http://host:1/path",
            "http://u:p@host:1",
            "http://",
        ] {
            assert!(endpoint("e", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn message_ref_needs_one_valid_variant() {
        use proto::message_ref::Ref;
        assert!(message_ref(None).is_err());
        let by_key = proto::MessageRef {
            r#ref: Some(Ref::ProducerKey(proto::ProducerKey {
                producer: String::new(),
                key: String::new(),
            })),
        };
        assert_eq!(
            fields(message_ref(Some(by_key)).unwrap_err()),
            ["message.producer_key.producer", "message.producer_key.key"]
        );
        let by_id = proto::MessageRef {
            r#ref: Some(Ref::MessageId("nope".into())),
        };
        assert_eq!(
            fields(message_ref(Some(by_id)).unwrap_err()),
            ["message.message_id"]
        );
    }
}
