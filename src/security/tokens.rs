//! `auth.tokens_file`: static bearer tokens, each stored only as the SHA-256 of the token.
//!
//! ```toml
//! [[tokens]]
//! name = "shop"
//! sha256 = "<hex of sha256(token)>"
//! scopes = ["produce:shop", "consume:billing-*"]
//! ```

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::principal::{Principal, Scope};

#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    /// The cause is in the message (the reload log shows only the message), not a source.
    #[error("cannot read {path}: {cause}")]
    Read { path: String, cause: std::io::Error },
    #[error("{path} is not a valid tokens file: {problem}")]
    Invalid { path: String, problem: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    #[serde(default)]
    tokens: Vec<TokenEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    name: String,
    sha256: String,
    #[serde(default)]
    scopes: Vec<String>,
}

/// The principals of a tokens file, keyed by the hash of their token.
#[derive(Debug)]
pub struct TokenTable {
    entries: Vec<([u8; 32], Arc<Principal>)>,
}

impl TokenTable {
    pub fn load(path: &Path) -> Result<Self, TokensError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|cause| TokensError::Read {
            path: shown.clone(),
            cause,
        })?;
        Self::parse(&text).map_err(|problem| TokensError::Invalid {
            path: shown,
            problem,
        })
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let file: TokensFile = toml_from_str(text)?;
        let mut names = HashSet::new();
        let mut hashes = HashSet::new();
        let mut entries = Vec::with_capacity(file.tokens.len());
        for (index, entry) in file.tokens.into_iter().enumerate() {
            let at = format!("tokens[{index}]");
            if entry.name.trim().is_empty() {
                return Err(format!("{at}: name is required"));
            }
            if !names.insert(entry.name.clone()) {
                return Err(format!("{at}: name {:?} appears twice", entry.name));
            }
            let hash = parse_sha256(&entry.sha256)
                .map_err(|problem| format!("{at} ({}): sha256 {problem}", entry.name))?;
            if !hashes.insert(hash) {
                return Err(format!(
                    "{at} ({}): the same token hash appears twice",
                    entry.name
                ));
            }
            let scopes = entry
                .scopes
                .iter()
                .map(|scope| Scope::parse(scope))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|problem| format!("{at} ({}): {problem}", entry.name))?;
            let principal = Principal {
                name: entry.name,
                scopes,
            };
            entries.push((hash, Arc::new(principal)));
        }
        Ok(Self { entries })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The principal whose token this is. Every stored hash is compared in constant time, and
    /// the scan does not stop at a match, so timing tells nothing about the table.
    pub fn find(&self, token: &str) -> Option<Arc<Principal>> {
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for (stored, principal) in &self.entries {
            if bool::from(stored.ct_eq(&hash)) {
                found = Some(principal);
            }
        }
        found.cloned()
    }
}

/// The hex SHA-256 of a token, as the tokens file stores it.
pub fn token_sha256(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn parse_sha256(text: &str) -> Result<[u8; 32], String> {
    let mut hash = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut hash)
        .map_err(|_| "must be 64 hex digits (sha256sum of the token)".to_owned())?;
    Ok(hash)
}

fn toml_from_str<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    use figment::Figment;
    use figment::providers::{Format, Toml};
    Figment::from(Toml::string(text))
        .extract()
        .map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(entries: &[(&str, &str, &[&str])]) -> String {
        entries
            .iter()
            .map(|(name, token, scopes)| {
                format!(
                    "[[tokens]]\nname = {name:?}\nsha256 = {:?}\nscopes = {scopes:?}\n",
                    token_sha256(token)
                )
            })
            .collect()
    }

    #[test]
    fn finds_the_principal_of_a_token() {
        let table = TokenTable::parse(&file(&[
            ("shop", "shop-secret", &["produce:shop"]),
            ("ops", "ops-secret", &["admin"]),
        ]))
        .unwrap();
        assert_eq!(table.len(), 2);
        assert_eq!(table.find("ops-secret").unwrap().name, "ops");
        let shop = table.find("shop-secret").unwrap();
        assert_eq!(shop.scopes, vec![Scope::parse("produce:shop").unwrap()]);
        assert!(table.find("shop-secret ").is_none());
        assert!(table.find("").is_none());
    }

    #[test]
    fn refuses_bad_files_naming_the_entry() {
        let bad_scope = file(&[("shop", "t", &["write:shop"])]);
        let error = TokenTable::parse(&bad_scope).unwrap_err();
        assert!(
            error.contains("tokens[0] (shop)") && error.contains("write:shop"),
            "{error}"
        );

        let twice = file(&[("a", "same", &["read"]), ("b", "same", &["read"])]);
        assert!(TokenTable::parse(&twice).unwrap_err().contains("twice"));

        let short = "[[tokens]]\nname = \"a\"\nsha256 = \"abc\"\n";
        assert!(
            TokenTable::parse(short)
                .unwrap_err()
                .contains("64 hex digits")
        );

        let unknown = "[[tokens]]\nname = \"a\"\nsha256 = \"\"\ntoken = \"x\"\n";
        assert!(TokenTable::parse(unknown).unwrap_err().contains("token"));
    }
}
