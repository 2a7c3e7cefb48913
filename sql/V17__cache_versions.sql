-- A cached read carries the version of the row it was read at (an apartment's `version`, a
-- user's `apartments_version`), and is served only while the row still has that version. Versions
-- counted up from 0 were reused with other content after a restore: a database dropped and
-- created again (or restored from a snapshot or a point-in-time backup) under a running Redis
-- gave a new household id 100001 again at version 0, and with it the apartments cached for the
-- previous 100001. Versions are now random on every change and at creation, never a count: a
-- restored row's version is the one it had with that very content, and any other row's is new.
CREATE FUNCTION cache_version() RETURNS bigint
LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
    SELECT ('x' || substr(md5(gen_random_uuid()::text), 1, 16))::bit(64)::bigint
$$;
GRANT EXECUTE ON FUNCTION cache_version() TO qbill_application;

ALTER TABLE apartments ALTER COLUMN version SET DEFAULT cache_version();
ALTER TABLE users ALTER COLUMN apartments_version SET DEFAULT cache_version();
-- Whatever Redis holds for today's counts is never served again.
UPDATE apartments SET version = cache_version();
UPDATE users SET apartments_version = cache_version();
