//! The API's bodies as the pages read them. Temporary: replaced by `ticketing-contracts`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cents(i64);

impl Cents {
    pub fn new(cents: i64) -> Cents {
        Cents(cents)
    }
    pub fn get(self) -> i64 {
        self.0
    }
}

impl<'de> Deserialize<'de> for Cents {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = serde_json::Number::deserialize(d)?;
        let text = n.to_string();
        let (whole, frac) = text.split_once('.').unwrap_or((&text, ""));
        let frac = format!("{frac:0<2}");
        let cents = whole
            .parse::<i64>()
            .ok()
            .zip(frac[..2].parse::<i64>().ok())
            .map(|(w, f)| w * 100 + f)
            .ok_or_else(|| serde::de::Error::custom("price"))?;
        Ok(Cents(cents))
    }
}

impl std::fmt::Display for Cents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ErrorItem {
    pub message: String,
    #[serde(default)]
    pub field: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ErrorBody {
    pub errors: Vec<ErrorItem>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Credentials<'a> {
    pub email: &'a str,
    pub password: &'a str,
}

#[derive(Debug, Clone, Deserialize)]
pub struct User {
    pub id: String,
    pub email: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CurrentUser {
    pub id: String,
    pub email: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CurrentUserBody {
    pub current_user: Option<CurrentUser>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ticket {
    pub id: String,
    pub title: String,
    pub price: Cents,
    pub user_id: String,
    pub version: i64,
    #[serde(default)]
    pub order_id: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TicketInput<'a> {
    pub title: &'a str,
    /// As typed: the API parses and validates it.
    pub price: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum OrderStatus {
    #[serde(rename = "created")]
    Created,
    #[serde(rename = "cancelled")]
    Cancelled,
    #[serde(rename = "awaiting:payment")]
    AwaitingPayment,
    #[serde(rename = "complete")]
    Complete,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OrderTicket {
    pub id: String,
    pub title: String,
    pub price: Cents,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    pub id: String,
    pub status: OrderStatus,
    pub expires_at: String,
    pub ticket: OrderTicket,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewOrder<'a> {
    pub ticket_id: &'a str,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewPayment<'a> {
    pub order_id: &'a str,
    pub token: &'a str,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Payment {
    pub id: String,
}
