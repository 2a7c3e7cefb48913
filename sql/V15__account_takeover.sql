-- Closing the ways a stolen access token became a permanent takeover.
--
-- An address counts as taken only once it is verified: two accounts may hold one address
-- unverified (a signup or a change to an address someone else has verified gets it unverified,
-- and the same reply as a free one), and verifying it is refused once another account has. A
-- password reset goes to verified addresses only, so it is never ambiguous.
DROP INDEX users_by_email;
CREATE UNIQUE INDEX users_by_email ON users (email) WHERE email_verified;
CREATE INDEX users_by_unverified_email ON users (email) WHERE email IS NOT NULL AND NOT email_verified;

-- A third mailed token: the link in the security mail that tells an old, verified address of a
-- change, which puts the old address back (for 7 days). Ending a link early (a password change or
-- reset, an address change) sets its expiry to now.
ALTER TABLE email_tokens DROP CONSTRAINT email_tokens_purpose_check,
    ADD CONSTRAINT email_tokens_purpose_check CHECK (purpose IN ('verify_email', 'password_reset', 'email_undo'));
GRANT UPDATE (expires_at) ON email_tokens TO qbill_application;

-- Address changes are counted per user (an hour's window, as signups and reset requests are per
-- source): each mails a link to an address the caller chose.
ALTER TABLE anonymous_attempts DROP CONSTRAINT anonymous_attempts_action_check,
    ADD CONSTRAINT anonymous_attempts_action_check CHECK (action IN ('signup', 'password_reset', 'email_change'));
