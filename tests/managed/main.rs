//! The RDS login path against the local Postgres: TLS required and verified against a CA bundle
//! loaded from a path, and a fresh IAM auth token for every new connection. The local server
//! (trust auth) ignores the token; what is checked is that one is made per connection, that the
//! session is encrypted, and that a server outside the bundle is refused.

use std::sync::atomic::Ordering;

use qbill_core::config::{DatabaseConfig, RdsConfig, RdsLogin};
use qbill_core::managed::IAM_TOKENS_ISSUED;
use qbill_core::store;
use qbill_tests::{TestDb, db_pool};

/// The certificate the local server presents (issued to `localhost`), used as the CA bundle.
async fn server_certificate() -> String {
    let admin = db_pool(&qbill_tests::env("DATABASE_URL").into());
    let client = admin.get().await.unwrap();
    let ssl: String = client.query_one("SHOW ssl", &[]).await.unwrap().get(0);
    assert_eq!(
        ssl, "on",
        "the local Postgres must have TLS on for this test"
    );
    client
        .query_one("SHOW ssl_cert_file", &[])
        .await
        .unwrap()
        .get(0)
}

fn rds(db: &TestDb, host: &str, ca_bundle: String) -> DatabaseConfig {
    DatabaseConfig::Rds(RdsConfig {
        host: host.into(),
        port: 5432,
        name: db.name.clone(),
        user: "postgres".into(),
        ca_bundle: ca_bundle.into(),
        login: RdsLogin::IamToken,
        password_secret_arn: None,
        master_secret_arn: None,
    })
}

#[tokio::test]
async fn iam_logins_open_verified_tls_connections_with_a_fresh_token_each() {
    let db = TestDb::fresh().await;
    let pool = store::connect(&rds(&db, "localhost", server_certificate().await), 3)
        .await
        .unwrap();
    let before = IAM_TOKENS_ISSUED.load(Ordering::Relaxed);
    let connections = [
        pool.get().await.unwrap(),
        pool.get().await.unwrap(),
        pool.get().await.unwrap(),
    ];
    assert_eq!(
        IAM_TOKENS_ISSUED.load(Ordering::Relaxed) - before,
        3,
        "one token per new connection"
    );
    for connection in &connections {
        let row = connection
            .query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .await
            .unwrap();
        assert!(row.get::<_, bool>(0), "the session is encrypted");
    }
    drop(connections);
    // A connection back from the pool is reused: no new token.
    let again = pool.get().await.unwrap();
    again.query_one("SELECT 1", &[]).await.unwrap();
    assert_eq!(IAM_TOKENS_ISSUED.load(Ordering::Relaxed) - before, 3);
}

#[tokio::test]
async fn a_server_whose_certificate_is_not_in_the_bundle_is_refused() {
    let db = TestDb::fresh().await;
    // The system's public CAs do not vouch for the local server's self-made certificate.
    let pool = store::connect(
        &rds(
            &db,
            "localhost",
            "/etc/ssl/certs/ca-certificates.crt".into(),
        ),
        1,
    )
    .await
    .unwrap();
    let Err(error) = pool.get().await else {
        panic!("the connection must be refused")
    };
    assert!(
        format!("{error:?}").to_lowercase().contains("certificate"),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_certificate_for_another_host_name_is_refused() {
    let db = TestDb::fresh().await;
    // The certificate names `localhost`, not 127.0.0.1.
    let pool = store::connect(&rds(&db, "127.0.0.1", server_certificate().await), 1)
        .await
        .unwrap();
    let Err(error) = pool.get().await else {
        panic!("the connection must be refused")
    };
    assert!(
        format!("{error:?}").contains("NotValidForName"),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_missing_ca_bundle_fails_at_start_not_at_the_first_request() {
    let db = TestDb::fresh().await;
    let Err(error) =
        store::connect(&rds(&db, "localhost", "/nonexistent/bundle.pem".into()), 1).await
    else {
        panic!("refused")
    };
    assert!(
        format!("{error:#}").contains("/nonexistent/bundle.pem"),
        "{error:#}"
    );
}

#[tokio::test]
async fn migrating_prepares_a_password_login_with_the_applications_rights_and_no_more() {
    let db = TestDb::fresh().await;
    let login = format!(
        "qbill_t_login_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let DatabaseConfig::Rds(mut app) = rds(&db, "localhost", server_certificate().await) else {
        unreachable!()
    };
    app.user = login.clone();
    app.login = RdsLogin::Password("a-password-with-'quotes'".to_owned().into());
    // The migration login (here the superuser of the test database) prepares the role.
    qbill_core::managed::prepare_login(&db.pool, &app)
        .await
        .unwrap();
    qbill_core::managed::prepare_login(&db.pool, &app)
        .await
        .expect("idempotent");
    let admin = db.pool.get().await.unwrap();
    let row = admin
        .query_one(
            "SELECT rolcanlogin, rolpassword IS NOT NULL FROM pg_authid WHERE rolname = $1",
            &[&login],
        )
        .await
        .unwrap();
    assert!(
        row.get::<_, bool>(0) && row.get::<_, bool>(1),
        "the role logs in with a password"
    );

    // Logged in as that role: it can do the billing work and nothing else.
    let pool = store::connect(&DatabaseConfig::Rds(app), 1).await.unwrap();
    let client = pool.get().await.unwrap();
    let user: String = client
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(user, login);
    client
        .query_one("SELECT count(*) FROM bills WHERE status = 'open'", &[])
        .await
        .expect("reads bills");
    client
        .execute(
            "UPDATE apartments SET version = version + 1 WHERE id = 1",
            &[],
        )
        .await
        .expect("bumps versions");
    // Its changes of bills are audited, through triggers it cannot bypass.
    client
        .execute(
            "WITH p AS (INSERT INTO payments (id, apartment_id, user_id, request_id, total, currency)
                        VALUES (gen_random_uuid(), 1, 1, gen_random_uuid(), 1, 'EUR') RETURNING id)
             UPDATE bills SET status = 'paid', payment_id = (SELECT id FROM p) WHERE id = 1081",
            &[],
        )
        .await
        .expect("pays a bill");
    let audited = qbill_tests::count(
        &db.pool,
        "SELECT count(*) FROM audit_events WHERE db_role = $1",
        &[&login],
    )
    .await;
    assert_eq!(
        audited, 2,
        "the payment and the bill's change are on the trail, under the role that made them"
    );
    for forbidden in [
        "DELETE FROM payments",
        "DELETE FROM bills",
        "UPDATE apartments SET address = 'elsewhere'",
        "UPDATE bills SET amount = 0.01",
        "UPDATE processed_requests SET fingerprint = 'x'",
        // Users are created, and change their own password, address and preferences, but no
        // role is ever raised nor a provider taken.
        "UPDATE users SET role = 'operator'",
        "UPDATE users SET provider_id = 1",
        // A notification's event and data are what happened: only its delivery changes.
        "UPDATE notifications SET data = '{}'",
        "UPDATE refresh_tokens SET user_id = 1",
        "UPDATE service_accounts SET activation_code_hash = 'x'",
        "UPDATE bills SET lines = '[]'",
        "DELETE FROM service_accounts",
        "CREATE TABLE intruder (id int)",
        "INSERT INTO audit_events (entity, entity_id, action) VALUES ('bill', '1', 'forged')",
        "UPDATE audit_events SET action = 'rewritten'",
        "DELETE FROM audit_events",
        "DROP TABLE bills",
    ] {
        let error = client.batch_execute(forbidden).await.expect_err(forbidden);
        assert!(
            format!("{error:?}").contains("42501")
                || error.to_string().contains("permission denied")
                || error.to_string().contains("must be owner"),
            "{forbidden}: {error}"
        );
    }
    drop(client);
    drop(pool);
    admin
        .batch_execute(&format!("DROP OWNED BY {login}; DROP ROLE {login}"))
        .await
        .unwrap();
}

/// A secret of its own in the emulated Secrets Manager.
async fn new_secret(value: &str) -> (aws_sdk_secretsmanager::Client, String) {
    let client = aws_sdk_secretsmanager::Client::new(qbill_core::managed::sdk().await);
    let out = client
        .create_secret()
        .name(format!("qbill-test-{}", uuid::Uuid::new_v4().simple()))
        .secret_string(value)
        .send()
        .await
        .expect("Secrets Manager is emulated by the local stack");
    (client, out.arn.expect("an ARN"))
}

#[tokio::test]
async fn jwt_keys_in_secrets_manager_rotate_and_the_previous_key_has_a_grace_period() {
    use qbill_core::config::{JwtConfig, JwtKeys};
    use qbill_core::token::Tokens;
    use qbill_core::types::{QueueName, UserId};

    let old_key = "the-first-signing-key-of-at-least-32-bytes";
    let (client, arn) = new_secret(old_key).await;
    let mut config = JwtConfig::new(old_key.to_owned().into()).unwrap();
    config.keys = JwtKeys::Secret { arn: arn.clone() };
    config.ttl = std::time::Duration::from_secs(4);
    let tokens = Tokens::from_config(config).await.unwrap();
    let queue = QueueName::parse(&uuid::Uuid::new_v4().to_string()).unwrap();
    let old_token = tokens
        .issue(
            &qbill_core::token::Holder::household(UserId(1), "demo"),
            queue,
        )
        .unwrap()
        .0;

    // Rotate: AWSCURRENT becomes the new key, AWSPREVIOUS the old one.
    let new_key = "the-second-signing-key-of-at-least-32-bytes";
    client
        .put_secret_value()
        .secret_id(&arn)
        .secret_string(new_key)
        .send()
        .await
        .unwrap();
    tokens.reload().await.unwrap();
    assert!(
        tokens.verify(Some(&old_token)).is_ok(),
        "tokens of the old key pass for one token lifetime"
    );
    let new_token = tokens
        .issue(
            &qbill_core::token::Holder::household(UserId(1), "demo"),
            queue,
        )
        .unwrap()
        .0;
    let new_only = Tokens::new(JwtConfig::new(new_key.to_owned().into()).unwrap());
    assert!(
        new_only.verify(Some(&new_token)).is_ok(),
        "new tokens are signed with the new key"
    );

    // One token lifetime (4 s) after the rotation the old key is refused, although the token
    // itself would still pass: it expires after 4 s plus 5 s of leeway. (Secrets Manager may
    // truncate the rotation time to the second; the margins allow for it.)
    tokio::time::sleep(std::time::Duration::from_millis(6500)).await;
    assert!(
        tokens.verify(Some(&old_token)).is_err(),
        "the grace period is over"
    );
    assert!(tokens.verify(Some(&new_token)).is_ok());
}

#[tokio::test]
async fn a_secret_mode_login_reads_user_and_password_from_secrets_manager() {
    let db = TestDb::fresh().await;
    let (_, arn) =
        new_secret(r#"{"username": "postgres", "password": "unused-with-trust-auth"}"#).await;
    let DatabaseConfig::Rds(mut config) = rds(&db, "localhost", server_certificate().await) else {
        unreachable!()
    };
    config.user = "someone-else".into();
    config.login = RdsLogin::Secret { arn };
    let pool = store::connect(&DatabaseConfig::Rds(config), 1)
        .await
        .unwrap();
    let user: String = pool
        .get()
        .await
        .unwrap()
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        user, "postgres",
        "the secret's username replaces the configured one"
    );
}

#[tokio::test]
async fn the_redis_auth_token_from_secrets_manager_opens_the_cache() {
    use qbill_core::config::{EngineConfig, JwtConfig};
    use qbill_tests::PrivateRedis;

    let token = "a-redis-token/with+signs";
    let redis = PrivateRedis::start_with(&["--requirepass", token]).await;
    let (_, arn) = new_secret(token).await;
    let db = TestDb::fresh().await;
    let config = EngineConfig {
        database: DatabaseConfig::url(db.url.clone()),
        database_pool_size: 2,
        redis_url: Some(redis.url().into()),
        redis_auth_secret_arn: Some(arn),
        cache_prefix: "qbill-test".into(),
        cache_ttl: std::time::Duration::from_secs(60),
        cache_timeout: std::time::Duration::from_millis(500),
        jwt: JwtConfig::new(qbill_tests::jwt_secret()).unwrap(),
        password_slots: 1,
        mail: Default::default(),
        cognito: None,
        anonymous: Default::default(),
        documents: Default::default(),
        payments: Default::default(),
        events: Default::default(),
    };
    let engine = qbill_core::Engine::from_config(&config).await.unwrap();
    let key = qbill_core::cache::CacheKey::Apartments {
        user: qbill_core::types::UserId(1),
    };
    engine.services.cache.put(key, &vec![42]).await;
    assert_eq!(
        engine.services.cache.get::<Vec<i32>>(key).await,
        Some(vec![42]),
        "the cache authenticated with the token"
    );
}

/// The engine's pool refuses a login that could hide a missing grant: the owner of the tables or
/// a superuser. Every engine of the tests, the local stack and AWS runs on such a pool.
#[tokio::test]
async fn the_engine_refuses_to_connect_as_an_owner_or_a_superuser() {
    let db = TestDb::fresh().await;
    let as_owner = store::application_pool(&db.admin_url, 1).unwrap();
    let refused = match as_owner.get().await {
        Ok(_) => panic!("the owner's login was accepted"),
        Err(e) => format!("{e:#}"),
    };
    assert!(refused.contains("qbill_application"), "{refused}");
    let as_application = store::application_pool(&db.url, 1).unwrap();
    let client = as_application.get().await.expect("the application's login");
    let (superuser, member): (bool, bool) = {
        let row = client
            .query_one(
                "SELECT rolsuper, pg_has_role(current_user, 'qbill_application', 'MEMBER')
                 FROM pg_roles WHERE rolname = current_user",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert!(!superuser && member);
}
