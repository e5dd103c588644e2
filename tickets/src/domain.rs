//! Ticket input, parsed.

use serde_json::Value;
use ticketing_contracts::money::Cents;
use ticketing_kit::validate::{as_str, bounded};

pub use ticketing_contracts::api::tickets::MAX_TITLE_CHARS;

/// A title: not empty after trimming, at most 200 characters; stored trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Title(String);

impl Title {
    pub fn parse(raw: &Value) -> Result<Title, String> {
        let text = as_str("title", raw)?.trim();
        let text = bounded("title", text, "Title is required", MAX_TITLE_CHARS)?;
        Ok(Title(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

pub fn parse_price(raw: &Value) -> Result<Cents, String> {
    Cents::parse_price(raw)
}
