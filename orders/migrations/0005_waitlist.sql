-- Waiting lists (issue 30): an entry per account and listing in line, offered units in
-- join order (UUIDv7 ids: ordering by id is joining order). An offer is an order placed
-- for the waiter (`order_id`), claimed like any other.
CREATE TABLE waitlist (
    id               TEXT PRIMARY KEY,
    ticket_id        TEXT NOT NULL REFERENCES tickets (id),
    user_id          TEXT NOT NULL,
    quantity         BIGINT NOT NULL,
    status           TEXT NOT NULL
        CHECK (status IN ('waiting', 'offered', 'purchased', 'lapsed', 'left')),
    joined_at        BIGINT NOT NULL,
    order_id         TEXT,
    offer_expires_at BIGINT
);
-- The line of a listing, head first.
CREATE INDEX waitlist_line ON waitlist (ticket_id, id) WHERE status = 'waiting';
-- One live entry per account and listing.
CREATE UNIQUE INDEX waitlist_one_live_per_account ON waitlist (ticket_id, user_id)
    WHERE status IN ('waiting', 'offered');
CREATE INDEX waitlist_by_user ON waitlist (user_id, id);

-- The entry an order was offered to: its payment, expiry or cancel ends the offer.
ALTER TABLE orders ADD COLUMN waitlist_entry_id TEXT;
