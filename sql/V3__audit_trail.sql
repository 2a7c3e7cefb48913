-- The audit trail: every payment and every change of a bill's state, with who, when and from which
-- request. Rows are written only by the triggers below, which run as the table's owner; the
-- application role may not insert, update or delete them, and no one may update or delete them
-- without first dropping the guard trigger.

CREATE TABLE audit_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- The qbill user whose request it was (NULL for operator changes such as seeding).
    actor_user  bigint,
    -- The database role that made the change.
    db_role     text NOT NULL DEFAULT session_user,
    request_id  uuid,
    entity      text NOT NULL CHECK (entity IN ('payment', 'bill')),
    entity_id   text NOT NULL,
    action      text NOT NULL,
    old_state   jsonb,
    new_state   jsonb
);
CREATE INDEX audit_events_by_entity ON audit_events (entity, entity_id);
CREATE INDEX audit_events_by_request ON audit_events (request_id) WHERE request_id IS NOT NULL;

-- Who and which request: set per transaction by the engine (set_config(..., true)).
CREATE FUNCTION audit_actor() RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT nullif(current_setting('qbill.actor', true), '')::bigint
$$;
CREATE FUNCTION audit_request() RETURNS uuid LANGUAGE sql STABLE AS $$
    SELECT nullif(current_setting('qbill.request_id', true), '')::uuid
$$;

CREATE FUNCTION audit_payment() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
    INSERT INTO audit_events (actor_user, request_id, entity, entity_id, action, new_state)
    VALUES (coalesce(audit_actor(), NEW.user_id), coalesce(audit_request(), NEW.request_id), 'payment',
            NEW.id::text, 'created',
            jsonb_build_object('apartment_id', NEW.apartment_id, 'total', NEW.total::text,
                               'currency', NEW.currency, 'paid_at', NEW.paid_at));
    RETURN NEW;
END
$$;

CREATE FUNCTION audit_bill() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
    INSERT INTO audit_events (actor_user, request_id, entity, entity_id, action, old_state, new_state)
    VALUES (audit_actor(), audit_request(), 'bill', NEW.id::text,
            CASE WHEN TG_OP = 'INSERT' THEN 'created' ELSE 'status_changed' END,
            CASE WHEN TG_OP = 'UPDATE' THEN jsonb_build_object('status', OLD.status, 'payment_id', OLD.payment_id) END,
            jsonb_build_object('status', NEW.status, 'payment_id', NEW.payment_id, 'amount', NEW.amount::text));
    RETURN NEW;
END
$$;

CREATE FUNCTION audit_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit trail is append-only';
END
$$;

CREATE TRIGGER payments_audit AFTER INSERT ON payments FOR EACH ROW EXECUTE FUNCTION audit_payment();
CREATE TRIGGER bills_audit_insert AFTER INSERT ON bills FOR EACH ROW EXECUTE FUNCTION audit_bill();
CREATE TRIGGER bills_audit_state AFTER UPDATE OF status, payment_id ON bills FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.payment_id IS DISTINCT FROM NEW.payment_id)
    EXECUTE FUNCTION audit_bill();
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_is_append_only();

REVOKE ALL ON audit_events FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION audit_payment(), audit_bill() FROM PUBLIC;
