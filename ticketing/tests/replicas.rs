//! Replicas converge whatever the arrival order (decision 0023), on both buses: events
//! published straight onto the bus, the replica read from the consuming service's
//! database. The in-process bus runs with SQLite, JetStream with PostgreSQL, so both
//! engines' statements (one per event, one per batch) are covered.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ticketing_bus::Envelope;
use ticketing_contracts::events::{
    OrderCancelled, OrderCreated, OrderCreatedTicket, TicketCreated, TicketRef, TicketUpdated,
};
use ticketing_contracts::money::Cents;
use ticketing_contracts::time::format_millis;
use ticketing_contracts::{OrderId, OrderStatus, TicketId, UserId};
use ticketing_kit::testing::{TestBackend, TestEnv};
use ticketing_store::{query, Store};

#[derive(Clone, Copy, Debug)]
enum Bus {
    InProcess,
    Nats,
}

async fn env(bus: Bus) -> TestEnv {
    match bus {
        Bus::InProcess => TestEnv::new(TestBackend::Sqlite),
        Bus::Nats => TestEnv::with_nats(TestBackend::Postgres).await,
    }
}

/// A small deterministic generator (splitmix64): a failing run names its seed.
struct Rng(u64);

impl Rng {
    fn seeded() -> Rng {
        let seed = std::env::var("REPLICAS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| uuid::Uuid::new_v4().as_u64_pair().0);
        eprintln!("REPLICAS_SEED={seed}");
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// The state of a ticket at `version` as its source would publish it.
fn ticket_event(id: &str, version: i64) -> Envelope {
    let (title, price) = (format!("{id} v{version}"), Cents::new(100 + version));
    let (id, user_id) = (TicketId::from(id), UserId::from("seller"));
    if version == 0 {
        Envelope::new(&TicketCreated {
            id,
            title,
            price,
            user_id,
            version,
            terms: Default::default(),
            refund: Default::default(),
        })
    } else {
        Envelope::new(&TicketUpdated {
            id,
            title,
            price,
            user_id,
            version,
            order_id: None,
            terms: Default::default(),
            refund: Default::default(),
        })
    }
}

async fn open(env: &TestEnv, service: &str, migrations: &ticketing_store::Migrations) -> Store {
    let location = env.runtime.location(service).expect("location");
    Store::open(&location, migrations).await.expect("store")
}

/// The orders service's ticket replica: id → (title, price, version).
async fn ticket_replica(store: &Store) -> BTreeMap<String, (String, i64, i64)> {
    let rows = query("SELECT id, title, price_cents, version FROM tickets")
        .fetch_all(store.reader())
        .await
        .expect("read the replica");
    rows.iter()
        .map(|row| {
            let id: String = row.get("id").unwrap();
            let title: String = row.get("title").unwrap();
            (
                id,
                (
                    title,
                    row.get("price_cents").unwrap(),
                    row.get("version").unwrap(),
                ),
            )
        })
        .collect()
}

async fn inbox_count(store: &Store) -> i64 {
    query("SELECT COUNT(*) FROM inbox")
        .scalar(store.reader())
        .await
        .expect("count the inbox")
}

/// Wait (up to `within`) until `store`'s consumer has handled `n` events.
async fn wait_handled(store: &Store, n: i64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let handled = inbox_count(store).await;
        if handled >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {handled} of {n} events handled"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn publish(env: &TestEnv, events: &[Envelope]) {
    for chunk in events.chunks(200) {
        env.runtime.bus.publish_batch(chunk).await.expect("publish");
    }
}

async fn mount_orders(env: &TestEnv) -> ticketing_kit::runtime::Mounted {
    ticketing_orders::mount(&env.runtime, &Default::default())
        .await
        .expect("orders")
}

/// One ticket's version N withheld while 2,000 updates of other tickets go by: they are
/// all applied without waiting for it, the gapped ticket shows its newest version, and
/// N arriving late changes nothing.
async fn a_gap_parks_nothing(bus: Bus) {
    let env = env(bus).await;
    let _orders = mount_orders(&env).await;
    let store = open(&env, "orders", &ticketing_orders::MIGRATIONS).await;

    const OTHERS: usize = 200;
    const VERSIONS: i64 = 10; // updates per other ticket: 200 × 10 = 2,000
    let others: Vec<String> = (0..OTHERS).map(|i| format!("other-{i:04}")).collect();
    let mut creations: Vec<Envelope> = others.iter().map(|id| ticket_event(id, 0)).collect();
    creations.push(ticket_event("gapped", 0));
    publish(&env, &creations).await;
    wait_handled(&store, creations.len() as i64, Duration::from_secs(30)).await;

    // The gapped ticket's versions 1, 2, 4, 5 (3 withheld), amid the others' updates.
    let mut updates = vec![ticket_event("gapped", 1), ticket_event("gapped", 2)];
    for version in 1..=VERSIONS {
        updates.extend(others.iter().map(|id| ticket_event(id, version)));
        if version == VERSIONS / 2 {
            updates.push(ticket_event("gapped", 4));
        }
    }
    updates.push(ticket_event("gapped", 5));
    let started = Instant::now();
    publish(&env, &updates).await;
    let published = started.elapsed();
    let expected = (creations.len() + updates.len()) as i64;
    wait_handled(&store, expected, Duration::from_secs(30)).await;
    let applied = started.elapsed();
    eprintln!(
        "{bus:?}: {} updates with a gap published in {published:?}, all applied after \
         {applied:?} ({:?} after the last publish)",
        updates.len(),
        applied - published
    );
    let replica = ticket_replica(&store).await;
    for id in &others {
        assert_eq!(replica[id].2, VERSIONS, "{id} at its last version");
        assert_eq!(replica[id].0, format!("{id} v{VERSIONS}"));
    }
    assert_eq!(replica["gapped"], ("gapped v5".to_owned(), 105, 5));

    // The withheld version, late: acknowledged without effect.
    publish(&env, &[ticket_event("gapped", 3)]).await;
    wait_handled(&store, expected + 1, Duration::from_secs(30)).await;
    assert_eq!(
        ticket_replica(&store).await["gapped"],
        ("gapped v5".to_owned(), 105, 5)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_parks_nothing_in_process() {
    a_gap_parks_nothing(Bus::InProcess).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_parks_nothing_on_jetstream() {
    a_gap_parks_nothing(Bus::Nats).await;
}

/// What a source published for one object, in its order, and the version it ended at.
struct History {
    events: Vec<Envelope>,
}

/// A random delivery of `histories`: each history's events shuffled (reversals),
/// some repeated under a new id (duplicates the inbox cannot catch), some intermediate
/// ones left out (gaps; never the last, which the source's state is), and the
/// histories interleaved at random.
fn shuffled(rng: &mut Rng, histories: Vec<History>) -> Vec<Envelope> {
    let mut lanes: Vec<Vec<Envelope>> = Vec::new();
    for history in histories {
        let last = history.events.len() - 1;
        let mut lane = Vec::new();
        for (i, event) in history.events.into_iter().enumerate() {
            if i != last && i != 0 && rng.below(4) == 0 {
                continue; // a gap
            }
            if rng.below(4) == 0 {
                let mut again = event.clone();
                again.id = uuid::Uuid::now_v7().to_string();
                lane.push(again);
            }
            lane.push(event);
        }
        rng.shuffle(&mut lane);
        lanes.push(lane);
    }
    let mut order: Vec<usize> = lanes
        .iter()
        .enumerate()
        .flat_map(|(i, lane)| std::iter::repeat_n(i, lane.len()))
        .collect();
    rng.shuffle(&mut order);
    let mut lanes: Vec<std::vec::IntoIter<Envelope>> =
        lanes.into_iter().map(|lane| lane.into_iter()).collect();
    order
        .into_iter()
        .map(|i| lanes[i].next().expect("a lane's event"))
        .collect()
}

/// 1,000 shuffled histories of tickets (orders' replica) and of orders (payments'
/// replica): every replica ends equal to its source's last version.
async fn shuffles_converge(bus: Bus) {
    let env = env(bus).await;
    let _orders = mount_orders(&env).await;
    let _payments = ticketing_payments::mount(
        &env.runtime,
        Arc::new(ticketing_payments::provider::SandboxProvider::new()),
    )
    .await
    .expect("payments");
    let orders_store = open(&env, "orders", &ticketing_orders::MIGRATIONS).await;
    let payments_store = open(&env, "payments", &ticketing_payments::MIGRATIONS).await;
    let mut rng = Rng::seeded();

    const SHUFFLES: usize = 1_000;
    let mut tickets = BTreeMap::new();
    let mut histories = Vec::new();
    for i in 0..SHUFFLES / 2 {
        let id = format!("ticket-{i:04}");
        let last = rng.below(8) as i64;
        histories.push(History {
            events: (0..=last).map(|v| ticket_event(&id, v)).collect(),
        });
        tickets.insert(id.clone(), (format!("{id} v{last}"), 100 + last, last));
    }
    let ticket_events = shuffled(&mut rng, histories);

    let mut orders = BTreeMap::new();
    let mut histories = Vec::new();
    for i in 0..SHUFFLES / 2 {
        let id = OrderId::from(format!("order-{i:04}"));
        let mut events = vec![Envelope::new(&OrderCreated {
            id: id.clone(),
            status: OrderStatus::Created,
            user_id: UserId::from("buyer"),
            expires_at: format_millis(4_102_444_800_000),
            reserved_until: None,
            version: 0,
            ticket: OrderCreatedTicket {
                id: TicketId::from("t"),
                price: Cents::new(500),
            },
            quantity: 1,
            waitlist_entry_id: None,
        })];
        let cancelled = rng.below(2) == 0;
        if cancelled {
            events.push(Envelope::new(&OrderCancelled {
                id: id.clone(),
                version: 1,
                ticket: TicketRef {
                    id: TicketId::from("t"),
                },
                cancel_reason: None,
            }));
        }
        orders.insert(
            id.to_string(),
            if cancelled {
                ("cancelled", 1)
            } else {
                ("created", 0)
            },
        );
        histories.push(History { events });
    }
    let order_events = shuffled(&mut rng, histories);

    publish(&env, &ticket_events).await;
    publish(&env, &order_events).await;
    wait_handled(
        &orders_store,
        ticket_events.len() as i64,
        Duration::from_secs(60),
    )
    .await;
    wait_handled(
        &payments_store,
        order_events.len() as i64,
        Duration::from_secs(60),
    )
    .await;

    assert_eq!(ticket_replica(&orders_store).await, tickets);
    let rows = query("SELECT id, status, version FROM orders")
        .fetch_all(payments_store.reader())
        .await
        .unwrap();
    let replica: BTreeMap<String, (&str, i64)> = rows
        .iter()
        .map(|row| {
            let status: String = row.get("status").unwrap();
            let status = if status == "cancelled" {
                "cancelled"
            } else {
                "created"
            };
            (
                row.get("id").unwrap(),
                (status, row.get("version").unwrap()),
            )
        })
        .collect();
    assert_eq!(replica, orders);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shuffles_converge_in_process() {
    shuffles_converge(Bus::InProcess).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shuffles_converge_on_jetstream() {
    shuffles_converge(Bus::Nats).await;
}
