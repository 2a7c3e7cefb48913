-- The per-username ceiling slows guessing down instead of locking the owner out. Guessers spread
-- over many addresses (each under its own per-address limits) reached the username's limit and
-- renewed its lock for as long as they kept going: the owner's right password was refused for
-- good. From the ceiling on, a username's attempts are checked one at a time, each only once a
-- delay has passed since the last failure; the delay doubles with every failure past the ceiling,
-- up to p_slowdown_max. A right password is never refused by it, only made to wait its turn; and
-- the count stays while failures keep coming (a window after the last one), so guessing at the
-- slowed pace never earns a fresh allowance. The per-address scopes still lock as before.
ALTER TABLE login_throttle ADD COLUMN slow_until timestamptz;

-- A username's counter that reached its limit lives on for a window after its last failure.
CREATE OR REPLACE FUNCTION login_counter(p_scope text, p_key text, p_window interval) RETURNS login_throttle
LANGUAGE plpgsql AS $$
DECLARE
    counter login_throttle;
BEGIN
    SELECT * INTO counter FROM login_throttle t WHERE t.scope = p_scope AND t.key = p_key;
    IF FOUND AND (counter.locked_until > now()
                  OR counter.slow_until > now() - p_window
                  OR (counter.locked_until IS NULL AND counter.window_start > now() - p_window)) THEN
        RETURN counter;
    END IF;
    RETURN ROW(p_scope, p_key, 0, now(), NULL, now() + p_window, NULL)::login_throttle;
END
$$;

-- As in V9, with a fourth verdict for the username scope past its limit: 'slow', with `until`
-- when the next check may start. At the limit, a username takes one check at a time.
CREATE OR REPLACE FUNCTION login_reserve(p_username text, p_source text, p_check uuid, p_limits integer[],
                                         p_window interval, p_lease interval)
RETURNS TABLE (verdict text, scope text, until timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    scopes   text[] := ARRAY['username', 'source', 'pair'];
    keys     text[] := login_lock(p_username, p_source);
    counter  login_throttle;
    failures integer[] := '{0,0,0}';
    limits   integer[] := p_limits;
    running  bigint;
BEGIN
    DELETE FROM login_checks WHERE expires_at <= now() AND id IN (
        SELECT c.id FROM login_checks c WHERE c.expires_at <= now() LIMIT 10 FOR UPDATE SKIP LOCKED);
    FOR i IN 1..3 LOOP
        counter := login_counter(scopes[i], keys[i], p_window);
        IF i = 1 AND counter.failures >= p_limits[1] THEN
            -- Past the username's ceiling: slowed, never locked.
            IF counter.slow_until > now() THEN
                RETURN QUERY SELECT 'slow', scopes[i], counter.slow_until;
                RETURN;
            END IF;
            failures[i] := 0;
            limits[1] := 1;
            CONTINUE;
        END IF;
        IF counter.locked_until > now() THEN
            RETURN QUERY SELECT 'locked', scopes[i], counter.locked_until;
            RETURN;
        END IF;
        failures[i] := counter.failures;
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
        IF failures[i] + running >= limits[i] THEN
            RETURN QUERY SELECT 'wait', scopes[i], NULL::timestamptz;
            RETURN;
        END IF;
    END LOOP;
    INSERT INTO login_checks (id, username, source, expires_at)
    VALUES (p_check, p_username, p_source, now() + p_lease);
    RETURN QUERY SELECT 'go', NULL::text, NULL::timestamptz;
END
$$;

-- As in V9, but the username scope never locks: a failure at or past its limit sets when the next
-- check may start, a second after the first such failure, doubling, at most p_slowdown_max.
CREATE OR REPLACE FUNCTION login_settle(p_username text, p_source text, p_check uuid, p_ok boolean,
                                        p_limits integer[], p_window interval, p_lockout interval,
                                        p_slowdown_max interval)
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
        IF i = 1 THEN
            IF counter.failures >= p_limits[1] THEN
                counter.slow_until := now() + least(
                    make_interval(secs => power(2, least(counter.failures - p_limits[1], 30))),
                    p_slowdown_max);
                IF counter.failures = p_limits[1] THEN
                    locked := locked || 'username_slowed'::text;
                END IF;
            END IF;
        ELSIF counter.locked_until IS NULL AND counter.failures >= p_limits[i] THEN
            counter.locked_until := now() + p_lockout;
            locked := locked || scopes[i];
        END IF;
        INSERT INTO login_throttle AS t (scope, key, failures, window_start, locked_until, expires_at, slow_until)
        VALUES (scopes[i], keys[i], counter.failures, counter.window_start, counter.locked_until,
                greatest(counter.window_start + p_window, counter.locked_until, counter.slow_until + p_window),
                counter.slow_until)
        ON CONFLICT (scope, key) DO UPDATE SET
            failures = EXCLUDED.failures, window_start = EXCLUDED.window_start,
            locked_until = EXCLUDED.locked_until, expires_at = EXCLUDED.expires_at,
            slow_until = EXCLUDED.slow_until;
    END LOOP;
    DELETE FROM login_throttle WHERE expires_at < now() AND (scope, key) IN (
        SELECT t.scope, t.key FROM login_throttle t WHERE t.expires_at < now()
        ORDER BY t.expires_at LIMIT 10 FOR UPDATE SKIP LOCKED);
    RETURN locked;
END
$$;

GRANT EXECUTE ON FUNCTION
    login_settle(text, text, uuid, boolean, integer[], interval, interval, interval) TO qbill_application;
