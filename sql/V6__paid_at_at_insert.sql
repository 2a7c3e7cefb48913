-- A payment's time is when its row is written (close to its commit), not when its transaction
-- began: a transaction that waited on a lock must not date its payment back across midnight.
ALTER TABLE payments ALTER COLUMN paid_at SET DEFAULT clock_timestamp();
