-- Replica of listings, for their owner (the seller who may register gate devices for
-- them), kept from ticket:created / ticket:updated, newest wins.
CREATE TABLE listings (
    id      TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    version BIGINT NOT NULL
);

-- Orders as far as passes go: `complete` (from order:completed, which issued passes) or
-- `cancelled` (order:cancelled). They travel on different subjects: the newest version
-- wins, so a cancellation that arrives first keeps a later completion from issuing.
CREATE TABLE orders (
    id        TEXT PRIMARY KEY,
    ticket_id TEXT NOT NULL,
    status    TEXT NOT NULL,
    version   BIGINT NOT NULL
);

-- One pass per unit of a completed order. A code carries the pass's epoch: reissuing
-- raises it (older codes no longer admit); a refund revokes the pass (`revoked_at`).
CREATE TABLE passes (
    id            TEXT PRIMARY KEY,   -- UUIDv7
    order_id      TEXT NOT NULL,
    ticket_id     TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    unit          BIGINT NOT NULL,
    epoch         BIGINT NOT NULL,
    issued_at     BIGINT NOT NULL,
    revoked_at    BIGINT,
    revoke_reason TEXT,
    UNIQUE (order_id, unit)
);
CREATE INDEX passes_by_ticket ON passes (ticket_id);

-- A seller's gate devices. The token is kept as its SHA-256 only.
CREATE TABLE devices (
    id         TEXT PRIMARY KEY,      -- UUIDv7
    user_id    TEXT NOT NULL,
    name       TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);
CREATE INDEX devices_by_user ON devices (user_id, id);

CREATE TABLE device_listings (
    device_id TEXT NOT NULL,
    ticket_id TEXT NOT NULL,
    PRIMARY KEY (device_id, ticket_id)
);

-- A pass's check-in: one row per pass, so the first of concurrent redeems wins by the
-- key. An offline scan made earlier (its `scanned_at`; ties: device, then nonce)
-- replaces it, so the final row is the earliest scan whatever the upload order.
CREATE TABLE checkins (
    pass_id     TEXT PRIMARY KEY,
    ticket_id   TEXT NOT NULL,
    device_id   TEXT NOT NULL,
    nonce       TEXT NOT NULL,
    epoch       BIGINT NOT NULL,
    scanned_at  BIGINT NOT NULL,
    recorded_at BIGINT NOT NULL
);

-- Every scan a device sent, by its nonce, with the answer it got: the same nonce again
-- gets that answer again. `admits`: the code was one that admits (first or not).
CREATE TABLE scans (
    device_id  TEXT NOT NULL,
    nonce      TEXT NOT NULL,
    pass_id    TEXT,
    ticket_id  TEXT,
    scanned_at BIGINT NOT NULL,
    result     TEXT NOT NULL,
    admits     BIGINT NOT NULL,
    answer     TEXT NOT NULL,
    PRIMARY KEY (device_id, nonce)
);
CREATE INDEX scans_by_ticket ON scans (ticket_id, pass_id) WHERE ticket_id IS NOT NULL;

-- The signing key of pass codes when none is configured: generated once, shared by
-- every process of the service.
CREATE TABLE signing_key (
    id   BIGINT PRIMARY KEY,
    seed TEXT NOT NULL
);
