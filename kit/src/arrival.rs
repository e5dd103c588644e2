//! Waiting for an object another service has just created (docs/decisions/0029).
//!
//! A service learns of another's objects by event: an order reaches the payments
//! replica, a listing the orders replica, a few milliseconds after the client got its
//! id. A request naming such an object before its event arrived would be a 404 for an
//! object that exists. Ids are UUIDv7, so an id tells when it was made: one under
//! [`RECENT`] old that the replica lacks is most likely on its way, and the request
//! waits for it — at most [`WAIT`], woken when this process's listener commits it, or
//! by a look at the database every [`POLL`] (another process of the service may be the
//! one that handles the event): one statement for every id waited for in the process,
//! not one per waiter. Still missing after that: 409 with `Retry-After: 1`.
//! An older id, or one that is not a UUIDv7, is simply unknown: 404 as ever.
//!
//! A waiter holds one of [`MAX_WAITERS`] slots per process; without a free one the
//! answer is the 409 at once, so a flood of made-up fresh ids costs nothing but quick
//! refusals.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use ticketing_store::{query, Backend, Store};
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;

use crate::ApiError;

/// How young an id must be for its object to be waited for.
pub const RECENT: Duration = Duration::from_secs(10);
/// The longest a request waits.
pub const WAIT: Duration = Duration::from_secs(2);
/// How often a waiter looks at the database (events handled by another process).
pub const POLL: Duration = Duration::from_millis(50);
/// Requests waiting at once in one process, beyond which the 409 comes at once.
pub const MAX_WAITERS: usize = 256;

/// The waiting slots of this process, shared by every service it runs.
static SLOTS: LazyLock<Arc<Semaphore>> = LazyLock::new(|| Arc::new(Semaphore::new(MAX_WAITERS)));

/// What a wait found out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// The object is known now: go on.
    Known,
    /// Young enough to be on its way, but not here (yet): 409, try again.
    NotYet,
    /// An old or malformed id: 404.
    Unknown,
}

impl Arrival {
    fn label(self) -> &'static str {
        match self {
            Arrival::Known => "known",
            Arrival::NotYet => "not_yet",
            Arrival::Unknown => "unknown",
        }
    }

    /// `Ok` when known; else the answer: 409 naming `what` (`"Order"`), or 404.
    pub fn known(self, what: &'static str) -> Result<(), ApiError> {
        match self {
            Arrival::Known => Ok(()),
            Arrival::NotYet => Err(ApiError::NotKnownYet(what)),
            Arrival::Unknown => Err(ApiError::NotFound),
        }
    }
}

/// The arrivals of one kind of object in one replica: the listener that writes them
/// reports each ([`Arrivals::written`], then [`Arrivals::committed`]), requests wait for
/// them ([`Arrivals::wait`]). Cheap to clone.
#[derive(Clone)]
pub struct Arrivals(Arc<Inner>);

struct Inner {
    /// A metric label: `order`, `ticket`.
    what: &'static str,
    slots: Arc<Semaphore>,
    /// Where the replica is, to look for every waited id at once.
    replica: Option<Replica>,
    /// The ids waited for, each with the waiters' wake-up and their number, and whether
    /// the poller runs (changed together, under this one lock).
    waiting: Mutex<Waiting>,
    /// Ids written in a transaction of the listener that has not committed yet.
    written: Mutex<Vec<String>>,
}

#[derive(Default)]
struct Waiting {
    ids: HashMap<String, (Arc<Notify>, usize)>,
    polling: bool,
}

/// The replica's table (with an `id` column) in a service's store.
struct Replica {
    store: Store,
    table: &'static str,
}

impl std::fmt::Debug for Arrivals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Arrivals")
            .field("what", &self.0.what)
            .finish_non_exhaustive()
    }
}

impl Arrivals {
    /// Arrivals of `what` (a metric label) into `table` of `store` (rows keyed by
    /// `id`), waited for in this process's slots.
    pub fn new(what: &'static str, store: &Store, table: &'static str) -> Arrivals {
        let replica = Replica {
            store: store.clone(),
            table,
        };
        Arrivals::build(what, SLOTS.clone(), Some(replica))
    }

    /// With slots of their own and no database to poll (tests: only commits wake).
    pub fn with_slots(what: &'static str, slots: Arc<Semaphore>) -> Arrivals {
        Arrivals::build(what, slots, None)
    }

    fn build(what: &'static str, slots: Arc<Semaphore>, replica: Option<Replica>) -> Arrivals {
        Arrivals(Arc::new(Inner {
            what,
            slots,
            replica,
            waiting: Mutex::new(Waiting::default()),
            written: Mutex::new(Vec::new()),
        }))
    }

    /// The listener wrote `id` in its transaction. Remembered only while someone waits
    /// for it (otherwise nobody needs waking).
    pub fn written(&self, id: &str) {
        let waited = self
            .0
            .waiting
            .lock()
            .expect("arrivals")
            .ids
            .contains_key(id);
        if waited {
            self.0.written.lock().expect("arrivals").push(id.to_owned());
        }
    }

    /// The listener's transaction committed: wake the waiters of what it wrote. (A
    /// transaction that rolled back leaves its ids for the next commit: a waiter woken
    /// early looks, finds nothing and waits on.)
    pub fn committed(&self) {
        let written = std::mem::take(&mut *self.0.written.lock().expect("arrivals"));
        if written.is_empty() {
            return;
        }
        let waiting = self.0.waiting.lock().expect("arrivals");
        for id in written {
            if let Some((notify, _)) = waiting.ids.get(&id) {
                notify.notify_waiters();
            }
        }
    }

    /// While anyone waits: every [`POLL`], one look at the replica for every id waited
    /// for, waking the waiters of those found (each then looks for its own).
    fn poll(&self) {
        let Some(replica) = &self.0.replica else {
            return;
        };
        let sql = match replica.store.backend() {
            Backend::Postgres => format!(
                "SELECT id FROM {} WHERE id = ANY (ARRAY(SELECT jsonb_array_elements_text($1::jsonb)))",
                replica.table
            ),
            Backend::Sqlite => format!(
                "SELECT id FROM {} WHERE id IN (SELECT value FROM json_each($1))",
                replica.table
            ),
        };
        let arrivals = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(POLL).await;
                let ids: Vec<String> = {
                    let mut waiting = arrivals.0.waiting.lock().expect("arrivals");
                    if waiting.ids.is_empty() {
                        waiting.polling = false;
                        return;
                    }
                    waiting.ids.keys().cloned().collect()
                };
                let json = serde_json::to_string(&ids).expect("ids serialize");
                let Some(replica) = &arrivals.0.replica else {
                    return;
                };
                let found = query(&sql)
                    .bind(json)
                    .fetch_all(replica.store.reader())
                    .await;
                let found = match found {
                    Ok(rows) => rows,
                    Err(e) => {
                        tracing::warn!(error = %e, what = arrivals.0.what, "looking for arrivals failed");
                        continue;
                    }
                };
                let waiting = arrivals.0.waiting.lock().expect("arrivals");
                for row in found {
                    let Ok(id) = row.get::<String>("id") else {
                        continue;
                    };
                    if let Some((notify, _)) = waiting.ids.get(&id) {
                        notify.notify_waiters();
                    }
                }
            }
        });
    }

    /// [`Arrivals::wait`] for `id`, answered: `Ok` once it is known here, else the
    /// request's answer ([`Arrival::known`]: 409 naming `what`, or 404).
    pub async fn wait_known<F, Fut, E>(
        &self,
        id: &str,
        what: &'static str,
        known: F,
    ) -> Result<(), ApiError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<bool, E>>,
        ApiError: From<E>,
    {
        self.wait(id, known).await?.known(what)
    }

    /// `id` is not in the replica: wait for it if it is young enough, while `known`
    /// (a look at the database) says it is still missing.
    pub async fn wait<F, Fut, E>(&self, id: &str, mut known: F) -> Result<Arrival, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<bool, E>>,
    {
        if !is_recent(id, ticketing_contracts::time::now_millis()) {
            return Ok(self.outcome(Arrival::Unknown));
        }
        let Ok(_slot) = self.0.slots.clone().try_acquire_owned() else {
            metrics::counter!("arrival_waits_total", "what" => self.0.what, "outcome" => "full")
                .increment(1);
            return Ok(Arrival::NotYet);
        };
        let started = Instant::now();
        let deadline = started + WAIT;
        let waiter = Waiter::register(self, id);
        let outcome = loop {
            let woken = waiter.notify.notified();
            tokio::pin!(woken);
            // Registered before the look: a commit between the look and the sleep
            // still wakes this waiter.
            woken.as_mut().enable();
            if known().await? {
                break Arrival::Known;
            }
            if Instant::now() >= deadline {
                break Arrival::NotYet;
            }
            // Woken by the listener's commit or the poller's find, then looks itself.
            tokio::select! {
                _ = woken => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        };
        metrics::histogram!("arrival_wait_seconds", "what" => self.0.what)
            .record(started.elapsed().as_secs_f64());
        Ok(self.outcome(outcome))
    }

    fn outcome(&self, arrival: Arrival) -> Arrival {
        metrics::counter!("arrival_waits_total", "what" => self.0.what, "outcome" => arrival.label())
            .increment(1);
        arrival
    }
}

/// One request's registration for an id; gone when the request stops waiting.
struct Waiter<'a> {
    arrivals: &'a Arrivals,
    id: String,
    notify: Arc<Notify>,
}

impl<'a> Waiter<'a> {
    fn register(arrivals: &'a Arrivals, id: &str) -> Waiter<'a> {
        let mut waiting = arrivals.0.waiting.lock().expect("arrivals");
        let entry = waiting
            .ids
            .entry(id.to_owned())
            .or_insert_with(|| (Arc::new(Notify::new()), 0));
        entry.1 += 1;
        let notify = entry.0.clone();
        if !waiting.polling && arrivals.0.replica.is_some() {
            waiting.polling = true;
            arrivals.poll();
        }
        Waiter {
            arrivals,
            id: id.to_owned(),
            notify,
        }
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        let mut waiting = self.arrivals.0.waiting.lock().expect("arrivals");
        if let Some(entry) = waiting.ids.get_mut(&self.id) {
            entry.1 -= 1;
            if entry.1 == 0 {
                waiting.ids.remove(&self.id);
            }
        }
    }
}

/// When a UUIDv7 was made (milliseconds since the epoch); `None` for anything else.
pub fn made_at(id: &str) -> Option<i64> {
    let uuid = uuid::Uuid::try_parse(id).ok()?;
    if uuid.get_version_num() != 7 {
        return None;
    }
    let (secs, nanos) = uuid.get_timestamp()?.to_unix();
    Some(secs as i64 * 1000 + i64::from(nanos / 1_000_000))
}

/// Is `id` a UUIDv7 made less than [`RECENT`] before `now` (or a little after it: the
/// clocks of two machines differ)?
pub fn is_recent(id: &str, now: i64) -> bool {
    let recent = RECENT.as_millis() as i64;
    made_at(id).is_some_and(|at| (now - recent..now + recent).contains(&at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    fn fresh() -> String {
        uuid::Uuid::now_v7().to_string()
    }

    #[test]
    fn only_young_uuid_v7_ids_are_recent() {
        let now = ticketing_contracts::time::now_millis();
        assert!(is_recent(&fresh(), now));
        assert!(!is_recent(&fresh(), now + 11_000), "an old id");
        assert!(!is_recent(&uuid::Uuid::new_v4().to_string(), now), "v4");
        assert!(!is_recent("not-an-id", now));
        assert!(!is_recent("", now));
        assert!(
            !is_recent("0190d5d3-7c5e-7000-8000-000000000000", now),
            "2024"
        );
    }

    #[tokio::test]
    async fn old_and_malformed_ids_are_unknown_at_once() {
        let arrivals = Arrivals::with_slots("test", Arc::new(Semaphore::new(4)));
        let looked = AtomicUsize::new(0);
        for id in ["0190d5d3-7c5e-7000-8000-000000000000", "nope"] {
            let started = Instant::now();
            let got = arrivals
                .wait(id, || async {
                    looked.fetch_add(1, Ordering::Relaxed);
                    Ok::<_, ()>(false)
                })
                .await;
            assert_eq!(got, Ok(Arrival::Unknown));
            assert!(started.elapsed() < Duration::from_millis(50));
        }
        assert_eq!(looked.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_commit_wakes_its_waiter_before_the_poll() {
        let arrivals = Arrivals::with_slots("test", Arc::new(Semaphore::new(4)));
        let id = fresh();
        let there = Arc::new(AtomicBool::new(false));
        let looks = Arc::new(AtomicUsize::new(0));
        let waiting = {
            let (arrivals, id, there, looks) =
                (arrivals.clone(), id.clone(), there.clone(), looks.clone());
            tokio::spawn(async move {
                let started = Instant::now();
                let got = arrivals
                    .wait(&id, || {
                        looks.fetch_add(1, Ordering::Relaxed);
                        let there = there.load(Ordering::Relaxed);
                        async move { Ok::<_, ()>(there) }
                    })
                    .await;
                (got, started.elapsed())
            })
        };
        tokio::time::sleep(Duration::from_millis(120)).await;
        // One look on arrival; no more until woken.
        assert_eq!(looks.load(Ordering::Relaxed), 1);
        there.store(true, Ordering::Relaxed);
        arrivals.written(&id);
        arrivals.written("someone-else");
        arrivals.committed();
        let (got, took) = waiting.await.unwrap();
        assert_eq!(got, Ok(Arrival::Known));
        assert!(took < Duration::from_millis(160), "{took:?}");
        assert_eq!(looks.load(Ordering::Relaxed), 2);
        assert!(arrivals.0.waiting.lock().unwrap().ids.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_missing_object_is_not_yet_after_the_wait() {
        let arrivals = Arrivals::with_slots("test", Arc::new(Semaphore::new(4)));
        let started = Instant::now();
        let got = arrivals
            .wait(&fresh(), || async { Ok::<_, ()>(false) })
            .await;
        assert_eq!(got, Ok(Arrival::NotYet));
        assert_eq!(started.elapsed(), WAIT);
    }

    #[tokio::test]
    async fn beyond_the_slots_the_answer_is_not_yet_at_once() {
        let arrivals = Arrivals::with_slots("test", Arc::new(Semaphore::new(2)));
        let release = Arc::new(AtomicBool::new(false));
        let mut holders = Vec::new();
        let ids = [fresh(), fresh()];
        for id in &ids {
            let (arrivals, release, id) = (arrivals.clone(), release.clone(), id.clone());
            holders.push(tokio::spawn(async move {
                arrivals
                    .wait(&id, || {
                        let done = release.load(Ordering::Relaxed);
                        async move { Ok::<_, ()>(done) }
                    })
                    .await
            }));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let started = Instant::now();
        let looked = AtomicBool::new(false);
        let got = arrivals
            .wait(&fresh(), || async {
                looked.store(true, Ordering::Relaxed);
                Ok::<_, ()>(true)
            })
            .await;
        assert_eq!(got, Ok(Arrival::NotYet));
        assert!(!looked.load(Ordering::Relaxed));
        assert!(started.elapsed() < Duration::from_millis(20));
        release.store(true, Ordering::Relaxed);
        for id in &ids {
            arrivals.written(id);
        }
        arrivals.committed();
        for holder in holders {
            assert_eq!(holder.await.unwrap(), Ok(Arrival::Known));
        }
    }
}
