-- Failed logins per username, known or not, so a lock says nothing about who has an account.
CREATE TABLE login_failures (
    username     text PRIMARY KEY,
    failures     integer NOT NULL,
    first_failed timestamptz NOT NULL,
    locked_until timestamptz
);
GRANT SELECT, INSERT, UPDATE, DELETE ON login_failures TO qbill_application;
