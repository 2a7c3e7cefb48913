-- Payments made elsewhere: a bank transfer, cash at the provider's desk, a cheque. An operator, or
-- the provider whose bills they are, records one (`payments_external`); it settles its bills when
-- it is written, with the same idempotency, audit, receipt and cache rules as a card payment. The
-- household that owns the apartment is its payer (and gets the receipt); who recorded it is kept
-- beside it, with how the money came, the payer's reference and the day it was received.

ALTER TABLE payments DROP CONSTRAINT payments_processor_check;
ALTER TABLE payments
    ADD CONSTRAINT payments_processor_check CHECK (processor IN ('ledger', 'stripe', 'external')),
    ADD COLUMN external_method text CHECK (external_method IN ('bank_transfer', 'cash', 'cheque', 'other')),
    ADD COLUMN external_reference text CHECK (char_length(external_reference) BETWEEN 1 AND 100),
    ADD COLUMN received_on date,
    ADD COLUMN recorded_by bigint REFERENCES users,
    ADD CONSTRAINT payments_external_recorded CHECK (
        (processor = 'external') = (external_method IS NOT NULL)
        AND (processor = 'external') = (external_reference IS NOT NULL)
        AND (processor = 'external') = (received_on IS NOT NULL)
        AND (processor = 'external') = (recorded_by IS NOT NULL));

-- The audit trail's record of a new payment names how it was paid and, for one made elsewhere,
-- who recorded it and the payer's reference.
CREATE OR REPLACE FUNCTION audit_payments() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
    INSERT INTO audit_events (actor_user, request_id, entity, entity_id, action, new_state)
    SELECT coalesce(audit_actor(), n.user_id), coalesce(audit_request(), n.request_id), 'payment', n.id::text,
           'created',
           jsonb_strip_nulls(jsonb_build_object(
               'apartment_id', n.apartment_id, 'total', n.total::text, 'currency', n.currency,
               'paid_at', n.paid_at, 'status', n.status, 'bills', to_jsonb(n.bills),
               'processor', n.processor, 'external_method', n.external_method,
               'external_reference', n.external_reference, 'received_on', n.received_on,
               'recorded_by', n.recorded_by))
    FROM new_payments n;
    RETURN NULL;
END
$$;
