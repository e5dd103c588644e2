-- A listing's units (issue 30, docs/decisions/0026-units-by-counter.md).
--
-- The replica keeps the listing's terms; `quantity` NULL is a ticket listed the seed's
-- way, one unit. `held` is ours, not the replica's: units of the orders that hold the
-- listing (created, awaiting:payment, complete). Every order is claimed by one
-- conditional update of it (`held + k <= quantity`), and every cancellation gives its
-- units back in the same transaction.
ALTER TABLE tickets ADD COLUMN quantity BIGINT;
ALTER TABLE tickets ADD COLUMN max_per_order BIGINT;
ALTER TABLE tickets ADD COLUMN max_per_account BIGINT;
ALTER TABLE tickets ADD COLUMN on_sale_at BIGINT;
ALTER TABLE tickets ADD COLUMN held BIGINT NOT NULL DEFAULT 0;

ALTER TABLE orders ADD COLUMN quantity BIGINT NOT NULL DEFAULT 1;

-- Units each account holds, is offered or has bought of a listing with a quantity: the
-- per-account cap is one conditional upsert of this row. A ticket listed as one unit
-- counts none (nobody can hold two); they are counted from its live orders when it gets
-- a quantity.
CREATE TABLE account_units (
    ticket_id TEXT NOT NULL,
    user_id   TEXT NOT NULL,
    units     BIGINT NOT NULL,
    PRIMARY KEY (ticket_id, user_id)
);

UPDATE tickets SET held = (
    SELECT count(*) FROM orders
    WHERE orders.ticket_id = tickets.id
      AND orders.status IN ('created', 'awaiting:payment', 'complete'));

-- The counter decides now; the orders holding a listing are still found by its index
-- (lazy expiry), no longer unique: a listing of many units has many.
DROP INDEX orders_one_active_per_ticket;
CREATE INDEX orders_holding_ticket ON orders (ticket_id)
    WHERE status IN ('created', 'awaiting:payment', 'complete');
