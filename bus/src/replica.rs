//! Version-ordered replicas: a consumer keeping a copy of another service's object
//! applies version N only right after N-1 (see the event contract).

use crate::bus::HandlerError;

/// What to do with an incoming versioned event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionCheck {
    /// The next version: apply it.
    Apply,
    /// Already applied (a duplicate or an old event): acknowledge without effect.
    Stale,
    /// A predecessor is missing: the handler returns `HandlerError::Retry` so the bus
    /// redelivers it later, after the predecessor.
    Early,
}

impl VersionCheck {
    /// A listener's outcome: done for `Apply` and `Stale`; for `Early`, a retry (the
    /// bus redelivers the event after its predecessor). `what` names the event.
    pub fn outcome(self, what: impl std::fmt::Display) -> Result<(), HandlerError> {
        match self {
            VersionCheck::Early => Err(HandlerError::Retry(format!(
                "{what} arrived before its predecessor"
            ))),
            VersionCheck::Apply | VersionCheck::Stale => Ok(()),
        }
    }
}

/// Compare the replica's stored version (`None` when the object is unknown) with the
/// version an event carries.
pub fn check(current: Option<i64>, incoming: i64) -> VersionCheck {
    match current {
        None if incoming == 0 => VersionCheck::Apply,
        None => VersionCheck::Early,
        Some(current) if incoming <= current => VersionCheck::Stale,
        Some(current) if incoming == current + 1 => VersionCheck::Apply,
        Some(_) => VersionCheck::Early,
    }
}

/// The outcome of a write made only if `incoming` is the next version (an insert that
/// does nothing when the object exists, for version 0; an update conditioned on version
/// `incoming - 1`) that changed nothing, given the version the replica holds now: a
/// duplicate, or an early event. Writing first and looking only on a miss makes the
/// common case one statement instead of a read and a write.
pub fn missed(current: Option<i64>, incoming: i64) -> VersionCheck {
    match check(current, incoming) {
        // The write missed a row it should have hit: it moved under us, so try again.
        VersionCheck::Apply => VersionCheck::Early,
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(check(None, 0), VersionCheck::Apply);
        assert_eq!(check(None, 1), VersionCheck::Early);
        assert_eq!(check(Some(0), 1), VersionCheck::Apply);
        assert_eq!(check(Some(3), 3), VersionCheck::Stale);
        assert_eq!(check(Some(3), 1), VersionCheck::Stale);
        assert_eq!(check(Some(3), 5), VersionCheck::Early);
    }

    #[test]
    fn misses() {
        assert_eq!(missed(Some(0), 0), VersionCheck::Stale);
        assert_eq!(missed(None, 2), VersionCheck::Early);
        assert_eq!(missed(Some(2), 2), VersionCheck::Stale);
        assert_eq!(missed(Some(1), 2), VersionCheck::Early);
    }
}
