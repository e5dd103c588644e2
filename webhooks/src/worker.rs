//! The delivery worker of a process: claims due heads in batches, sends each signed on
//! a pooled keep-alive client, and writes outcomes in batches.
//!
//! It wakes when this process's intake commits deliveries, when outcomes are written
//! (a key's next delivery became its head) and, for what other processes queued and for
//! retries coming due, every `poll`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use ticketing_contracts::api::webhooks::DeliveryStatus;
use ticketing_contracts::time::now_millis;
use ticketing_contracts::webhook;
use ticketing_store::{Backend, Store};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::deliveries::{self, Claimed, Outcome};
use crate::Settings;

/// Outcomes written per statement at most.
const MARK_BATCH: usize = 512;

pub fn spawn(
    store: Store,
    settings: Arc<Settings>,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) -> anyhow::Result<JoinHandle<()>> {
    let mut client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
    if !settings.allow_private {
        client = client.dns_resolver(Arc::new(crate::public_dns::PublicOnly));
    }
    let client = client
        .pool_max_idle_per_host(settings.per_endpoint.max(1) * 2)
        .pool_idle_timeout(Duration::from_secs(60))
        .tcp_nodelay(true)
        .connect_timeout(settings.timeout)
        .timeout(settings.timeout)
        .user_agent("ticketing-webhooks/1")
        .build()?;
    let worker = Worker {
        store,
        settings,
        wake,
        client,
        in_flight: Arc::new(AtomicUsize::new(0)),
    };
    Ok(tokio::spawn(worker.run(shutdown)))
}

struct Worker {
    store: Store,
    settings: Arc<Settings>,
    wake: Arc<Notify>,
    client: reqwest::Client,
    in_flight: Arc<AtomicUsize>,
}

impl Worker {
    async fn run(self, shutdown: CancellationToken) {
        if self.store.backend() == Backend::Sqlite {
            match deliveries::release_all(&self.store).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deliveries = n, "took back the claims of the previous run"),
                Err(err) => tracing::warn!(error = %err, "could not release old claims"),
            }
        }
        let (outcomes, received) = mpsc::unbounded_channel();
        let marker = tokio::spawn(mark_outcomes(
            self.store.clone(),
            received,
            self.wake.clone(),
            self.in_flight.clone(),
        ));
        loop {
            self.claim_and_send(&outcomes, &shutdown).await;
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.wake.notified() => tracing::trace!("woken"),
                _ = tokio::time::sleep(self.settings.poll) => tracing::trace!("poll"),
            }
        }
        drop(outcomes);
        // Attempts in flight finish (or time out) and their outcomes are written; what
        // is cut short is claimed again once its lease lapses.
        let _ = tokio::time::timeout(self.settings.timeout, marker).await;
    }

    async fn claim_and_send(
        &self,
        outcomes: &mpsc::UnboundedSender<Outcome>,
        shutdown: &CancellationToken,
    ) {
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            let busy = self.in_flight.load(Ordering::Acquire);
            let room = self.settings.max_in_flight.saturating_sub(busy);
            if room == 0 {
                return;
            }
            let started = std::time::Instant::now();
            let claimed = match deliveries::claim(
                &self.store,
                room,
                self.settings.per_endpoint,
                self.settings.lease(),
            )
            .await
            {
                Ok(claimed) => claimed,
                Err(ticketing_store::Error::Closed) => return,
                Err(err) => {
                    tracing::warn!(error = %err, "claiming webhook deliveries failed");
                    return;
                }
            };
            let n = claimed.len();
            tracing::debug!(claimed = n, room, busy, took = ?started.elapsed(), "claim");
            if n == 0 {
                return;
            }
            self.in_flight.fetch_add(n, Ordering::AcqRel);
            for delivery in claimed {
                let client = self.client.clone();
                let settings = self.settings.clone();
                let outcomes = outcomes.clone();
                tokio::spawn(async move {
                    let outcome = attempt(&client, &settings, delivery).await;
                    let _ = outcomes.send(outcome);
                });
            }
            if n < room {
                return;
            }
        }
    }
}

/// Send one delivery and judge the answer.
async fn attempt(client: &reqwest::Client, settings: &Settings, d: Claimed) -> Outcome {
    let timestamp = now_millis() / 1000;
    let signature =
        webhook::sign(&d.secret, &d.event_id, timestamp, d.body.as_bytes()).unwrap_or_default();
    let sent = client
        .post(&d.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(webhook::ID_HEADER, &d.event_id)
        .header(webhook::TIMESTAMP_HEADER, timestamp.to_string())
        .header(webhook::SIGNATURE_HEADER, signature)
        .body(d.body.clone())
        .send()
        .await;
    let answer = match sent {
        Ok(res) => {
            let status = res.status();
            // Read the (small) body so that the connection goes back to the pool.
            let _ = res.bytes().await;
            Ok(status)
        }
        Err(err) => Err(err),
    };
    let now = now_millis();
    let mut outcome = Outcome {
        seq: d.seq,
        claim: d.claim,
        endpoint_id: d.endpoint_id,
        order_key: d.order_key,
        status: DeliveryStatus::Pending,
        next_at: now,
        delivered_at: None,
        gone: false,
    };
    match answer {
        Ok(status) if status.is_success() => {
            outcome.status = DeliveryStatus::Delivered;
            outcome.delivered_at = Some(now);
            metrics::counter!("ticketing_webhook_deliveries_total", "outcome" => "delivered")
                .increment(1);
            metrics::histogram!("ticketing_webhook_delivery_lag_seconds")
                .record((now - d.created_at).max(0) as f64 / 1000.0);
            return outcome;
        }
        Ok(status) if status == reqwest::StatusCode::GONE => {
            tracing::info!(endpoint = %outcome.endpoint_id, "endpoint answered 410 Gone: disabled");
            metrics::counter!("ticketing_webhook_deliveries_total", "outcome" => "gone")
                .increment(1);
            outcome.gone = true;
        }
        Ok(status) => {
            tracing::debug!(endpoint = %outcome.endpoint_id, %status, "webhook refused");
            metrics::counter!("ticketing_webhook_deliveries_total", "outcome" => "failed")
                .increment(1);
        }
        Err(err) => {
            tracing::debug!(endpoint = %outcome.endpoint_id, error = %err, "webhook not delivered");
            metrics::counter!("ticketing_webhook_deliveries_total", "outcome" => "failed")
                .increment(1);
        }
    }
    let attempts = d.attempts + 1;
    if now - d.queued_at >= settings.give_up_after.as_millis() as i64 {
        outcome.status = DeliveryStatus::Dead;
        metrics::counter!("ticketing_webhook_deliveries_total", "outcome" => "dead").increment(1);
    } else {
        outcome.next_at = now + backoff(settings, attempts).as_millis() as i64;
    }
    outcome
}

/// The pause after `attempts` failed attempts: the minimum doubled for each, at most the
/// maximum, a random half to whole of it (so that endpoints coming back are not hit by
/// every retry at once).
fn backoff(settings: &Settings, attempts: i64) -> Duration {
    let exponent = (attempts.max(1) - 1).min(30) as u32;
    let full = settings
        .backoff_min
        .saturating_mul(1u32 << exponent.min(20))
        .min(settings.backoff_max);
    full.mul_f64(rand::thread_rng().gen_range(0.5..=1.0))
}

/// Write outcomes as they come, all that queued meanwhile in one transaction; then wake
/// the worker (heads moved on, room was made).
async fn mark_outcomes(
    store: Store,
    mut received: mpsc::UnboundedReceiver<Outcome>,
    wake: Arc<Notify>,
    in_flight: Arc<AtomicUsize>,
) {
    let mut batch = Vec::with_capacity(MARK_BATCH);
    while let Some(first) = received.recv().await {
        batch.push(first);
        while batch.len() < MARK_BATCH {
            match received.try_recv() {
                Ok(o) => batch.push(o),
                Err(_) => break,
            }
        }
        let mut failures = 0u32;
        let started = std::time::Instant::now();
        loop {
            match deliveries::mark(&store, &batch).await {
                Ok(()) => break,
                Err(ticketing_store::Error::Closed) => return,
                Err(err) => {
                    failures += 1;
                    tracing::warn!(error = %err, "writing webhook outcomes failed");
                    if failures >= 20 {
                        // The leases lapse and the deliveries are sent again.
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        tracing::debug!(marked = batch.len(), took = ?started.elapsed(), "mark");
        in_flight.fetch_sub(batch.len(), Ordering::AcqRel);
        batch.clear();
        wake.notify_one();
    }
}

/// The backlog as metrics, every 10 s: pending deliveries, and the oldest one's age.
pub fn spawn_sampler(store: Store, shutdown: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Ok((pending, age)) = deliveries::backlog(&store).await {
                metrics::gauge!("ticketing_webhook_deliveries_pending").set(pending as f64);
                metrics::gauge!("ticketing_webhook_oldest_pending_seconds").set(age);
            }
        }
    })
}
