//! A configuration value that does not load, described in the operator's words: the key as
//! they wrote it (`sqlite.max_batch`, or `COURIER_SQLITE__MAX_BATCH`), where it came from, and
//! what was expected, never a Rust type name (`usize`, `struct SqliteConfig`).

use figment::Source;
use figment::error::{Actual, Kind};

use super::env::PREFIX;
use crate::domain::Quoted;

/// Every error `error` holds, one per line.
pub fn describe(error: figment::Error) -> String {
    error
        .into_iter()
        .map(|one| describe_one(&one))
        .collect::<Vec<_>>()
        .join("\n")
}

fn describe_one(error: &figment::Error) -> String {
    let problem = problem(&error.kind);
    let key = error.path.join(".").to_ascii_lowercase();
    match (key.is_empty(), origin(error)) {
        (true, Some(origin)) => format!("configuration {origin}: {problem}"),
        (true, None) => format!("configuration: {problem}"),
        (false, Some(Origin::Environment)) => format!(
            "configuration key `{key}` (variable {PREFIX}{}): {problem}",
            error.path.join("__").to_ascii_uppercase()
        ),
        (false, Some(origin)) => format!("configuration key `{key}` ({origin}): {problem}"),
        (false, None) => format!("configuration key `{key}`: {problem}"),
    }
}

/// Where a value came from.
enum Origin {
    Environment,
    File(String),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Environment => write!(f, "{PREFIX}* variables"),
            Self::File(path) => write!(f, "file {path}"),
        }
    }
}

fn origin(error: &figment::Error) -> Option<Origin> {
    let metadata = error.metadata.as_ref()?;
    if let Some(Source::File(path)) = &metadata.source {
        return Some(Origin::File(path.display().to_string()));
    }
    metadata
        .name
        .contains("environment variable")
        .then_some(Origin::Environment)
}

fn problem(kind: &Kind) -> String {
    match kind {
        Kind::Message(message) => message.clone(),
        Kind::InvalidType(actual, expected) | Kind::InvalidValue(actual, expected) => {
            format!(
                "expected {}, found {}",
                expected_words(expected),
                found(actual)
            )
        }
        Kind::InvalidLength(length, expected) => {
            format!(
                "expected {}, found {length} items",
                expected_words(expected)
            )
        }
        Kind::UnknownVariant(value, allowed) => {
            format!("`{value}` is not one of {}", listed(allowed))
        }
        Kind::UnknownField(_, []) => "no such key".into(),
        Kind::UnknownField(_, known) => {
            format!("no such key; the keys here are {}", listed(known))
        }
        Kind::MissingField(field) => format!("missing key `{field}`"),
        Kind::DuplicateField(field) => format!("key `{field}` given twice"),
        Kind::ISizeOutOfRange(value) => format!("{value} is out of range"),
        Kind::USizeOutOfRange(value) => format!("{value} is out of range"),
        Kind::Unsupported(actual) | Kind::UnsupportedKey(actual, _) => {
            format!("{} is not supported here", found(actual))
        }
    }
}

/// What serde says it expected, in words: its own phrases ("a string") pass; Rust's type
/// names do not.
fn expected_words(expected: &str) -> String {
    let words = match expected {
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a whole number, 0 or more",
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "a whole number",
        "f32" | "f64" => "a number",
        "a boolean" | "bool" => "true or false",
        "a string" | "a borrowed string" | "string" => "text",
        "path string" => "a file path",
        "a sequence" => "a list",
        _ if expected.starts_with("struct ")
            || expected.ends_with(" map")
            || expected == "a map" =>
        {
            "a table of keys"
        }
        other => other,
    };
    words.to_owned()
}

fn found(actual: &Actual) -> String {
    match actual {
        Actual::Bool(value) => value.to_string(),
        Actual::Unsigned(value) => value.to_string(),
        Actual::Signed(value) => value.to_string(),
        Actual::Float(value) => value.to_string(),
        Actual::Char(value) => Quoted(&value.to_string()).to_string(),
        Actual::Str(value) => Quoted(value).to_string(),
        Actual::Seq => "a list".into(),
        Actual::Map => "a table".into(),
        Actual::Other(what) => what.clone(),
        _ => "a value of another kind".into(),
    }
}

fn listed(names: &[&str]) -> String {
    names
        .iter()
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
// figment's Jail takes closures returning figment's own (large) error type.
#[allow(clippy::result_large_err)]
mod tests {
    use figment::Jail;

    use crate::config::{Config, FlagOverrides};

    /// The error `Config::load` answers with the environment and file Jail sets up.
    fn refusal(setup: impl FnOnce(&mut Jail) -> figment::error::Result<Option<String>>) -> String {
        let mut answer = None;
        Jail::expect_with(|jail| {
            jail.clear_env();
            let file = setup(jail)?;
            let loaded = Config::load(
                file.as_deref().map(std::path::Path::new),
                FlagOverrides::default(),
            );
            answer = Some(
                loaded
                    .expect_err("the configuration is refused")
                    .to_string(),
            );
            Ok(())
        });
        answer.expect("the load ran")
    }

    /// The error for one `COURIER_*` variable set to `value`.
    fn refusal_of_variable(name: &str, value: &str) -> String {
        refusal(|jail| {
            jail.set_env(name, value);
            Ok(None)
        })
    }

    #[test]
    fn a_variable_of_the_wrong_kind_names_the_variable_and_the_kind_in_words() {
        let error = refusal_of_variable("COURIER_SQLITE__MAX_BATCH", "-1");
        assert_eq!(
            error,
            "configuration key `sqlite.max_batch` (variable COURIER_SQLITE__MAX_BATCH): \
             expected a whole number, 0 or more, found -1"
        );
        let error = refusal_of_variable("COURIER_CHECKS__MAX_ATTEMPTS", "yes");
        assert!(
            error.ends_with("expected a whole number, 0 or more, found \"yes\""),
            "{error}"
        );
    }

    #[test]
    fn a_file_value_names_its_key_and_file() {
        let error = refusal(|jail| {
            jail.create_file("courier.toml", "listen = 5\n[sqlite]\nmax_batch = \"x\"\n")?;
            Ok(Some("courier.toml".into()))
        });
        assert!(
            error.starts_with("configuration key `listen` (file ")
                && error.contains("courier.toml): expected text, found 5"),
            "{error}"
        );
        assert!(!error.contains("default."), "no profile names: {error}");
    }

    #[test]
    fn unknown_keys_and_choices_list_what_is_known() {
        let error = refusal_of_variable("COURIER_LOG_FORMAT", "xml");
        assert!(
            error.ends_with("`xml` is not one of `plain`, `json`"),
            "{error}"
        );
        let error = refusal_of_variable("COURIER_SQLITE", "3");
        assert!(
            error.ends_with("expected a table of keys, found 3"),
            "{error}"
        );
        let error = refusal_of_variable("COURIER_SQLITE__BATCH", "3");
        assert!(
            error.starts_with(
                "configuration key `sqlite.batch` (variable COURIER_SQLITE__BATCH): no such key; \
                 the keys here are `"
            ),
            "{error}"
        );
    }
}
