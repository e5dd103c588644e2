//! Field-by-field parsing of request bodies into domain types, collecting one error per
//! failing field ("parse, don't validate").
//!
//! Request DTOs keep their fields as raw `serde_json::Value`s so that a wrong type is
//! reported against its field, like any other invalid value.

use serde_json::Value;

use crate::error::{ApiError, ErrorItem};

#[derive(Default)]
pub struct Fields {
    errors: Vec<ErrorItem>,
}

impl Fields {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parse one field; a failure is recorded and `None` returned.
    pub fn parse<T>(
        &mut self,
        name: &str,
        raw: Option<&Value>,
        parse: impl FnOnce(&Value) -> Result<T, String>,
    ) -> Option<T> {
        let result = match raw {
            None | Some(Value::Null) => Err(format!("{} is required", label(name))),
            Some(value) => parse(value),
        };
        match result {
            Ok(v) => Some(v),
            Err(message) => {
                self.errors.push(ErrorItem {
                    message,
                    field: Some(name.to_owned()),
                });
                None
            }
        }
    }

    /// The parsed values, or the 400 naming every failing field.
    pub fn finish<T: AllParsed>(self, parsed: T) -> Result<T::Output, ApiError> {
        match parsed.all() {
            Some(values) if self.errors.is_empty() => Ok(values),
            _ => Err(ApiError::Validation(self.errors)),
        }
    }
}

fn label(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// A string field, or a message saying it must be one.
pub fn as_str<'a>(name: &str, value: &'a Value) -> Result<&'a str, String> {
    value
        .as_str()
        .ok_or_else(|| format!("{} must be a string", label(name)))
}

/// Text of field `name` that must not be empty (`empty` is the message then) nor longer
/// than `max` characters.
pub fn bounded<'a>(name: &str, text: &'a str, empty: &str, max: usize) -> Result<&'a str, String> {
    if text.is_empty() {
        return Err(empty.to_owned());
    }
    if text.chars().count() > max {
        return Err(format!("{} must be at most {max} characters", label(name)));
    }
    Ok(text)
}

/// Tuples of parsed fields that are all present.
pub trait AllParsed {
    type Output;
    fn all(self) -> Option<Self::Output>;
}

impl<A> AllParsed for Option<A> {
    type Output = A;
    fn all(self) -> Option<A> {
        self
    }
}

macro_rules! all_parsed {
    ($($t:ident),+) => {
        impl<$($t),+> AllParsed for ($(Option<$t>,)+) {
            type Output = ($($t,)+);
            #[allow(non_snake_case)]
            fn all(self) -> Option<Self::Output> {
                let ($($t,)+) = self;
                Some(($($t?,)+))
            }
        }
    };
}
all_parsed!(A, B);
all_parsed!(A, B, C);
all_parsed!(A, B, C, D);

/// Ids are opaque strings chosen by their owning service: 1–64 characters of
/// `[A-Za-z0-9_-]` (UUIDs fit). Anything else can name no object.
pub fn is_valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// An id field of a request body.
pub fn parse_id(name: &str, raw: &Value) -> Result<String, String> {
    let text = as_str(name, raw)?;
    if !is_valid_id(text) {
        return Err(format!("{} must be a valid id", label(name)));
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn collects_one_error_per_field() {
        let body = json!({"a": 1});
        let mut f = Fields::new();
        let a = f.parse("a", body.get("a"), |v| as_str("a", v).map(str::to_owned));
        let b = f.parse("b", body.get("b"), |v| Ok(v.clone()));
        let err = f.finish((a, b)).unwrap_err();
        match err {
            ApiError::Validation(items) => {
                assert_eq!(items.len(), 2);
                assert_eq!(items[0].field.as_deref(), Some("a"));
                assert_eq!(items[1].message, "B is required");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
