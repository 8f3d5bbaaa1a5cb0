//! `callbacks.allowed_hosts`: which hosts checker and push endpoints may name, so a caller
//! allowed to register an endpoint cannot aim Courier at an internal address. The rule is
//! applied when an endpoint is registered (INVALID_ARGUMENT) and again before every call (an
//! endpoint stored before the list was narrowed is not called).

/// One host glob: `*` matches any run of characters (dots included), the rest matches itself,
/// ignoring letter case; the whole host must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern(String);

impl HostPattern {
    /// Accepts host names, IPv4 addresses and bracketed IPv6 addresses, with `*` anywhere.
    pub fn parse(text: &str) -> Result<Self, String> {
        let pattern = text.trim().to_ascii_lowercase();
        if pattern.is_empty() {
            return Err("an empty host pattern matches nothing; remove it".into());
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || "-._*:[]".contains(c);
        if let Some(bad) = pattern.chars().find(|c| !allowed(*c)) {
            return Err(format!(
                "{text:?} is not a host pattern ({bad:?}); write a host name, an address or a glob like *.svc.cluster.local"
            ));
        }
        Ok(Self(pattern))
    }

    pub fn matches(&self, host: &str) -> bool {
        glob_matches(self.0.as_bytes(), host.to_ascii_lowercase().as_bytes())
    }
}

/// The parsed `callbacks.allowed_hosts`.
#[derive(Debug, Clone)]
pub struct AllowedHosts(Vec<HostPattern>);

impl AllowedHosts {
    /// Patterns are checked by `Config::validate`; one that is not valid here matches nothing.
    pub fn new(patterns: &[String]) -> Self {
        Self(
            patterns
                .iter()
                .filter_map(|p| HostPattern::parse(p).ok())
                .collect(),
        )
    }

    /// Whether `endpoint` (an `http(s)://host[:port]` URL) names an allowed host. An
    /// endpoint that is not a URL with a host is not allowed.
    pub fn permits(&self, endpoint: &str) -> bool {
        let Ok(url) = url::Url::parse(endpoint) else {
            return false;
        };
        let Some(host) = url.host_str() else {
            return false;
        };
        self.0.iter().any(|pattern| pattern.matches(host))
    }

    /// Why `endpoint` is refused, in the words an API caller and an operator both understand.
    pub fn refusal(&self, endpoint: &str) -> String {
        let host = url::Url::parse(endpoint)
            .ok()
            .and_then(|url| url.host_str().map(str::to_owned))
            .unwrap_or_default();
        format!("host {host:?} is not in the server's callbacks.allowed_hosts")
    }
}

/// Iterative glob match with one backtrack point: linear in practice, never exponential.
fn glob_matches(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((star_p, star_t)) = star {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(patterns: &[&str]) -> AllowedHosts {
        AllowedHosts::new(&patterns.iter().map(|p| p.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn globs_match_whole_hosts() {
        let hosts = allowed(&["*.svc.cluster.local", "checker", "10.0.0.*"]);
        assert!(hosts.permits("http://billing.shop.svc.cluster.local:7001"));
        assert!(hosts.permits("https://CHECKER"));
        assert!(hosts.permits("http://10.0.0.7:7001"));
        assert!(!hosts.permits("http://svc.cluster.local.evil.com"));
        assert!(!hosts.permits("http://checker2"));
        assert!(!hosts.permits("http://10.0.1.7"));
        assert!(!hosts.permits("http://169.254.169.254"));
        assert!(!hosts.permits("not a url"));
    }

    #[test]
    fn the_default_allows_any_host_and_an_empty_list_none() {
        assert!(allowed(&["*"]).permits("http://[::1]:7001"));
        assert!(!allowed(&[]).permits("http://127.0.0.1:7001"));
        assert!(allowed(&["[::1]"]).permits("http://[::1]:7001"));
    }

    #[test]
    fn patterns_are_checked() {
        assert!(HostPattern::parse("").is_err());
        assert!(HostPattern::parse("http://x").is_err());
        assert!(HostPattern::parse("a b").is_err());
        assert!(HostPattern::parse("*.Example.com").is_ok());
    }

    #[test]
    fn stars_backtrack() {
        assert!(glob_matches(b"a*b*c", b"aXXbYYbZc"));
        assert!(!glob_matches(b"a*b*c", b"aXXbYYbZ"));
        assert!(glob_matches(b"**", b""));
    }
}
