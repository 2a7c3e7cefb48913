-- Events: what happened to a provider's bills and money, told to the provider (signed webhooks,
-- an event feed) and to AWS-native consumers (an EventBridge bus).
--
-- One row per change, written by the triggers below in the transaction of the change: never an
-- event for a change that rolled back, never two for one change. The application role cannot
-- write events itself (the triggers run as the owner), so no route can make one up.
--
-- The feed and the bus read events in the order their transactions are known to be over: by
-- (tx, id), and only those of transactions older than every transaction still running
-- (`pg_snapshot_xmin`). An identity alone would not do: a transaction that took id 10 and
-- commits after the one that took id 11 would be skipped by a reader that had read 11.

CREATE TABLE events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    type        text NOT NULL CHECK (type IN ('bill.created', 'bill.voided', 'bill.overdue', 'bill.paid',
                                              'late_fee.created', 'payment.succeeded', 'payment.failed',
                                              'refund.succeeded', 'account.linked', 'settlement.closed')),
    provider_id bigint NOT NULL REFERENCES providers,
    occurred_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    tx          xid8 NOT NULL DEFAULT pg_current_xact_id(),
    -- The event's data, as its type's schema (version 1) says; amounts as strings.
    data        jsonb NOT NULL
);
CREATE INDEX events_feed ON events (provider_id, tx, id);
CREATE INDEX events_in_order ON events (tx, id);
CREATE INDEX events_by_time ON events (occurred_at);

-- A provider's webhook endpoints. The signing secret must be read to sign, so it is kept as it is
-- (`whsec_` and base64 of 32 random bytes); a rotation keeps the old one signing beside the new
-- one for 24 hours.
CREATE TABLE webhook_endpoints (
    id                    uuid PRIMARY KEY,
    provider_id           bigint NOT NULL REFERENCES providers,
    url                   text NOT NULL CHECK (char_length(url) BETWEEN 8 AND 2048),
    -- The types it wants; none listed: every type.
    types                 text[] NOT NULL DEFAULT '{}',
    secret                text NOT NULL CHECK (secret LIKE 'whsec_%'),
    previous_secret       text CHECK (previous_secret LIKE 'whsec_%'),
    previous_secret_until timestamptz,
    enabled               boolean NOT NULL DEFAULT true,
    -- Why it was disabled: by its provider, or after 3 days of failed deliveries.
    disabled_reason       text,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    CHECK ((previous_secret IS NULL) = (previous_secret_until IS NULL))
);
CREATE INDEX webhook_endpoints_of_provider ON webhook_endpoints (provider_id);

-- One event to one endpoint, delivered at least once: a sender takes it with a lease (status
-- `sending` until next_attempt_at), so two senders never send it at once; a failure is tried again
-- later, doubling, for 3 days, then the delivery is `failed` and its endpoint disabled. A replay
-- adds a delivery of an event the endpoint had already.
CREATE TABLE webhook_deliveries (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    endpoint_id     uuid NOT NULL REFERENCES webhook_endpoints ON DELETE CASCADE,
    event_id        bigint NOT NULL REFERENCES events ON DELETE CASCADE,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sending', 'delivered', 'failed')),
    replay          boolean NOT NULL DEFAULT false,
    attempts        integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    next_attempt_at timestamptz DEFAULT clock_timestamp(),
    delivered_at    timestamptz,
    CHECK ((status IN ('pending', 'sending')) = (next_attempt_at IS NOT NULL)),
    CHECK ((status = 'delivered') = (delivered_at IS NOT NULL))
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status IN ('pending', 'sending');
CREATE INDEX webhook_deliveries_of_endpoint ON webhook_deliveries (endpoint_id, id);
CREATE INDEX webhook_deliveries_of_event ON webhook_deliveries (event_id);

-- Each attempt: what the endpoint answered (its status code), or why there was no answer.
CREATE TABLE webhook_attempts (
    delivery_id bigint NOT NULL REFERENCES webhook_deliveries ON DELETE CASCADE,
    at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    status_code integer,
    error       text,
    duration_ms integer NOT NULL,
    PRIMARY KEY (delivery_id, at)
);

-- The bus sender's place in the events: the last (tx, id) put on the bus, and a lease so that
-- two senders never put the same events at once.
CREATE TABLE event_bus_cursor (
    only_row     boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    tx           xid8 NOT NULL DEFAULT '0',
    event_id     bigint NOT NULL DEFAULT 0,
    leased_until timestamptz NOT NULL DEFAULT '-infinity'
);
INSERT INTO event_bus_cursor DEFAULT VALUES;

-- Records one event and its deliveries to the provider's enabled endpoints that want its type.
CREATE FUNCTION record_event(p_type text, p_provider bigint, p_data jsonb) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
    created bigint;
BEGIN
    INSERT INTO events (type, provider_id, data) VALUES (p_type, p_provider, p_data) RETURNING id INTO created;
    INSERT INTO webhook_deliveries (endpoint_id, event_id)
    SELECT id, created FROM webhook_endpoints
    WHERE provider_id = p_provider AND enabled AND (types = '{}' OR p_type = ANY (types));
END
$$;

-- A bill as its provider sees it.
CREATE FUNCTION event_bill(b bills) RETURNS jsonb LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
    SELECT jsonb_build_object(
        'bill_id', b.id, 'external_id', b.external_id,
        'account_number', (SELECT s.account_number FROM service_accounts s WHERE s.id = b.account_id),
        'utility', b.utility, 'period_start', b.period_start, 'period_end', b.period_end,
        'due_date', b.due_date, 'amount', b.amount::text, 'currency', b.currency, 'status', b.status,
        'late_fee_of', b.late_fee_of)
$$;

CREATE FUNCTION events_of_bill() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM record_event(CASE WHEN NEW.late_fee_of IS NULL THEN 'bill.created' ELSE 'late_fee.created' END,
                             NEW.provider_id, event_bill(NEW));
    ELSIF NEW.status = 'void' THEN
        PERFORM record_event('bill.voided', NEW.provider_id,
                             event_bill(NEW) || jsonb_build_object('reason', NEW.void_reason, 'voided_at', NEW.voided_at));
    ELSIF NEW.status = 'overdue' AND OLD.status = 'open' THEN
        PERFORM record_event('bill.overdue', NEW.provider_id, event_bill(NEW));
    ELSIF NEW.status = 'paid' THEN
        PERFORM record_event('bill.paid', NEW.provider_id,
                             event_bill(NEW) || jsonb_build_object('payment_id', NEW.payment_id));
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER bills_events_insert AFTER INSERT ON bills FOR EACH ROW EXECUTE FUNCTION events_of_bill();
CREATE TRIGGER bills_events_status AFTER UPDATE OF status ON bills FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION events_of_bill();

-- A payment concerns each provider whose bills it is for: one event each, with its part.
CREATE FUNCTION events_of_payment() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
    part record;
    kind text;
BEGIN
    IF NEW.status = 'succeeded' THEN
        kind := 'payment.succeeded';
    ELSIF NEW.status IN ('failed', 'canceled') AND TG_OP = 'UPDATE' THEN
        kind := 'payment.failed';
    ELSE
        RETURN NULL;
    END IF;
    FOR part IN
        SELECT b.provider_id, array_agg(b.id ORDER BY b.id) AS bills, sum(b.amount) AS amount
        FROM bills b WHERE b.id = ANY (NEW.bills) GROUP BY b.provider_id ORDER BY b.provider_id
    LOOP
        PERFORM record_event(kind, part.provider_id, jsonb_strip_nulls(jsonb_build_object(
            'payment_id', NEW.id, 'bills', to_jsonb(part.bills), 'amount', part.amount::text,
            'currency', NEW.currency, 'payment_total', NEW.total::text, 'status', NEW.status,
            'via', CASE NEW.processor WHEN 'stripe' THEN 'card' ELSE NEW.processor END,
            'paid_at', CASE WHEN NEW.status = 'succeeded' THEN NEW.paid_at END,
            'failure_code', NEW.failure_code)));
    END LOOP;
    RETURN NULL;
END
$$;
CREATE TRIGGER payments_events_insert AFTER INSERT ON payments FOR EACH ROW
    WHEN (NEW.status = 'succeeded') EXECUTE FUNCTION events_of_payment();
CREATE TRIGGER payments_events_status AFTER UPDATE OF status ON payments FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION events_of_payment();

-- A succeeded refund's part for a provider (fixed when it succeeds) is that provider's event.
CREATE FUNCTION events_of_refund_part() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
    PERFORM record_event('refund.succeeded', NEW.provider_id, jsonb_build_object(
        'refund_id', r.id, 'payment_id', r.payment_id, 'amount', NEW.amount::text, 'currency', r.currency,
        'refund_total', r.amount::text, 'reason', r.reason, 'succeeded_at', r.succeeded_at,
        'payment_refunded_whole', p.refunded = p.total))
    FROM refunds r JOIN payments p ON p.id = r.payment_id WHERE r.id = NEW.refund_id;
    RETURN NULL;
END
$$;
CREATE TRIGGER refund_parts_events AFTER INSERT ON refund_parts FOR EACH ROW EXECUTE FUNCTION events_of_refund_part();

CREATE FUNCTION events_of_account() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
    PERFORM record_event('account.linked', NEW.provider_id, jsonb_build_object(
        'account_number', NEW.account_number, 'linked_at', NEW.linked_at));
    RETURN NULL;
END
$$;
CREATE TRIGGER service_accounts_events AFTER UPDATE OF apartment_id ON service_accounts FOR EACH ROW
    WHEN (NEW.apartment_id IS NOT NULL AND OLD.apartment_id IS DISTINCT FROM NEW.apartment_id)
    EXECUTE FUNCTION events_of_account();

CREATE FUNCTION events_of_settlement() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
    PERFORM record_event('settlement.closed', NEW.provider_id, jsonb_build_object(
        'day', NEW.day, 'currency', NEW.currency, 'payments', NEW.payments, 'refunds_count', NEW.refunds_count,
        'gross', NEW.gross::text, 'refunds', NEW.refunds::text, 'fees', NEW.fees::text, 'net', NEW.net::text,
        'collected_elsewhere', NEW.collected_elsewhere::text));
    RETURN NULL;
END
$$;
CREATE TRIGGER settlements_events AFTER INSERT ON settlements FOR EACH ROW EXECUTE FUNCTION events_of_settlement();

-- Events are kept 30 days (the feed's promise); the sweep deletes older ones with their deliveries.
-- The application reads events; it writes endpoints, deliveries (replays, outcomes) and attempts.
GRANT SELECT, DELETE ON events TO qbill_application;
GRANT SELECT, INSERT, UPDATE, DELETE ON webhook_endpoints TO qbill_application;
GRANT SELECT, INSERT, UPDATE ON webhook_deliveries TO qbill_application;
GRANT SELECT, INSERT ON webhook_attempts TO qbill_application;
GRANT SELECT, UPDATE ON event_bus_cursor TO qbill_application;

-- A provider whose endpoint was disabled is mailed.
ALTER TABLE notifications DROP CONSTRAINT notifications_event_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_event_check CHECK (event IN (
    'bill.created', 'bill.due_soon', 'bill.overdue', 'late_fee.created', 'payment.succeeded',
    'refund.succeeded', 'account.security', 'account.verify_email', 'account.password_reset',
    'webhook.disabled'));

-- The audit trail follows the endpoints: created, changed, rotated, disabled, deleted (never
-- their secrets).
ALTER TABLE audit_events DROP CONSTRAINT audit_events_entity_check;
ALTER TABLE audit_events ADD CONSTRAINT audit_events_entity_check
    CHECK (entity IN ('payment', 'bill', 'user', 'provider', 'account', 'document', 'refund', 'webhook'));
CREATE FUNCTION audit_webhook() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
    target webhook_endpoints;
BEGIN
    target := CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
    INSERT INTO audit_events (actor_user, request_id, entity, entity_id, action, old_state, new_state)
    VALUES (audit_actor(), audit_request(), 'webhook', target.id::text,
            CASE WHEN TG_OP = 'INSERT' THEN 'created' WHEN TG_OP = 'DELETE' THEN 'deleted'
                 WHEN OLD.secret IS DISTINCT FROM NEW.secret THEN 'rotated'
                 WHEN OLD.enabled AND NOT NEW.enabled THEN 'disabled' ELSE 'updated' END,
            CASE WHEN TG_OP <> 'INSERT' THEN jsonb_build_object('url', OLD.url, 'types', OLD.types, 'enabled', OLD.enabled) END,
            CASE WHEN TG_OP <> 'DELETE' THEN jsonb_build_object('provider_id', NEW.provider_id, 'url', NEW.url,
                                                                'types', NEW.types, 'enabled', NEW.enabled,
                                                                'disabled_reason', NEW.disabled_reason) END);
    RETURN NULL;
END
$$;
CREATE TRIGGER webhook_endpoints_audit AFTER INSERT OR UPDATE OR DELETE ON webhook_endpoints
    FOR EACH ROW EXECUTE FUNCTION audit_webhook();

-- Each replay an endpoint was asked for: its throttle counts them, and the audit trail has them.
CREATE TABLE webhook_replays (
    endpoint_id uuid NOT NULL REFERENCES webhook_endpoints ON DELETE CASCADE,
    at          timestamptz NOT NULL DEFAULT now(),
    since       timestamptz NOT NULL,
    events      integer NOT NULL,
    requested_by bigint NOT NULL REFERENCES users
);
CREATE INDEX webhook_replays_of_endpoint ON webhook_replays (endpoint_id, at);
GRANT SELECT, INSERT ON webhook_replays TO qbill_application;
CREATE FUNCTION audit_webhook_replay() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
    INSERT INTO audit_events (actor_user, request_id, entity, entity_id, action, new_state)
    VALUES (coalesce(audit_actor(), NEW.requested_by), audit_request(), 'webhook', NEW.endpoint_id::text, 'replayed',
            jsonb_build_object('since', NEW.since, 'events', NEW.events));
    RETURN NULL;
END
$$;
CREATE TRIGGER webhook_replays_audit AFTER INSERT ON webhook_replays FOR EACH ROW EXECUTE FUNCTION audit_webhook_replay();
