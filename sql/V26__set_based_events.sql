-- The providers' events of bills and payments, recorded once per statement over its transition
-- tables instead of once per row (as the audit trail has been since V13): a batch of payments,
-- or of the processor's webhooks, records its events in one INSERT, and their deliveries in
-- another. The events are the same, in the same order (within a statement, by bill id, and by
-- payment in the order the statement wrote them): only how often the trigger runs changes, and
-- that no function with a search_path of its own is called per row (each such call costs a
-- function's setup; the bench measured the row triggers at about 40% of settling a webhook).

-- Each event's deliveries to its provider's enabled endpoints that want its type (as
-- record_event makes them for one).
CREATE FUNCTION deliver_events(p_events bigint[]) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = public AS $$
    INSERT INTO webhook_deliveries (endpoint_id, event_id)
    SELECT w.id, e.id
    FROM events e JOIN webhook_endpoints w ON w.provider_id = e.provider_id
    WHERE e.id = ANY (p_events) AND w.enabled AND (w.types = '{}' OR e.type = ANY (w.types))
    ORDER BY e.id, w.id
$$;

-- A bill as its provider sees it, given its service account's number (what event_bill read for
-- itself): a plain SQL expression, inlined where it is used.
CREATE FUNCTION bill_data(b bills, account_number text) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'bill_id', b.id, 'external_id', b.external_id, 'account_number', account_number,
        'utility', b.utility, 'period_start', b.period_start, 'period_end', b.period_end,
        'due_date', b.due_date, 'amount', b.amount::text, 'currency', b.currency, 'status', b.status,
        'late_fee_of', b.late_fee_of)
$$;

CREATE FUNCTION events_of_bills() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public AS $$
DECLARE
    made bigint[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        WITH e AS (
            INSERT INTO events (type, provider_id, data)
            SELECT CASE WHEN n.late_fee_of IS NULL THEN 'bill.created' ELSE 'late_fee.created' END,
                   n.provider_id,
                   bill_data(n, (SELECT s.account_number FROM service_accounts s WHERE s.id = n.account_id))
            FROM new_bills n
            ORDER BY n.id
            RETURNING id)
        SELECT array_agg(id) INTO made FROM e;
    ELSE
        WITH e AS (
            INSERT INTO events (type, provider_id, data)
            SELECT t.type, n.provider_id,
                   bill_data(n, (SELECT s.account_number FROM service_accounts s WHERE s.id = n.account_id))
                   || t.extra
            FROM new_bills n JOIN old_bills o ON o.id = n.id
            CROSS JOIN LATERAL (SELECT
                CASE WHEN n.status = 'void' THEN 'bill.voided'
                     WHEN n.status = 'overdue' AND o.status = 'open' THEN 'bill.overdue'
                     WHEN n.status = 'paid' THEN 'bill.paid' END AS type,
                CASE WHEN n.status = 'void' THEN jsonb_build_object('reason', n.void_reason, 'voided_at', n.voided_at)
                     WHEN n.status = 'paid' THEN jsonb_build_object('payment_id', n.payment_id)
                     ELSE '{}' END AS extra) t
            WHERE o.status IS DISTINCT FROM n.status AND t.type IS NOT NULL
            ORDER BY n.id
            RETURNING id)
        SELECT array_agg(id) INTO made FROM e;
    END IF;
    IF made IS NOT NULL THEN
        PERFORM deliver_events(made);
    END IF;
    RETURN NULL;
END
$$;

-- A payment that succeeded or failed concerns each provider whose bills it is for: one event
-- each, with its part (as events_of_payment made them).
CREATE FUNCTION events_of_payments() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public AS $$
DECLARE
    changed payments[];
    made bigint[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        -- In the order the statement wrote them, as the row trigger saw them.
        SELECT array_agg(n) INTO changed FROM new_payments n WHERE n.status = 'succeeded';
    ELSE
        SELECT array_agg(n ORDER BY n.id) INTO changed
        FROM new_payments n JOIN old_payments o ON o.id = n.id
        WHERE n.status IN ('succeeded', 'failed', 'canceled') AND o.status IS DISTINCT FROM n.status;
    END IF;
    IF changed IS NULL THEN
        RETURN NULL;
    END IF;
    WITH e AS (
        INSERT INTO events (type, provider_id, data)
        SELECT CASE WHEN c.status = 'succeeded' THEN 'payment.succeeded' ELSE 'payment.failed' END,
               part.provider_id,
               jsonb_strip_nulls(jsonb_build_object(
                   'payment_id', c.id, 'bills', to_jsonb(part.bills), 'amount', part.amount::text,
                   'currency', c.currency, 'payment_total', c.total::text, 'status', c.status,
                   'via', CASE c.processor WHEN 'stripe' THEN 'card' ELSE c.processor END,
                   'paid_at', CASE WHEN c.status = 'succeeded' THEN c.paid_at END,
                   'failure_code', c.failure_code))
        FROM unnest(changed) WITH ORDINALITY AS c
        CROSS JOIN LATERAL (
            SELECT b.provider_id, array_agg(b.id ORDER BY b.id) AS bills, sum(b.amount) AS amount
            FROM bills b WHERE b.id = ANY (c.bills) GROUP BY b.provider_id
        ) part
        ORDER BY c.ordinality, part.provider_id
        RETURNING id)
    SELECT array_agg(id) INTO made FROM e;
    IF made IS NOT NULL THEN
        PERFORM deliver_events(made);
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER bills_events_insert ON bills;
DROP TRIGGER bills_events_status ON bills;
DROP TRIGGER payments_events_insert ON payments;
DROP TRIGGER payments_events_status ON payments;
CREATE TRIGGER bills_events_insert AFTER INSERT ON bills REFERENCING NEW TABLE AS new_bills
    FOR EACH STATEMENT EXECUTE FUNCTION events_of_bills();
CREATE TRIGGER bills_events_status AFTER UPDATE ON bills REFERENCING OLD TABLE AS old_bills NEW TABLE AS new_bills
    FOR EACH STATEMENT EXECUTE FUNCTION events_of_bills();
CREATE TRIGGER payments_events_insert AFTER INSERT ON payments REFERENCING NEW TABLE AS new_payments
    FOR EACH STATEMENT EXECUTE FUNCTION events_of_payments();
CREATE TRIGGER payments_events_status AFTER UPDATE ON payments REFERENCING OLD TABLE AS old_payments NEW TABLE AS new_payments
    FOR EACH STATEMENT EXECUTE FUNCTION events_of_payments();
DROP FUNCTION events_of_bill();
DROP FUNCTION events_of_payment();
DROP FUNCTION event_bill(bills);
