-- Issue 32: when the listing's event takes place (ms since the epoch) and its refund
-- policy: cancellations of paid orders until `refund_cutoff_hours` before the event,
-- refunding the total less `refund_fee_bp` hundredths of a percent. All NULL on a
-- listing without them; the policy columns only with `event_at`.
ALTER TABLE tickets ADD COLUMN event_at BIGINT;
ALTER TABLE tickets ADD COLUMN refund_cutoff_hours BIGINT;
ALTER TABLE tickets ADD COLUMN refund_fee_bp BIGINT;
