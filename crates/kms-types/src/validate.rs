//! Model-constraint validation with AWS's `ValidationException` wording.
//!
//! Messages follow the AWS convention:
//! `1 validation error detected: Value 'x' at 'aliasName' failed to satisfy constraint: Member must ...`.
//! Values of sensitive members and blobs are never echoed.

use std::sync::OnceLock;

use crate::{Blob, ErrorCode, KmsError, SensitiveString};

/// A regular expression from the model, compiled on first use.
///
/// Smithy patterns are not implicitly anchored, so a value matches when the pattern is found
/// anywhere in it, exactly as the model states it.
pub struct LazyPattern {
    source: &'static str,
    compiled: OnceLock<Option<regex::Regex>>,
}

impl LazyPattern {
    /// A pattern with the model's source text.
    pub const fn new(source: &'static str) -> Self {
        LazyPattern {
            source,
            compiled: OnceLock::new(),
        }
    }
    /// The model's source text.
    pub fn source(&self) -> &'static str {
        self.source
    }
    /// True when the text matches. A pattern that fails to compile matches nothing.
    pub fn is_match(&self, text: &str) -> bool {
        self.compiled
            .get_or_init(|| regex::Regex::new(self.source).ok())
            .as_ref()
            .is_some_and(|re| re.is_match(text))
    }
}

/// One constraint of the model.
pub enum Constraint {
    /// Minimum length (characters for strings, bytes for blobs, items for lists and maps).
    MinLen(i64),
    /// Maximum length.
    MaxLen(i64),
    /// Minimum value of a number.
    Min(i64),
    /// Maximum value of a number.
    Max(i64),
    /// Regular expression.
    Pattern(&'static LazyPattern),
    /// Enum value set.
    Enum(&'static [&'static str]),
}

/// A value the constraints can be checked on.
pub trait Checkable {
    /// The length the model means (chars, bytes or items), if the value has one.
    fn length(&self) -> Option<i64> {
        None
    }
    /// The numeric value, if it is a number.
    fn number(&self) -> Option<i64> {
        None
    }
    /// The text, if it is a string.
    fn text(&self) -> Option<&str> {
        None
    }
    /// How the value is shown in a message (`None`: never shown).
    fn shown(&self) -> Option<String> {
        self.text().map(str::to_owned)
    }
}

impl Checkable for String {
    fn length(&self) -> Option<i64> {
        Some(self.chars().count() as i64)
    }
    fn text(&self) -> Option<&str> {
        Some(self)
    }
}

impl Checkable for SensitiveString {
    fn length(&self) -> Option<i64> {
        Some(self.expose().chars().count() as i64)
    }
    fn text(&self) -> Option<&str> {
        Some(self.expose())
    }
    fn shown(&self) -> Option<String> {
        None
    }
}

impl Checkable for Blob {
    fn length(&self) -> Option<i64> {
        Some(self.len() as i64)
    }
}

impl<T> Checkable for Vec<T> {
    fn length(&self) -> Option<i64> {
        Some(self.len() as i64)
    }
}

impl<K, V> Checkable for std::collections::BTreeMap<K, V> {
    fn length(&self) -> Option<i64> {
        Some(self.len() as i64)
    }
}

impl Checkable for i32 {
    fn number(&self) -> Option<i64> {
        Some(i64::from(*self))
    }
    fn shown(&self) -> Option<String> {
        Some(self.to_string())
    }
}

impl Checkable for i64 {
    fn number(&self) -> Option<i64> {
        Some(*self)
    }
    fn shown(&self) -> Option<String> {
        Some(self.to_string())
    }
}

/// Collects constraint violations.
#[derive(Default)]
pub struct Validator {
    errors: Vec<String>,
}

fn join(path: (&str, &str)) -> String {
    format!("{}{}", path.0, path.1)
}

impl Validator {
    /// Records a missing required member.
    pub fn missing(&mut self, path: (&str, &str)) {
        self.errors.push(format!(
            "Value null at '{}' failed to satisfy constraint: Member must not be null",
            join(path)
        ));
    }

    /// Checks one value against its constraints.
    pub fn check<T: Checkable>(
        &mut self,
        path: (&str, &str),
        value: &T,
        sensitive: bool,
        constraints: &[Constraint],
    ) {
        for c in constraints {
            let failure = match c {
                Constraint::MinLen(n) => value
                    .length()
                    .filter(|l| l < n)
                    .map(|_| format!("Member must have length greater than or equal to {n}")),
                Constraint::MaxLen(n) => value
                    .length()
                    .filter(|l| l > n)
                    .map(|_| format!("Member must have length less than or equal to {n}")),
                Constraint::Min(n) => value
                    .number()
                    .filter(|v| v < n)
                    .map(|_| format!("Member must have value greater than or equal to {n}")),
                Constraint::Max(n) => value
                    .number()
                    .filter(|v| v > n)
                    .map(|_| format!("Member must have value less than or equal to {n}")),
                Constraint::Pattern(p) => value.text().filter(|t| !p.is_match(t)).map(|_| {
                    format!(
                        "Member must satisfy regular expression pattern: {}",
                        p.source()
                    )
                }),
                Constraint::Enum(values) => {
                    value.text().filter(|t| !values.contains(t)).map(|_| {
                        format!(
                            "Member must satisfy enum value set: [{}]",
                            values.join(", ")
                        )
                    })
                }
            };
            if let Some(rule) = failure {
                let shown = if sensitive { None } else { value.shown() };
                let at = join(path);
                self.errors.push(match shown {
                    Some(v) => {
                        format!("Value '{v}' at '{at}' failed to satisfy constraint: {rule}")
                    }
                    None => format!("Value at '{at}' failed to satisfy constraint: {rule}"),
                });
            }
        }
    }

    /// Adds a free-form violation (cross-member rules).
    pub fn push(&mut self, message: String) {
        self.errors.push(message);
    }

    /// Turns the collected violations into AWS's `ValidationException`, if any.
    pub fn finish(self) -> Result<(), KmsError> {
        if self.errors.is_empty() {
            return Ok(());
        }
        let n = self.errors.len();
        let noun = if n == 1 { "error" } else { "errors" };
        Err(KmsError::new(
            ErrorCode::ValidationException,
            format!("{n} validation {noun} detected: {}", self.errors.join("; ")),
        ))
    }
}

/// A wire shape whose members can be checked against the model.
pub trait Validate {
    /// Checks every member, recursively, prefixing member paths with `prefix`.
    fn validate_into(&self, v: &mut Validator, prefix: &str);

    /// Checks the whole shape.
    fn validate(&self) -> Result<(), KmsError> {
        let mut v = Validator::default();
        self.validate_into(&mut v, "");
        v.finish()
    }
}

#[cfg(test)]
mod tests {
    use crate::validate::Validate;
    use crate::*;

    #[test]
    fn missing_required_member_is_reported_as_null() {
        let r = EncryptRequest {
            key_id: Some("k".into()),
            ..Default::default()
        };
        let e = r.validate().unwrap_err();
        assert_eq!(e.code, ErrorCode::ValidationException);
        assert_eq!(
            e.message,
            "1 validation error detected: Value null at 'plaintext' failed to satisfy constraint: Member must not be null"
        );
    }

    #[test]
    fn pattern_enum_range_and_nested_paths() {
        let r = CreateAliasRequest {
            alias_name: Some("alias/bad name".into()),
            target_key_id: Some("k".into()),
        };
        assert!(r.validate().unwrap_err().message.contains(
            "Value 'alias/bad name' at 'aliasName' failed to satisfy constraint: Member must satisfy regular expression pattern: ^[a-zA-Z0-9:/_-]+$"
        ));
        let r = GenerateRandomRequest {
            number_of_bytes: Some(0),
            ..Default::default()
        };
        assert!(r.validate().unwrap_err().message.contains("Value '0' at 'numberOfBytes' failed to satisfy constraint: Member must have value greater than or equal to 1"));
        let r = CreateKeyRequest {
            key_spec: Some("AES".into()),
            ..Default::default()
        };
        assert!(r.validate().unwrap_err().message.contains("at 'keySpec' failed to satisfy constraint: Member must satisfy enum value set: [RSA_2048,"));
        let r = TagResourceRequest {
            key_id: Some("k".into()),
            tags: Some(vec![Tag {
                tag_key: Some(String::new()),
                tag_value: Some("v".into()),
            }]),
        };
        let m = r.validate().unwrap_err().message;
        assert!(m.contains("at 'tags.1.member.tagKey' failed to satisfy constraint: Member must have length greater than or equal to 1"), "{m}");
    }

    #[test]
    fn blob_values_are_never_echoed() {
        let r = EncryptRequest {
            key_id: Some("k".into()),
            plaintext: Some(Blob::new(vec![7; 4097])),
            ..Default::default()
        };
        let m = r.validate().unwrap_err().message;
        assert_eq!(m, "1 validation error detected: Value at 'plaintext' failed to satisfy constraint: Member must have length less than or equal to 4096");
    }

    #[test]
    fn every_model_pattern_compiles() {
        for p in crate::generated::ALL_PATTERNS {
            assert!(regex::Regex::new(p.source()).is_ok(), "{}", p.source());
        }
    }

    #[test]
    fn parse_request_classifies_errors() {
        let e = parse_request::<EncryptRequest>(b"{not json").unwrap_err();
        assert_eq!(e.code, ErrorCode::SerializationException);
        let e = parse_request::<EncryptRequest>(br#"{"KeyId":"k","Plaintext":"aGk=","Bogus":1}"#)
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::ValidationException);
        assert!(e.message.contains("'Bogus'"), "{}", e.message);
        let e = parse_request::<EncryptRequest>(br#"{"KeyId":5,"Plaintext":"aGk="}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::SerializationException);
        let e = parse_request::<ListKeysRequest>(b"[]").unwrap_err();
        assert_eq!(e.code, ErrorCode::SerializationException);
        let ok = parse_request::<ListKeysRequest>(b"").unwrap();
        assert_eq!(ok, ListKeysRequest::default());
    }
}
