-- Text messages for households: a verified phone number, and notifications by SMS as a channel
-- of the preferences (off unless turned on). Codes and texts go from an outbox of their own, sent
-- through Amazon SNS after the commit, as mail goes from `notifications`.

-- The number, E.164, once verified (a number being verified waits in phone_verifications).
ALTER TABLE users
    ADD COLUMN phone text CHECK (phone ~ '^\+[1-9][0-9]{7,14}$'),
    ADD COLUMN phone_verified_at timestamptz,
    ADD CONSTRAINT users_phone_verified CHECK ((phone IS NULL) = (phone_verified_at IS NULL));

-- The number a user asked for, and its code: the code is derived from `nonce` with the engine's
-- key (never stored), good until `expires_at`, for 5 tries.
CREATE TABLE phone_verifications (
    user_id         bigint PRIMARY KEY REFERENCES users,
    phone           text NOT NULL CHECK (phone ~ '^\+[1-9][0-9]{7,14}$'),
    nonce           text NOT NULL,
    expires_at      timestamptz NOT NULL,
    failed_attempts integer NOT NULL DEFAULT 0 CHECK (failed_attempts >= 0),
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- One text to send: a verification code (`phone.verify`, data {nonce}) or a notification
-- (notification_id, rendered from its event and data). The number is cleared once sent or
-- given up, and when the user is deleted. 'sending' is a sender's lease until next_attempt_at.
CREATE TABLE sms_outbox (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id         bigint NOT NULL REFERENCES users,
    key             text NOT NULL UNIQUE,
    event           text NOT NULL,
    notification_id bigint REFERENCES notifications ON DELETE CASCADE,
    data            jsonb NOT NULL DEFAULT '{}',
    phone           text,
    status          text NOT NULL CHECK (status IN ('pending', 'sending', 'sent', 'dead')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    last_error      text,
    sent_at         timestamptz,
    message_id      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (status IN ('sent', 'dead') OR (phone IS NOT NULL AND next_attempt_at IS NOT NULL)),
    CHECK ((event = 'phone.verify') = (notification_id IS NULL))
);
CREATE INDEX sms_outbox_due ON sms_outbox (next_attempt_at) WHERE status IN ('pending', 'sending');
CREATE INDEX sms_outbox_by_user ON sms_outbox (user_id);

-- Codes are throttled per user and per number (by a keyed digest of it, never the number).
ALTER TABLE anonymous_attempts DROP CONSTRAINT anonymous_attempts_action_check,
    ADD CONSTRAINT anonymous_attempts_action_check
        CHECK (action IN ('signup', 'password_reset', 'email_change', 'phone_code', 'phone_code_number'));

GRANT UPDATE (phone, phone_verified_at) ON users TO qbill_application;
GRANT SELECT, INSERT, UPDATE, DELETE ON phone_verifications TO qbill_application;
GRANT SELECT, INSERT, UPDATE ON sms_outbox TO qbill_application;

-- notify() as before, and a text too when the user turned SMS on for the event and has a
-- verified number (never for the mails of an address: a verification or a reset).
CREATE OR REPLACE FUNCTION notify(p_user bigint, p_event text, p_key text, p_data jsonb, p_to text DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    u          users;
    prefs      jsonb;
    want_mail  boolean;
    want_inbox boolean;
    want_sms   boolean := false;
    address    text;
    created    bigint;
BEGIN
    SELECT * INTO u FROM users WHERE id = p_user;
    IF NOT FOUND OR u.deleted_at IS NOT NULL THEN
        RETURN NULL;
    END IF;
    IF p_event IN ('account.verify_email', 'account.password_reset') THEN
        want_mail := true;
        want_inbox := false;
        address := p_to;
    ELSE
        prefs := coalesce(u.notification_preferences -> p_event, '{}');
        want_mail := p_event = 'account.security' OR coalesce((prefs ->> 'email')::boolean, true);
        want_inbox := coalesce((prefs ->> 'inbox')::boolean, true);
        want_sms := coalesce((prefs ->> 'sms')::boolean, false) AND u.phone IS NOT NULL;
        address := coalesce(p_to, CASE WHEN u.email_verified THEN u.email END);
    END IF;
    IF address IS NULL THEN
        want_mail := false;
    END IF;
    IF NOT (want_mail OR want_inbox OR want_sms) THEN
        RETURN NULL;
    END IF;
    INSERT INTO notifications (user_id, event, key, data, in_inbox, mail_to, mail_status, next_attempt_at)
    VALUES (p_user, p_event, p_key, p_data, want_inbox,
            CASE WHEN want_mail THEN address END,
            CASE WHEN want_mail THEN 'pending' END,
            CASE WHEN want_mail THEN now() END)
    ON CONFLICT (key) DO NOTHING
    RETURNING id INTO created;
    IF created IS NOT NULL AND want_sms THEN
        INSERT INTO sms_outbox (user_id, key, event, notification_id, phone, status, next_attempt_at)
        VALUES (p_user, p_key, p_event, created, u.phone, 'pending', now());
    END IF;
    RETURN CASE WHEN want_mail THEN created END;
END
$$;

-- A number added, verified or removed is audited as the account's other fields are: that it
-- changed, never the number.
CREATE OR REPLACE FUNCTION audit_user() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        -- Never the password hash, nor the email address.
        INSERT INTO audit_events (actor_user, request_id, entity, entity_id, action, new_state)
        VALUES (audit_actor(), audit_request(), 'user', NEW.id::text, 'created',
                jsonb_build_object('username', NEW.username, 'role', NEW.role, 'provider_id', NEW.provider_id,
                                   'cognito', NEW.cognito_sub IS NOT NULL));
    ELSE
        INSERT INTO audit_events (actor_user, request_id, entity, entity_id, action, new_state)
        VALUES (audit_actor(), audit_request(), 'user', NEW.id::text,
                CASE WHEN NEW.deleted_at IS NOT NULL AND OLD.deleted_at IS NULL THEN 'deleted' ELSE 'updated' END,
                jsonb_build_object(
                    'email_changed', OLD.email IS DISTINCT FROM NEW.email,
                    'email_verified', NEW.email_verified,
                    'password_changed', OLD.password_hash IS DISTINCT FROM NEW.password_hash,
                    'display_name_changed', OLD.display_name IS DISTINCT FROM NEW.display_name,
                    'preferences_changed', OLD.notification_preferences IS DISTINCT FROM NEW.notification_preferences,
                    'phone_changed', OLD.phone IS DISTINCT FROM NEW.phone,
                    'phone_verified', NEW.phone IS NOT NULL,
                    'session_epoch', NEW.session_epoch));
    END IF;
    RETURN NEW;
END
$$;
DROP TRIGGER users_audit_update ON users;
CREATE TRIGGER users_audit_update AFTER UPDATE OF username, password_hash, email, email_verified, display_name,
    notification_preferences, session_epoch, deleted_at, phone ON users FOR EACH ROW
    WHEN ((OLD.username, OLD.password_hash, OLD.email, OLD.email_verified, OLD.display_name,
           OLD.notification_preferences, OLD.session_epoch, OLD.deleted_at, OLD.phone)
          IS DISTINCT FROM (NEW.username, NEW.password_hash, NEW.email, NEW.email_verified, NEW.display_name,
                            NEW.notification_preferences, NEW.session_epoch, NEW.deleted_at, NEW.phone))
    EXECUTE FUNCTION audit_user();

-- A deleted account keeps no number (as it keeps no name or address).
ALTER TABLE users ADD CONSTRAINT users_deleted_has_no_phone CHECK (deleted_at IS NULL OR phone IS NULL);
