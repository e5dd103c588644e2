//! A durable consumer: the window of events above its floor, claimed by subscribers.

use super::*;

/// The durable consumer of one (group, subject): its window of events above the floor,
/// shared by every subscriber of the group so each event is claimed by one of them.
pub(super) struct Consumer {
    pub(super) group: String,
    pub(super) subject: Subject,
    pub(super) loaded: OnceCell<()>,
    pub(super) window: SyncMutex<Window>,
    /// One reader of the log at a time.
    pub(super) filling: Mutex<()>,
    /// A subscriber released work (a retry rescheduled, room in the window).
    pub(super) released: Notify,
}

#[derive(Default)]
pub(super) struct Window {
    /// Every event at or below is settled.
    pub(super) floor: i64,
    /// The floor as stored in `cursors`.
    pub(super) persisted: i64,
    pub(super) persisted_at: Option<Instant>,
    /// The last position read from the log.
    pub(super) read_to: i64,
    /// Publish counter seen by the last read, and when the log was last polled.
    pub(super) read_version: u64,
    pub(super) polled_at: Option<Instant>,
    /// The last read filled the window: read again without waiting for a publish.
    pub(super) more: bool,
    pub(super) slots: BTreeMap<i64, Slot>,
    /// Failed deliveries are recorded in `attempts` (none: no need to read or clean it).
    pub(super) attempts_on_disk: bool,
}

pub(super) struct Slot {
    pub(super) event: Arc<Envelope>,
    /// Deliveries so far.
    pub(super) attempts: u32,
    pub(super) due: Instant,
    pub(super) state: SlotState,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum SlotState {
    Ready,
    Claimed,
    Settled,
}

/// An event claimed for delivery.
pub(super) struct Claimed {
    pub(super) seq: i64,
    pub(super) event: Arc<Envelope>,
    /// Deliveries so far, this one included.
    pub(super) attempts: u32,
}

pub(super) enum Claim {
    /// Due events, oldest first.
    Events(Vec<Claimed>),
    /// Nothing ready; the earliest retry is due then.
    Wait(Option<Instant>),
}

impl Consumer {
    pub(super) fn new(group: &str, subject: Subject) -> Consumer {
        Consumer {
            group: group.to_owned(),
            subject,
            loaded: OnceCell::new(),
            window: SyncMutex::new(Window::default()),
            filling: Mutex::new(()),
            released: Notify::new(),
        }
    }

    pub(super) fn window(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window.lock().expect("window lock")
    }

    /// Read newly published events into the window when there may be some.
    pub(super) async fn fill(&self, bus: &Inner) -> anyhow::Result<()> {
        let _filling = self.filling.lock().await;
        let version = *bus.published.borrow();
        let (after, room) = {
            let w = self.window();
            let stale = w.polled_at.is_none_or(|at| at.elapsed() >= POLL);
            if !(w.more || stale || w.read_version != version) {
                return Ok(());
            }
            (w.read_to, WINDOW.saturating_sub(w.slots.len()))
        };
        if room == 0 {
            return Ok(());
        }
        let rows = query(
            "SELECT seq, event_id, payload, traceparent, tracestate, produced_at FROM events \
             WHERE subject = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(self.subject.as_str())
        .bind(after)
        .bind(room as i64)
        .fetch_all(bus.store().await?.reader())
        .await?;
        let failed = match (rows.first(), rows.last()) {
            (Some(first), Some(last)) => {
                self.failed_attempts(bus, first.get("seq")?, last.get("seq")?)
                    .await?
            }
            _ => HashMap::new(),
        };
        let now = Instant::now();
        let mut w = self.window();
        w.read_version = version;
        w.polled_at = Some(now);
        w.more = rows.len() == room;
        for row in &rows {
            let seq: i64 = row.get("seq")?;
            let event = Arc::new(read_event(row, self.subject)?);
            w.slots.insert(
                seq,
                Slot {
                    event,
                    attempts: failed.get(&seq).copied().unwrap_or(0),
                    due: now,
                    state: SlotState::Ready,
                },
            );
            w.read_to = seq;
        }
        if w.slots.is_empty() {
            // Nothing in flight: everything read is settled.
            w.floor = w.floor.max(w.read_to);
        }
        Ok(())
    }

    /// Claim up to `max` of the oldest events that are due.
    pub(super) fn claim(&self, max: usize) -> Claim {
        let now = Instant::now();
        let mut w = self.window();
        let mut next_due: Option<Instant> = None;
        let mut claimed = Vec::new();
        for (&seq, slot) in w.slots.iter_mut() {
            if claimed.len() >= max {
                break;
            }
            if slot.state == SlotState::Claimed && now.duration_since(slot.due) >= ACK_WAIT {
                slot.state = SlotState::Ready;
            }
            if slot.state != SlotState::Ready {
                continue;
            }
            if slot.due <= now {
                slot.state = SlotState::Claimed;
                // While claimed, `due` is the claim time (for ACK_WAIT).
                slot.due = now;
                slot.attempts += 1;
                claimed.push(Claimed {
                    seq,
                    event: slot.event.clone(),
                    attempts: slot.attempts,
                });
                continue;
            }
            next_due = Some(next_due.map_or(slot.due, |d| d.min(slot.due)));
        }
        if claimed.is_empty() {
            Claim::Wait(next_due)
        } else {
            Claim::Events(claimed)
        }
    }

    /// Record a handled (or dead-lettered) event and move the floor past settled ones.
    pub(super) fn settle(&self, seq: i64) {
        let mut w = self.window();
        if let Some(slot) = w.slots.get_mut(&seq) {
            slot.state = SlotState::Settled;
        }
        while let Some(entry) = w.slots.first_entry() {
            if entry.get().state != SlotState::Settled {
                break;
            }
            let (seq, _) = entry.remove_entry();
            w.floor = seq;
        }
        if w.slots.is_empty() {
            w.floor = w.floor.max(w.read_to);
        }
    }

    pub(super) fn reschedule(&self, seq: i64, delay: Duration) {
        if let Some(slot) = self.window().slots.get_mut(&seq) {
            slot.state = SlotState::Ready;
            slot.due = Instant::now() + delay;
        }
        self.released.notify_waiters();
    }

    /// Failed deliveries recorded for events `from..=to` (a restart keeps them).
    async fn failed_attempts(
        &self,
        bus: &Inner,
        from: i64,
        to: i64,
    ) -> anyhow::Result<HashMap<i64, u32>> {
        if !self.window().attempts_on_disk {
            return Ok(HashMap::new());
        }
        let rows = query(
            "SELECT seq, attempts FROM attempts \
             WHERE consumer_group = $1 AND subject = $2 AND seq >= $3 AND seq <= $4",
        )
        .bind(&self.group)
        .bind(self.subject.as_str())
        .bind(from)
        .bind(to)
        .fetch_all(bus.store().await?.reader())
        .await?;
        rows.iter()
            .map(|row| Ok((row.get("seq")?, row.get::<i64>("attempts")? as u32)))
            .collect()
    }

    /// Remember a failed delivery of event `seq` on disk.
    pub(super) async fn record_attempt(
        &self,
        bus: &Inner,
        seq: i64,
        attempts: u32,
    ) -> anyhow::Result<()> {
        query(
            "INSERT INTO attempts (consumer_group, subject, seq, attempts) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (consumer_group, subject, seq) DO UPDATE SET attempts = excluded.attempts",
        )
        .bind(&self.group)
        .bind(self.subject.as_str())
        .bind(seq)
        .bind(attempts as i64)
        .execute(bus.store().await?.writer())
        .await?;
        self.window().attempts_on_disk = true;
        Ok(())
    }

    /// Store the floor when it moved (always when `force`, else at most every
    /// [`CURSOR_EVERY`]): the only write per batch of handled events.
    pub(super) async fn persist(&self, bus: &Inner, force: bool) -> anyhow::Result<()> {
        let floor = {
            let w = self.window();
            let due = w.persisted_at.is_none_or(|at| at.elapsed() >= CURSOR_EVERY);
            if w.floor <= w.persisted || !(force || due) {
                return Ok(());
            }
            w.floor
        };
        let store = bus.store().await?;
        query(
            "UPDATE cursors SET floor = MAX(floor, $1) WHERE consumer_group = $2 AND subject = $3",
        )
        .bind(floor)
        .bind(&self.group)
        .bind(self.subject.as_str())
        .execute(store.writer())
        .await?;
        if self.window().attempts_on_disk {
            // Settled events need their count no more.
            query("DELETE FROM attempts WHERE consumer_group = $1 AND subject = $2 AND seq <= $3")
                .bind(&self.group)
                .bind(self.subject.as_str())
                .bind(floor)
                .execute(store.writer())
                .await?;
        }
        let mut w = self.window();
        w.persisted = w.persisted.max(floor);
        w.persisted_at = Some(Instant::now());
        Ok(())
    }

    pub(super) async fn dead_letter(
        &self,
        bus: &Inner,
        seq: i64,
        event: &Envelope,
        attempts: u32,
        error: &str,
    ) -> anyhow::Result<()> {
        query(
            "INSERT INTO dead_letters (consumer_group, subject, seq, event_id, payload, \
             traceparent, tracestate, produced_at, attempts, error, dead_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING",
        )
        .bind(&self.group)
        .bind(self.subject.as_str())
        .bind(seq)
        .bind(&event.id)
        .bind(event.payload.as_ref())
        .bind(event.traceparent.as_deref())
        .bind(event.tracestate.as_deref())
        .bind(event.produced_at)
        .bind(attempts as i64)
        .bind(error)
        .bind(now_millis())
        .execute(bus.store().await?.writer())
        .await?;
        Ok(())
    }
}
