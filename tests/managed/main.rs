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
        .query_one("SELECT count(*) FROM bills WHERE status = 'unpaid'", &[])
        .await
        .expect("reads bills");
    client
        .execute(
            "UPDATE apartments SET version = version + 1 WHERE id = 1",
            &[],
        )
        .await
        .expect("bumps versions");
    for forbidden in [
        "DELETE FROM payments",
        "DELETE FROM bills",
        "UPDATE apartments SET address = 'elsewhere'",
        "INSERT INTO users (username, password_hash) VALUES ('x', '$argon2id$x')",
        "CREATE TABLE intruder (id int)",
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
