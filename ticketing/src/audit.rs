//! `ticketing audit`: compare what the services hold, each through its own database
//! (a read-only `Store`: SQLite files opened read-only, PostgreSQL sessions read-only),
//! and report where they disagree. The same database flags as `serve` say where the
//! databases are. Exit code 1 when anything diverges.
//!
//! The services agree only eventually (events are in flight for a few milliseconds), so
//! on a running system a divergence counts once it has lasted `--settle-seconds`: the
//! audit looks again every second until everything agrees or that time has passed.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::Context;
use ticketing_contracts::status::OrderStatus;
use ticketing_store::{query, DbLocation, Row, Store};

use crate::config::{AuditArgs, ServeArgs};

/// One disagreement between services (or within one).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Finding {
    pub kind: &'static str,
    pub detail: String,
}

pub async fn run(args: &ServeArgs, audit: &AuditArgs) -> anyhow::Result<usize> {
    let started = Instant::now();
    let settle = Duration::from_secs(audit.settle_seconds);
    let findings = loop {
        let snapshot = Snapshot::read(args).await?;
        let findings = snapshot.findings(audit);
        if findings.is_empty() || started.elapsed() >= settle {
            break findings;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
    for finding in &findings {
        println!("{}\t{}", finding.kind, finding.detail);
        *by_kind.entry(finding.kind).or_default() += 1;
    }
    let counts: Vec<String> = by_kind.iter().map(|(k, n)| format!("{k}={n}")).collect();
    println!(
        "audit: {} divergences{}{}",
        findings.len(),
        if counts.is_empty() { "" } else { ": " },
        counts.join(", ")
    );
    Ok(findings.len())
}

struct Ticket {
    version: i64,
    order_id: Option<String>,
    /// `None`: listed as one unit, the seed's way.
    quantity: Option<i64>,
    /// Units the tickets service counts held or sold (from order events).
    held: i64,
}

struct Order {
    ticket_id: String,
    status: String,
    expires_at: i64,
    version: i64,
    units: i64,
}

/// The orders service's copy of a listing.
struct ReplicaTicket {
    version: i64,
    /// `None`: listed as one unit, the seed's way.
    quantity: Option<i64>,
    /// Units its live orders hold, by the orders service's counter.
    held: i64,
}

struct ReplicaOrder {
    status: String,
    version: i64,
}

/// Everything the checks look at, read service by service.
pub struct Snapshot {
    now: i64,
    tickets: HashMap<String, Ticket>,
    orders: BTreeMap<String, Order>,
    /// The orders service's replica of tickets.
    ticket_replica: HashMap<String, ReplicaTicket>,
    /// The payments service's replica of orders.
    order_replica: HashMap<String, ReplicaOrder>,
    /// Payments: id → order id.
    payments: BTreeMap<String, String>,
    /// Payments whose charge was given back.
    refunded: std::collections::HashSet<String>,
    /// Per service: (rows, oldest `produced_at`) of its outbox.
    outboxes: Vec<(&'static str, Vec<i64>)>,
    /// The check-in service's passes and scans (`None`: it has no database here).
    checkin: Option<CheckinSnapshot>,
    /// Cancellations for a refund and the refunds that settle them (issue 32).
    refunds: refunds::Refunds,
}

/// What the check-in service holds, for its checks ([`checkin_findings`]).
struct CheckinSnapshot {
    /// Passes not revoked: (pass, order).
    valid_passes: Vec<(String, String)>,
    /// Passes answered `ok` to more than one scan: (pass, how many).
    admitted_twice: Vec<(String, i64)>,
}

impl CheckinSnapshot {
    /// `None` when the service has no database (a deployment without it).
    async fn read(args: &ServeArgs) -> anyhow::Result<Option<(CheckinSnapshot, Vec<i64>)>> {
        let Ok(conn) = connect(args, "checkin").await else {
            return Ok(None);
        };
        let valid_passes =
            query("SELECT id, order_id FROM passes WHERE revoked_at IS NULL ORDER BY id")
                .fetch_all(conn.reader())
                .await?
                .iter()
                .map(|r| Ok((r.get("id")?, r.get("order_id")?)))
                .collect::<Result<_, ticketing_store::Error>>()?;
        let admitted_twice = query(
            "SELECT pass_id, COUNT(*) AS n FROM scans WHERE result = 'ok' \
             GROUP BY pass_id HAVING COUNT(*) > 1 ORDER BY pass_id",
        )
        .fetch_all(conn.reader())
        .await?
        .iter()
        .map(|r| Ok((r.get("pass_id")?, r.get("n")?)))
        .collect::<Result<_, ticketing_store::Error>>()?;
        let outbox = outbox(&conn).await?;
        Ok(Some((
            CheckinSnapshot {
                valid_passes,
                admitted_twice,
            },
            outbox,
        )))
    }
}

fn is_active(status: &str) -> bool {
    [
        OrderStatus::Created,
        OrderStatus::AwaitingPayment,
        OrderStatus::Complete,
    ]
    .iter()
    .any(|s| s.as_str() == status)
}

fn is_open(status: &str) -> bool {
    status == OrderStatus::Created.as_str() || status == OrderStatus::AwaitingPayment.as_str()
}

async fn connect(args: &ServeArgs, service: &str) -> anyhow::Result<Store> {
    let (database, overrides) = crate::serve::databases(args)?;
    let location = match overrides.get(service) {
        Some(url) => DbLocation::from_url(url),
        None => database.location(service)?,
    };
    Store::open_read_only(&location)
        .await
        .with_context(|| format!("{service}: opening its database"))
}

async fn outbox(store: &Store) -> anyhow::Result<Vec<i64>> {
    Ok(query("SELECT produced_at FROM outbox")
        .scalars(store.reader())
        .await?)
}

/// Every row of `sql`, keyed by its `id` column, with `value` of the row.
async fn by_id<C, V>(
    store: &Store,
    sql: &str,
    value: impl Fn(&Row) -> Result<V, ticketing_store::Error>,
) -> anyhow::Result<C>
where
    C: FromIterator<(String, V)>,
{
    let rows = query(sql).fetch_all(store.reader()).await?;
    Ok(rows
        .iter()
        .map(|row| Ok((row.get::<String>("id")?, value(row)?)))
        .collect::<Result<C, ticketing_store::Error>>()?)
}

impl Snapshot {
    pub async fn read(args: &ServeArgs) -> anyhow::Result<Snapshot> {
        let now = ticketing_contracts::time::now_millis();
        let mut outboxes = Vec::new();

        let conn = connect(args, "tickets").await?;
        let sql = "SELECT id, version, order_id, quantity, held FROM tickets";
        let tickets = by_id(&conn, sql, |row| {
            Ok(Ticket {
                version: row.get("version")?,
                order_id: row.get("order_id")?,
                quantity: row.get("quantity")?,
                held: row.get("held")?,
            })
        })
        .await?;
        outboxes.push(("tickets", outbox(&conn).await?));

        let conn = connect(args, "orders").await?;
        let sql = "SELECT id, ticket_id, status, expires_at, version, quantity FROM orders";
        let orders = by_id(&conn, sql, |row| {
            Ok(Order {
                ticket_id: row.get("ticket_id")?,
                status: row.get("status")?,
                expires_at: row.get("expires_at")?,
                version: row.get("version")?,
                units: row.get("quantity")?,
            })
        })
        .await?;
        let sql = "SELECT id, version, quantity, held FROM tickets";
        let ticket_replica = by_id(&conn, sql, |row| {
            Ok(ReplicaTicket {
                version: row.get("version")?,
                quantity: row.get("quantity")?,
                held: row.get("held")?,
            })
        })
        .await?;
        outboxes.push(("orders", outbox(&conn).await?));

        let conn = connect(args, "payments").await?;
        let payments = by_id(&conn, "SELECT id, order_id FROM payments", |row| {
            row.get("order_id")
        })
        .await?;
        let refunded = query("SELECT payment_id FROM refunds")
            .fetch_all(conn.reader())
            .await?
            .iter()
            .map(|r| r.get::<String>("payment_id"))
            .collect::<Result<_, _>>()?;
        let order_replica = by_id(&conn, "SELECT id, status, version FROM orders", |row| {
            Ok(ReplicaOrder {
                status: row.get("status")?,
                version: row.get("version")?,
            })
        })
        .await?;
        outboxes.push(("payments", outbox(&conn).await?));

        let conn = connect(args, "expiration").await?;
        outboxes.push(("expiration", outbox(&conn).await?));

        // Auth publishes session revocations: a stuck one leaves a signed-out token
        // working until it expires.
        let conn = connect(args, "auth").await?;
        outboxes.push(("auth", outbox(&conn).await?));

        let checkin = match CheckinSnapshot::read(args).await? {
            Some((snapshot, rows)) => {
                outboxes.push(("checkin", rows));
                Some(snapshot)
            }
            None => None,
        };
        let refunds = refunds::Refunds::read(args).await?;

        Ok(Snapshot {
            now,
            tickets,
            orders,
            ticket_replica,
            order_replica,
            payments,
            refunded,
            outboxes,
            checkin,
            refunds,
        })
    }

    pub fn findings(&self, audit: &AuditArgs) -> Vec<Finding> {
        let mut out = Vec::new();
        let mut found = |kind: &'static str, detail: String| out.push(Finding { kind, detail });

        // Tickets against the orders that hold them.
        let mut sorted_tickets: Vec<(&String, &Ticket)> = self.tickets.iter().collect();
        sorted_tickets.sort_by(|a, b| a.0.cmp(b.0));
        for (id, ticket) in &sorted_tickets {
            if let Some(order_id) = &ticket.order_id {
                match self.orders.get(order_id) {
                    Some(order) if is_active(&order.status) => {}
                    Some(order) => found(
                        "ticket-held-by-inactive-order",
                        format!("ticket {id} is reserved by order {order_id}, which is {}", order.status),
                    ),
                    None => found(
                        "ticket-held-by-inactive-order",
                        format!("ticket {id} is reserved by order {order_id}, which the orders service does not know"),
                    ),
                }
            }
        }

        // Orders against their tickets. A listing of several units is not reserved by an
        // order: its units are counted (below).
        let mut active_by_ticket: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        let mut units_by_listing: BTreeMap<&str, i64> = BTreeMap::new();
        for (id, order) in &self.orders {
            if !is_active(&order.status) {
                continue;
            }
            *units_by_listing
                .entry(order.ticket_id.as_str())
                .or_default() += order.units;
            let counted = self
                .ticket_replica
                .get(&order.ticket_id)
                .is_some_and(|t| t.quantity.is_some());
            if !counted {
                active_by_ticket
                    .entry(order.ticket_id.as_str())
                    .or_default()
                    .push(id);
            }
            let holder = self
                .tickets
                .get(&order.ticket_id)
                .map(|t| t.order_id.as_deref());
            match holder {
                _ if counted => {}
                Some(Some(holder)) if holder == id.as_str() => {}
                Some(holder) => found(
                    "active-order-ticket-not-reserved",
                    format!(
                        "order {id} is {} but ticket {} is {}",
                        order.status,
                        order.ticket_id,
                        holder.map_or("free".to_owned(), |h| format!("reserved by order {h}"))
                    ),
                ),
                None => found(
                    "active-order-ticket-not-reserved",
                    format!(
                        "order {id} is {} for ticket {}, which the tickets service does not know",
                        order.status, order.ticket_id
                    ),
                ),
            }
            let overdue = self.now - order.expires_at;
            if is_open(&order.status) && overdue > audit.expiry_slack_seconds as i64 * 1000 {
                found(
                    "open-order-past-expiry",
                    format!(
                        "order {id} is still {} {} s after it expired",
                        order.status,
                        overdue / 1000
                    ),
                );
            }
            if order.status == OrderStatus::Complete.as_str()
                && !self
                    .payments
                    .iter()
                    .any(|(payment, o)| o == id && !self.refunded.contains(payment))
            {
                found(
                    "complete-order-without-payment",
                    format!("order {id} is complete but no payment (not refunded) names it"),
                );
            }
        }
        for (ticket, orders) in &active_by_ticket {
            if orders.len() > 1 {
                found(
                    "ticket-with-several-active-orders",
                    format!("ticket {ticket} is held by orders {}", orders.join(", ")),
                );
            }
        }

        // Each listing's units: never more held than listed, and the claim's counter
        // equal to the units of its live orders.
        let mut listings: Vec<(&String, &ReplicaTicket)> = self.ticket_replica.iter().collect();
        listings.sort_by(|a, b| a.0.cmp(b.0));
        for (id, listing) in listings {
            let units = units_by_listing.get(id.as_str()).copied().unwrap_or(0);
            let quantity = listing.quantity.unwrap_or(1);
            if units > quantity {
                found(
                    "listing-oversold",
                    format!("listing {id}: live orders hold {units} units of {quantity}"),
                );
            }
            if listing.held != units {
                found(
                    "listing-held-count",
                    format!(
                        "listing {id}: the orders service counts {} units held, its live orders hold {units}",
                        listing.held
                    ),
                );
            }
        }

        // What the tickets service shows available, against the orders that hold units.
        for (id, ticket) in &sorted_tickets {
            let Some(quantity) = ticket.quantity else {
                continue;
            };
            let units = units_by_listing.get(id.as_str()).copied().unwrap_or(0);
            if ticket.held != units {
                found(
                    "listing-available",
                    format!(
                        "listing {id}: the tickets service shows {} available, its live orders leave {}",
                        quantity - ticket.held,
                        quantity - units
                    ),
                );
            }
        }

        // Replicas against their sources.
        for (id, ticket) in &sorted_tickets {
            match self.ticket_replica.get(*id).map(|t| t.version) {
                Some(version) if version == ticket.version => {}
                Some(version) => found(
                    "ticket-replica-version",
                    format!("ticket {id}: version {} at the tickets service, {version} in the orders service's replica", ticket.version),
                ),
                None => found(
                    "ticket-replica-version",
                    format!("ticket {id} (version {}) is missing from the orders service's replica", ticket.version),
                ),
            }
        }
        for (id, order) in &self.orders {
            let complete = order.status == OrderStatus::Complete.as_str();
            match self.order_replica.get(id) {
                // Completion is not published (payments decided it), so the replica
                // stays at the version before it.
                Some(r) if complete
                    && (r.version == order.version || r.version + 1 == order.version)
                    && r.status != OrderStatus::Cancelled.as_str() => {}
                Some(r) if !complete && r.version == order.version && r.status == order.status => {}
                Some(r) => found(
                    "order-replica-version",
                    format!("order {id}: {} at version {} at the orders service, {} at version {} in the payments service's replica", order.status, order.version, r.status, r.version),
                ),
                None => found(
                    "order-replica-version",
                    format!("order {id} (version {}) is missing from the payments service's replica", order.version),
                ),
            }
        }

        for (payment, order) in &self.payments {
            if !self.orders.contains_key(order) {
                found(
                    "payment-without-order",
                    format!("payment {payment} names order {order}, which the orders service does not know"),
                );
            }
        }

        checkin_findings(self, &mut found);
        self.refunds.findings(self, audit, &mut found);

        let limit = self.now - audit.outbox_age_seconds as i64 * 1000;
        for (service, produced) in &self.outboxes {
            let stale: Vec<&i64> = produced.iter().filter(|at| **at < limit).collect();
            if let Some(oldest) = stale.iter().min() {
                found(
                    "stale-outbox",
                    format!(
                        "{service}: {} outbox rows older than {} s (the oldest {} s)",
                        stale.len(),
                        audit.outbox_age_seconds,
                        (self.now - **oldest) / 1000
                    ),
                );
            }
        }
        out
    }
}

/// The check-in service against the orders: no pass of a cancelled (refunded) order
/// still admits, and no pass was admitted twice (answered `ok` to two scans: two
/// offline gates let it in, or a bug let two online scans win).
fn checkin_findings(snapshot: &Snapshot, found: &mut impl FnMut(&'static str, String)) {
    let Some(checkin) = &snapshot.checkin else {
        return;
    };
    for (pass, order) in &checkin.valid_passes {
        if let Some(o) = snapshot.orders.get(order) {
            if o.status == OrderStatus::Cancelled.as_str() {
                found(
                    "pass-of-cancelled-order",
                    format!("pass {pass} still admits, but its order {order} is cancelled"),
                );
            }
        }
    }
    for (pass, n) in &checkin.admitted_twice {
        found(
            "pass-checked-in-twice",
            format!("pass {pass} was admitted by {n} scans"),
        );
    }
}

/// The audit of cancellations for a refund (issue 32): each refunded one settled by
/// exactly one refund of the order's total less the fee, none left `requested`.
mod refunds {
    use std::collections::{BTreeMap, HashMap};

    use ticketing_store::query;

    use super::{connect, Snapshot};
    use crate::config::{AuditArgs, ServeArgs};

    struct Cancellation {
        order_id: String,
        status: String,
        refund_cents: i64,
        fee_cents: i64,
        requested_at: i64,
    }

    /// The orders service's cancellations and the payments service's refunds of them.
    #[derive(Default)]
    pub struct Refunds {
        cancellations: BTreeMap<String, Cancellation>,
        /// Refunds naming a cancellation: its id → cents given back, one per refund.
        refunds: HashMap<String, Vec<i64>>,
        /// Each order's total as the payments service charged it (its replica).
        totals: HashMap<String, i64>,
    }

    impl Refunds {
        pub async fn read(args: &ServeArgs) -> anyhow::Result<Refunds> {
            let mut out = Refunds::default();
            let orders = connect(args, "orders").await?;
            let rows = query(
                "SELECT id, order_id, status, refund_cents, fee_cents, requested_at \
                 FROM cancellations",
            )
            .fetch_all(orders.reader())
            .await?;
            for row in &rows {
                out.cancellations.insert(
                    row.get("id")?,
                    Cancellation {
                        order_id: row.get("order_id")?,
                        status: row.get("status")?,
                        refund_cents: row.get("refund_cents")?,
                        fee_cents: row.get("fee_cents")?,
                        requested_at: row.get("requested_at")?,
                    },
                );
            }
            let payments = connect(args, "payments").await?;
            let rows = query(
                "SELECT r.cancellation_id, r.amount_cents, o.price_cents \
                 FROM refunds r LEFT JOIN payments p ON p.id = r.payment_id \
                 LEFT JOIN orders o ON o.id = p.order_id WHERE r.cancellation_id IS NOT NULL",
            )
            .fetch_all(payments.reader())
            .await?;
            for row in &rows {
                // A refund without its amount gave back the whole charge.
                let amount: Option<i64> = row.get("amount_cents")?;
                let charged: Option<i64> = row.get("price_cents")?;
                out.refunds
                    .entry(row.get("cancellation_id")?)
                    .or_default()
                    .push(amount.or(charged).unwrap_or(0));
            }
            let rows = query("SELECT id, price_cents FROM orders")
                .fetch_all(payments.reader())
                .await?;
            for row in &rows {
                out.totals.insert(row.get("id")?, row.get("price_cents")?);
            }
            Ok(out)
        }

        pub fn findings(
            &self,
            snapshot: &Snapshot,
            audit: &AuditArgs,
            found: &mut impl FnMut(&'static str, String),
        ) {
            let stuck_before = snapshot.now - audit.outbox_age_seconds as i64 * 1000;
            for (id, c) in &self.cancellations {
                let refunds = self.refunds.get(id).map(Vec::as_slice).unwrap_or_default();
                let total = self.totals.get(&c.order_id).copied();
                let due = total.map(|t| t - c.fee_cents);
                match c.status.as_str() {
                    "refunded" => {
                        if refunds.len() != 1 || Some(refunds[0]) != due || due != Some(c.refund_cents) {
                            found(
                                "cancellation-refund",
                                format!(
                                    "cancellation {id} of order {} is refunded: {} refunds ({}), \
                                     total {} less fee {} is {}",
                                    c.order_id,
                                    refunds.len(),
                                    cents_list(refunds),
                                    total.map_or("unknown".to_owned(), |t| t.to_string()),
                                    c.fee_cents,
                                    due.map_or("unknown".to_owned(), |d| d.to_string()),
                                ),
                            );
                        }
                        let status = snapshot.orders.get(&c.order_id).map(|o| o.status.as_str());
                        if status != Some("cancelled") {
                            found(
                                "cancellation-refund",
                                format!(
                                    "cancellation {id} is refunded but order {} is {}",
                                    c.order_id,
                                    status.unwrap_or("unknown")
                                ),
                            );
                        }
                    }
                    "requested" if c.requested_at < stuck_before => found(
                        "cancellation-stuck",
                        format!(
                            "cancellation {id} of order {} is still requested {} s after it was made",
                            c.order_id,
                            (snapshot.now - c.requested_at) / 1000
                        ),
                    ),
                    "failed" if !refunds.is_empty() => found(
                        "cancellation-refund",
                        format!(
                            "cancellation {id} failed but was refunded ({})",
                            cents_list(refunds)
                        ),
                    ),
                    _ => {}
                }
            }
            let mut unknown: Vec<&String> = self
                .refunds
                .keys()
                .filter(|id| !self.cancellations.contains_key(*id))
                .collect();
            unknown.sort();
            for id in unknown {
                found(
                    "cancellation-refund",
                    format!(
                        "a refund names cancellation {id}, which the orders service does not know"
                    ),
                );
            }
        }
    }

    fn cents_list(refunds: &[i64]) -> String {
        let cents: Vec<String> = refunds.iter().map(|c| format!("{c} cents")).collect();
        if cents.is_empty() {
            "none".to_owned()
        } else {
            cents.join(", ")
        }
    }
}
