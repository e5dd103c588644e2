-- Charges given back after they were recorded: a payment that reached an order the
-- orders service had already cancelled (its payment:created came too late).
CREATE TABLE refunds (
    payment_id  TEXT PRIMARY KEY REFERENCES payments (id),
    refunded_at BIGINT NOT NULL
);
-- A buyer's payments are listed through their orders.
CREATE INDEX orders_by_user ON orders (user_id, id);
