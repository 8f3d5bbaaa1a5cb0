//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>): the `traceparent` and
//! `tracestate` a producer sends with Prepare or Publish, kept with the message and sent on
//! to its checker and consumers. Parsing follows the specification's rules for a receiver:
//! anything malformed is refused here, and the caller ignores it (a new trace starts) rather
//! than failing the call.

use std::fmt;

/// Longest `tracestate` kept, in bytes; the specification asks for at least 512.
pub const MAX_TRACESTATE_BYTES: usize = 512;
/// Most list members a `tracestate` may have (the specification's limit).
pub const MAX_TRACESTATE_MEMBERS: usize = 32;

/// Length of a version 00 `traceparent`: `00-` 32 hex `-` 16 hex `-` 2 hex.
const TRACEPARENT_LEN: usize = 55;

/// Why a `traceparent` or `tracestate` was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceContextError {
    #[error("traceparent is not version-traceid-parentid-flags in lowercase hex")]
    Malformed,
    #[error("traceparent version ff is forbidden")]
    ForbiddenVersion,
    #[error("traceparent trace id is all zeros")]
    ZeroTraceId,
    #[error("traceparent parent id is all zeros")]
    ZeroParentId,
    #[error("more than one traceparent")]
    Repeated,
    #[error("tracestate is longer than {MAX_TRACESTATE_BYTES} bytes")]
    StateTooLong,
    #[error("tracestate has more than {MAX_TRACESTATE_MEMBERS} members")]
    TooManyMembers,
    #[error("tracestate member {} is not key=value", super::Quoted(.0))]
    BadMember(String),
    #[error("tracestate names key {} twice", super::Quoted(.0))]
    DuplicateKey(String),
}

/// A valid `traceparent`: the trace, the caller's span (the parent of whatever comes next)
/// and the trace flags. Always written as version 00.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    trace_id: [u8; 16],
    parent_id: [u8; 8],
    flags: u8,
}

impl TraceParent {
    /// Builds one from raw ids; `None` if either id is all zeros (invalid in W3C).
    pub fn new(trace_id: [u8; 16], parent_id: [u8; 8], flags: u8) -> Option<Self> {
        let valid = trace_id != [0; 16] && parent_id != [0; 8];
        valid.then_some(Self {
            trace_id,
            parent_id,
            flags,
        })
    }

    /// Parses a `traceparent` value. Version 00 must be exactly 55 characters; a higher
    /// version may carry more fields after a `-`, which are dropped (the specification's
    /// forward-compatible reading).
    pub fn parse(value: &str) -> Result<Self, TraceContextError> {
        let value = value.trim_matches([' ', '\t']);
        let bytes = value.as_bytes();
        if bytes.len() < TRACEPARENT_LEN {
            return Err(TraceContextError::Malformed);
        }
        let version = lower_hex::<1>(&bytes[0..2]).ok_or(TraceContextError::Malformed)?[0];
        if version == 0xff {
            return Err(TraceContextError::ForbiddenVersion);
        }
        let longer_allowed = version > 0 && bytes.get(TRACEPARENT_LEN) == Some(&b'-');
        if bytes.len() > TRACEPARENT_LEN && !longer_allowed {
            return Err(TraceContextError::Malformed);
        }
        if [2, 35, 52].iter().any(|&i| bytes[i] != b'-') {
            return Err(TraceContextError::Malformed);
        }
        let trace_id = lower_hex::<16>(&bytes[3..35]).ok_or(TraceContextError::Malformed)?;
        let parent_id = lower_hex::<8>(&bytes[36..52]).ok_or(TraceContextError::Malformed)?;
        let flags = lower_hex::<1>(&bytes[53..55]).ok_or(TraceContextError::Malformed)?[0];
        if trace_id == [0; 16] {
            return Err(TraceContextError::ZeroTraceId);
        }
        if parent_id == [0; 8] {
            return Err(TraceContextError::ZeroParentId);
        }
        Ok(Self {
            trace_id,
            parent_id,
            flags,
        })
    }

    pub fn trace_id(&self) -> [u8; 16] {
        self.trace_id
    }

    pub fn parent_id(&self) -> [u8; 8] {
        self.parent_id
    }

    pub fn flags(&self) -> u8 {
        self.flags
    }

    /// The same trace and flags with another span as the parent: what a service sends on
    /// when its own span is the caller.
    pub fn with_parent(self, parent_id: [u8; 8]) -> Option<Self> {
        Self::new(self.trace_id, parent_id, self.flags)
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            hex::encode(self.trace_id),
            hex::encode(self.parent_id),
            self.flags
        )
    }
}

/// A valid `tracestate`: vendor entries, kept in order with blank members dropped.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TraceState(String);

impl TraceState {
    /// Parses a `tracestate` value (several header lines joined with `,`). `None` when it
    /// has no member at all.
    pub fn parse(value: &str) -> Result<Option<Self>, TraceContextError> {
        if value.len() > MAX_TRACESTATE_BYTES {
            return Err(TraceContextError::StateTooLong);
        }
        let mut members: Vec<&str> = Vec::new();
        let mut keys: Vec<&str> = Vec::new();
        for member in value.split(',').map(|m| m.trim_matches([' ', '\t'])) {
            if member.is_empty() {
                continue;
            }
            let bad = || TraceContextError::BadMember(member.to_owned());
            let (key, member_value) = member.split_once('=').ok_or_else(bad)?;
            if !valid_key(key) || !valid_value(member_value) {
                return Err(bad());
            }
            if keys.contains(&key) {
                return Err(TraceContextError::DuplicateKey(key.to_owned()));
            }
            keys.push(key);
            members.push(member);
        }
        if members.len() > MAX_TRACESTATE_MEMBERS {
            return Err(TraceContextError::TooManyMembers);
        }
        if members.is_empty() {
            return Ok(None);
        }
        Ok(Some(Self(members.join(","))))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TraceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The trace a message belongs to: the producer's `traceparent` and its `tracestate`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TraceContext {
    pub parent: TraceParent,
    pub state: Option<TraceState>,
}

impl TraceContext {
    /// Reads the context from the values of the `traceparent` and `tracestate` headers (each
    /// as many times as it came). No `traceparent` is no context; a malformed one is an error
    /// the caller logs and ignores. A malformed `tracestate` beside a valid `traceparent` is
    /// dropped alone, as the specification allows; the error says why.
    pub fn from_headers<'a>(
        traceparents: impl IntoIterator<Item = &'a str>,
        tracestates: impl IntoIterator<Item = &'a str>,
    ) -> (Option<Self>, Option<TraceContextError>) {
        let mut traceparents = traceparents.into_iter();
        let Some(first) = traceparents.next() else {
            return (None, None);
        };
        if traceparents.next().is_some() {
            return (None, Some(TraceContextError::Repeated));
        }
        let parent = match TraceParent::parse(first) {
            Ok(parent) => parent,
            Err(error) => return (None, Some(error)),
        };
        let joined = tracestates.into_iter().collect::<Vec<_>>().join(",");
        let (state, problem) = match TraceState::parse(&joined) {
            Ok(state) => (state, None),
            Err(error) => (None, Some(error)),
        };
        (Some(Self { parent, state }), problem)
    }

    /// Reads a context the store kept (validated when it was stored).
    pub fn from_stored(
        traceparent: &str,
        tracestate: Option<&str>,
    ) -> Result<Self, TraceContextError> {
        Ok(Self {
            parent: TraceParent::parse(traceparent)?,
            state: match tracestate {
                Some(state) => TraceState::parse(state)?,
                None => None,
            },
        })
    }

    /// `tracestate` as sent on: empty when there is none.
    pub fn tracestate(&self) -> &str {
        self.state.as_ref().map_or("", TraceState::as_str)
    }
}

/// Decodes exactly `N` bytes of lowercase hex (uppercase is invalid in a `traceparent`).
fn lower_hex<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    if text.len() != 2 * N || !text.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0; N];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

/// `simple-key` or `tenant-id@system-id` of the specification.
fn valid_key(key: &str) -> bool {
    let key_char = |c: u8| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'*' | b'/');
    let part = |text: &str, max: usize, first_digit: bool| {
        let bytes = text.as_bytes();
        match bytes.first() {
            Some(first)
                if first.is_ascii_lowercase() || (first_digit && first.is_ascii_digit()) =>
            {
                bytes.len() <= max && bytes.iter().all(|&c| key_char(c))
            }
            _ => false,
        }
    };
    match key.split_once('@') {
        None => part(key, 256, false),
        Some((tenant, system)) => part(tenant, 241, true) && part(system, 14, false),
    }
}

/// Printable ASCII but `,` and `=`, 1 to 256 characters, not ending in a space.
fn valid_value(value: &str) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 256
        && bytes.last() != Some(&b' ')
        && bytes
            .iter()
            .all(|&c| (0x20..=0x7e).contains(&c) && c != b',' && c != b'=')
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_round_trips() {
        let parent = TraceParent::parse(VALID).unwrap();
        assert_eq!(parent.to_string(), VALID);
        assert_eq!(parent.flags(), 1);
        assert_eq!(hex::encode(parent.parent_id()), "00f067aa0ba902b7");
    }

    #[test]
    fn malformed_traceparents_are_refused_with_their_reason() {
        use TraceContextError::*;
        let cases = [
            ("", Malformed),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
                Malformed,
            ),
            (
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                Malformed,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
                Malformed,
            ),
            (
                "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                Malformed,
            ),
            (
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                ForbiddenVersion,
            ),
            (
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                ZeroTraceId,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                ZeroParentId,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
                Malformed,
            ),
        ];
        for (value, expected) in cases {
            assert_eq!(TraceParent::parse(value), Err(expected), "{value:?}");
        }
    }

    #[test]
    fn a_later_version_is_read_by_its_first_four_fields_and_sent_as_00() {
        let later = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-ever";
        assert_eq!(TraceParent::parse(later).unwrap().to_string(), VALID);
        let glued = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x";
        assert!(TraceParent::parse(glued).is_err());
    }

    #[test]
    fn tracestate_keeps_its_members_in_order_and_drops_blanks() {
        let state = TraceState::parse(" rojo=00f067aa0ba902b7 ,, congo=t61rcWkgMzE,acme@vendor=x ")
            .unwrap()
            .unwrap();
        assert_eq!(
            state.as_str(),
            "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE,acme@vendor=x"
        );
        assert_eq!(TraceState::parse(" , ").unwrap(), None);
    }

    #[test]
    fn tracestate_over_its_bounds_or_malformed_is_refused() {
        let long = format!("a={}", "x".repeat(MAX_TRACESTATE_BYTES));
        assert_eq!(
            TraceState::parse(&long),
            Err(TraceContextError::StateTooLong)
        );
        let many: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
        assert_eq!(
            TraceState::parse(&many.join(",")),
            Err(TraceContextError::TooManyMembers)
        );
        assert!(TraceState::parse("Upper=1").is_err());
        assert!(TraceState::parse("novalue").is_err());
        assert!(TraceState::parse("a=b=c").is_err());
        assert!(TraceState::parse("a=caf\u{e9}").is_err());
        assert!(TraceState::parse("a=x\ty").is_err());
        // Spaces around a member are optional whitespace, not part of its value.
        assert!(TraceState::parse("a=inner space ").is_ok());
        assert_eq!(
            TraceState::parse("a=1,a=2"),
            Err(TraceContextError::DuplicateKey("a".into()))
        );
    }

    #[test]
    fn headers_give_a_context_or_a_reason_to_ignore_them() {
        let (context, problem) = TraceContext::from_headers([VALID], ["a=1", "b=2"]);
        let context = context.unwrap();
        assert_eq!(context.tracestate(), "a=1,b=2");
        assert_eq!(problem, None);

        let (context, problem) = TraceContext::from_headers([VALID], ["Bad"]);
        assert_eq!(context.unwrap().state, None, "a bad tracestate goes alone");
        assert!(matches!(problem, Some(TraceContextError::BadMember(_))));

        let (context, problem) = TraceContext::from_headers([VALID, VALID], []);
        assert_eq!(
            (context, problem),
            (None, Some(TraceContextError::Repeated))
        );
        assert_eq!(
            TraceContext::from_headers(["garbage"], ["a=1"]),
            (None, Some(TraceContextError::Malformed))
        );
        assert_eq!(TraceContext::from_headers([], ["a=1"]), (None, None));
    }
}
