-- The newest order that held or released the ticket. A ticket moves only to a newer
-- order, so an `order:created` for an order at or below it is late (its ticket moved on,
-- or the order was cancelled). Kept on the ticket's own row so that a reserve racing a
-- release needs no lock first: PostgreSQL re-checks a row that a concurrent transaction
-- changed against the row's new values, not against other tables (docs/decisions/0019).
-- Tickets released before this column have NULL; `cancelled_orders` still answers
-- for them until it is pruned.
ALTER TABLE tickets ADD COLUMN last_order_id TEXT;
