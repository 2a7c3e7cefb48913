-- Failed logins counted per username and source address together, per source and per username,
-- each with its own limit (workers/core/src/handlers/auth/throttle.rs holds the numbers and passes
-- them in), and
-- the password checks under way held as leases. An attempt may check a password only while, in
-- every scope, failures plus checks under way stay below the limit; otherwise it waits for a
-- check to end, or is refused while a lock is in force. So concurrent wrong guesses cannot slip
-- past a limit, and a right password is never refused because other attempts are running.
--
-- The per-username count replaces V4's login_failures: there, five failures from anywhere locked
-- the owner out everywhere; here the owner is locked out only at a much higher, distributed count.
-- That table stays until a later migration, so that workers of the version before this one, still
-- running while a deployment rolls out, keep logging people in.

CREATE TABLE login_throttle (
    scope        text NOT NULL CHECK (scope IN ('username', 'source', 'pair')),
    key          text NOT NULL,
    failures     integer NOT NULL CHECK (failures > 0),
    window_start timestamptz NOT NULL,
    locked_until timestamptz,
    -- When the row stops mattering (its window over, its lock run out): rows past it are deleted.
    expires_at   timestamptz NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX login_throttle_by_expiry ON login_throttle (expires_at);

-- A password check under way. A worker that dies during one leaves its lease to expire.
CREATE TABLE login_checks (
    id         uuid PRIMARY KEY,
    username   text NOT NULL,
    source     text NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX login_checks_by_username ON login_checks (username, source);
CREATE INDEX login_checks_by_source ON login_checks (source);

-- The three counters an attempt touches, in the one order every transaction takes their locks
-- (username, source, pair), so two attempts never wait on each other in a circle. Transaction-
-- level advisory locks serialise the attempts on a key without writing anything.
CREATE FUNCTION login_lock(p_username text, p_source text) RETURNS text[]
LANGUAGE plpgsql AS $$
DECLARE
    keys text[] := ARRAY[p_username, p_source, p_username || ' ' || p_source];
BEGIN
    FOR i IN 1..3 LOOP
        PERFORM pg_advisory_xact_lock(7251390 + i, hashtext(keys[i]));
    END LOOP;
    RETURN keys;
END
$$;

-- The counter of one scope's key as it stands: its row while a count or a lock is in force, else
-- a count of nothing starting now (a window or a lock that ran out starts over).
CREATE FUNCTION login_counter(p_scope text, p_key text, p_window interval) RETURNS login_throttle
LANGUAGE plpgsql AS $$
DECLARE
    counter login_throttle;
BEGIN
    SELECT * INTO counter FROM login_throttle t WHERE t.scope = p_scope AND t.key = p_key;
    IF FOUND AND (counter.locked_until > now()
                  OR (counter.locked_until IS NULL AND counter.window_start > now() - p_window)) THEN
        RETURN counter;
    END IF;
    RETURN ROW(p_scope, p_key, 0, now(), NULL, now() + p_window)::login_throttle;
END
$$;

-- May this attempt check its password now? 'go' (a lease `p_check` is taken: settle it with
-- login_settle), 'wait' (checks under way might reach a limit: ask again shortly), or 'locked'
-- (a limit was reached: `until` says when the lock ends). `p_limits` are the username, source and
-- pair limits, in that order.
CREATE FUNCTION login_reserve(p_username text, p_source text, p_check uuid, p_limits integer[],
                              p_window interval, p_lease interval)
RETURNS TABLE (verdict text, scope text, until timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    scopes   text[] := ARRAY['username', 'source', 'pair'];
    keys     text[] := login_lock(p_username, p_source);
    counter  login_throttle;
    failures integer[] := '{0,0,0}';
    running  bigint;
BEGIN
    -- Leases of workers that died mid-check, a few at a time; rows another transaction holds are
    -- left to it, so that two of these never wait on each other.
    DELETE FROM login_checks WHERE expires_at <= now() AND id IN (
        SELECT c.id FROM login_checks c WHERE c.expires_at <= now() LIMIT 10 FOR UPDATE SKIP LOCKED);
    -- Locks first: a locked scope refuses at once, whatever the others are doing.
    FOR i IN 1..3 LOOP
        counter := login_counter(scopes[i], keys[i], p_window);
        IF counter.locked_until > now() THEN
            RETURN QUERY SELECT 'locked', scopes[i], counter.locked_until;
            RETURN;
        END IF;
        failures[i] := counter.failures;
        -- At the limit without a lock (the limits were lowered since): as good as locked until
        -- the window ends, for no check under way would end the wait.
        IF failures[i] >= p_limits[i] THEN
            RETURN QUERY SELECT 'locked', scopes[i], counter.window_start + p_window;
            RETURN;
        END IF;
    END LOOP;
    FOR i IN 1..3 LOOP
        IF i = 1 THEN
            SELECT count(*) INTO running FROM login_checks c
            WHERE c.username = p_username AND c.expires_at > now();
        ELSIF i = 2 THEN
            SELECT count(*) INTO running FROM login_checks c
            WHERE c.source = p_source AND c.expires_at > now();
        ELSE
            SELECT count(*) INTO running FROM login_checks c
            WHERE c.username = p_username AND c.source = p_source AND c.expires_at > now();
        END IF;
        IF failures[i] + running >= p_limits[i] THEN
            RETURN QUERY SELECT 'wait', scopes[i], NULL::timestamptz;
            RETURN;
        END IF;
    END LOOP;
    INSERT INTO login_checks (id, username, source, expires_at)
    VALUES (p_check, p_username, p_source, now() + p_lease);
    RETURN QUERY SELECT 'go', NULL::text, NULL::timestamptz;
END
$$;

-- Ends the check `p_check`: a right password clears the pair's count (only the pair's: a login to
-- one's own account must not wipe what a source or a username has been charged with); a wrong one
-- counts in every scope and locks a scope that reaches its limit. Returns the scopes locked now.
CREATE FUNCTION login_settle(p_username text, p_source text, p_check uuid, p_ok boolean,
                             p_limits integer[], p_window interval, p_lockout interval)
RETURNS text[]
LANGUAGE plpgsql AS $$
DECLARE
    scopes  text[] := ARRAY['username', 'source', 'pair'];
    keys    text[] := login_lock(p_username, p_source);
    counter login_throttle;
    locked  text[] := '{}';
BEGIN
    DELETE FROM login_checks WHERE id = p_check;
    IF p_ok THEN
        DELETE FROM login_throttle t WHERE t.scope = 'pair' AND t.key = keys[3];
        RETURN locked;
    END IF;
    FOR i IN 1..3 LOOP
        counter := login_counter(scopes[i], keys[i], p_window);
        counter.failures := counter.failures + 1;
        IF counter.locked_until IS NULL AND counter.failures >= p_limits[i] THEN
            counter.locked_until := now() + p_lockout;
            locked := locked || scopes[i];
        END IF;
        INSERT INTO login_throttle AS t (scope, key, failures, window_start, locked_until, expires_at)
        VALUES (scopes[i], keys[i], counter.failures, counter.window_start, counter.locked_until,
                greatest(counter.window_start + p_window, counter.locked_until))
        ON CONFLICT (scope, key) DO UPDATE SET
            failures = EXCLUDED.failures, window_start = EXCLUDED.window_start,
            locked_until = EXCLUDED.locked_until, expires_at = EXCLUDED.expires_at;
    END LOOP;
    -- Counters nobody has failed against for a while, a few at a time, oldest first. Rows another
    -- transaction holds are left to it: two of these never wait on each other, and a counter just
    -- brought back to life is never deleted under its writer (the condition is checked again on
    -- the row as locked).
    DELETE FROM login_throttle WHERE expires_at < now() AND (scope, key) IN (
        SELECT t.scope, t.key FROM login_throttle t WHERE t.expires_at < now()
        ORDER BY t.expires_at LIMIT 10 FOR UPDATE SKIP LOCKED);
    RETURN locked;
END
$$;

GRANT SELECT, INSERT, UPDATE, DELETE ON login_throttle, login_checks TO qbill_application;
GRANT EXECUTE ON FUNCTION login_lock(text, text), login_counter(text, text, interval),
    login_reserve(text, text, uuid, integer[], interval, interval),
    login_settle(text, text, uuid, boolean, integer[], interval, interval) TO qbill_application;
