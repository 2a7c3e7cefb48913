-- Money moves through a processor. A card payment is recorded `pending` with the bills it
-- reserves, in the transaction that claims its request; the processor is called after the commit,
-- and its answer (the confirm's, a webhook's, the expiry and reconcile jobs') settles the payment
-- (its bills `paid`) or releases its bills. A payment of the ledger mode (no processor, for the
-- benchmark) is `succeeded` when it is written, as every payment before this one was.

ALTER TABLE payments
    ADD COLUMN status text NOT NULL DEFAULT 'succeeded'
        CHECK (status IN ('pending', 'requires_action', 'processing', 'succeeded', 'failed', 'canceled')),
    ADD COLUMN processor text NOT NULL DEFAULT 'ledger' CHECK (processor IN ('ledger', 'stripe')),
    -- The processor's PaymentIntent, once it was created.
    ADD COLUMN intent_id text UNIQUE,
    -- The bills the payment is for, in the order the household listed them (a released payment's
    -- bills no longer name it).
    ADD COLUMN bills bigint[] NOT NULL DEFAULT '{}',
    -- Why the processor refused it: its decline code and a sentence for people.
    ADD COLUMN failure_code text,
    ADD COLUMN failure_message text,
    ADD COLUMN created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    ADD CONSTRAINT payments_ledger_settled CHECK (processor = 'stripe' OR status = 'succeeded');
UPDATE payments SET created_at = paid_at;
-- The expiry job's and the reconciliation's way in: the payments still waiting on the processor.
CREATE INDEX payments_waiting ON payments (created_at) WHERE status IN ('pending', 'requires_action', 'processing');

-- A bill reserved by a payment under way cannot be in a second one; it is still open (or overdue)
-- until the processor says the money was captured.
ALTER TABLE bills
    ADD COLUMN reserved_by uuid REFERENCES payments,
    ADD CONSTRAINT bills_reserved_while_due CHECK (reserved_by IS NULL OR status IN ('open', 'overdue'));
CREATE INDEX bills_by_reservation ON bills (reserved_by) WHERE reserved_by IS NOT NULL;

-- Each processor event is applied once: its id is claimed in the transaction that applies it.
CREATE TABLE processor_events (
    id          text PRIMARY KEY,
    type        text NOT NULL,
    payment_id  uuid,
    received_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- The audit trail follows a payment's status and a bill's reservation.
CREATE OR REPLACE FUNCTION audit_payments() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
    INSERT INTO audit_events (actor_user, request_id, entity, entity_id, action, new_state)
    SELECT coalesce(audit_actor(), n.user_id), coalesce(audit_request(), n.request_id), 'payment', n.id::text,
           'created',
           jsonb_build_object('apartment_id', n.apartment_id, 'total', n.total::text,
                              'currency', n.currency, 'paid_at', n.paid_at, 'status', n.status,
                              'bills', to_jsonb(n.bills))
    FROM new_payments n;
    RETURN NULL;
END
$$;

CREATE FUNCTION audit_payment_states() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
    INSERT INTO audit_events (actor_user, request_id, entity, entity_id, action, old_state, new_state)
    SELECT coalesce(audit_actor(), n.user_id), coalesce(audit_request(), n.request_id), 'payment', n.id::text,
           'status_changed',
           jsonb_build_object('status', o.status, 'intent_id', o.intent_id),
           jsonb_build_object('status', n.status, 'intent_id', n.intent_id, 'failure_code', n.failure_code,
                              'via', nullif(current_setting('qbill.via', true), ''))
    FROM old_payments o
    JOIN new_payments n ON n.id = o.id
    WHERE o.status IS DISTINCT FROM n.status OR o.intent_id IS DISTINCT FROM n.intent_id
    ORDER BY n.id;
    RETURN NULL;
END
$$;
CREATE TRIGGER payments_audit_state AFTER UPDATE ON payments REFERENCING OLD TABLE AS old_payments NEW TABLE AS new_payments
    FOR EACH STATEMENT EXECUTE FUNCTION audit_payment_states();

CREATE OR REPLACE FUNCTION audit_bill_states() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
    INSERT INTO audit_events (actor_user, request_id, entity, entity_id, action, old_state, new_state)
    SELECT coalesce(audit_actor(), p.user_id), coalesce(audit_request(), p.request_id), 'bill', n.id::text,
           CASE WHEN o.status IS DISTINCT FROM n.status THEN 'status_changed'
                WHEN o.reserved_by IS DISTINCT FROM n.reserved_by THEN
                    CASE WHEN n.reserved_by IS NULL THEN 'released' ELSE 'reserved' END
                ELSE 'moved' END,
           jsonb_build_object('status', o.status, 'payment_id', o.payment_id, 'apartment_id', o.apartment_id,
                              'reserved_by', o.reserved_by),
           jsonb_build_object('status', n.status, 'payment_id', n.payment_id, 'amount', n.amount::text,
                              'apartment_id', n.apartment_id, 'late_fee_of', n.late_fee_of,
                              'void_reason', n.void_reason, 'reserved_by', n.reserved_by)
    FROM old_bills o
    JOIN new_bills n ON n.id = o.id
    -- One payment looked up by its key per bill (OFFSET 0 keeps it so), never a join over all
    -- payments (see V13).
    LEFT JOIN LATERAL (SELECT user_id, request_id FROM payments
                       WHERE id = coalesce(n.payment_id, n.reserved_by, o.reserved_by) OFFSET 0) p ON true
    WHERE o.status IS DISTINCT FROM n.status OR o.payment_id IS DISTINCT FROM n.payment_id
          OR o.apartment_id IS DISTINCT FROM n.apartment_id OR o.reserved_by IS DISTINCT FROM n.reserved_by
    ORDER BY n.id;
    RETURN NULL;
END
$$;

REVOKE EXECUTE ON FUNCTION audit_payment_states() FROM PUBLIC;
GRANT UPDATE (status, intent_id, failure_code, failure_message, paid_at) ON payments TO qbill_application;
GRANT UPDATE (reserved_by) ON bills TO qbill_application;
GRANT SELECT, INSERT ON processor_events TO qbill_application;
