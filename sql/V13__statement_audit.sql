-- Payments are settled in batches, a statement per kind of row for the whole batch. The audit of
-- payments and of bills' state changes now runs once per statement, over its transition tables:
-- one INSERT into the trail per statement instead of a trigger call, and its own INSERT, per row.
-- What the trail records is unchanged: the same rows, actors, requests and states, a statement's
-- bills in id order.

CREATE FUNCTION audit_payments() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
    INSERT INTO audit_events (actor_user, request_id, entity, entity_id, action, new_state)
    SELECT coalesce(audit_actor(), n.user_id), coalesce(audit_request(), n.request_id), 'payment', n.id::text,
           'created',
           jsonb_build_object('apartment_id', n.apartment_id, 'total', n.total::text,
                              'currency', n.currency, 'paid_at', n.paid_at)
    FROM new_payments n;
    RETURN NULL;
END
$$;

-- A bill settled by a payment takes its actor and request from that payment (see V7); other
-- changes take them from the transaction's settings.
CREATE FUNCTION audit_bill_states() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
    INSERT INTO audit_events (actor_user, request_id, entity, entity_id, action, old_state, new_state)
    SELECT coalesce(audit_actor(), p.user_id), coalesce(audit_request(), p.request_id), 'bill', n.id::text,
           CASE WHEN o.status IS DISTINCT FROM n.status THEN 'status_changed' ELSE 'moved' END,
           jsonb_build_object('status', o.status, 'payment_id', o.payment_id, 'apartment_id', o.apartment_id),
           jsonb_build_object('status', n.status, 'payment_id', n.payment_id, 'amount', n.amount::text,
                              'apartment_id', n.apartment_id, 'late_fee_of', n.late_fee_of,
                              'void_reason', n.void_reason)
    FROM old_bills o
    JOIN new_bills n ON n.id = o.id
    -- One payment looked up by its key per bill (OFFSET 0 keeps it so), never a join over all
    -- payments: the function's plan is kept for the session, and one chosen while the table was
    -- small would go on reading all of it as it grows.
    LEFT JOIN LATERAL (SELECT user_id, request_id FROM payments WHERE id = n.payment_id OFFSET 0) p ON true
    WHERE o.status IS DISTINCT FROM n.status OR o.payment_id IS DISTINCT FROM n.payment_id
          OR o.apartment_id IS DISTINCT FROM n.apartment_id
    ORDER BY n.id;
    RETURN NULL;
END
$$;

DROP TRIGGER payments_audit ON payments;
DROP FUNCTION audit_payment();
CREATE TRIGGER payments_audit AFTER INSERT ON payments REFERENCING NEW TABLE AS new_payments
    FOR EACH STATEMENT EXECUTE FUNCTION audit_payments();

-- A trigger with transition tables cannot name columns: this one sees every UPDATE of bills and
-- keeps the rows whose state, payment or apartment changed, as the row trigger's WHEN did.
DROP TRIGGER bills_audit_state ON bills;
CREATE TRIGGER bills_audit_state AFTER UPDATE ON bills REFERENCING OLD TABLE AS old_bills NEW TABLE AS new_bills
    FOR EACH STATEMENT EXECUTE FUNCTION audit_bill_states();

REVOKE EXECUTE ON FUNCTION audit_payments(), audit_bill_states() FROM PUBLIC;
