-- Issue 32: a listing's event time and refund policy in the replica (NULL: none), and
-- buyers' cancellations of paid orders for a refund.
ALTER TABLE tickets ADD COLUMN event_at BIGINT;
ALTER TABLE tickets ADD COLUMN refund_cutoff_hours BIGINT;
ALTER TABLE tickets ADD COLUMN refund_fee_bp BIGINT;

-- One cancellation per order, whatever the timing: the unique key decides, and a
-- repeated request reads the row that won. Its id is the refund's idempotency key at
-- the payment provider. `refund_cents` + `fee_cents` is the order's total.
CREATE TABLE cancellations (
    id           TEXT PRIMARY KEY,   -- UUIDv7
    order_id     TEXT NOT NULL UNIQUE REFERENCES orders (id),
    user_id      TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('requested', 'refunded', 'failed')),
    refund_cents BIGINT NOT NULL,
    fee_cents    BIGINT NOT NULL,
    requested_at BIGINT NOT NULL,
    refunded_at  BIGINT,
    -- Why the provider refused the refund (status `failed`).
    failure      TEXT
);
-- The audit's and operators' question: which cancellations still wait for their refund.
CREATE INDEX cancellations_requested ON cancellations (requested_at) WHERE status = 'requested';
