-- Activation codes work once, and are never stored.
--
-- An account keeps its code's SHA-256 and the nonce the code was derived from (an HMAC of the
-- account and the nonce under the signing key: only its holder can derive the code again, so the
-- idempotency record of an ingest keeps the nonce, never the code). A code that cannot be derived
-- (seeded, or issued before this migration) has no nonce. No hash means no code works: a link, an
-- unlink or a move voids the code, and the next ingest that names the account issues a new one
-- and announces it to the provider, once.
ALTER TABLE service_accounts
    ALTER COLUMN activation_code_hash DROP NOT NULL,
    ADD COLUMN activation_code_nonce text,
    ADD CONSTRAINT service_accounts_nonce_of_a_code CHECK (activation_code_nonce IS NULL OR activation_code_hash IS NOT NULL);

-- The code of an account linked before this migration was used: the next ingest issues a new one.
UPDATE service_accounts SET activation_code_hash = NULL WHERE apartment_id IS NOT NULL;

-- Replies kept for repeats held the new accounts' codes in clear: they keep the account numbers.
UPDATE processed_requests
   SET reply = jsonb_set(reply, '{new_accounts}',
                         (SELECT coalesce(jsonb_agg(e - 'activation_code'), '[]'::jsonb)
                          FROM jsonb_array_elements(reply -> 'new_accounts') AS e))
 WHERE kind = 'bills_ingest' AND jsonb_typeof(reply -> 'new_accounts') = 'array';

-- Any change of the apartment an account is linked to voids its code, whoever makes it.
CREATE FUNCTION void_activation_code() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.activation_code_hash := NULL;
    NEW.activation_code_nonce := NULL;
    RETURN NEW;
END
$$;
CREATE TRIGGER service_accounts_void_code BEFORE UPDATE OF apartment_id ON service_accounts FOR EACH ROW
    WHEN (OLD.apartment_id IS DISTINCT FROM NEW.apartment_id) EXECUTE FUNCTION void_activation_code();

-- Issuing a code: the application may fill in a voided code, never replace a live one (nor
-- write the hash otherwise). Returns the accounts that got their code.
CREATE FUNCTION issue_activation_codes(p_accounts bigint[], p_hashes bytea[], p_nonces text[])
RETURNS SETOF bigint LANGUAGE sql SECURITY DEFINER SET search_path = public AS $$
    UPDATE service_accounts s SET activation_code_hash = t.h, activation_code_nonce = t.n
      FROM unnest(p_accounts, p_hashes, p_nonces) AS t(id, h, n)
     WHERE s.id = t.id AND s.activation_code_hash IS NULL AND t.h IS NOT NULL
    RETURNING s.id
$$;
REVOKE ALL ON FUNCTION issue_activation_codes(bigint[], bytea[], text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION issue_activation_codes(bigint[], bytea[], text[]) TO qbill_application;

-- The trail tells a link from an unlink and a move, and records codes issued and voided (never
-- a hash). An operator's command says so in `via` (the setting qbill.via).
CREATE OR REPLACE FUNCTION audit_account() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
    via text := nullif(current_setting('qbill.via', true), '');
BEGIN
    INSERT INTO audit_events (actor_user, request_id, entity, entity_id, action, old_state, new_state)
    VALUES (audit_actor(), audit_request(), 'account', NEW.id::text,
            CASE WHEN TG_OP = 'INSERT' THEN 'created'
                 WHEN OLD.apartment_id IS NOT DISTINCT FROM NEW.apartment_id THEN
                      CASE WHEN NEW.activation_code_hash IS NULL THEN 'code_voided' ELSE 'code_issued' END
                 WHEN OLD.apartment_id IS NULL THEN 'linked'
                 WHEN NEW.apartment_id IS NULL THEN 'unlinked'
                 ELSE 'moved' END,
            CASE WHEN TG_OP = 'UPDATE' THEN jsonb_build_object('apartment_id', OLD.apartment_id,
                                                               'has_code', OLD.activation_code_hash IS NOT NULL) END,
            jsonb_build_object('provider_id', NEW.provider_id, 'account_number', NEW.account_number,
                               'apartment_id', NEW.apartment_id, 'has_code', NEW.activation_code_hash IS NOT NULL)
            || CASE WHEN via IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('via', via) END);
    RETURN NEW;
END
$$;
DROP TRIGGER service_accounts_audit_link ON service_accounts;
CREATE TRIGGER service_accounts_audit_change AFTER UPDATE OF apartment_id, activation_code_hash ON service_accounts
    FOR EACH ROW WHEN (OLD.apartment_id IS DISTINCT FROM NEW.apartment_id
                       OR OLD.activation_code_hash IS DISTINCT FROM NEW.activation_code_hash)
    EXECUTE FUNCTION audit_account();
