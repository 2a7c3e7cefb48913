-- The login the workers use on AWS (IAM database authentication, or a password in Secrets
-- Manager). It reads and writes the billing tables but cannot change the schema or delete
-- anything; migrations run as the master user. Roles are cluster-wide, so creating it is
-- idempotent, also when several databases of one server migrate at once.
DO $$
BEGIN
    CREATE ROLE qbill_app LOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;

-- On RDS, membership of rds_iam makes the role log in with IAM tokens instead of a password.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rds_iam') THEN
        GRANT rds_iam TO qbill_app;
    END IF;
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO qbill_app', current_database());
END
$$;

GRANT USAGE ON SCHEMA public TO qbill_app;
GRANT SELECT ON users, apartments, apartment_owners, utility_types, providers TO qbill_app;
GRANT SELECT, INSERT ON payments TO qbill_app;
GRANT SELECT, UPDATE ON bills TO qbill_app;
GRANT UPDATE (version) ON apartments TO qbill_app;
GRANT SELECT, INSERT, UPDATE ON processed_requests TO qbill_app;
