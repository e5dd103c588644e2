-- Why a cancelled order was cancelled (`expired`, `cancelled by buyer`); NULL for
-- orders cancelled before this column existed and for orders not cancelled.
ALTER TABLE orders ADD COLUMN cancel_reason TEXT;
