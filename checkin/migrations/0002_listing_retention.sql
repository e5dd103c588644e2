-- When each listing's event takes place (from ticket events; NULL: none given), and
-- whether its scans and changes were pruned once the event was long over.
ALTER TABLE listings ADD COLUMN event_at BIGINT;
ALTER TABLE listings ADD COLUMN pruned BIGINT NOT NULL DEFAULT 0;
CREATE INDEX listings_to_prune ON listings (event_at) WHERE pruned = 0 AND event_at IS NOT NULL;
