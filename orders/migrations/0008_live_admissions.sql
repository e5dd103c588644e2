-- The pacer counts a queue's live, unused admissions at every step (never more than
-- free units). Without an index of its own that count read every entry of the listing
-- (100,000 in a drop) five times a second, inside the write transaction. Used entries
-- leave this index; the expired ones are past the range the count reads.
CREATE INDEX queue_entries_unused ON queue_entries (ticket_id, admitted_until)
    WHERE used_at IS NULL AND admitted_until IS NOT NULL;
