//! Account input, parsed: a well-formed e-mail and an acceptable password.

use serde_json::Value;
use ticketing_kit::validate::{as_str, bounded};

pub use ticketing_contracts::api::users::{MAX_EMAIL_LEN, MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS};

/// A syntactically valid e-mail address (surrounding white space removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &Value) -> Result<Email, String> {
        let text = as_str("email", raw)?.trim();
        if text.len() > MAX_EMAIL_LEN || !looks_like_email(text) {
            return Err("Email must be valid".into());
        }
        Ok(Email(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn looks_like_email(text: &str) -> bool {
    let Some((local, domain)) = text.rsplit_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.contains('@')
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local.chars().all(|c| {
            c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c) || !c.is_ascii()
        });
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        })
        && labels
            .last()
            .is_some_and(|tld| tld.len() >= 2 && !tld.chars().all(|c| c.is_ascii_digit()));
    local_ok && domain_ok
}

/// A new password: 8 to 128 characters, kept exactly as typed.
#[derive(Clone)]
pub struct NewPassword(String);

impl NewPassword {
    pub fn parse(raw: &Value) -> Result<NewPassword, String> {
        let text = as_str("password", raw)?;
        let chars = text.chars().count();
        if !(MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS).contains(&chars) {
            return Err(format!(
                "Password must be between {MIN_PASSWORD_CHARS} and {MAX_PASSWORD_CHARS} characters"
            ));
        }
        Ok(NewPassword(text.to_owned()))
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// A password offered at sign-in: anything non-empty, bounded so hashing stays cheap.
pub struct OfferedPassword(String);

impl OfferedPassword {
    pub fn parse(raw: &Value) -> Result<OfferedPassword, String> {
        let text = as_str("password", raw)?;
        let text = bounded(
            "password",
            text,
            "You must supply a password",
            MAX_PASSWORD_CHARS,
        )?;
        Ok(OfferedPassword(text.to_owned()))
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn emails() {
        for ok in ["a@b.co", "first.last+tag@example.com", "  x@y.org "] {
            assert!(Email::parse(&json!(ok)).is_ok(), "{ok}");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        for bad in [
            "",
            "abc",
            "a@b",
            "@b.co",
            "a@.co",
            "a b@c.co",
            "a@b..co",
            "a@@b.co",
            long.as_str(),
        ] {
            assert!(Email::parse(&json!(bad)).is_err(), "{bad}");
        }
        assert!(Email::parse(&json!(5)).is_err());
    }

    #[test]
    fn passwords_are_never_altered() {
        assert!(NewPassword::parse(&json!("short")).is_err());
        assert!(NewPassword::parse(&json!("x".repeat(129))).is_err());
        let p = NewPassword::parse(&json!("  spaced  ")).unwrap();
        assert_eq!(p.into_inner(), "  spaced  ");
    }
}
