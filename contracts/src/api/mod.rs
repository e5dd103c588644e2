//! Request and response bodies of the HTTP API, one module per service.
//!
//! Request bodies keep every field as raw JSON (`Option<Value>`): the server parses each
//! into its domain type and reports every failing field at once, in the error format;
//! a client builds them with the constructors.

pub mod orders;
pub mod payments;
pub mod tickets;
pub mod users;
