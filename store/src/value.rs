//! Statement arguments, typed so that a null still tells PostgreSQL its type.

/// An argument. A null keeps its type: PostgreSQL wants one for every parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(Option<i64>),
    Text(Option<String>),
    Blob(Option<Vec<u8>>),
}

macro_rules! value_from {
    ($variant:ident: $($ty:ty => $conv:expr),* $(,)?) => {$(
        impl From<$ty> for Value {
            fn from(v: $ty) -> Value {
                #[allow(clippy::redundant_closure_call)]
                Value::$variant(Some(($conv)(v)))
            }
        }
        impl From<Option<$ty>> for Value {
            fn from(v: Option<$ty>) -> Value {
                #[allow(clippy::redundant_closure_call)]
                Value::$variant(v.map($conv))
            }
        }
    )*};
}

value_from!(Int: i64 => |v| v);
value_from!(Text: String => |v| v, &str => str::to_owned, &String => String::clone);
value_from!(Blob: Vec<u8> => |v| v, &[u8] => <[u8]>::to_vec, &Vec<u8> => Vec::clone);
value_from!(Text:
    ticketing_contracts::UserId => String::from,
    &ticketing_contracts::UserId => |v: &ticketing_contracts::UserId| v.as_str().to_owned(),
    ticketing_contracts::TicketId => String::from,
    &ticketing_contracts::TicketId => |v: &ticketing_contracts::TicketId| v.as_str().to_owned(),
    ticketing_contracts::OrderId => String::from,
    &ticketing_contracts::OrderId => |v: &ticketing_contracts::OrderId| v.as_str().to_owned(),
    ticketing_contracts::PaymentId => String::from,
    &ticketing_contracts::PaymentId => |v: &ticketing_contracts::PaymentId| v.as_str().to_owned(),
    ticketing_contracts::PassId => String::from,
    &ticketing_contracts::PassId => |v: &ticketing_contracts::PassId| v.as_str().to_owned(),
    ticketing_contracts::ids::CancellationId => String::from,
    &ticketing_contracts::ids::CancellationId =>
        |v: &ticketing_contracts::ids::CancellationId| v.as_str().to_owned(),
);
value_from!(Int:
    ticketing_contracts::time::Timestamp => i64::from,
    &ticketing_contracts::time::Timestamp => |v: &ticketing_contracts::time::Timestamp| i64::from(*v),
);
