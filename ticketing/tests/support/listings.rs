//! Listings as the tickets service announces them, published straight onto the bus, and
//! the orders service's view of them: for tests of the orders service alone.

use std::time::{Duration, Instant};

use ticketing_bus::Envelope;
use ticketing_contracts::events::{TicketCreated, TicketUpdated};
use ticketing_contracts::money::Cents;
use ticketing_contracts::{RefundTerms, SaleTerms};
use ticketing_kit::runtime::Runtime;
use ticketing_store::{query, Store};

/// `quantity` units, `per_order` per order, `per_account` per account, on sale now.
pub fn terms(quantity: i64, per_order: i64, per_account: i64) -> SaleTerms {
    SaleTerms {
        quantity: Some(quantity),
        max_per_order: Some(per_order),
        max_per_account: Some(per_account),
        on_sale_at: None,
    }
}

pub async fn orders_store(rt: &Runtime) -> Store {
    let location = rt.location(ticketing_orders::SERVICE).unwrap();
    Store::open(&location, &ticketing_orders::MIGRATIONS)
        .await
        .unwrap()
}

/// Announce version `version` of listing `id` at 10.00 (`ticket:created` for 0), and wait
/// until the orders service's replica holds it.
pub async fn publish(rt: &Runtime, id: &str, version: i64, terms: SaleTerms) {
    publish_with(rt, id, version, terms, RefundTerms::default()).await
}

/// [`publish`] with an event time and a refund policy.
pub async fn publish_with(
    rt: &Runtime,
    id: &str,
    version: i64,
    terms: SaleTerms,
    refund: RefundTerms,
) {
    let event = if version == 0 {
        Envelope::new(&TicketCreated {
            id: id.into(),
            title: "Festival".into(),
            price: Cents::new(1000),
            user_id: "seller".into(),
            version,
            terms,
            refund,
        })
    } else {
        Envelope::new(&TicketUpdated {
            id: id.into(),
            title: "Festival".into(),
            price: Cents::new(1000),
            user_id: "seller".into(),
            version,
            order_id: None,
            terms,
            refund,
        })
    };
    rt.bus.publish(&event).await.unwrap();
    let store = orders_store(rt).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let row = query("SELECT version FROM tickets WHERE id = $1")
            .bind(id)
            .fetch_optional(store.reader())
            .await
            .unwrap();
        if row.is_some_and(|r| r.get::<i64>("version").unwrap() >= version) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "listing {id} v{version} never replicated"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A new listing with `terms`, known to the orders service: its id.
pub async fn listing(rt: &Runtime, terms: SaleTerms) -> String {
    let id = uuid::Uuid::now_v7().to_string();
    publish(rt, &id, 0, terms).await;
    id
}

/// The orders service's count of the listing's held units.
pub async fn held(rt: &Runtime, id: &str) -> i64 {
    query("SELECT held FROM tickets WHERE id = $1")
        .bind(id)
        .fetch_one(orders_store(rt).await.reader())
        .await
        .unwrap()
        .get("held")
        .unwrap()
}
