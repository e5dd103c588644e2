-- Replica of the tickets service's tickets, kept from ticket:created / ticket:updated.
CREATE TABLE tickets (
    id          TEXT PRIMARY KEY,
    title       TEXT NOT NULL,
    price_cents BIGINT NOT NULL,
    version     BIGINT NOT NULL
);

CREATE TABLE orders (
    id         TEXT PRIMARY KEY,   -- UUIDv7: ordering by id is oldest first
    user_id    TEXT NOT NULL,
    ticket_id  TEXT NOT NULL REFERENCES tickets (id),
    status     TEXT NOT NULL CHECK (status IN ('created', 'cancelled', 'awaiting:payment', 'complete')),
    expires_at BIGINT NOT NULL,
    version    BIGINT NOT NULL
);
-- A ticket is never sold twice: at most one active order per ticket, whatever the timing.
CREATE UNIQUE INDEX orders_one_active_per_ticket ON orders (ticket_id)
    WHERE status IN ('created', 'awaiting:payment', 'complete');
CREATE INDEX orders_by_user ON orders (user_id, id);
