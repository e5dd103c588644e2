-- postgres only
-- The foreign keys to the listing's row (decision 0035). Each order inserted took a
-- KEY SHARE lock on its listing's row while other orders' transactions updated that
-- row's `held`: PostgreSQL then records the row's lockers and updater as a multixact,
-- and every read of the listing (every queue poll in a drop, a thousand a second) had to
-- look up its members for each version of the row. The replica's rows are never
-- deleted and every writer has read the listing before it writes, so the keys only
-- ever passed. SQLite keeps them (it has no such locks) and cannot drop them.
ALTER TABLE orders DROP CONSTRAINT IF EXISTS orders_ticket_id_fkey;
ALTER TABLE waitlist DROP CONSTRAINT IF EXISTS waitlist_ticket_id_fkey;
ALTER TABLE queues DROP CONSTRAINT IF EXISTS queues_ticket_id_fkey;
