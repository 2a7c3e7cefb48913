//! Signed session tokens (JWT, HS256): issued by `auth`, checked by every apartment route.

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::JwtConfig;
use crate::types::{QueueName, UserId};

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    name: String,
    iss: String,
    aud: String,
    iat: i64,
    exp: i64,
    jti: String,
    /// The reply queue the token was issued to.
    queue: String,
}

/// Who a valid token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user_id: UserId,
    pub username: String,
    pub queue: QueueName,
}

/// Why a token was refused; every variant becomes the same `unauthorized` reply.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the request carries no bearer token")]
    Missing,
    #[error("the token is invalid or expired")]
    Invalid(#[source] jsonwebtoken::errors::Error),
    #[error("the token's claims are malformed")]
    Malformed,
}

pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    config: JwtConfig,
}

impl Tokens {
    pub fn new(config: JwtConfig) -> Self {
        let secret = config.secret.expose_secret().as_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&[&config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 5;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            config,
        }
    }

    /// A token for `user`, bound to the reply queue it logged in with.
    pub fn issue(
        &self,
        user: UserId,
        username: &str,
        queue: QueueName,
    ) -> anyhow::Result<(String, DateTime<Utc>)> {
        let now = Utc::now();
        let expires_at = now + self.config.ttl;
        let claims = Claims {
            sub: user.to_string(),
            name: username.to_owned(),
            iss: self.config.issuer.clone(),
            aud: self.config.audience.clone(),
            iat: now.timestamp(),
            exp: expires_at.timestamp(),
            jti: Uuid::new_v4().to_string(),
            queue: queue.to_string(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?;
        Ok((
            token,
            DateTime::from_timestamp(claims.exp, 0).unwrap_or(expires_at),
        ))
    }

    pub fn verify(&self, token: Option<&str>) -> Result<Session, TokenError> {
        let token = token.ok_or(TokenError::Missing)?;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(TokenError::Invalid)?;
        let claims = data.claims;
        let user_id = UserId::parse(&claims.sub).map_err(|_| TokenError::Malformed)?;
        let queue = QueueName::parse(&claims.queue).map_err(|_| TokenError::Malformed)?;
        Ok(Session {
            user_id,
            username: claims.name,
            queue,
        })
    }
}
