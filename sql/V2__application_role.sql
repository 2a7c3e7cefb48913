-- What the workers may do, as a role without login. The deployment's login role (IAM or
-- password, named by QBILL_DATABASE_USER) is made a member of it by the migrate command, which
-- also sets up how it logs in. It reads and writes the billing tables but cannot change the
-- schema or delete anything; migrations run as the master user. Roles are cluster-wide, so
-- creating it is idempotent, also when several databases of one server migrate at once.
DO $$
BEGIN
    CREATE ROLE qbill_application NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;

DO $$
BEGIN
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO qbill_application', current_database());
END
$$;

GRANT USAGE ON SCHEMA public TO qbill_application;
GRANT SELECT ON users, apartments, apartment_owners, utility_types, providers TO qbill_application;
GRANT SELECT, INSERT ON payments TO qbill_application;
GRANT SELECT, UPDATE ON bills TO qbill_application;
GRANT UPDATE (version) ON apartments TO qbill_application;
GRANT SELECT, INSERT, UPDATE ON processed_requests TO qbill_application;
