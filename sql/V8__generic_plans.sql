-- Every statement the engine prepares looks rows up by key, where a generic plan is as good as a
-- custom one. Left to choose, PostgreSQL keeps planning `id = ANY($1)` afresh on each execution
-- (a generic plan's guess of the array's length makes it look dearer), which profiling showed as
-- a tenth of the server's time on the payment path. Sessions started after this use generic
-- plans for prepared statements; psql's one-off queries are not prepared and are unaffected.
DO $$
BEGIN
    EXECUTE format('ALTER DATABASE %I SET plan_cache_mode = force_generic_plan', current_database());
END
$$;
