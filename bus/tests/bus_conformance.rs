//! One suite, run unchanged against both buses (in-process and JetStream): the
//! delivery guarantees every service relies on. Each test has its own bus (own log
//! file, or own stream and subject prefix) and, where used, its own database.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use ticketing_bus::{
    inbox, outbox, Consumers, Envelope, EventBus, Handler, HandlerError, Listener, Outbox,
    SharedBus,
};
use ticketing_contracts::events::{Subject, TicketCreated};
use ticketing_contracts::money::Cents;
use ticketing_kit::testing::{TestBackend, TestEnv};
use ticketing_store::{query, Tx};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy)]
enum BusKind {
    InProcess,
    Nats,
}

async fn env(kind: BusKind, backend: TestBackend) -> TestEnv {
    // `RUST_LOG=debug` shows what the buses do.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    match kind {
        BusKind::InProcess => TestEnv::new(backend),
        BusKind::Nats => TestEnv::with_nats(backend).await,
    }
}

fn ticket(n: i64) -> Envelope {
    Envelope::new(&TicketCreated {
        id: (format!("ticket-{n}")).into(),
        title: "concert".into(),
        price: Cents::new(1_000 + n),
        user_id: "user-1".into(),
        version: 0,
        terms: Default::default(),
        refund: Default::default(),
    })
}

/// Decides the outcome of a delivery from the event and its delivery number (1-based).
type Behaviour = dyn Fn(&Envelope, u32) -> Result<(), HandlerError> + Send + Sync;

/// Reports every delivery (label, event) on a channel.
struct Probe {
    label: String,
    deliveries: mpsc::UnboundedSender<(String, Envelope)>,
    attempts: Mutex<HashMap<String, u32>>,
    behaviour: Box<Behaviour>,
}

#[async_trait]
impl Handler for Probe {
    async fn handle(&self, event: &Envelope) -> Result<(), HandlerError> {
        let attempt = {
            let mut attempts = self.attempts.lock().unwrap();
            let n = attempts.entry(event.id.clone()).or_default();
            *n += 1;
            *n
        };
        let _ = self.deliveries.send((self.label.clone(), event.clone()));
        (self.behaviour)(event, attempt)
    }
}

struct Harness {
    bus: SharedBus,
    shutdown: CancellationToken,
    tx: mpsc::UnboundedSender<(String, Envelope)>,
    rx: mpsc::UnboundedReceiver<(String, Envelope)>,
}

impl Harness {
    fn new(env: &TestEnv) -> Harness {
        let (tx, rx) = mpsc::unbounded_channel();
        Harness {
            bus: env.runtime.bus.clone(),
            shutdown: env.runtime.shutdown.child_token(),
            tx,
            rx,
        }
    }

    async fn subscribe(
        &self,
        label: &str,
        group: &str,
        subject: Subject,
        behaviour: impl Fn(&Envelope, u32) -> Result<(), HandlerError> + Send + Sync + 'static,
    ) {
        let probe = Probe {
            label: label.to_owned(),
            deliveries: self.tx.clone(),
            attempts: Mutex::new(HashMap::new()),
            behaviour: Box::new(behaviour),
        };
        self.bus
            .subscribe(group, subject, Arc::new(probe), self.shutdown.clone())
            .await
            .expect("subscribe");
    }

    /// The next `n` deliveries; fails after 15 s.
    async fn take(&mut self, n: usize) -> Vec<(String, Envelope)> {
        let mut got = Vec::with_capacity(n);
        while got.len() < n {
            match tokio::time::timeout(Duration::from_secs(15), self.rx.recv()).await {
                Ok(Some(delivery)) => got.push(delivery),
                _ => panic!("expected {n} deliveries, got {}: {got:?}", got.len()),
            }
        }
        got
    }

    /// Deliveries arriving within `wait` (to check that nothing more comes).
    async fn extra(&mut self, wait: Duration) -> Vec<(String, Envelope)> {
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(Some(delivery)) = tokio::time::timeout_at(deadline, self.rx.recv()).await {
            got.push(delivery);
        }
        got
    }
}

fn ok(_: &Envelope, _: u32) -> Result<(), HandlerError> {
    Ok(())
}

fn count_by_id(deliveries: &[(String, Envelope)]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for (_, event) in deliveries {
        *counts.entry(event.id.clone()).or_default() += 1;
    }
    counts
}

async fn delivers_with_headers(kind: BusKind) {
    let env = env(kind, TestBackend::Sqlite).await;
    let mut h = Harness::new(&env);
    h.subscribe("a", "orders-service", Subject::TicketCreated, ok)
        .await;
    let mut event = ticket(1);
    event.traceparent = Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
    event.tracestate = Some("vendor=value".into());
    h.bus.publish(&event).await.unwrap();
    let got = h.take(1).await;
    assert_eq!(got[0].1, event, "payload and headers round-trip");
    let decoded: TicketCreated = got[0].1.decode().unwrap();
    assert_eq!(decoded.id, "ticket-1");
    assert!(h.extra(Duration::from_millis(300)).await.is_empty());
}

async fn delivers_history_to_a_late_group(kind: BusKind) {
    let env = env(kind, TestBackend::Sqlite).await;
    let mut h = Harness::new(&env);
    let event = ticket(1);
    h.bus.publish(&event).await.unwrap();
    h.subscribe("late", "orders-service", Subject::TicketCreated, ok)
        .await;
    assert_eq!(h.take(1).await[0].1.id, event.id);
}

async fn filters_by_subject(kind: BusKind) {
    let env = env(kind, TestBackend::Sqlite).await;
    let mut h = Harness::new(&env);
    h.subscribe("a", "orders-service", Subject::TicketUpdated, ok)
        .await;
    h.bus.publish(&ticket(1)).await.unwrap();
    let mut updated = ticket(2);
    updated.subject = Subject::TicketUpdated;
    h.bus.publish(&updated).await.unwrap();
    assert_eq!(h.take(1).await[0].1.id, updated.id);
    assert!(h.extra(Duration::from_millis(300)).await.is_empty());
}

async fn one_delivery_per_group(kind: BusKind) {
    let env = env(kind, TestBackend::Sqlite).await;
    let mut h = Harness::new(&env);
    h.subscribe("first", "orders-service", Subject::TicketCreated, ok)
        .await;
    h.subscribe("second", "orders-service", Subject::TicketCreated, ok)
        .await;
    let events: Vec<_> = (0..40).map(ticket).collect();
    h.bus.publish_batch(&events).await.unwrap();
    let mut got = h.take(events.len()).await;
    got.extend(h.extra(Duration::from_millis(500)).await);
    let counts = count_by_id(&got);
    assert_eq!(counts.len(), events.len());
    assert!(
        counts.values().all(|&n| n == 1),
        "each event once: {counts:?}"
    );
}

async fn fans_out_across_groups(kind: BusKind) {
    let env = env(kind, TestBackend::Sqlite).await;
    let mut h = Harness::new(&env);
    h.subscribe("orders", "orders-service", Subject::TicketCreated, ok)
        .await;
    h.subscribe("payments", "payments-service", Subject::TicketCreated, ok)
        .await;
    let events: Vec<_> = (0..5).map(ticket).collect();
    for event in &events {
        h.bus.publish(event).await.unwrap();
    }
    let mut got = h.take(10).await;
    got.extend(h.extra(Duration::from_millis(300)).await);
    for label in ["orders", "payments"] {
        let ids: Vec<_> = got
            .iter()
            .filter(|(l, _)| l == label)
            .map(|(_, e)| e.id.clone())
            .collect();
        let want: Vec<_> = events.iter().map(|e| e.id.clone()).collect();
        assert_eq!(ids, want, "{label} gets every event, in order");
    }
}

async fn redelivers_after_failure(kind: BusKind) {
    let env = env(kind, TestBackend::Sqlite).await;
    let mut h = Harness::new(&env);
    h.subscribe(
        "a",
        "orders-service",
        Subject::TicketCreated,
        |_, attempt| {
            // "Not yet" outlasts the attempt limit (5 in tests): early events are never
            // dead-lettered.
            if attempt < 7 {
                Err(HandlerError::Retry("not yet".into()))
            } else {
                Ok(())
            }
        },
    )
    .await;
    let event = ticket(1);
    h.bus.publish(&event).await.unwrap();
    let got = h.take(7).await;
    assert!(got.iter().all(|(_, e)| e.id == event.id));
    assert!(h.extra(Duration::from_millis(500)).await.is_empty());
    let letters = h
        .bus
        .dead_letters("orders-service", Subject::TicketCreated)
        .await
        .unwrap();
    assert!(letters.is_empty());
}

async fn dead_letters_after_attempts(kind: BusKind) {
    let env = env(kind, TestBackend::Sqlite).await;
    let mut h = Harness::new(&env);
    let failing = Arc::new(AtomicU32::new(0));
    let counter = failing.clone();
    h.subscribe(
        "a",
        "orders-service",
        Subject::TicketCreated,
        move |e, _| {
            if e.id.ends_with("poison") {
                return Err(HandlerError::Poison("bad".into()));
            }
            counter.fetch_add(1, Ordering::SeqCst);
            Err(HandlerError::Other(anyhow::anyhow!("never")))
        },
    )
    .await;
    let stuck = ticket(1);
    let mut poison = ticket(2);
    poison.id.push_str("-poison");
    h.bus.publish(&stuck).await.unwrap();
    h.bus.publish(&poison).await.unwrap();
    // The test policy: 5 attempts; poison at once.
    let mut got = h.take(6).await;
    got.extend(h.extra(Duration::from_millis(800)).await);
    let counts = count_by_id(&got);
    assert_eq!(counts[&stuck.id], 5);
    assert_eq!(counts[&poison.id], 1);
    let letters = h
        .bus
        .dead_letters("orders-service", Subject::TicketCreated)
        .await
        .unwrap();
    assert_eq!(letters.len(), 2, "{letters:?}");
    let stuck_letter = letters.iter().find(|l| l.event.id == stuck.id).unwrap();
    assert_eq!(stuck_letter.attempts, 5);
    assert_eq!(stuck_letter.event.payload, stuck.payload);
    assert!(stuck_letter.error.contains("never"));
    let poison_letter = letters.iter().find(|l| l.event.id == poison.id).unwrap();
    assert_eq!(poison_letter.attempts, 1);
    // Another group is not affected.
    assert!(h
        .bus
        .dead_letters("payments-service", Subject::TicketCreated)
        .await
        .unwrap()
        .is_empty());
}

async fn drops_duplicate_publish(kind: BusKind) {
    let env = env(kind, TestBackend::Sqlite).await;
    let mut h = Harness::new(&env);
    h.subscribe("a", "orders-service", Subject::TicketCreated, ok)
        .await;
    let event = ticket(1);
    h.bus.publish(&event).await.unwrap();
    h.bus.publish(&event).await.unwrap();
    h.bus
        .publish_batch(&[event.clone(), ticket(2)])
        .await
        .unwrap();
    let mut got = h.take(2).await;
    got.extend(h.extra(Duration::from_millis(500)).await);
    assert_eq!(count_by_id(&got)[&event.id], 1);
    assert_eq!(got.len(), 2);
}

async fn keeps_order_per_subscriber(kind: BusKind) {
    let env = env(kind, TestBackend::Sqlite).await;
    let mut h = Harness::new(&env);
    h.subscribe("a", "orders-service", Subject::TicketCreated, ok)
        .await;
    let events: Vec<_> = (0..200).map(ticket).collect();
    for chunk in events.chunks(50) {
        h.bus.publish_batch(chunk).await.unwrap();
    }
    let got: Vec<_> = h.take(200).await.into_iter().map(|(_, e)| e.id).collect();
    let want: Vec<_> = events.iter().map(|e| e.id.clone()).collect();
    assert_eq!(got, want);
}

/// A change committed with its event; the relay dies before publishing one event and
/// after publishing (but before deleting) another. A new relay delivers both exactly once
/// to every group.
async fn outbox_survives_a_dead_relay(kind: BusKind, backend: TestBackend) {
    let env = env(kind, backend).await;
    let store = env.event_store("outboxtest").await;
    query("CREATE TABLE IF NOT EXISTS things (id TEXT PRIMARY KEY)")
        .execute(store.writer())
        .await
        .unwrap();
    let mut h = Harness::new(&env);
    h.subscribe("orders", "orders-service", Subject::TicketCreated, ok)
        .await;
    h.subscribe("payments", "payments-service", Subject::TicketCreated, ok)
        .await;

    let unpublished = ticket(1);
    let published_unmarked = ticket(2);
    for (thing, event) in [("a", &unpublished), ("b", &published_unmarked)] {
        let mut tx = store.begin().await.unwrap();
        query("INSERT INTO things (id) VALUES ($1)")
            .bind(thing)
            .execute(&mut tx)
            .await
            .unwrap();
        outbox::enqueue(&mut tx, event).await.unwrap();
        tx.commit().await.unwrap();
    }
    // A rolled back change leaves no event behind.
    let mut tx = store.begin().await.unwrap();
    outbox::enqueue(&mut tx, &ticket(3)).await.unwrap();
    tx.rollback().await.unwrap();

    // The first relay: killed while publishing (its bus never answers), so nothing of
    // its pass reached the bus...
    let (entered, mut publishing) = mpsc::unbounded_channel();
    let dead = Outbox::new(store.clone(), Arc::new(Unanswering(entered)));
    let task = dead.spawn(h.shutdown.child_token());
    publishing.recv().await.expect("the relay reached the bus");
    task.abort();
    let _ = task.await;
    // ...and a previous incarnation that published one event but died before deleting it.
    h.bus.publish(&published_unmarked).await.unwrap();
    let got = h.take(2).await;
    assert!(got.iter().all(|(_, e)| e.id == published_unmarked.id));

    let relay = Outbox::new(store.clone(), h.bus.clone());
    relay.spawn(h.shutdown.child_token());
    let mut got = h.take(2).await;
    got.extend(h.extra(Duration::from_millis(700)).await);
    for label in ["orders", "payments"] {
        let ids: Vec<_> = got
            .iter()
            .filter(|(l, _)| l == label)
            .map(|(_, e)| e.id.clone())
            .collect();
        assert_eq!(ids, vec![unpublished.id.clone()], "{label}");
    }
    let unsent: i64 = query("SELECT COUNT(*) FROM outbox")
        .scalar(store.reader())
        .await
        .unwrap();
    assert_eq!(unsent, 0);
    store.close().await;
}

/// A bus that takes a publish and never confirms it (it reports that the publish
/// started); subscribing is not for it.
struct Unanswering(mpsc::UnboundedSender<()>);

#[async_trait]
impl EventBus for Unanswering {
    async fn publish(&self, _: &Envelope) -> anyhow::Result<()> {
        let _ = self.0.send(());
        std::future::pending().await
    }

    async fn subscribe(
        &self,
        _: &str,
        _: Subject,
        _: Arc<dyn Handler>,
        _: CancellationToken,
    ) -> anyhow::Result<tokio::task::JoinHandle<()>> {
        anyhow::bail!("publish only")
    }

    async fn ping(&self) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Two relays (replicas) on one outbox: everything delivered once, in order.
async fn outbox_with_two_relays(kind: BusKind, backend: TestBackend) {
    let env = env(kind, backend).await;
    let store = env.event_store("outboxtest").await;
    let mut h = Harness::new(&env);
    h.subscribe("orders", "orders-service", Subject::TicketCreated, ok)
        .await;
    let _relays: Vec<_> = (0..2)
        .map(|_| {
            let relay = Outbox::new(store.clone(), h.bus.clone());
            relay.spawn(h.shutdown.child_token());
            relay
        })
        .collect();
    // Every column travels: some events carry a trace, one a payload beyond ASCII.
    let events: Vec<_> = (0..60)
        .map(|n| {
            let mut event = ticket(n);
            if n % 2 == 0 {
                event.traceparent = Some(format!("00-{:032x}-{:016x}-01", n + 1, n + 1));
                event.tracestate = (n % 4 == 0).then(|| format!("vendor=v{n}"));
            }
            if n == 7 {
                event.payload = r#"{"id":"ticket-7","title":"Ça \u0000 va 🎫"}"#.into();
            }
            event
        })
        .collect();
    for chunk in events.chunks(3) {
        let mut tx = store.begin().await.unwrap();
        for event in chunk {
            outbox::enqueue(&mut tx, event).await.unwrap();
        }
        tx.commit().await.unwrap();
    }
    let mut got = h.take(events.len()).await;
    got.extend(h.extra(Duration::from_millis(500)).await);
    let got: Vec<_> = got.into_iter().map(|(_, e)| e).collect();
    assert_eq!(got, events);
    store.close().await;
}

/// The same event handled twice, one after the other and concurrently: one effect.
async fn inbox_applies_once(backend: TestBackend) {
    let env = TestEnv::new(backend);
    let store = env.event_store("inboxtest").await;
    query("CREATE TABLE IF NOT EXISTS counter (id INTEGER PRIMARY KEY, n BIGINT NOT NULL)")
        .execute(store.writer())
        .await
        .unwrap();
    query("INSERT INTO counter (id, n) VALUES (1, 0)")
        .execute(store.writer())
        .await
        .unwrap();
    let handle = |event: Envelope| {
        let store = store.clone();
        async move {
            let Some(mut tx) = inbox::begin(&store, "orders-service", &event).await? else {
                return Ok::<bool, ticketing_store::Error>(false);
            };
            query("UPDATE counter SET n = n + 1 WHERE id = 1")
                .execute(&mut tx)
                .await?;
            tokio::time::sleep(Duration::from_millis(50)).await;
            tx.commit().await?;
            Ok(true)
        }
    };
    let event = ticket(1);
    assert!(handle(event.clone()).await.unwrap());
    assert!(!handle(event.clone()).await.unwrap());

    let concurrent = ticket(2);
    let results = futures::future::join_all((0..4).map(|_| handle(concurrent.clone()))).await;
    let applied = results.into_iter().filter(|r| *r.as_ref().unwrap()).count();
    assert_eq!(applied, 1);

    // Another group handles the same event independently.
    let other = inbox::begin(&store, "payments-service", &event)
        .await
        .unwrap();
    assert!(other.is_some());
    other.unwrap().rollback().await.unwrap();

    let n: i64 = query("SELECT n FROM counter WHERE id = 1")
        .scalar(store.reader())
        .await
        .unwrap();
    assert_eq!(n, 2);
    store.close().await;
}

/// A batch's marks, written together: an event handled before, or repeated within the
/// batch, is not new; every other event is, once. A batch asks which were handled at once.
async fn inbox_marks_a_batch_once(backend: TestBackend) {
    let env = TestEnv::new(backend);
    let store = env.event_store("inboxbatch").await;
    let (old, a, b) = (ticket(1), ticket(2), ticket(3));
    let tx = inbox::begin(&store, "orders-service", &old).await.unwrap();
    tx.unwrap().commit().await.unwrap();

    let mut tx = store.begin().await.unwrap();
    let fresh = inbox::mark_all(&mut tx, "orders-service", &[&old, &a, &a, &b])
        .await
        .unwrap();
    assert_eq!(fresh, [false, true, false, true]);
    tx.commit().await.unwrap();
    let unseen = ticket(4);
    let handled = inbox::handled_all(&store, "orders-service", &[&old, &unseen, &b])
        .await
        .unwrap();
    assert_eq!(handled, [true, false, true]);

    let mut tx = store.begin().await.unwrap();
    let again = inbox::mark_all(&mut tx, "orders-service", &[&a, &b])
        .await
        .unwrap();
    assert_eq!(again, [false, false]);
    let other = inbox::mark_all(&mut tx, "payments-service", &[&a, &b])
        .await
        .unwrap();
    assert_eq!(other, [true, true]);
    tx.rollback().await.unwrap();
    store.close().await;
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod in_process {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::BusKind::InProcess).await
                }
            )*
        }
        mod nats {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::BusKind::Nats).await
                }
            )*
        }
    };
}

conformance!(
    delivers_with_headers,
    delivers_history_to_a_late_group,
    filters_by_subject,
    one_delivery_per_group,
    fans_out_across_groups,
    redelivers_after_failure,
    dead_letters_after_attempts,
    drops_duplicate_publish,
    keeps_order_per_subscriber,
);

/// The outbox and inbox on both stores, with both buses.
macro_rules! with_stores {
    ($($name:ident),* $(,)?) => {
        mod stores {
            $(
                mod $name {
                    use ticketing_kit::testing::TestBackend;
                    use super::super::{$name, BusKind};

                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn sqlite_in_process() {
                        $name(BusKind::InProcess, TestBackend::Sqlite).await
                    }
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn postgres_in_process() {
                        $name(BusKind::InProcess, TestBackend::Postgres).await
                    }
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn sqlite_nats() {
                        $name(BusKind::Nats, TestBackend::Sqlite).await
                    }
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn postgres_nats() {
                        $name(BusKind::Nats, TestBackend::Postgres).await
                    }
                }
            )*
        }
    };
}

with_stores!(
    outbox_survives_a_dead_relay,
    outbox_with_two_relays,
    listeners_handle_a_backlog_one_event_at_a_time_in_effect,
    listeners_with_outside_effects_handle_a_backlog_too,
);

/// A listener that records each ticket it sees, and fails (after writing) on the first
/// delivery of ticket 5 and always on ticket 7 (a poison event). With `outside`, it has
/// effects outside the database: it records the tickets it prepares there, and its
/// preparation of ticket 11 fails the first time.
struct Recorder {
    failed_once: AtomicU32,
    outside: Option<Arc<Mutex<Vec<String>>>>,
    prepare_failed_once: AtomicU32,
}

#[async_trait]
impl Listener for Recorder {
    type Event = TicketCreated;

    fn outside_effects(&self) -> bool {
        self.outside.is_some()
    }

    async fn prepare(&self, event: &TicketCreated) -> Result<(), HandlerError> {
        if event.id.as_str() == "ticket-11"
            && self.prepare_failed_once.fetch_add(1, Ordering::SeqCst) == 0
        {
            return Err(HandlerError::Other(anyhow::anyhow!(
                "outside: first try fails"
            )));
        }
        if let Some(outside) = &self.outside {
            outside.lock().unwrap().push(event.id.to_string());
        }
        Ok(())
    }

    async fn handle(&self, tx: &mut Tx, event: TicketCreated) -> Result<(), HandlerError> {
        query("INSERT INTO seen (ticket) VALUES ($1)")
            .bind(event.id.to_string())
            .execute(&mut *tx)
            .await?;
        match event.id.as_str() {
            "ticket-5" if self.failed_once.fetch_add(1, Ordering::SeqCst) == 0 => {
                Err(HandlerError::Other(anyhow::anyhow!("first try fails")))
            }
            "ticket-7" => Err(HandlerError::Poison("never".into())),
            _ => Ok(()),
        }
    }
}

/// A backlog is handled several events to a transaction: the effect is still that of
/// one event at a time — a failing event leaves nothing behind and is retried alone, a
/// poison one is dead-lettered alone, the rest are applied once each.
async fn listeners_handle_a_backlog_one_event_at_a_time_in_effect(
    kind: BusKind,
    backend: TestBackend,
) {
    backlog_in_effect(kind, backend, None).await;
}

/// The same with effects outside the database: those run for every event before its
/// batch's transaction (again when a failure sends the batch one event at a time), and
/// never for an event already handled.
async fn listeners_with_outside_effects_handle_a_backlog_too(kind: BusKind, backend: TestBackend) {
    let outside = Arc::new(Mutex::new(Vec::new()));
    backlog_in_effect(kind, backend, Some(outside.clone())).await;
    let prepared = outside.lock().unwrap().clone();
    for n in 0..40 {
        let id = format!("ticket-{n}");
        assert!(prepared.contains(&id), "{id} never prepared: {prepared:?}");
    }
}

async fn backlog_in_effect(
    kind: BusKind,
    backend: TestBackend,
    outside: Option<Arc<Mutex<Vec<String>>>>,
) {
    let env = env(kind, backend).await;
    let store = env.event_store("batchtest").await;
    query("CREATE TABLE IF NOT EXISTS seen (ticket TEXT NOT NULL)")
        .execute(store.writer())
        .await
        .unwrap();
    let events: Vec<Envelope> = (0..40).map(ticket).collect();
    env.runtime.bus.publish_batch(&events).await.unwrap();
    let shutdown = env.runtime.shutdown.child_token();
    Consumers::new("batch-service", &store)
        .listen(Recorder {
            failed_once: AtomicU32::new(0),
            outside,
            prepare_failed_once: AtomicU32::new(0),
        })
        .start(&env.runtime.bus, &shutdown)
        .await
        .unwrap();

    let want: Vec<String> = (0..40)
        .filter(|n| *n != 7)
        .map(|n| format!("ticket-{n}"))
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut seen: Vec<String> = query("SELECT ticket FROM seen")
            .scalars(store.reader())
            .await
            .unwrap();
        seen.sort_by_key(|t| t[7..].parse::<u32>().unwrap());
        let dead = env
            .runtime
            .bus
            .dead_letters("batch-service", Subject::TicketCreated)
            .await
            .unwrap();
        if seen == want && dead.len() == 1 {
            assert_eq!(dead[0].event.id, events[7].id);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "seen {seen:?}, dead letters {}",
            dead.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let marks: i64 = query("SELECT COUNT(*) FROM inbox WHERE consumer_group = 'batch-service'")
        .scalar(store.reader())
        .await
        .unwrap();
    assert_eq!(marks, 39);
    shutdown.cancel();
    store.close().await;
}

ticketing_kit::backend_tests!(inbox_applies_once, inbox_marks_a_batch_once);
