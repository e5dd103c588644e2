-- When an order became known as cancelled, so that the memory can be pruned once no
-- `order:created` can arrive any more (the bus keeps events 7 days). Rows from before
-- this column have 0 and go at the first pruning.
ALTER TABLE cancelled_orders ADD COLUMN cancelled_at BIGINT NOT NULL DEFAULT 0;
CREATE INDEX cancelled_orders_by_time ON cancelled_orders (cancelled_at);
