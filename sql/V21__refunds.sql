-- Refunds: an operator gives back all or part of a card payment (`refund`). The refund is
-- recorded `pending` in the transaction that claims the request, with the payment row locked, so
-- that two refunds of one payment at once queue up and never give back more than it took; the
-- processor is asked after the commit (the refund's id is its idempotency key, and its metadata),
-- and its answer, a webhook or the reconciliation settles it. A refund that succeeded adds to
-- the payment's `refunded`; once that is the payment's whole total, its bills are due again.

CREATE TABLE refunds (
    id                  uuid PRIMARY KEY,
    payment_id          uuid NOT NULL REFERENCES payments,
    request_id          uuid NOT NULL,
    requested_by        bigint NOT NULL REFERENCES users,
    amount              numeric(14, 2) NOT NULL CHECK (amount > 0),
    currency            text NOT NULL,
    reason              text NOT NULL CHECK (char_length(reason) BETWEEN 1 AND 200),
    status              text NOT NULL DEFAULT 'pending'
                            CHECK (status IN ('pending', 'succeeded', 'failed', 'canceled')),
    -- The processor's refund (`re_…`), once it answered.
    processor_refund_id text UNIQUE,
    failure_reason      text,
    created_at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    succeeded_at        timestamptz,
    CONSTRAINT refunds_settled_when CHECK ((status = 'succeeded') = (succeeded_at IS NOT NULL))
);
CREATE INDEX refunds_of_payment ON refunds (payment_id);
-- The reconciliation's and the settlements' way in: refunds by the day they succeeded, and the
-- ones still waiting on the processor.
CREATE INDEX refunds_by_day ON refunds (succeeded_at) WHERE status = 'succeeded';
CREATE INDEX refunds_waiting ON refunds (created_at) WHERE status = 'pending';

-- What of a payment was given back (the sum of its succeeded refunds), never more than it took.
ALTER TABLE payments
    ADD COLUMN refunded numeric(14, 2) NOT NULL DEFAULT 0,
    ADD CONSTRAINT payments_refunded_within CHECK (refunded >= 0 AND refunded <= total);

-- A refunded payment's household hears of it.
ALTER TABLE notifications DROP CONSTRAINT notifications_event_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_event_check CHECK (event IN (
    'bill.created', 'bill.due_soon', 'bill.overdue', 'late_fee.created', 'payment.succeeded',
    'refund.succeeded', 'account.security', 'account.verify_email', 'account.password_reset'));

ALTER TABLE audit_events DROP CONSTRAINT audit_events_entity_check;
ALTER TABLE audit_events ADD CONSTRAINT audit_events_entity_check
    CHECK (entity IN ('payment', 'bill', 'user', 'provider', 'account', 'document', 'refund'));

-- The audit trail: a refund asked for, and each change of its status (with who said so).
CREATE FUNCTION audit_refunds() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO audit_events (actor_user, request_id, entity, entity_id, action, new_state)
        SELECT coalesce(audit_actor(), n.requested_by), coalesce(audit_request(), n.request_id), 'refund', n.id::text,
               'created',
               jsonb_build_object('payment_id', n.payment_id, 'amount', n.amount::text, 'currency', n.currency,
                                  'reason', n.reason, 'status', n.status)
        FROM new_refunds n ORDER BY n.id;
    ELSE
        INSERT INTO audit_events (actor_user, request_id, entity, entity_id, action, old_state, new_state)
        SELECT coalesce(audit_actor(), n.requested_by), coalesce(audit_request(), n.request_id), 'refund', n.id::text,
               'status_changed',
               jsonb_build_object('status', o.status),
               jsonb_strip_nulls(jsonb_build_object('status', n.status, 'processor_refund_id', n.processor_refund_id,
                                  'failure_reason', n.failure_reason,
                                  'via', nullif(current_setting('qbill.via', true), '')))
        FROM old_refunds o JOIN new_refunds n ON n.id = o.id
        WHERE o.status IS DISTINCT FROM n.status
        ORDER BY n.id;
    END IF;
    RETURN NULL;
END
$$;
REVOKE EXECUTE ON FUNCTION audit_refunds() FROM PUBLIC;
CREATE TRIGGER refunds_audit_insert AFTER INSERT ON refunds REFERENCING NEW TABLE AS new_refunds
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refunds();
CREATE TRIGGER refunds_audit_update AFTER UPDATE ON refunds REFERENCING OLD TABLE AS old_refunds NEW TABLE AS new_refunds
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refunds();

-- A payment's refunded total is in its audit record too.
CREATE OR REPLACE FUNCTION audit_payment_states() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
    INSERT INTO audit_events (actor_user, request_id, entity, entity_id, action, old_state, new_state)
    SELECT coalesce(audit_actor(), n.user_id), coalesce(audit_request(), n.request_id), 'payment', n.id::text,
           CASE WHEN o.refunded IS DISTINCT FROM n.refunded THEN 'refunded' ELSE 'status_changed' END,
           jsonb_build_object('status', o.status, 'intent_id', o.intent_id, 'refunded', o.refunded::text),
           jsonb_build_object('status', n.status, 'intent_id', n.intent_id, 'failure_code', n.failure_code,
                              'refunded', n.refunded::text,
                              'via', nullif(current_setting('qbill.via', true), ''))
    FROM old_payments o
    JOIN new_payments n ON n.id = o.id
    WHERE o.status IS DISTINCT FROM n.status OR o.intent_id IS DISTINCT FROM n.intent_id
          OR o.refunded IS DISTINCT FROM n.refunded
    ORDER BY n.id;
    RETURN NULL;
END
$$;

GRANT SELECT, INSERT ON refunds TO qbill_application;
GRANT UPDATE (status, processor_refund_id, failure_reason, succeeded_at) ON refunds TO qbill_application;
GRANT UPDATE (refunded) ON payments TO qbill_application;

-- A bill a full refund reopens no longer names its payment: the audit trail finds the payment's
-- request through the payment it named before.
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
                       WHERE id = coalesce(n.payment_id, n.reserved_by, o.reserved_by, o.payment_id) OFFSET 0) p ON true
    WHERE o.status IS DISTINCT FROM n.status OR o.payment_id IS DISTINCT FROM n.payment_id
          OR o.apartment_id IS DISTINCT FROM n.apartment_id OR o.reserved_by IS DISTINCT FROM n.reserved_by
    ORDER BY n.id;
    RETURN NULL;
END
$$;

-- Each succeeded refund's part for each provider whose bills its payment paid, fixed when it
-- succeeds: the statements and the providers' settlements read them. A refund that leaves the
-- payment refunded whole gives each provider what is left of its share; any other is split in
-- proportion to the shares, cut to the cent, the largest share taking the cents left over.
CREATE TABLE refund_parts (
    refund_id   uuid NOT NULL REFERENCES refunds,
    provider_id bigint NOT NULL REFERENCES providers,
    amount      numeric(14, 2) NOT NULL CHECK (amount > 0),
    PRIMARY KEY (refund_id, provider_id)
);
CREATE INDEX refund_parts_by_provider ON refund_parts (provider_id);
GRANT SELECT, INSERT ON refund_parts TO qbill_application;
