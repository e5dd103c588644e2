//! An observer consumer group for the benches: when each event of interest first
//! reached the bus's consumers (its producing commit plus one hop).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ticketing_bus::{Envelope, Handler, HandlerError};
use ticketing_contracts::time::now_millis;

/// What an event is to the bench: a kind and an id (`("refunded", order id)`), or
/// nothing to record.
pub type Pick = fn(&Envelope) -> Result<Option<(&'static str, String)>, HandlerError>;

pub struct FirstSeen {
    pick: Pick,
    at: Mutex<HashMap<(&'static str, String), i64>>,
}

impl FirstSeen {
    pub fn new(pick: Pick) -> FirstSeen {
        FirstSeen {
            pick,
            at: Mutex::new(HashMap::new()),
        }
    }

    /// When `id` was first seen as `kind` (ms since the epoch).
    pub fn at(&self, kind: &'static str, id: &str) -> Option<i64> {
        let at = self.at.lock().expect("seen");
        at.get(&(kind, id.to_owned())).copied()
    }

    /// How many ids were seen as `kind`.
    pub fn count(&self, kind: &'static str) -> usize {
        let at = self.at.lock().expect("seen");
        at.keys().filter(|(k, _)| *k == kind).count()
    }

    /// Wait until at least `n` of each of `kinds` were seen, or `limit` passes: whether
    /// they were.
    pub async fn wait_for(&self, kinds: &[&'static str], n: usize, limit: Duration) -> bool {
        let started = Instant::now();
        while started.elapsed() < limit {
            if kinds.iter().all(|k| self.count(k) >= n) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }
}

#[async_trait]
impl Handler for FirstSeen {
    async fn handle(&self, event: &Envelope) -> Result<(), HandlerError> {
        let at = now_millis();
        if let Some(key) = (self.pick)(event)? {
            self.at.lock().expect("seen").entry(key).or_insert(at);
        }
        Ok(())
    }
}
