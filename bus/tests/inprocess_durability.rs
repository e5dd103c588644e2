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
