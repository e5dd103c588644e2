-- Issue 30 ("drop day"): a listing's units and the rules of their sale. A ticket with
-- `quantity` NULL was listed the seed's way: one unit, reserved by `order_id` as before.
-- A listing with a quantity ("counted") is never reserved by `order_id`: its orders
-- hold units, counted in `held`.
ALTER TABLE tickets ADD COLUMN quantity BIGINT;
ALTER TABLE tickets ADD COLUMN max_per_order BIGINT;
ALTER TABLE tickets ADD COLUMN max_per_account BIGINT;
-- When the sale opens, in milliseconds since the epoch; NULL: on sale now.
ALTER TABLE tickets ADD COLUMN on_sale_at BIGINT;
-- Units held or sold by orders not cancelled (the sum of the unreleased `ticket_holds`).
ALTER TABLE tickets ADD COLUMN held BIGINT NOT NULL DEFAULT 0;

-- One row per order ever heard of, whichever of its events came first: `order:created`
-- adds its units once (a row already there, released or not, means it was counted or
-- cancelled), `order:cancelled` releases them once, or leaves a released row with no
-- units when it overtook its creation. Keyed by order, so that duplicates and any
-- arrival order leave `held` right.
CREATE TABLE ticket_holds (
    order_id  TEXT PRIMARY KEY,
    ticket_id TEXT NOT NULL,
    quantity  BIGINT NOT NULL,
    released  BIGINT NOT NULL DEFAULT 0,  -- 0 or 1 (one column type on both engines)
    -- When the order became known as cancelled (ms since the epoch; NULL while held):
    -- a released row is only needed while its `order:created` can still arrive, and is
    -- pruned as `cancelled_orders` is. Held rows stay (they are what `held` adds up).
    released_at BIGINT
);
CREATE INDEX ticket_holds_released_at ON ticket_holds (released_at);

-- The tickets reserved before this migration hold their one unit.
INSERT INTO ticket_holds (order_id, ticket_id, quantity, released)
    SELECT order_id, id, 1, 0 FROM tickets WHERE order_id IS NOT NULL;
UPDATE tickets SET held = 1 WHERE order_id IS NOT NULL;
