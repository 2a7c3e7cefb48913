-- Documents people keep: a payment's receipt, a bill, an apartment's statement, as PDF or CSV.
-- The file is in S3 under `object_key`; this row says what it is about and what its bytes are.
-- A document is issued once: the same subject in the same format is the same document.

-- When a bill reached the apartment's books: statements list bills by it. Bills sent from now on
-- are issued when they arrive; older rows take the time the audit trail saw them created, or
-- else the day after their period (seeded bills).
ALTER TABLE bills ADD COLUMN issued_at timestamptz;
UPDATE bills b
   SET issued_at = coalesce((SELECT min(e.occurred_at) FROM audit_events e
                             WHERE e.entity = 'bill' AND e.entity_id = b.id::text AND e.action = 'created'),
                            least(now(), (b.period_end + 1)::timestamp AT TIME ZONE 'UTC'));
ALTER TABLE bills
    ALTER COLUMN issued_at SET DEFAULT now(),
    ALTER COLUMN issued_at SET NOT NULL;
CREATE INDEX bills_by_apartment_issued ON bills (apartment_id, issued_at) WHERE apartment_id IS NOT NULL;
CREATE INDEX bills_by_apartment_voided ON bills (apartment_id, voided_at) WHERE voided_at IS NOT NULL;

CREATE TABLE documents (
    id           uuid PRIMARY KEY,
    apartment_id bigint NOT NULL REFERENCES apartments,
    kind         text NOT NULL CHECK (kind IN ('receipt', 'bill', 'statement')),
    format       text NOT NULL CHECK (format IN ('pdf', 'csv')),
    -- What it is about, in one canonical form per kind: the payment's id (receipt), the bill's id
    -- and its status when issued (`100042:paid`: a bill whose status changed is a new document),
    -- or the window (`2026-01-01/2026-12-31`).
    subject      text NOT NULL,
    object_key   text NOT NULL UNIQUE,
    sha256       bytea NOT NULL CHECK (length(sha256) = 32),
    bytes        bigint NOT NULL CHECK (bytes > 0),
    -- Who asked first; the document is the apartment's, not theirs.
    created_by   bigint NOT NULL REFERENCES users,
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (apartment_id, kind, format, subject)
);

-- Issuing a document is audited (never its contents: an address is in there).
ALTER TABLE audit_events DROP CONSTRAINT audit_events_entity_check;
ALTER TABLE audit_events ADD CONSTRAINT audit_events_entity_check
    CHECK (entity IN ('payment', 'bill', 'user', 'provider', 'account', 'document'));

CREATE FUNCTION audit_document() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
    INSERT INTO audit_events (actor_user, request_id, entity, entity_id, action, new_state)
    VALUES (coalesce(audit_actor(), NEW.created_by), audit_request(), 'document', NEW.id::text, 'created',
            jsonb_build_object('apartment_id', NEW.apartment_id, 'kind', NEW.kind, 'format', NEW.format,
                               'subject', NEW.subject, 'sha256', encode(NEW.sha256, 'hex'), 'bytes', NEW.bytes));
    RETURN NEW;
END
$$;
CREATE TRIGGER documents_audit AFTER INSERT ON documents FOR EACH ROW EXECUTE FUNCTION audit_document();
REVOKE EXECUTE ON FUNCTION audit_document() FROM PUBLIC;

-- Issued once, never changed: the application may read and add documents, nothing more.
GRANT SELECT, INSERT ON documents TO qbill_application;
