//! The one way a unique-constraint violation becomes a domain outcome: the database, not
//! a prior lookup, decides conflicts (a taken e-mail, a ticket already held, an order
//! already paid), and the caller names what the conflict means.

use crate::Error;

/// Turn a unique violation of a statement's result into the caller's error.
pub trait OnUnique<T> {
    /// `conflict()` when the statement broke a unique constraint; any other store error
    /// converts as usual.
    fn on_unique<E: From<Error>>(self, conflict: impl FnOnce() -> E) -> Result<T, E>;
}

impl<T> OnUnique<T> for Result<T, Error> {
    fn on_unique<E: From<Error>>(self, conflict: impl FnOnce() -> E) -> Result<T, E> {
        match self {
            Err(Error::Unique { .. }) => Err(conflict()),
            other => other.map_err(E::from),
        }
    }
}
