-- A bill settled by a payment takes its actor and request from that payment, so the payment
-- transaction need not set them (one round trip less per payment). The per-transaction settings
-- still win when present, for changes made outside a payment.
CREATE OR REPLACE FUNCTION audit_bill() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
    payer    bigint;
    request  uuid;
BEGIN
    -- Settling a bill: the payment says who and which request. Undoing one (an operator's reset)
    -- is not the payer's doing.
    IF TG_OP = 'UPDATE' AND NEW.payment_id IS NOT NULL THEN
        SELECT p.user_id, p.request_id INTO payer, request FROM payments p WHERE p.id = NEW.payment_id;
    END IF;
    INSERT INTO audit_events (actor_user, request_id, entity, entity_id, action, old_state, new_state)
    VALUES (coalesce(audit_actor(), payer), coalesce(audit_request(), request), 'bill', NEW.id::text,
            CASE WHEN TG_OP = 'INSERT' THEN 'created' ELSE 'status_changed' END,
            CASE WHEN TG_OP = 'UPDATE' THEN jsonb_build_object('status', OLD.status, 'payment_id', OLD.payment_id) END,
            jsonb_build_object('status', NEW.status, 'payment_id', NEW.payment_id, 'amount', NEW.amount::text));
    RETURN NEW;
END
$$;
REVOKE EXECUTE ON FUNCTION audit_bill() FROM PUBLIC;
