//! The available-tickets pages, kept rendered between writes.
//!
//! `GET /api/tickets` is the system's most frequent request and its answer changes
//! only when a ticket is created, edited, reserved or released — all writes of this
//! service. A page is kept as the JSON bytes sent, tagged with the store's count of
//! committed writes read *before* its query ([`Store::changes`]): while the count has
//! not moved, no write of this process can be missing from it, so a read costs no query
//! and no serialisation.
//!
//! Writes of another process (a second tickets replica in distributed mode) do not move
//! this process's count: a page is also refreshed once it is [`MAX_AGE`] old, which
//! bounds how long such a write can be missing here. (Listings are eventually
//! consistent anyway: a ticket shows reserved only once `order:created` is handled.)

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use ticketing_store::Store;

/// How old a page may be served, when writes of other processes could have changed it.
pub const MAX_AGE: Duration = Duration::from_secs(1);

/// Pages kept at most (a page per `limit` and cursor asked for); beyond, all are
/// dropped and the ones in use come back at their next request.
const MAX_PAGES: usize = 256;

/// Which page: the cursor it starts after, and its size.
pub type PageKey = (Option<String>, i64);

/// A rendered page.
#[derive(Clone)]
pub struct Page {
    /// The JSON array sent.
    pub body: Bytes,
    /// The cursor of the next page, when more may follow.
    pub next: Option<String>,
    /// [`Store::changes`] before the page was read.
    changes: u64,
    read_at: Instant,
}

#[derive(Default)]
pub struct ListCache {
    pages: Mutex<HashMap<PageKey, Page>>,
}

impl ListCache {
    /// The page of `key` as it stands, from memory or from `read` (which gets the
    /// page's rows and renders them).
    pub async fn page<F, Fut, E>(&self, store: &Store, key: PageKey, read: F) -> Result<Page, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(Bytes, Option<String>), E>>,
    {
        let changes = store.changes();
        if let Some(page) = self.lock().get(&key) {
            if page.changes == changes && page.read_at.elapsed() < MAX_AGE {
                return Ok(page.clone());
            }
        }
        let read_at = Instant::now();
        let (body, next) = read().await?;
        let page = Page {
            body,
            next,
            changes,
            read_at,
        };
        let mut pages = self.lock();
        if pages.len() >= MAX_PAGES && !pages.contains_key(&key) {
            pages.clear();
        }
        // A slower reader of an older state does not replace a newer page.
        match pages.get(&key) {
            Some(kept) if kept.changes > changes || kept.read_at > read_at => {}
            _ => {
                pages.insert(key, page.clone());
            }
        }
        Ok(page)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PageKey, Page>> {
        // The map stays valid whatever a panicking holder did to it.
        self.pages
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
