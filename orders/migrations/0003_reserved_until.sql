-- Until when an order holds its ticket (`reservedUntil`, ms since the epoch), fixed when
-- it is placed: `expires_at` plus the payment grace configured then. Lazy expiry and
-- `expiration:complete` read it here rather than adding the grace again, so a change of
-- `--payment-grace-ms` never moves the end of an order already placed.
--
-- Written once for both engines, so nullable: SQLite adds a NOT NULL column only with a
-- constant default, and any constant would be a wrong deadline. Every insert writes it.
--
-- Orders placed before this column get `expires_at` + 2000, the default grace
-- (`DEFAULT_PAYMENT_GRACE`), which is what the code held them to unless configured
-- otherwise; a migration cannot see the configuration. Only orders still open at the
-- upgrade are affected by a different setting, by at most the difference.
ALTER TABLE orders ADD COLUMN reserved_until BIGINT;
UPDATE orders SET reserved_until = expires_at + 2000 WHERE reserved_until IS NULL;
