//! The expiration service over the bus: `order:created` schedules, `order:cancelled` /
//! `payment:created` drop, due jobs publish `expiration:complete`; pending jobs survive
//! a restart. With the queue in the service's store and on Redis, on every flavor.

use std::time::Duration;

use serde_json::Value;
use ticketing_bus::Envelope;
use ticketing_contracts::events::{
    OrderCancelled, OrderCreated, OrderCreatedTicket, PaymentCreated, Subject, TicketRef,
};
use ticketing_contracts::money::Cents;
use ticketing_contracts::time::{format_millis, now_millis};
use ticketing_expiration::Settings;
use ticketing_kit::flavor_tests;
use ticketing_kit::runtime::{Mounted, Runtime};
use ticketing_kit::testing::{unique_prefix, EventRecorder, Flavor, TestEnv};
use tokio_util::sync::CancellationToken;

fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

fn settings(redis: bool) -> Settings {
    Settings {
        redis_url: redis.then(redis_url),
        redis_prefix: unique_prefix(),
        ..Settings::default()
    }
}

fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn created(id: &str, due: i64) -> Envelope {
    Envelope::new(&OrderCreated {
        id: id.into(),
        status: ticketing_contracts::OrderStatus::Created,
        user_id: "bob".into(),
        expires_at: format_millis(due),
        reserved_until: Some(format_millis(due)),
        version: 0,
        ticket: OrderCreatedTicket {
            id: (new_id()).into(),
            price: Cents::new(1000),
        },
        quantity: 1,
        waitlist_entry_id: None,
    })
}

async fn mount(rt: &Runtime, settings: &Settings) -> Mounted {
    ticketing_expiration::mount(rt, settings)
        .await
        .expect("mount expiration")
}

async fn fires_at_expires_at(flavor: Flavor, redis: bool) {
    let env = TestEnv::with_flavor(flavor).await;
    let recorder = EventRecorder::start(&env.runtime, Subject::ExpirationComplete).await;
    let _service = mount(&env.runtime, &settings(redis)).await;
    let id = new_id();
    let due = now_millis() + 300;
    env.runtime.bus.publish(&created(&id, due)).await.unwrap();
    let event = recorder.next().await;
    assert!(now_millis() >= due, "fired early");
    assert_eq!(event.id, format!("expiration-{id}"));
    let payload: Value = serde_json::from_slice(&event.payload).unwrap();
    assert_eq!(payload, serde_json::json!({ "orderId": id }));
    recorder.assert_quiet(Duration::from_millis(500)).await;
}

async fn cancelled_or_paid_before_due_fires_nothing(flavor: Flavor, redis: bool) {
    let env = TestEnv::with_flavor(flavor).await;
    let recorder = EventRecorder::start(&env.runtime, Subject::ExpirationComplete).await;
    let _service = mount(&env.runtime, &settings(redis)).await;
    let (cancelled, paid) = (new_id(), new_id());
    // Far enough ahead that the drops are handled first even on a loaded machine.
    let due = now_millis() + 3_000;
    let bus = &env.runtime.bus;
    bus.publish(&created(&cancelled, due)).await.unwrap();
    bus.publish(&created(&paid, due)).await.unwrap();
    env.wait_handled(
        ticketing_expiration::SERVICE,
        &ticketing_expiration::MIGRATIONS,
        2,
    )
    .await;
    bus.publish(&Envelope::new(&OrderCancelled {
        id: (cancelled.clone()).into(),
        version: 1,
        ticket: TicketRef {
            id: (new_id()).into(),
        },
        cancel_reason: None,
    }))
    .await
    .unwrap();
    bus.publish(&Envelope::new(&PaymentCreated {
        id: (new_id()).into(),
        order_id: (paid.clone()).into(),
        stripe_id: "ch_x".into(),
    }))
    .await
    .unwrap();
    // A cancellation overtaking its order:created: nothing is scheduled either.
    let late = new_id();
    bus.publish(&Envelope::new(&OrderCancelled {
        id: (late.clone()).into(),
        version: 1,
        ticket: TicketRef {
            id: (new_id()).into(),
        },
        cancel_reason: None,
    }))
    .await
    .unwrap();
    env.wait_handled(
        ticketing_expiration::SERVICE,
        &ticketing_expiration::MIGRATIONS,
        5,
    )
    .await;
    bus.publish(&created(&late, now_millis() + 100))
        .await
        .unwrap();
    let until_past_due = (due - now_millis()).max(0) as u64 + 700;
    recorder
        .assert_quiet(Duration::from_millis(until_past_due))
        .await;
}

async fn pending_expiry_survives_a_restart(flavor: Flavor, redis: bool) {
    let env = TestEnv::with_flavor(flavor).await;
    let settings = settings(redis);
    let first = mount(&env.runtime, &settings).await;
    let id = new_id();
    let due = now_millis() + 1500;
    env.runtime.bus.publish(&created(&id, due)).await.unwrap();
    env.wait_handled(
        ticketing_expiration::SERVICE,
        &ticketing_expiration::MIGRATIONS,
        1,
    )
    .await;

    // Stop every task of the first instance, then start again on the same storage.
    let mut second_rt = env.runtime.clone();
    second_rt.shutdown = CancellationToken::new();
    let _stop = second_rt.shutdown.clone().drop_guard();
    env.runtime.shutdown.cancel();
    for task in first.tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    }
    let recorder = EventRecorder::start(&second_rt, Subject::ExpirationComplete).await;
    let _second = mount(&second_rt, &settings).await;
    let event = recorder.next().await;
    assert!(now_millis() >= due);
    let payload: Value = serde_json::from_slice(&event.payload).unwrap();
    assert_eq!(payload["orderId"], id.as_str());
}

/// A backlog found at start (the service was down while orders were placed): every
/// order is scheduled and fires once, and those cancelled meanwhile never fire — also
/// when the queue is in the store and a backlog's events share a transaction.
async fn a_backlog_is_scheduled_whole(flavor: Flavor, redis: bool) {
    let env = TestEnv::with_flavor(flavor).await;
    let recorder = EventRecorder::start(&env.runtime, Subject::ExpirationComplete).await;
    let bus = &env.runtime.bus;
    let due = now_millis() + 1_500;
    let ids: Vec<String> = (0..60).map(|_| new_id()).collect();
    let created_events: Vec<Envelope> = ids.iter().map(|id| created(id, due)).collect();
    bus.publish_batch(&created_events).await.unwrap();
    let cancelled: Vec<Envelope> = ids
        .iter()
        .step_by(4)
        .map(|id| {
            Envelope::new(&OrderCancelled {
                id: id.as_str().into(),
                version: 1,
                ticket: TicketRef {
                    id: (new_id()).into(),
                },
                cancel_reason: None,
            })
        })
        .collect();
    bus.publish_batch(&cancelled).await.unwrap();
    let _service = mount(&env.runtime, &settings(redis)).await;
    let mut fired = std::collections::BTreeSet::new();
    for _ in 0..45 {
        let event = recorder.next().await;
        assert!(now_millis() >= due, "fired early");
        assert!(fired.insert(event.id.clone()), "{} fired twice", event.id);
    }
    let expected: std::collections::BTreeSet<String> = ids
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 4 != 0)
        .map(|(_, id)| format!("expiration-{id}"))
        .collect();
    assert_eq!(fired, expected);
    recorder.assert_quiet(Duration::from_millis(500)).await;
}

async fn backlog_sql(flavor: Flavor) {
    a_backlog_is_scheduled_whole(flavor, false).await
}
async fn backlog_redis(flavor: Flavor) {
    a_backlog_is_scheduled_whole(flavor, true).await
}
async fn fires_sql(flavor: Flavor) {
    fires_at_expires_at(flavor, false).await
}
async fn fires_redis(flavor: Flavor) {
    fires_at_expires_at(flavor, true).await
}
async fn dropped_sql(flavor: Flavor) {
    cancelled_or_paid_before_due_fires_nothing(flavor, false).await
}
async fn dropped_redis(flavor: Flavor) {
    cancelled_or_paid_before_due_fires_nothing(flavor, true).await
}
async fn restart_sql(flavor: Flavor) {
    pending_expiry_survives_a_restart(flavor, false).await
}
async fn restart_redis(flavor: Flavor) {
    pending_expiry_survives_a_restart(flavor, true).await
}

flavor_tests!(
    fires_sql,
    fires_redis,
    dropped_sql,
    dropped_redis,
    restart_sql,
    restart_redis,
    backlog_sql,
    backlog_redis,
);
