//! The in-process bus keeps its log and cursors on disk: a reopened bus (a restarted
//! process) redelivers what was not acknowledged and nothing that was.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ticketing_bus::{Envelope, EventBus, Handler, HandlerError, InProcessBus, RetryPolicy};
use ticketing_contracts::events::Subject;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

struct Probe {
    seen: mpsc::UnboundedSender<String>,
    fail: bool,
}

#[async_trait]
impl Handler for Probe {
    async fn handle(&self, event: &Envelope) -> Result<(), HandlerError> {
        let _ = self.seen.send(event.id.clone());
        if self.fail {
            Err(HandlerError::Retry("down".into()))
        } else {
            Ok(())
        }
    }
}

fn policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 100,
        backoff_base: Duration::from_secs(60),
        backoff_max: Duration::from_secs(60),
    }
}

async fn next(rx: &mut mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a delivery")
        .expect("open")
}

async fn quiet(rx: &mut mpsc::UnboundedReceiver<String>) {
    let extra = tokio::time::timeout(Duration::from_millis(400), rx.recv()).await;
    assert!(extra.is_err(), "unexpected delivery {extra:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopened_bus_redelivers_only_unacknowledged_events() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bus.db");
    let raw = |n: u32| Envelope::raw(Subject::OrderCreated, format!("{{\"n\":{n}}}"));
    let acked: Vec<_> = (0..3).map(raw).collect();
    let pending = raw(3);

    {
        let bus = InProcessBus::open_with(&path, policy()).await.unwrap();
        bus.publish_batch(&acked).await.unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let shutdown = CancellationToken::new();
        let task = bus
            .subscribe(
                "tickets-service",
                Subject::OrderCreated,
                Arc::new(Probe {
                    seen: tx,
                    fail: false,
                }),
                shutdown.clone(),
            )
            .await
            .unwrap();
        for event in &acked {
            assert_eq!(next(&mut rx).await, event.id);
        }
        shutdown.cancel();
        task.await.unwrap();
    }
    {
        // The handler fails; the process dies while the event waits for its retry.
        let bus = InProcessBus::open_with(&path, policy()).await.unwrap();
        bus.publish(&pending).await.unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let shutdown = CancellationToken::new();
        let task = bus
            .subscribe(
                "tickets-service",
                Subject::OrderCreated,
                Arc::new(Probe {
                    seen: tx,
                    fail: true,
                }),
                shutdown.clone(),
            )
            .await
            .unwrap();
        assert_eq!(next(&mut rx).await, pending.id);
        task.abort();
    }
    let bus = InProcessBus::open_with(&path, policy()).await.unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    bus.subscribe(
        "tickets-service",
        Subject::OrderCreated,
        Arc::new(Probe {
            seen: tx,
            fail: false,
        }),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(next(&mut rx).await, pending.id);
    quiet(&mut rx).await;
    // The log itself is intact.
    assert_eq!(bus.read_log(0, None, 100).await.unwrap().len(), 4);
}

/// Fails with a counted error every time.
struct Broken {
    seen: mpsc::UnboundedSender<String>,
}

#[async_trait]
impl Handler for Broken {
    async fn handle(&self, event: &Envelope) -> Result<(), HandlerError> {
        let _ = self.seen.send(event.id.clone());
        Err(HandlerError::Other(anyhow::anyhow!("broken")))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_a_failing_events_attempt_count() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bus.db");
    let policy = RetryPolicy {
        max_attempts: 4,
        backoff_base: Duration::from_millis(20),
        backoff_max: Duration::from_millis(20),
    };
    let event = Envelope::raw(Subject::OrderCreated, "{}");
    async fn subscribe(
        bus: InProcessBus,
        tx: mpsc::UnboundedSender<String>,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        bus.subscribe(
            "tickets-service",
            Subject::OrderCreated,
            Arc::new(Broken { seen: tx }),
            shutdown,
        )
        .await
        .unwrap()
    }
    {
        let bus = InProcessBus::open_with(&path, policy).await.unwrap();
        bus.publish(&event).await.unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let shutdown = CancellationToken::new();
        let task = subscribe(bus, tx, shutdown.clone()).await;
        // Two of its four deliveries, then the process dies.
        assert_eq!(next(&mut rx).await, event.id);
        assert_eq!(next(&mut rx).await, event.id);
        task.abort();
        shutdown.cancel();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let bus = InProcessBus::open_with(&path, policy).await.unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    subscribe(bus.clone(), tx, CancellationToken::new()).await;
    // The attempts left, not four fresh ones (the second may or may not have been
    // recorded before the abort: two or three more deliveries, never four).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let letters = loop {
        let letters = bus
            .dead_letters("tickets-service", Subject::OrderCreated)
            .await
            .unwrap();
        if !letters.is_empty() || tokio::time::Instant::now() > deadline {
            break letters;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(letters.len(), 1, "dead-lettered");
    assert_eq!(letters[0].attempts, 4);
    let mut after_restart = 0;
    while rx.try_recv().is_ok() {
        after_restart += 1;
    }
    assert!(
        (2..=3).contains(&after_restart),
        "{after_restart} deliveries after the restart"
    );
}
