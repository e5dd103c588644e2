-- Replica of the orders service's orders, kept from order:created / order:cancelled in
-- version order.
CREATE TABLE orders (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL,
    status      TEXT NOT NULL,
    price_cents BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    version     BIGINT NOT NULL
);

-- An order is paid at most once, whatever the timing: the unique index decides.
CREATE TABLE payments (
    id         TEXT PRIMARY KEY,   -- UUIDv7
    order_id   TEXT NOT NULL UNIQUE REFERENCES orders (id),
    stripe_id  TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- The payment of an order in progress (between claim and accept/decline): serialises
-- payments per order so that two simultaneous requests never both charge. A claim older
-- than the longest possible charge is stale (its process died) and may be taken over.
CREATE TABLE payment_attempts (
    order_id   TEXT PRIMARY KEY,
    claim      TEXT NOT NULL,
    started_at BIGINT NOT NULL
);
