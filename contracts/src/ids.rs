//! Typed ids: a ticket's id cannot be passed where an order's is expected. On the wire
//! (API bodies, event payloads) each is the plain string the seed's contract has.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

macro_rules! ids {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// A new id: a UUIDv7, so ordering by id is ordering by creation.
            pub fn generate() -> $name {
                $name(uuid::Uuid::now_v7().to_string())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> $name {
                $name(id)
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> $name {
                $name(id.to_owned())
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    )*};
}

ids! {
    /// An account (the auth service's).
    UserId,
    /// A ticket (the tickets service's).
    TicketId,
    /// An order (the orders service's).
    OrderId,
    /// A payment (the payments service's).
    PaymentId,
    /// A paid order's cancellation and refund (the orders service's).
    CancellationId,
    /// One unit's entry pass (the checkin service's).
    PassId,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn travel_as_plain_strings() {
        let id = OrderId::from("0190d5d3-7c5e-7000-8000-000000000000");
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"0190d5d3-7c5e-7000-8000-000000000000\"");
        assert_eq!(serde_json::from_str::<OrderId>(&json).unwrap(), id);
    }
}
