//! `*` wildcards, as scopes (`consume:billing-*`) and `callbacks.allowed_hosts` write them.

/// Whether `text` matches `pattern` as a whole, where `*` stands for any run of characters
/// (also none). Backtracks to the last `*` only, so it is linear in practice and never
/// exponential, whatever the pattern.
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let (pattern, text) = (pattern.as_bytes(), text.as_bytes());
    let (mut p, mut t) = (0, 0);
    let mut last_star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            last_star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((star, matched)) = last_star {
            // Let the last `*` take one more character and try again.
            p = star + 1;
            t = matched + 1;
            last_star = Some((star, matched + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::glob_matches;

    #[test]
    fn stars_match_any_run_and_the_whole_text_must_match() {
        assert!(glob_matches("a*b*c", "aXXbYYbZc"));
        assert!(!glob_matches("a*b*c", "aXXbYYbZ"));
        assert!(glob_matches("**", ""));
        assert!(glob_matches("billing-*", "billing-eu"));
        assert!(!glob_matches("billing-*", "xbilling-eu"));
        assert!(!glob_matches("shop", "shop2"));
    }

    #[test]
    fn many_stars_stay_fast() {
        let text = "a".repeat(10_000);
        assert!(!glob_matches(&"*a".repeat(50).replace("a*a", "a*b"), &text));
    }
}
