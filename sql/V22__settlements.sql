-- What each provider is owed: a settlement per provider, per UTC day and currency, closed once by
-- the settle job (`qbill jobs settle`), never changed after. Its lines are each payment's part for
-- the provider (the sum of its bills the payment paid), with the processor's fee on it, and each
-- refund's part (`refund_parts`); every line names its payment. A refund that succeeds after its
-- payment's day was closed lands on the day it succeeded.
--
-- gross = the payments' parts; net = gross - refunds - fees. `collected_elsewhere` is the part of
-- gross the provider received itself (payments made elsewhere: cash at its desk, a transfer to
-- its bank), so what qbill pays out is net - collected_elsewhere.

-- Payments from before card payments name no bills (`bills` came with V19): they name them now,
-- as settlements read a payment's bills from it.
UPDATE payments p SET bills = ARRAY(SELECT id FROM bills WHERE payment_id = p.id ORDER BY id)
WHERE bills = '{}';

-- The processor's fee on a card payment, once read from its balance transaction (the settle job
-- reads it before closing the payment's day); zero for payments without a processor.
ALTER TABLE payments ADD COLUMN processor_fee numeric(14, 2) CHECK (processor_fee >= 0);
-- The settle job's way in: a day's settled payments.
CREATE INDEX payments_settled_by_day ON payments (paid_at) WHERE status = 'succeeded';

-- Each UTC day closed, with or without activity: a closed day is never closed again.
CREATE TABLE settlement_days (
    day       date PRIMARY KEY,
    closed_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE settlements (
    provider_id         bigint NOT NULL REFERENCES providers,
    day                 date NOT NULL REFERENCES settlement_days,
    currency            text NOT NULL,
    payments            integer NOT NULL CHECK (payments >= 0),
    refunds_count       integer NOT NULL CHECK (refunds_count >= 0),
    gross               numeric(14, 2) NOT NULL,
    refunds             numeric(14, 2) NOT NULL,
    fees                numeric(14, 2) NOT NULL,
    net                 numeric(14, 2) NOT NULL,
    collected_elsewhere numeric(14, 2) NOT NULL,
    PRIMARY KEY (provider_id, day, currency),
    CONSTRAINT settlements_add_up CHECK (net + fees + refunds = gross)
);

CREATE TABLE settlement_lines (
    provider_id bigint NOT NULL,
    day         date NOT NULL,
    currency    text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('payment', 'refund')),
    payment_id  uuid NOT NULL REFERENCES payments,
    refund_id   uuid REFERENCES refunds,
    -- card, external or ledger: how the money came.
    via         text NOT NULL CHECK (via IN ('card', 'external', 'ledger')),
    at          timestamptz NOT NULL,
    -- The payment's part for the provider, or the refund's (positive: given back).
    amount      numeric(14, 2) NOT NULL CHECK (amount > 0),
    fee         numeric(14, 2) NOT NULL DEFAULT 0 CHECK (fee >= 0),
    FOREIGN KEY (provider_id, day, currency) REFERENCES settlements,
    CHECK ((kind = 'refund') = (refund_id IS NOT NULL)),
    UNIQUE (provider_id, kind, payment_id, refund_id)
);
CREATE INDEX settlement_lines_of_day ON settlement_lines (provider_id, day);

-- A provider's documents (its settlements) beside the apartments' (receipts, bills, statements);
-- spreadsheets join PDF and CSV.
ALTER TABLE documents
    ALTER COLUMN apartment_id DROP NOT NULL,
    ADD COLUMN provider_id bigint REFERENCES providers,
    ADD CONSTRAINT documents_one_owner CHECK ((apartment_id IS NULL) <> (provider_id IS NULL));
ALTER TABLE documents DROP CONSTRAINT documents_kind_check;
ALTER TABLE documents ADD CONSTRAINT documents_kind_check
    CHECK (kind IN ('receipt', 'bill', 'statement', 'settlement'));
ALTER TABLE documents DROP CONSTRAINT documents_format_check;
ALTER TABLE documents ADD CONSTRAINT documents_format_check CHECK (format IN ('pdf', 'csv', 'xlsx'));
CREATE UNIQUE INDEX documents_of_provider ON documents (provider_id, kind, format, subject)
    WHERE provider_id IS NOT NULL;

GRANT SELECT, INSERT ON settlement_days, settlements, settlement_lines TO qbill_application;
GRANT UPDATE (processor_fee) ON payments TO qbill_application;

-- A provider's document is audited as an apartment's is, naming its provider.
CREATE OR REPLACE FUNCTION audit_document() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
    INSERT INTO audit_events (actor_user, request_id, entity, entity_id, action, new_state)
    VALUES (coalesce(audit_actor(), NEW.created_by), audit_request(), 'document', NEW.id::text, 'created',
            jsonb_strip_nulls(jsonb_build_object(
                'apartment_id', NEW.apartment_id, 'provider_id', NEW.provider_id, 'kind', NEW.kind,
                'format', NEW.format, 'subject', NEW.subject, 'sha256', encode(NEW.sha256, 'hex'),
                'bytes', NEW.bytes)));
    RETURN NEW;
END
$$;
