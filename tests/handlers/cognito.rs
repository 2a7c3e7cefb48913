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
use serde_json::{Value, json};

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
