-- Pruning finds old rows by time.
CREATE INDEX finished_orders_by_time ON finished_orders (finished_at);
