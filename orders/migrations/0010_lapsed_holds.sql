-- Lazy expiry (`orders.rs::expire_lapsed`) looks for a listing's holds whose
-- reservation has run out whenever a claim finds too few units free, with the listing's
-- row locked. By the listing alone that read every order holding it: in a drop's last
-- seconds, each refused claim scanned the listing's 4,000 orders (PostgreSQL chose a
-- sequential scan), 700 times a minute, while the claims behind it waited. By the
-- listing and the deadline it reads only the lapsed ones, usually none.
DROP INDEX orders_holding_ticket;
CREATE INDEX orders_holding_ticket ON orders (ticket_id, reserved_until)
    WHERE status IN ('created', 'awaiting:payment', 'complete');
