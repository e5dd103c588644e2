//! Request and response bodies of the HTTP API, one module per service.
//!
//! Request bodies keep every field as raw JSON (`Option<Value>`): the server parses each
//! into its domain type and reports every failing field at once, in the error format;
//! a client builds them with the constructors.

pub mod checkin;
pub mod orders;
pub mod payments;
pub mod queue;
pub mod tickets;
pub mod users;
pub mod waitlist;
pub mod webhooks;

/// Regular expressions (ECMA-262, as OpenAPI documents use them) that state exactly what
/// the server accepts where a length or format alone cannot.
pub mod patterns {
    /// The characters Rust's `str::trim` removes (Unicode `White_Space`), as a class body.
    macro_rules! ws {
        () => {
            "\\t\\n\\u000b\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
        };
    }

    /// An id as the services mint them and accept them (`kit::validate::is_valid_id`).
    pub const ID: &str = "^[A-Za-z0-9_-]{1,64}$";

    /// A ticket title: 1 to 200 characters once surrounding white space is trimmed.
    pub const TITLE: &str = concat!(
        "^[",
        ws!(),
        "]*[^",
        ws!(),
        "]([\\s\\S]{0,198}[^",
        ws!(),
        "])?[",
        ws!(),
        "]*$"
    );

    /// A payment token: 1 to 255 characters once surrounding white space is trimmed.
    pub const TOKEN: &str = concat!(
        "^[",
        ws!(),
        "]*[^",
        ws!(),
        "]([\\s\\S]{0,253}[^",
        ws!(),
        "])?[",
        ws!(),
        "]*$"
    );

    /// A price as a string: a decimal with at most two significant decimals, above 0 and
    /// at most 1,000,000, surrounding white space allowed (`Cents::parse_price`).
    pub const PRICE: &str = concat!(
        "^[",
        ws!(),
        "]*",
        "(0*[1-9][0-9]{0,5}(\\.[0-9]{1,2}0*)?|0*1000000(\\.0+)?|0+\\.(0[1-9]|[1-9][0-9]?)0*)",
        "[",
        ws!(),
        "]*$"
    );
}

/// A string schema with `pattern` (utoipa's `pattern = ...` takes literals only).
fn pattern_schema(
    pattern: &str,
    description: &str,
    example: &str,
) -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(pattern))
        .description(Some(description))
        .examples([serde_json::Value::String(example.to_owned())])
        .build()
}

pub(crate) fn ticket_id_schema() -> utoipa::openapi::schema::Object {
    pattern_schema(
        patterns::ID,
        "The ticket to reserve.",
        "0190d5d3-7c5e-7000-8000-000000000000",
    )
}

pub(crate) fn order_id_schema() -> utoipa::openapi::schema::Object {
    pattern_schema(
        patterns::ID,
        "The order to pay.",
        "0190d5d3-7c5e-7000-8000-000000000000",
    )
}

pub(crate) fn title_schema() -> utoipa::openapi::schema::Object {
    pattern_schema(
        patterns::TITLE,
        "1 to 200 characters once surrounding white space is trimmed (stored trimmed).",
        "Concert",
    )
}

pub(crate) fn token_schema() -> utoipa::openapi::schema::Object {
    pattern_schema(
        patterns::TOKEN,
        "The card source: a Stripe token (`tok_...`), 1 to 255 characters once trimmed.",
        "tok_visa",
    )
}
