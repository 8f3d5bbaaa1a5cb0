//! Configuration values, from a TOML file and from `COURIER_*` variables: any value for any
//! key (the keys are read from the defaults, so a new key is fuzzed too) loads or is refused
//! in plain words naming the problem, never panics, and a loaded configuration round-trips.

// figment's Jail takes closures returning figment's own (large) error type.
#![allow(clippy::result_large_err)]

use std::path::Path;

use courier::config::{Config, FlagOverrides};
use figment::providers::Serialized;
use figment::{Figment, Jail};
use proptest::prelude::*;

use crate::assert_plain;

/// Every configuration key, dotted (`checks.max_attempts`), with its default.
fn keys() -> Vec<(String, serde_json::Value)> {
    fn walk(prefix: &str, value: &serde_json::Value, keys: &mut Vec<(String, serde_json::Value)>) {
        match value {
            serde_json::Value::Object(fields) => {
                for (name, value) in fields {
                    let key = if prefix.is_empty() {
                        name.clone()
                    } else {
                        format!("{prefix}.{name}")
                    };
                    walk(&key, value, keys);
                }
            }
            _ => keys.push((prefix.to_owned(), value.clone())),
        }
    }
    let mut keys = Vec::new();
    let defaults = serde_json::to_value(Config::default()).expect("the defaults serialize");
    walk("", &defaults, &mut keys);
    keys
}

/// A value as an operator might write it in TOML. Text has no capitals, parentheses, braces
/// or `#`, so Debug markers in an error can only come from Courier.
fn toml_value() -> impl Strategy<Value = String> {
    let text = prop_oneof![
        "[a-z0-9 .:/_@-]{0,24}",
        "[0-9]{1,7} ?(ns|ms|s|m|h|d|w|x|)",
        "(127.0.0.1|0.0.0.0|localhost|::1|[a-z]{1,5}):[0-9]{0,6}",
        "(sqlite|postgres|mysql)://[a-z0-9./@:]{0,16}",
    ];
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        (-1e6f64..1e6).prop_map(|f| format!("{f:?}")),
        any::<bool>().prop_map(|b| b.to_string()),
        text.prop_map(|t| serde_json::to_string(&t).expect("a string")),
        prop::collection::vec("[a-z*.]{0,8}", 0..3)
            .prop_map(|items| serde_json::to_string(&items).expect("an array")),
    ]
}

/// A value of the default's kind, near what an operator would write: most load, some cross
/// a range.
fn value_like(default: &serde_json::Value) -> BoxedStrategy<String> {
    match default {
        serde_json::Value::Number(_) => prop_oneof![
            (0u64..2000).prop_map(|n| n.to_string()),
            (0.0f64..12.0).prop_map(|f| format!("{f:?}")),
        ]
        .boxed(),
        serde_json::Value::Bool(_) => any::<bool>().prop_map(|b| b.to_string()).boxed(),
        serde_json::Value::String(text) if humantime::parse_duration(text).is_ok() => {
            "[0-9]{1,4} ?(ms|s|m|h|d)"
                .prop_map(|t| serde_json::to_string(&t).expect("a string"))
                .boxed()
        }
        _ => toml_value().boxed(),
    }
}

/// Some keys, real or not, each with a value of its kind or any other.
fn settings() -> impl Strategy<Value = Vec<(String, String)>> {
    let keys = keys();
    let known = prop::sample::select(keys).prop_flat_map(|(key, default)| {
        prop_oneof![3 => value_like(&default), 1 => toml_value()]
            .prop_map(move |value| (key.clone(), value))
    });
    let unknown = ("[a-z_]{1,10}(\\.[a-z_]{1,10})?", toml_value());
    let setting = prop_oneof![6 => known, 1 => unknown];
    prop::collection::vec(setting, 1..4)
}

/// What a load may give: a configuration that round-trips, or an error in plain words.
fn check_loaded(loaded: Result<Config, courier::config::ConfigError>) -> Result<(), TestCaseError> {
    match loaded {
        Ok(config) => {
            config.validate().expect("a loaded configuration is valid");
            let again: Config = Figment::from(Serialized::defaults(&config))
                .extract()
                .expect("a loaded configuration serializes and loads again");
            prop_assert_eq!(again, config);
        }
        Err(error) => {
            let text = error.to_string();
            assert_plain(&text);
            assert_no_type_names(&text)?;
        }
    }
    Ok(())
}

/// Rust's names for what a key holds, which an operator never wrote.
const TYPE_NAMES: [&str; 12] = [
    "usize", "isize", "u8", "u16", "u32", "u64", "i32", "i64", "f32", "f64", "bool", "struct ",
];

/// A refusal says what it expected in words (`a whole number`), not as a Rust type (`usize`).
fn assert_no_type_names(text: &str) -> Result<(), TestCaseError> {
    for name in TYPE_NAMES {
        prop_assert!(
            !text.contains(&format!("expected {name}")),
            "{:?} names a Rust type ({:?})",
            text,
            name
        );
    }
    Ok(())
}

fn load_file(path: &Path, text: &str) -> Result<Config, courier::config::ConfigError> {
    std::fs::write(path, text).expect("write the configuration file");
    // Only the file: no COURIER_* variable of this process may change the result.
    let mut result = None;
    Jail::expect_with(|jail| {
        jail.clear_env();
        result = Some(Config::load(Some(path), FlagOverrides::default()));
        Ok(())
    });
    result.expect("the load ran")
}

proptest! {
    #[test]
    fn toml_files(settings in settings()) {
        let dir = tempfile::tempdir().unwrap();
        let text: String = settings
            .iter()
            .map(|(key, value)| format!("{key} = {value}\n"))
            .collect();
        // A key given twice is a TOML error, which is fine: it must still be plain.
        check_loaded(load_file(&dir.path().join("courier.toml"), &text))?;
    }

    #[test]
    fn files_that_are_not_toml(text in prop_oneof![any::<String>(), "[a-z=\\[\\]\"'. 0-9\n]{0,80}"]) {
        let dir = tempfile::tempdir().unwrap();
        // Anything may be echoed back from such a file: only "no panic, a message" holds.
        match load_file(&dir.path().join("courier.toml"), &text) {
            Ok(config) => config.validate().expect("a loaded configuration is valid"),
            Err(error) => prop_assert!(!error.to_string().trim().is_empty()),
        }
    }

    #[test]
    fn environment_variables(settings in settings()) {
        let mut loaded = None;
        Jail::expect_with(|jail| {
            jail.clear_env();
            for (key, value) in &settings {
                let name = format!("COURIER_{}", key.to_uppercase().replace('.', "__"));
                // As a shell passes them: text, without TOML's quotes.
                jail.set_env(name, value.trim_matches('"'));
            }
            loaded = Some(Config::load(None, FlagOverrides::default()));
            Ok(())
        });
        check_loaded(loaded.expect("the load ran"))?;
    }
}
