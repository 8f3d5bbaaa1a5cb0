//! Rules for free text a client sends and Courier keeps (keys, reasons), and how messages
//! quote it back.

use std::fmt;

use super::FieldViolation;

/// Refuses text the store cannot keep. PostgreSQL's `text` cannot hold U+0000 while SQLite's
/// can; refusing it on every backend makes both answer alike.
pub fn storable_text(field: &str, value: &str) -> Result<(), FieldViolation> {
    if value.contains('\0') {
        Err(FieldViolation::new(
            field,
            "contains U+0000 (NUL), which cannot be stored",
        ))
    } else {
        Ok(())
    }
}

/// Text a peer sent (a checker's or receiver's error) made storable: U+0000 becomes U+FFFD,
/// the replacement character, rather than failing the write that records it.
pub fn storable_lossy(text: String) -> String {
    if text.contains('\0') {
        text.replace('\0', "\u{FFFD}")
    } else {
        text
    }
}

/// Client text inside a message, in double quotes with control characters and quotes escaped
/// (other characters as they are), so a key with spaces or line breaks reads unambiguously.
pub struct Quoted<'a>(pub &'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self.0.escape_debug())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_is_refused_anywhere_in_the_text() {
        assert!(storable_text("key", "order-1").is_ok());
        for bad in ["\0", "a\0", "\0a", "a\0b"] {
            let violation = storable_text("key", bad).unwrap_err();
            assert_eq!(violation.field, "key");
            assert!(violation.description.contains("U+0000"));
        }
    }

    #[test]
    fn peers_text_loses_only_its_nul() {
        assert_eq!(storable_lossy("a\0b".into()), "a\u{FFFD}b");
        assert_eq!(storable_lossy("fine".into()), "fine");
    }

    #[test]
    fn quoted_text_escapes_what_would_mislead() {
        assert_eq!(Quoted("order-1").to_string(), "\"order-1\"");
        assert_eq!(Quoted("a \"b\"\n").to_string(), r#""a \"b\"\n""#);
        assert_eq!(Quoted("ordér\0").to_string(), r#""ordér\0""#);
    }
}
