CREATE TABLE tickets (
    id          TEXT PRIMARY KEY,   -- UUIDv7: ordering by id is oldest first
    title       TEXT NOT NULL,
    price_cents BIGINT NOT NULL CHECK (price_cents > 0),
    user_id     TEXT NOT NULL,
    version     BIGINT NOT NULL,
    order_id    TEXT
);
-- The listing pages through available tickets only.
CREATE INDEX tickets_available ON tickets (id) WHERE order_id IS NULL;

-- Orders known to be cancelled: an `order:created` that arrives after its own
-- `order:cancelled` (they travel on different subjects) must not reserve the ticket.
CREATE TABLE cancelled_orders (
    order_id TEXT PRIMARY KEY
);
