-- Orders known to be cancelled or paid: an order:created that arrives after its
-- order:cancelled / payment:created (they travel on separate subjects) schedules nothing.
CREATE TABLE finished_orders (
    order_id    TEXT PRIMARY KEY,
    finished_at BIGINT NOT NULL
);
