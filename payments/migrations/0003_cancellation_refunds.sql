-- Issue 32: refunds of cancellations. A cancellation's refund is recorded here like a
-- late payment's (one per payment), with the cents given back and the cancellation it
-- settles, so that the `order:cancelled` that follows finds the payment refunded and
-- gives nothing back a second time. NULL for the late payments' full refunds.
ALTER TABLE refunds ADD COLUMN amount_cents BIGINT;
ALTER TABLE refunds ADD COLUMN cancellation_id TEXT;

-- Cancellations whose refund the provider refused for good (one row each).
CREATE TABLE refund_failures (
    cancellation_id TEXT PRIMARY KEY,
    order_id        TEXT NOT NULL,
    reason          TEXT NOT NULL,
    failed_at       BIGINT NOT NULL
);
