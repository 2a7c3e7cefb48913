//! Cognito ID tokens checked against a JWKS served by the test, with RSA keys the test makes
//! (`openssl`): LocalStack's free edition has no Cognito.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use qbill_core::cognito::{Cognito, CognitoConfig, CognitoError};
use qbill_core::envelope::{AUTHORIZATION_MARKER, InboundMessage, attribute};
use qbill_core::types::QueueName;
use qbill_core::{Engine, Outcome};
use qbill_tests::TestDb;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{DEMO, error_code};

const CLIENT: &str = "5abc1defghij2klmnopqrs3tuv";

/// An RSA key made by `openssl`: its PKCS#1 DER to sign with and its JWK to verify with.
struct Key {
    der: Vec<u8>,
    jwk: Value,
}

fn key(dir: &Path, kid: &str) -> Key {
    let path = dir.join(format!("{kid}.pem"));
    let made = Command::new("openssl")
        .args(["genrsa", "-traditional", "-out"])
        .arg(&path)
        .arg("2048")
        .output()
        .expect("openssl runs");
    assert!(made.status.success(), "{made:?}");
    let modulus = Command::new("openssl")
        .args(["rsa", "-noout", "-modulus", "-in"])
        .arg(&path)
        .output()
        .expect("openssl runs");
    let hex = String::from_utf8(modulus.stdout).unwrap();
    let hex = hex.trim().strip_prefix("Modulus=").expect("a modulus");
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let der = Command::new("openssl")
        .args(["rsa", "-traditional", "-outform", "DER", "-in"])
        .arg(&path)
        .output()
        .expect("openssl runs");
    assert!(der.status.success(), "{der:?}");
    Key {
        der: der.stdout,
        jwk: json!({ "kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid,
                     "n": URL_SAFE_NO_PAD.encode(bytes), "e": "AQAB" }),
    }
}

fn sign(key: &Key, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_rsa_der(&key.der)).unwrap()
}

/// Serves `keys` (which the test may change: a rotation) as the pool's JWKS, counting the
/// fetches; returns the issuer URL.
async fn pool(keys: Arc<RwLock<Vec<Value>>>, fetches: Arc<AtomicUsize>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!(
        "http://{}/eu-west-1_TestPool",
        listener.local_addr().unwrap()
    );
    let app = axum::Router::new().route(
        "/eu-west-1_TestPool/.well-known/jwks.json",
        axum::routing::get(move || {
            let keys = keys.clone();
            let fetches = fetches.clone();
            async move {
                fetches.fetch_add(1, Ordering::SeqCst);
                let keys = keys.read().unwrap().clone();
                axum::Json(json!({ "keys": keys }))
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    issuer
}

#[tokio::test]
async fn cognito_id_tokens_pass_only_with_the_pools_key_issuer_audience_use_and_time() {
    let dir = std::env::temp_dir().join(format!("qbill-cognito-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let (pool_key, stranger) = (key(&dir, "pool-key"), key(&dir, "stranger"));
    let fetches = Arc::new(AtomicUsize::new(0));
    let served = Arc::new(RwLock::new(vec![pool_key.jwk.clone()]));
    let issuer = pool(served.clone(), fetches.clone()).await;
    let config = CognitoConfig {
        issuer: issuer.clone(),
        client_id: CLIENT.into(),
    };
    let cognito = Cognito::new(config.clone(), reqwest::Client::new());
    let now = Utc::now().timestamp();
    let claims = |changes: Value| {
        let mut c = json!({ "sub": "0b5a7c1e-8f3d-4a2b-9c6e-1d2f3a4b5c6d", "iss": issuer,
                            "aud": CLIENT, "token_use": "id", "email": "a@example.com",
                            "cognito:username": "alice", "iat": now, "exp": now + 3600 });
        for (k, v) in changes.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };

    let good = cognito
        .verify(&sign(&pool_key, "pool-key", &claims(json!({}))), None)
        .await
        .expect("a pool's ID token passes");
    assert_eq!(good.sub, "0b5a7c1e-8f3d-4a2b-9c6e-1d2f3a4b5c6d");
    assert_eq!(good.username.as_deref(), Some("alice"));
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        1,
        "the keys were fetched once"
    );

    let refused = [
        (
            "another issuer",
            sign(
                &pool_key,
                "pool-key",
                &claims(json!({ "iss": "https://cognito-idp.eu-west-1.amazonaws.com/other" })),
            ),
        ),
        (
            "another audience",
            sign(
                &pool_key,
                "pool-key",
                &claims(json!({ "aud": "another-client" })),
            ),
        ),
        (
            "an access token",
            sign(
                &pool_key,
                "pool-key",
                &claims(json!({ "token_use": "access" })),
            ),
        ),
        (
            "expired",
            sign(&pool_key, "pool-key", &claims(json!({ "exp": now - 60 }))),
        ),
        (
            "signed by another key under the pool's key id",
            sign(&stranger, "pool-key", &claims(json!({}))),
        ),
        (
            "a key id the pool does not have",
            sign(&stranger, "stranger", &claims(json!({}))),
        ),
    ];
    for (what, token) in refused {
        let error = cognito.verify(&token, None).await.expect_err(what);
        let expected = match what {
            "an access token" => matches!(error, CognitoError::NotAnIdToken),
            "expired" => matches!(error, CognitoError::Expired),
            "a key id the pool does not have" => matches!(error, CognitoError::UnknownKey),
            _ => matches!(error, CognitoError::Invalid(_)),
        };
        assert!(expected, "{what}: {error:?}");
    }
    // Within a minute of the last fetch, an unknown key id does not fetch again: made-up key ids
    // cannot make the worker hammer the pool.
    assert_eq!(fetches.load(Ordering::SeqCst), 1);

    // After a rotation the pool publishes a new key; a token under it makes the keys be fetched
    // again (here with no pause between fetches), and passes.
    let rotated =
        Cognito::new(config, reqwest::Client::new()).refetching_at_most_every(Duration::ZERO);
    rotated
        .verify(&sign(&pool_key, "pool-key", &claims(json!({}))), None)
        .await
        .unwrap();
    let before = fetches.load(Ordering::SeqCst);
    let under_new_key = sign(&stranger, "stranger", &claims(json!({})));
    assert!(matches!(
        rotated.verify(&under_new_key, None).await,
        Err(CognitoError::UnknownKey)
    ));
    served.write().unwrap().push(stranger.jwk.clone());
    assert!(
        rotated.verify(&under_new_key, None).await.is_ok(),
        "the new key was fetched on first sight"
    );
    assert_eq!(fetches.load(Ordering::SeqCst), before + 2);

    // A token that was valid when the request was made passes when it is handled later.
    let expired_since = sign(&pool_key, "pool-key", &claims(json!({ "exp": now - 60 })));
    let made_at = chrono::DateTime::from_timestamp(now - 120, 0);
    assert!(cognito.verify(&expired_since, made_at).await.is_ok());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A `me` request as the gateway enqueues it, answering to `queue`, with `token` as the bearer.
fn me_request(queue: QueueName, token: Option<&str>) -> InboundMessage {
    let body = json!({ "queue_name": queue.to_string(), "request_id": Uuid::new_v4() });
    // `message` sets the authorization attribute for apartment routes only.
    let mut request = qbill_tests::message("me", None, None, body);
    if let Some(token) = token {
        request.attributes.insert(
            attribute::AUTHORIZATION.into(),
            format!("{AUTHORIZATION_MARKER}Bearer {token}"),
        );
    }
    request
}

/// Asks `engine` for `me`; the reply must go to `queue`, the one the request names.
async fn ask_me(engine: &Engine, queue: QueueName, token: Option<&str>) -> Value {
    match engine
        .handle(&me_request(queue, token))
        .await
        .expect("no transient failure")
    {
        Outcome::Reply { to, reply, .. } => {
            assert_eq!(to, queue, "the reply goes to the request's queue");
            serde_json::to_value(&reply).unwrap()
        }
        Outcome::Drop => panic!("the message was dropped"),
    }
}

fn fresh_queue() -> QueueName {
    QueueName::parse(&Uuid::new_v4().to_string()).unwrap()
}

/// A pool serving `keys`, and an engine over a fresh database taking that pool's ID tokens.
async fn cognito_engine(keys: &[&Key]) -> (TestDb, Engine, String) {
    let served = Arc::new(RwLock::new(keys.iter().map(|k| k.jwk.clone()).collect()));
    let issuer = pool(served, Arc::new(AtomicUsize::new(0))).await;
    let config = CognitoConfig {
        issuer: issuer.clone(),
        client_id: CLIENT.into(),
    };
    let db = TestDb::fresh().await;
    let engine = Engine {
        services: qbill_tests::engine(&db, None)
            .services
            .with_cognito(Cognito::new(config, reqwest::Client::new())),
    };
    (db, engine, issuer)
}

/// An ID token's claims for `sub` from `issuer`, valid for an hour, with `changes` applied.
fn id_claims(issuer: &str, sub: &str, changes: Value) -> Value {
    let now = Utc::now().timestamp();
    let mut claims = json!({ "sub": sub, "iss": issuer, "aud": CLIENT, "token_use": "id",
                             "cognito:username": "someone", "iat": now, "exp": now + 3600 });
    for (k, v) in changes.as_object().unwrap() {
        claims[k] = v.clone();
    }
    claims
}

#[tokio::test]
async fn with_a_cognito_pool_its_id_tokens_open_sessions_for_users_made_on_first_sight() {
    let dir = std::env::temp_dir().join(format!("qbill-cognito-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let (pool_key, stranger) = (key(&dir, "pool-key"), key(&dir, "stranger"));
    let (db, engine, issuer) = cognito_engine(&[&pool_key]).await;
    let sub = Uuid::new_v4().to_string();
    let email = format!("c-{}@example.test", Uuid::new_v4().simple());
    let token = |changes: Value| sign(&pool_key, "pool-key", &id_claims(&issuer, &sub, changes));
    let users = db.count("SELECT count(*) FROM users", &[]).await;

    let first = ask_me(
        &engine,
        fresh_queue(),
        Some(&token(json!({ "email": email, "email_verified": true }))),
    )
    .await;
    assert_eq!(first["status"], "ok", "{first}");
    assert_eq!(first["kind"], "me");
    let user = &first["data"]["user"];
    assert_eq!(user["username"], format!("c-{sub}"));
    assert_eq!(user["role"], "household");
    assert_eq!(user["email"], email.as_str(), "the pool's verified address");
    assert_eq!(user["email_verified"], true);
    let id = user["id"].as_i64().expect("a user id");
    assert_eq!(
        db.count(
            "SELECT count(*) FROM users WHERE id = $1 AND cognito_sub = $2 AND password_hash IS NULL",
            &[&id, &sub]
        )
        .await,
        1
    );

    // Another request, from another reply queue, with another token of the same user.
    let second = ask_me(
        &engine,
        fresh_queue(),
        Some(&token(json!({ "iat": Utc::now().timestamp() + 1 }))),
    )
    .await;
    assert_eq!(second["status"], "ok", "{second}");
    assert_eq!(second["data"]["user"]["id"], id, "the same user");
    assert_eq!(
        db.count("SELECT count(*) FROM users", &[]).await,
        users + 1,
        "one user made, once"
    );

    // Refused tokens, under a sub of their own, get `unauthorized` and make no user.
    let other = Uuid::new_v4().to_string();
    let claims = |changes: Value| id_claims(&issuer, &other, changes);
    let now = Utc::now().timestamp();
    let refused = [
        (
            "another issuer",
            sign(
                &pool_key,
                "pool-key",
                &claims(json!({ "iss": "https://cognito-idp.eu-west-1.amazonaws.com/other" })),
            ),
        ),
        (
            "another audience",
            sign(
                &pool_key,
                "pool-key",
                &claims(json!({ "aud": "another-client" })),
            ),
        ),
        (
            "an access token",
            sign(
                &pool_key,
                "pool-key",
                &claims(json!({ "token_use": "access" })),
            ),
        ),
        (
            "a key the pool does not have",
            sign(&stranger, "stranger", &claims(json!({}))),
        ),
        (
            "signed by another key under the pool's key id",
            sign(&stranger, "pool-key", &claims(json!({}))),
        ),
        (
            "expired",
            sign(&pool_key, "pool-key", &claims(json!({ "exp": now - 60 }))),
        ),
        (
            "the engine's own token",
            qbill_tests::token_for(DEMO.0, DEMO.1, fresh_queue()),
        ),
    ];
    for (what, token) in refused {
        let reply = ask_me(&engine, fresh_queue(), Some(&token)).await;
        assert_eq!(error_code(&reply), "unauthorized", "{what}: {reply}");
    }
    let reply = ask_me(&engine, fresh_queue(), None).await;
    assert_eq!(error_code(&reply), "unauthorized", "no token: {reply}");
    assert_eq!(
        db.count(
            "SELECT count(*) FROM users WHERE cognito_sub = $1",
            &[&other]
        )
        .await,
        0
    );
    assert_eq!(db.count("SELECT count(*) FROM users", &[]).await, users + 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_cognito_user_gets_the_pools_address_only_when_it_is_verified_and_nobody_has_it() {
    let dir = std::env::temp_dir().join(format!("qbill-cognito-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let pool_key = key(&dir, "pool-key");
    let (db, engine, issuer) = cognito_engine(&[&pool_key]).await;
    let taken = format!("c-{}@example.test", Uuid::new_v4().simple());
    db.pool
        .get()
        .await
        .unwrap()
        .execute(
            "UPDATE users SET email = $1, email_verified = true WHERE id = $2",
            &[&taken, &DEMO.0],
        )
        .await
        .unwrap();
    let unverified = format!("c-{}@example.test", Uuid::new_v4().simple());
    for (what, email, verified) in [
        ("unverified in the pool", &unverified, false),
        ("another user's", &taken, true),
    ] {
        let sub = Uuid::new_v4().to_string();
        let claims = id_claims(
            &issuer,
            &sub,
            json!({ "email": email, "email_verified": verified }),
        );
        let reply = ask_me(
            &engine,
            fresh_queue(),
            Some(&sign(&pool_key, "pool-key", &claims)),
        )
        .await;
        assert_eq!(reply["status"], "ok", "{what}: {reply}");
        let user = &reply["data"]["user"];
        assert_eq!(user["username"], format!("c-{sub}"), "{what}");
        assert_eq!(user["email"], Value::Null, "{what}: {reply}");
        assert_eq!(user["email_verified"], false, "{what}");
    }
    assert_eq!(
        db.count("SELECT count(*) FROM users WHERE email = $1", &[&taken])
            .await,
        1,
        "the address stays the demo's"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
