-- Saved cards: a household's cards are kept by the processor, on a customer of its own, made the
-- first time the household saves a card. The books keep only the customer's id. When the account
-- is deleted, the id stays until the processor has forgotten the customer (its cards detached,
-- the customer deleted): the row is what carries that call across a crash, and the reconcile job
-- finishes what the deletion's own attempt could not.
ALTER TABLE users ADD COLUMN stripe_customer_id text UNIQUE;
CREATE INDEX users_customers_to_forget ON users (id) WHERE deleted_at IS NOT NULL AND stripe_customer_id IS NOT NULL;
GRANT UPDATE (stripe_customer_id) ON users TO qbill_application;
