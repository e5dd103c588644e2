//! The replica of tickets: the newest version of each, whatever the arrival order.

use std::sync::LazyLock;

use ticketing_bus::HandlerError;
use ticketing_contracts::events::{TicketCreated, TicketUpdated};
use ticketing_contracts::money::Cents;
use ticketing_contracts::terms::Percent;
use ticketing_contracts::time::parse_millis;
use ticketing_contracts::{RefundPolicy, RefundTerms, SaleTerms, TicketId, Timestamp};
use ticketing_kit::replica::{CopyOf, Replicated};
use ticketing_store::{query, On, Query, Row};

#[derive(Debug, Clone)]
pub struct TicketCopy {
    pub id: TicketId,
    pub title: String,
    pub price: Cents,
    pub version: i64,
    pub terms: Terms,
    pub refund: Refund,
}

/// A listing's event time and refund policy as the replica keeps them (issue 32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Refund {
    pub event_at: Option<Timestamp>,
    pub policy: Option<RefundPolicy>,
}

impl Refund {
    fn of(terms: &RefundTerms) -> Result<Refund, HandlerError> {
        let event_at = terms
            .event_at
            .as_deref()
            .map(|at| {
                parse_millis(at)
                    .map(Timestamp::from_millis)
                    .ok_or_else(|| HandlerError::Poison(format!("eventAt {at:?}")))
            })
            .transpose()?;
        Ok(Refund {
            event_at,
            policy: terms.refund_policy,
        })
    }

    fn columns(self) -> [Option<i64>; 3] {
        [
            self.event_at.map(Timestamp::as_millis),
            self.policy.map(|p| p.cutoff_hours),
            self.policy.map(|p| p.fee_percent.basis_points()),
        ]
    }
}

/// The event time and policy a row of the replica holds.
pub fn refund_of(row: &Row) -> Result<Refund, ticketing_store::Error> {
    let cutoff: Option<i64> = row.get("refund_cutoff_hours")?;
    let fee: Option<i64> = row.get("refund_fee_bp")?;
    Ok(Refund {
        event_at: row
            .get::<Option<i64>>("event_at")?
            .map(Timestamp::from_millis),
        policy: cutoff.zip(fee).map(|(cutoff_hours, bp)| RefundPolicy {
            cutoff_hours,
            fee_percent: Percent::from_basis_points(bp),
        }),
    })
}

/// A listing's sale terms as the replica keeps them: a ticket listed the seed's way is
/// one unit, one per order and per account, on sale now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Terms {
    /// Listed with a quantity (its refusals speak of units: sold out, only N left).
    pub counted: bool,
    pub quantity: i64,
    pub per_order: i64,
    pub per_account: i64,
    pub on_sale_at: Option<Timestamp>,
}

impl Terms {
    fn of(terms: &SaleTerms) -> Result<Terms, HandlerError> {
        let on_sale_at = terms
            .on_sale_at
            .as_deref()
            .map(|at| {
                parse_millis(at)
                    .map(Timestamp::from_millis)
                    .ok_or_else(|| HandlerError::Poison(format!("onSaleAt {at:?}")))
            })
            .transpose()?;
        Ok(Terms {
            counted: terms.is_counted(),
            quantity: terms.units(),
            per_order: terms.per_order(),
            per_account: terms.per_account(),
            on_sale_at,
        })
    }
}

// `ticket:created` and `ticket:updated` both carry the whole ticket: one listener
// (`CopyListener`) serves each.
impl CopyOf<TicketCreated> for TicketCopy {
    fn copy_of(t: TicketCreated) -> Result<TicketCopy, HandlerError> {
        Ok(TicketCopy {
            terms: Terms::of(&t.terms)?,
            refund: Refund::of(&t.refund)?,
            id: t.id,
            title: t.title,
            price: t.price,
            version: t.version,
        })
    }
}

impl CopyOf<TicketUpdated> for TicketCopy {
    fn copy_of(t: TicketUpdated) -> Result<TicketCopy, HandlerError> {
        Ok(TicketCopy {
            terms: Terms::of(&t.terms)?,
            refund: Refund::of(&t.refund)?,
            id: t.id,
            title: t.title,
            price: t.price,
            version: t.version,
        })
    }
}

ticketing_kit::from_row!(|row| TicketCopy {
    id,
    title,
    price: Cents::new(row.get("price_cents")?),
    version,
    terms: terms_of(row)?,
    refund: refund_of(row)?,
});

/// The terms a row of the replica holds (`quantity` NULL: one unit, the seed's way).
pub fn terms_of(row: &Row) -> Result<Terms, ticketing_store::Error> {
    let quantity: Option<i64> = row.get("quantity")?;
    Ok(Terms {
        counted: quantity.is_some(),
        quantity: quantity.unwrap_or(1),
        per_order: row.get::<Option<i64>>("max_per_order")?.unwrap_or(1),
        per_account: row.get::<Option<i64>>("max_per_account")?.unwrap_or(1),
        on_sale_at: row
            .get::<Option<i64>>("on_sale_at")?
            .map(Timestamp::from_millis),
    })
}

/// The columns [`TicketCopy`] is read from.
pub const FIND_COLUMNS: &str = "id, title, price_cents, version, quantity, max_per_order, \
    max_per_account, on_sale_at, event_at, refund_cutoff_hours, refund_fee_bp";

pub async fn find<'a>(
    on: impl Into<On<'a>>,
    id: &TicketId,
) -> Result<Option<TicketCopy>, ticketing_store::Error> {
    static FIND: LazyLock<String> =
        LazyLock::new(|| format!("SELECT {FIND_COLUMNS} FROM tickets WHERE id = $1"));
    query(&FIND).bind(id).fetch_optional_as(on).await
}

/// Whether the replica holds listing `id` (an order may wait for it: decision 0029).
pub async fn exists<'a>(
    on: impl Into<On<'a>>,
    id: &TicketId,
) -> Result<bool, ticketing_store::Error> {
    Ok(query("SELECT 1 AS one FROM tickets WHERE id = $1")
        .bind(id)
        .fetch_optional(on)
        .await?
        .is_some())
}

/// Ticket events carry the whole ticket, so the newest wins whatever the arrival order —
/// a duplicate, an older event or one whose predecessor is still on its way changes
/// nothing or everything, never blocks (decision 0023). One statement, no read first.
impl Replicated for TicketCopy {
    const UPSERT: &'static str = "INSERT INTO tickets \
        (id, title, price_cents, version, quantity, max_per_order, max_per_account, on_sale_at, \
        event_at, refund_cutoff_hours, refund_fee_bp) \
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
        ON CONFLICT (id) DO UPDATE SET title = excluded.title, \
        price_cents = excluded.price_cents, version = excluded.version, \
        quantity = excluded.quantity, max_per_order = excluded.max_per_order, \
        max_per_account = excluded.max_per_account, on_sale_at = excluded.on_sale_at, \
        event_at = excluded.event_at, refund_cutoff_hours = excluded.refund_cutoff_hours, \
        refund_fee_bp = excluded.refund_fee_bp \
        WHERE tickets.version < excluded.version";

    const UPSERT_ALL: &'static str = "INSERT INTO tickets \
        (id, title, price_cents, version, quantity, max_per_order, max_per_account, on_sale_at, \
        event_at, refund_cutoff_hours, refund_fee_bp) \
        SELECT DISTINCT ON (c->>'id') c->>'id', c->>'title', (c->>'price')::bigint, \
        (c->>'version')::bigint, (c->>'quantity')::bigint, (c->>'maxPerOrder')::bigint, \
        (c->>'maxPerAccount')::bigint, (c->>'onSaleAt')::bigint, (c->>'eventAt')::bigint, \
        (c->>'cutoffHours')::bigint, (c->>'feeBp')::bigint \
        FROM jsonb_array_elements($1::jsonb) AS batch(c) \
        ORDER BY c->>'id', (c->>'version')::bigint DESC \
        ON CONFLICT (id) DO UPDATE SET title = excluded.title, \
        price_cents = excluded.price_cents, version = excluded.version, \
        quantity = excluded.quantity, max_per_order = excluded.max_per_order, \
        max_per_account = excluded.max_per_account, on_sale_at = excluded.on_sale_at, \
        event_at = excluded.event_at, refund_cutoff_hours = excluded.refund_cutoff_hours, \
        refund_fee_bp = excluded.refund_fee_bp \
        WHERE tickets.version < excluded.version";

    fn bind<'q>(&self, upsert: Query<'q>) -> Query<'q> {
        upsert
            .bind(&self.id)
            .bind(&self.title)
            .bind(self.price.get())
            .bind(self.version)
            .bind(self.terms.counted.then_some(self.terms.quantity))
            .bind(self.terms.counted.then_some(self.terms.per_order))
            .bind(self.terms.counted.then_some(self.terms.per_account))
            .bind(self.terms.on_sale_at.map(Timestamp::as_millis))
            .bind(self.refund.columns()[0])
            .bind(self.refund.columns()[1])
            .bind(self.refund.columns()[2])
    }

    fn json(&self) -> serde_json::Value {
        let counted = self.terms.counted;
        serde_json::json!({
            "id": self.id, "title": self.title, "price": self.price.get(), "version": self.version,
            "quantity": counted.then_some(self.terms.quantity),
            "maxPerOrder": counted.then_some(self.terms.per_order),
            "maxPerAccount": counted.then_some(self.terms.per_account),
            "onSaleAt": self.terms.on_sale_at.map(Timestamp::as_millis),
            "eventAt": self.refund.columns()[0],
            "cutoffHours": self.refund.columns()[1],
            "feeBp": self.refund.columns()[2],
        })
    }
}
