-- Households on their own: users sign up with an email address, verify it, reset their password,
-- stay signed in with rotating refresh tokens, and can delete their personal data; the engine tells
-- them what happens through an outbox of notifications (mail and an in-app inbox).

-- Users. A deleted user keeps its row (payments and the audit trail name it) with every personal
-- field erased; a user of a Cognito pool has no password here.
ALTER TABLE users
    ALTER COLUMN username DROP NOT NULL,
    ALTER COLUMN password_hash DROP NOT NULL,
    -- In lower case; unique among users. Mail goes only to a verified address, except the mail
    -- that verifies it.
    ADD COLUMN email text CHECK (email = lower(email) AND email LIKE '%_@_%'),
    ADD COLUMN email_verified boolean NOT NULL DEFAULT false,
    ADD COLUMN display_name text,
    -- {"<event>": {"email": bool, "inbox": bool}}; a missing entry means on.
    ADD COLUMN notification_preferences jsonb NOT NULL DEFAULT '{}',
    -- Tokens carry the epoch they were issued in; a reset, a password change or a deletion bumps
    -- it, which ends every session issued before (checked on every request).
    ADD COLUMN session_epoch integer NOT NULL DEFAULT 0,
    -- The user's `sub` in a Cognito user pool, for a deployment whose identity is Cognito.
    ADD COLUMN cognito_sub text UNIQUE,
    ADD COLUMN deleted_at timestamptz,
    ADD CONSTRAINT users_named_unless_deleted CHECK (deleted_at IS NOT NULL OR username IS NOT NULL),
    ADD CONSTRAINT users_deleted_are_erased CHECK (deleted_at IS NULL OR (username IS NULL AND password_hash IS NULL
        AND email IS NULL AND display_name IS NULL AND cognito_sub IS NULL AND notification_preferences = '{}'));
CREATE UNIQUE INDEX users_by_email ON users (email) WHERE email IS NOT NULL;

-- Single-use tokens mailed to a user: to verify an address, or to reset the password. Only the
-- SHA-256 of the token is kept.
CREATE TABLE email_tokens (
    hash       bytea PRIMARY KEY,
    user_id    bigint NOT NULL REFERENCES users,
    purpose    text NOT NULL CHECK (purpose IN ('verify_email', 'password_reset')),
    -- The address the token was mailed to: verifying marks this address, if it is still the user's.
    email      text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);
CREATE INDEX email_tokens_by_user ON email_tokens (user_id);

-- Refresh tokens (hashed), in families: each use rotates the token (the old one is marked rotated,
-- a new one of the same family issued); presenting a rotated token again revokes its family.
CREATE TABLE refresh_tokens (
    hash        bytea PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES users,
    family      uuid NOT NULL,
    -- The user's session_epoch when it was issued: a later epoch ends it.
    epoch       integer NOT NULL,
    issued_at   timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    rotated_at  timestamptz,
    -- The request that rotated it: the same request delivered again gets the same new token.
    rotated_by  uuid,
    revoked_at  timestamptz
);
CREATE INDEX refresh_tokens_by_family ON refresh_tokens (family);
CREATE INDEX refresh_tokens_by_user ON refresh_tokens (user_id);

-- Requests anyone may make (signups, password resets), by source address, for their throttles.
-- Rows older than the longest window are deleted by the next attempt.
CREATE TABLE anonymous_attempts (
    action text NOT NULL CHECK (action IN ('signup', 'password_reset')),
    source text NOT NULL,
    at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX anonymous_attempts_by_source ON anonymous_attempts (action, source, at);
CREATE INDEX anonymous_attempts_by_time ON anonymous_attempts (action, at);

-- The outbox and the inbox: one row per event and user, written in the transaction of the change
-- that caused it, under a unique key, so a retried request or job never notifies twice. A row is in
-- the user's inbox, or mailed, or both, as the user's preferences say.
CREATE TABLE notifications (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id         bigint NOT NULL REFERENCES users,
    event           text NOT NULL CHECK (event IN ('bill.created', 'bill.due_soon', 'bill.overdue', 'late_fee.created',
                                                   'payment.succeeded', 'account.security',
                                                   'account.verify_email', 'account.password_reset')),
    key             text NOT NULL UNIQUE,
    -- What the templates fill in: ids, amounts as strings, dates.
    data            jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    in_inbox        boolean NOT NULL,
    -- The mail: to whom, and how its delivery stands. 'sending' is a sender's lease, until
    -- next_attempt_at; a sender that died mid-send leaves it to be taken again then.
    mail_to         text,
    mail_status     text CHECK (mail_status IN ('pending', 'sending', 'sent', 'dead')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    last_error      text,
    sent_at         timestamptz,
    message_id      text,
    CHECK ((mail_status IS NULL) OR (mail_status = 'sent') OR (mail_to IS NOT NULL AND next_attempt_at IS NOT NULL))
);
CREATE INDEX notifications_due ON notifications (next_attempt_at) WHERE mail_status IN ('pending', 'sending');
CREATE INDEX notifications_inbox ON notifications (user_id, id) WHERE in_inbox;
CREATE INDEX notifications_dead ON notifications (id) WHERE mail_status = 'dead';
CREATE INDEX notifications_by_user ON notifications (user_id);

-- Records one event for one user, as the user's preferences say: in the inbox, mailed, both or
-- neither (then no row). Security mail cannot be turned off; verification and reset mail go to
-- `p_to`, the address they are about, and never to the inbox. Other mail goes to the user's
-- verified address only. The same key again changes nothing. Returns the row's id when it is to be
-- mailed, for the prompt send after the commit.
CREATE FUNCTION notify(p_user bigint, p_event text, p_key text, p_data jsonb, p_to text DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    u          users;
    prefs      jsonb;
    want_mail  boolean;
    want_inbox boolean;
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
        address := coalesce(p_to, CASE WHEN u.email_verified THEN u.email END);
    END IF;
    IF address IS NULL THEN
        want_mail := false;
    END IF;
    IF NOT (want_mail OR want_inbox) THEN
        RETURN NULL;
    END IF;
    INSERT INTO notifications (user_id, event, key, data, in_inbox, mail_to, mail_status, next_attempt_at)
    VALUES (p_user, p_event, p_key, p_data, want_inbox,
            CASE WHEN want_mail THEN address END,
            CASE WHEN want_mail THEN 'pending' END,
            CASE WHEN want_mail THEN now() END)
    ON CONFLICT (key) DO NOTHING
    RETURNING id INTO created;
    RETURN CASE WHEN want_mail THEN created END;
END
$$;

-- The audit trail covers changes to a user's account, without personal data: which fields
-- changed, never their values.
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
                    'session_epoch', NEW.session_epoch));
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER users_audit_update AFTER UPDATE OF username, password_hash, email, email_verified, display_name,
    notification_preferences, session_epoch, deleted_at ON users FOR EACH ROW
    WHEN ((OLD.username, OLD.password_hash, OLD.email, OLD.email_verified, OLD.display_name,
           OLD.notification_preferences, OLD.session_epoch, OLD.deleted_at)
          IS DISTINCT FROM (NEW.username, NEW.password_hash, NEW.email, NEW.email_verified, NEW.display_name,
                            NEW.notification_preferences, NEW.session_epoch, NEW.deleted_at))
    EXECUTE FUNCTION audit_user();

-- The audit trail is append-only, but a deletion must take the username out of the event that
-- recorded the user's creation. Only erase_user may do that: it sets qbill.erasing for its own
-- statement, and the guard lets an UPDATE through only while it is set.
CREATE OR REPLACE FUNCTION audit_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND current_setting('qbill.erasing', true) = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'the audit trail is append-only';
END
$$;

-- Erases a user's personal data from the audit trail (the username in its creation event). The
-- rest of the trail names users by id only. Runs as the owner; the application role calls it.
CREATE FUNCTION erase_user_from_audit(p_user bigint) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
    PERFORM set_config('qbill.erasing', 'on', true);
    UPDATE audit_events SET new_state = new_state - 'username'
    WHERE entity = 'user' AND entity_id = p_user::text AND new_state ? 'username';
    PERFORM set_config('qbill.erasing', '', true);
END
$$;
REVOKE EXECUTE ON FUNCTION erase_user_from_audit(bigint) FROM PUBLIC;

-- What the workers may now do.
GRANT UPDATE (username, password_hash, email, email_verified, display_name, notification_preferences,
              session_epoch, deleted_at, cognito_sub) ON users TO qbill_application;
GRANT DELETE ON apartment_owners TO qbill_application;
GRANT SELECT, INSERT, UPDATE (used_at), DELETE ON email_tokens TO qbill_application;
GRANT SELECT, INSERT, UPDATE (rotated_at, rotated_by, revoked_at), DELETE ON refresh_tokens TO qbill_application;
GRANT SELECT, INSERT, DELETE ON anonymous_attempts TO qbill_application;
GRANT SELECT, INSERT, UPDATE (mail_to, mail_status, attempts, next_attempt_at, last_error, sent_at, message_id),
      DELETE ON notifications TO qbill_application;
GRANT EXECUTE ON FUNCTION notify(bigint, text, text, jsonb, text), erase_user_from_audit(bigint) TO qbill_application;
