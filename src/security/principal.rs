//! Who is calling and what they may do: a principal's name and scopes.
//!
//! Scopes: `produce:<producer>`, `consume:<subscription>`, `read`, `admin`. In a name, `*`
//! matches any run of name characters (`billing-*`), and the whole name must match.

use std::fmt;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Shown in logs and the audit trail; never the token.
    pub name: String,
    pub scopes: Vec<Scope>,
}

/// One grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Produce(NamePattern),
    Consume(NamePattern),
    Read,
    Admin,
}

impl Scope {
    /// Parses `read`, `admin`, `produce:<pattern>` or `consume:<pattern>`.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "read" => return Ok(Self::Read),
            "admin" => return Ok(Self::Admin),
            _ => {}
        }
        let (kind, pattern) = text.split_once(':').ok_or_else(|| unknown(text))?;
        let pattern =
            NamePattern::parse(pattern).map_err(|problem| format!("{text:?}: {problem}"))?;
        match kind {
            "produce" => Ok(Self::Produce(pattern)),
            "consume" => Ok(Self::Consume(pattern)),
            _ => Err(unknown(text)),
        }
    }
}

fn unknown(text: &str) -> String {
    format!(
        "{text:?} is not a scope; use produce:<producer>, consume:<subscription>, read or admin"
    )
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Produce(pattern) => write!(f, "produce:{pattern}"),
            Self::Consume(pattern) => write!(f, "consume:{pattern}"),
            Self::Read => f.write_str("read"),
            Self::Admin => f.write_str("admin"),
        }
    }
}

/// A producer or subscription name in which `*` stands for any run of name characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamePattern(String);

impl NamePattern {
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() || text.len() > 128 {
            return Err("a name is 1 to 128 characters".into());
        }
        if let Some(bad) = text
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '*')))
        {
            return Err(format!(
                "contains {bad:?}; names have letters, digits, '.', '_', '-' and '*'"
            ));
        }
        Ok(Self(text.to_owned()))
    }

    /// Whether the whole of `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        glob_match(self.0.as_bytes(), name.as_bytes())
    }

    /// Whether every name matches (`*`, `**`, …).
    pub fn matches_everything(&self) -> bool {
        self.0.bytes().all(|b| b == b'*')
    }
}

impl fmt::Display for NamePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Wildcard matching with backtracking to the last `*` only: linear in practice, and never
/// exponential, whatever the pattern.
fn glob_match(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut last_star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            last_star = Some((p, n));
            p += 1;
        } else if p < pattern.len() && pattern[p] == name[n] {
            p += 1;
            n += 1;
        } else if let Some((star, matched)) = last_star {
            // Let the last `*` take one more character and try again.
            p = star + 1;
            n = matched + 1;
            last_star = Some((star, matched + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, name: &str) -> bool {
        NamePattern::parse(pattern).unwrap().matches(name)
    }

    #[test]
    fn stars_match_runs_and_the_whole_name_must_match() {
        assert!(matches("shop", "shop"));
        assert!(!matches("shop", "shops"));
        assert!(!matches("shop", "sho"));
        assert!(matches("billing-*", "billing-eu"));
        assert!(matches("billing-*", "billing-"));
        assert!(!matches("billing-*", "billing"));
        assert!(!matches("billing-*", "x-billing-eu"));
        assert!(matches("*-eu", "billing-eu"));
        assert!(matches("a*b*c", "axxbyyc"));
        assert!(!matches("a*b*c", "axxbyy"));
        assert!(matches("*", "anything.at_all-1"));
        assert!(matches("a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaab"));
        assert!(!matches("a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaa"));
    }

    #[test]
    fn scopes_parse_and_print_back() {
        for text in ["read", "admin", "produce:shop", "consume:billing-*"] {
            assert_eq!(Scope::parse(text).unwrap().to_string(), text);
        }
        for bad in [
            "write",
            "produce:",
            "produce:a b",
            "consume",
            "publish:shop",
            "READ",
        ] {
            assert!(Scope::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_stars_match_everything() {
        assert!(NamePattern::parse("*").unwrap().matches_everything());
        assert!(!NamePattern::parse("s*").unwrap().matches_everything());
    }
}
