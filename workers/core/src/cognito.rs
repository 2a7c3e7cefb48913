//! Amazon Cognito ID tokens, for a deployment whose identity is a Cognito user pool instead of the
//! engine's own logins (`QBILL_IDENTITY=cognito`): every route's token is then checked here, and
//! its `sub` mapped to a qbill user ([`crate::accounts::cognito_session`]).
//!
//! A token passes when it is an RS256 JWT signed by a key of the pool's JWKS (fetched from
//! `{issuer}/.well-known/jwks.json`, kept, and fetched again when a token names a key it does not
//! hold, at most once per [`REFETCH_AT_MOST`], so that tokens with made-up key ids cannot make the
//! worker hammer Cognito), issued by the pool (`iss`), for the app client (`aud`), an ID token
//! (`token_use` = `id`), and not expired when the request was made.

use std::sync::RwLock;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// The JWKS is fetched again for an unknown key id at most this often.
pub const REFETCH_AT_MOST: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct CognitoConfig {
    /// `https://cognito-idp.{region}.amazonaws.com/{user_pool_id}`.
    pub issuer: String,
    /// The app client's id: an ID token's `aud`.
    pub client_id: String,
}

/// The claims of an ID token that the engine reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct IdClaims {
    /// The user's stable id in the pool.
    pub sub: String,
    pub token_use: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub email_verified: Option<bool>,
    #[serde(rename = "cognito:username", default)]
    pub username: Option<String>,
    pub exp: i64,
}

/// Why a token was refused; every variant is the same `unauthorized` reply to the client.
#[derive(Debug, thiserror::Error)]
pub enum CognitoError {
    #[error("the token is not a JWT with an RS256 header and a key id")]
    Malformed,
    #[error("no key of the pool's JWKS has the token's key id")]
    UnknownKey,
    #[error("the token's signature or claims are invalid")]
    Invalid(#[source] jsonwebtoken::errors::Error),
    #[error("the token is not an ID token")]
    NotAnIdToken,
    #[error("the token had expired when the request was made")]
    Expired,
    /// A passing failure: the request may succeed when it is tried again.
    #[error("the pool's JWKS could not be fetched")]
    Jwks(#[source] anyhow::Error),
}

pub struct Cognito {
    config: CognitoConfig,
    validation: Validation,
    http: reqwest::Client,
    keys: RwLock<Keys>,
    refetch_at_most: Duration,
}

struct Keys {
    set: JwkSet,
    fetched_at: Option<Instant>,
}

impl Cognito {
    /// A verifier that fetches the pool's keys when it first needs them.
    pub fn new(config: CognitoConfig, http: reqwest::Client) -> Self {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&[&config.client_id]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // Expiry is checked against the time of the request, as for the engine's own tokens.
        validation.validate_exp = false;
        validation.leeway = 5;
        Self {
            config,
            validation,
            http,
            keys: RwLock::new(Keys {
                set: JwkSet { keys: Vec::new() },
                fetched_at: None,
            }),
            refetch_at_most: REFETCH_AT_MOST,
        }
    }

    /// Fetches the JWKS for an unknown key id at most once per `pause` instead of
    /// [`REFETCH_AT_MOST`].
    pub fn refetching_at_most_every(mut self, pause: Duration) -> Self {
        self.refetch_at_most = pause;
        self
    }

    /// Where the pool publishes its keys.
    pub fn jwks_url(&self) -> String {
        format!(
            "{}/.well-known/jwks.json",
            self.config.issuer.trim_end_matches('/')
        )
    }

    /// Checks an ID token as of `requested_at` (a time later than now counts as now).
    pub async fn verify(
        &self,
        token: &str,
        requested_at: Option<DateTime<Utc>>,
    ) -> Result<IdClaims, CognitoError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| CognitoError::Malformed)?;
        if header.alg != Algorithm::RS256 {
            return Err(CognitoError::Malformed);
        }
        let kid = header.kid.ok_or(CognitoError::Malformed)?;
        let key = match self.key(&kid) {
            Some(key) => key,
            None => {
                self.refetch().await?;
                self.key(&kid).ok_or(CognitoError::UnknownKey)?
            }
        };
        let claims = jsonwebtoken::decode::<IdClaims>(token, &key, &self.validation)
            .map_err(CognitoError::Invalid)?
            .claims;
        if claims.token_use != "id" {
            return Err(CognitoError::NotAnIdToken);
        }
        let at = requested_at.map_or_else(Utc::now, |t| t.min(Utc::now()));
        if claims.exp + self.validation.leeway as i64 <= at.timestamp() {
            return Err(CognitoError::Expired);
        }
        Ok(claims)
    }

    fn key(&self, kid: &str) -> Option<DecodingKey> {
        let keys = self.keys.read().expect("cognito keys");
        keys.set
            .find(kid)
            .and_then(|jwk| DecodingKey::from_jwk(jwk).ok())
    }

    /// Fetches the JWKS again, unless it was fetched less than the refetch pause ago.
    async fn refetch(&self) -> Result<(), CognitoError> {
        let recent = self
            .keys
            .read()
            .expect("cognito keys")
            .fetched_at
            .is_some_and(|at| at.elapsed() < self.refetch_at_most);
        if recent {
            return Ok(());
        }
        let fetched: JwkSet = async {
            let response = self
                .http
                .get(self.jwks_url())
                .timeout(Duration::from_secs(5))
                .send()
                .await?
                .error_for_status()?;
            anyhow::Ok(response.json().await?)
        }
        .await
        .map_err(CognitoError::Jwks)?;
        tracing::info!(keys = fetched.keys.len(), "Cognito JWKS fetched");
        *self.keys.write().expect("cognito keys") = Keys {
            set: fetched,
            fetched_at: Some(Instant::now()),
        };
        Ok(())
    }
}
