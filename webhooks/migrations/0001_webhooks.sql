-- A seller's endpoints. `events` is the JSON array of the subjects it takes; `secret` the
-- `whsec_…` key its deliveries are signed with. An endpoint that answered 410 Gone is
-- disabled: nothing more is queued or sent to it.
CREATE TABLE endpoints (
    id          TEXT PRIMARY KEY,   -- UUIDv7
    user_id     TEXT NOT NULL,
    url         TEXT NOT NULL,
    events      TEXT NOT NULL,
    secret      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    disabled_at BIGINT
);
CREATE INDEX endpoints_by_user ON endpoints (user_id, id);

-- Replica of listings, for their owner (the seller whose endpoints hear of them), kept
-- from ticket:created / ticket:updated, newest wins.
CREATE TABLE listings (
    id      TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    version BIGINT NOT NULL
);

-- Replica of orders, for their listing (an order's and its payments' events go to the
-- listing's seller), kept from order:created. An order never changes listing.
CREATE TABLE orders (
    id        TEXT PRIMARY KEY,
    ticket_id TEXT NOT NULL
);
