//! Signed session tokens (JWT, HS256): issued by `auth`, checked by every apartment route.

use std::sync::RwLock;

use chrono::{DateTime, Utc};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::{JwtConfig, JwtKeys};
use crate::types::{ProviderId, QueueName, Role, UserId};

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    name: String,
    iss: String,
    aud: String,
    iat: i64,
    exp: i64,
    jti: String,
    /// The reply queue the token was issued to, as [`queue_hash`]: never its name, which is the
    /// capability to read the queue's replies. (Tokens that carried the name, `queue`, are refused
    /// for want of this claim; their holders refresh.)
    qh: String,
    /// Tokens issued before roles existed were all households'.
    #[serde(default = "household")]
    role: Role,
    /// The provider a provider's token acts for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    provider: Option<ProviderId>,
    /// The user's session epoch when the token was issued: a reset, a password change or a
    /// deletion moves it on and so ends the token. Tokens issued before epochs existed are 0.
    #[serde(default)]
    epoch: i32,
}

fn household() -> Role {
    Role::Household
}

/// Who a valid token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user_id: UserId,
    pub username: String,
    /// The [`queue_hash`] of the reply queue the token was issued to.
    pub queue_hash: String,
    pub role: Role,
    /// For a provider's user: the provider it acts for.
    pub provider: Option<ProviderId>,
    /// The session epoch the token was issued in; it must still be the user's.
    pub epoch: i32,
}

impl Session {
    /// Whether the token was issued for the reply queue `queue`.
    pub fn bound_to(&self, queue: QueueName) -> bool {
        self.queue_hash == queue_hash(queue)
    }
}

/// What a token says of its reply queue: the SHA-256 of the queue's name (domain-separated), in
/// URL-safe base64. A token is readable by whoever holds it (it is only signed), and a queue's
/// name is what reading its replies takes; the hash binds the token to the queue without
/// giving the queue away. Queue names are random UUIDs (122 bits), so the hash cannot be
/// reversed by guessing.
pub fn queue_hash(queue: QueueName) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(format!("qbill-reply-queue\0{queue}").as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
}

/// Whom a token is issued to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub user_id: UserId,
    pub username: String,
    pub role: Role,
    pub provider: Option<ProviderId>,
    /// The user's current session epoch.
    pub epoch: i32,
}

impl Holder {
    /// A household's user, as tests and tools name one.
    pub fn household(user_id: UserId, username: &str) -> Self {
        Self {
            user_id,
            username: username.to_owned(),
            role: Role::Household,
            provider: None,
            epoch: 0,
        }
    }
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
    #[error("the token had expired when the request was made")]
    Expired,
}

pub struct Tokens {
    keys: RwLock<Keys>,
    validation: Validation,
    config: JwtConfig,
}

/// The key that signs, and during a rotation the one before it, accepted until a deadline (or,
/// for a key set by an operator, until the operator removes it).
struct Keys {
    /// The current key's bytes, for [`Tokens::derive`].
    secret: Vec<u8>,
    encoding: EncodingKey,
    current: DecodingKey,
    previous: Option<(DecodingKey, Option<DateTime<Utc>>)>,
}

impl Keys {
    fn new(
        current: &SecretString,
        previous: Option<(&SecretString, Option<DateTime<Utc>>)>,
    ) -> Self {
        let current_bytes = current.expose_secret().as_bytes();
        Self {
            secret: current_bytes.to_vec(),
            encoding: EncodingKey::from_secret(current_bytes),
            current: DecodingKey::from_secret(current_bytes),
            previous: previous.map(|(key, until)| {
                (
                    DecodingKey::from_secret(key.expose_secret().as_bytes()),
                    until,
                )
            }),
        }
    }
}

impl Tokens {
    /// Tokens over static keys; a `JwtKeys::Secret` config must go through [`Tokens::from_config`].
    pub fn new(config: JwtConfig) -> Self {
        let keys = match &config.keys {
            JwtKeys::Static { current, previous } => {
                Keys::new(current, previous.as_ref().map(|p| (p, None)))
            }
            JwtKeys::Secret { .. } => {
                panic!("keys in Secrets Manager are loaded by Tokens::from_config")
            }
        };
        Self::with_keys(config, keys)
    }

    /// Tokens with keys from wherever the configuration says, Secrets Manager included.
    pub async fn from_config(config: JwtConfig) -> anyhow::Result<Self> {
        let keys = match &config.keys {
            JwtKeys::Static { current, previous } => {
                Keys::new(current, previous.as_ref().map(|p| (p, None)))
            }
            JwtKeys::Secret { arn } => {
                let (current, previous) = crate::managed::jwt_keys(arn, config.ttl).await?;
                Keys::new(&current, previous.as_ref().map(|(p, until)| (p, *until)))
            }
        };
        Ok(Self::with_keys(config, keys))
    }

    fn with_keys(config: JwtConfig, keys: Keys) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&[&config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // Expiry is checked against the time of the request, in `verify_at`.
        validation.validate_exp = false;
        validation.leeway = 5;
        Self {
            keys: RwLock::new(keys),
            validation,
            config,
        }
    }

    /// Swaps in new keys (after a rotation): tokens are signed with `current` from now on, and
    /// those signed with `previous` are accepted until `until`.
    pub fn set_keys(
        &self,
        current: &SecretString,
        previous: Option<(&SecretString, Option<DateTime<Utc>>)>,
    ) {
        *self.keys.write().expect("token keys") = Keys::new(current, previous);
    }

    /// Reloads the keys when they live in Secrets Manager; a no-op for static keys.
    pub async fn reload(&self) -> anyhow::Result<()> {
        if let JwtKeys::Secret { arn } = &self.config.keys {
            let (current, previous) = crate::managed::jwt_keys(arn, self.config.ttl).await?;
            self.set_keys(&current, previous.as_ref().map(|(p, until)| (p, *until)));
        }
        Ok(())
    }

    /// A token for `holder`, bound to the reply queue it logged in with.
    pub fn issue(
        &self,
        holder: &Holder,
        queue: QueueName,
    ) -> anyhow::Result<(String, DateTime<Utc>)> {
        let now = Utc::now();
        let expires_at = now + self.config.ttl;
        let claims = Claims {
            sub: holder.user_id.to_string(),
            name: holder.username.clone(),
            role: holder.role,
            provider: holder.provider,
            epoch: holder.epoch,
            iss: self.config.issuer.clone(),
            aud: self.config.audience.clone(),
            iat: now.timestamp(),
            exp: expires_at.timestamp(),
            jti: Uuid::new_v4().to_string(),
            qh: queue_hash(queue),
        };
        let keys = self.keys.read().expect("token keys");
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &keys.encoding)?;
        Ok((
            token,
            DateTime::from_timestamp(claims.exp, 0).unwrap_or(expires_at),
        ))
    }

    /// A secret value derived from the current signing key: HMAC-SHA256 of `purpose` and `input`,
    /// in URL-safe base64. Only a holder of the key can compute it, so the database can keep the
    /// input (or nothing) instead of the secret: mailed tokens are derived from a nonce the outbox
    /// keeps, and a rotated refresh token from the request that rotated it.
    pub fn derive(&self, purpose: &str, input: &[u8]) -> String {
        use base64::Engine as _;
        use hmac::{KeyInit as _, Mac as _};
        let keys = self.keys.read().expect("token keys");
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&keys.secret)
            .expect("HMAC takes a key of any length");
        mac.update(purpose.as_bytes());
        mac.update(&[0]);
        mac.update(input);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// The token mailed for `nonce` (the outbox keeps the nonce in the mail's data; the database
    /// keeps the token's SHA-256).
    pub fn email_token(&self, nonce: &str) -> String {
        self.derive("email-token", nonce.as_bytes())
    }

    /// Checks a token now.
    pub fn verify(&self, token: Option<&str>) -> Result<Session, TokenError> {
        self.verify_at(token, None)
    }

    /// Checks a token as of `requested_at`, the moment the gateway accepted the request (only the
    /// gateway writes to the request queue). A request made with a valid token stays valid when
    /// it is handled later: a redelivery after a failure, or a redrive from the dead-letter queue.
    /// A time later than now counts as now.
    pub fn verify_at(
        &self,
        token: Option<&str>,
        requested_at: Option<DateTime<Utc>>,
    ) -> Result<Session, TokenError> {
        let token = token.ok_or(TokenError::Missing)?;
        let at = requested_at.map_or_else(Utc::now, |t| t.min(Utc::now()));
        let claims = {
            let keys = self.keys.read().expect("token keys");
            match jsonwebtoken::decode::<Claims>(token, &keys.current, &self.validation) {
                Ok(data) => data.claims,
                Err(e) if *e.kind() == ErrorKind::InvalidSignature => match &keys.previous {
                    Some((previous, until)) if until.is_none_or(|u| at < u) => {
                        jsonwebtoken::decode::<Claims>(token, previous, &self.validation)
                            .map_err(TokenError::Invalid)?
                            .claims
                    }
                    _ => return Err(TokenError::Invalid(e)),
                },
                Err(e) => return Err(TokenError::Invalid(e)),
            }
        };
        if claims.exp + self.validation.leeway as i64 <= at.timestamp() {
            return Err(TokenError::Expired);
        }
        let user_id = UserId::parse(&claims.sub).map_err(|_| TokenError::Malformed)?;
        Ok(Session {
            user_id,
            username: claims.name,
            queue_hash: claims.qh,
            role: claims.role,
            provider: claims.provider,
            epoch: claims.epoch,
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    const OLD: &str = "the-old-signing-key-of-at-least-32-bytes";
    const NEW: &str = "the-new-signing-key-of-at-least-32-bytes";

    fn tokens(key: &str) -> Tokens {
        Tokens::new(JwtConfig::new(key.to_owned().into()).unwrap())
    }

    fn queue() -> QueueName {
        QueueName::parse("0b5a7c1e-8f3d-4a2b-9c6e-1d2f3a4b5c6d").unwrap()
    }

    #[test]
    fn after_a_rotation_new_tokens_use_the_new_key_and_old_ones_pass_until_the_deadline() {
        let old_token = tokens(OLD)
            .issue(&Holder::household(UserId(7), "u"), queue())
            .unwrap()
            .0;
        let rotated = tokens(NEW);
        assert!(
            rotated.verify(Some(&old_token)).is_err(),
            "without the previous key the old token fails"
        );

        rotated.set_keys(
            &NEW.to_owned().into(),
            Some((
                &OLD.to_owned().into(),
                Some(Utc::now() + Duration::minutes(5)),
            )),
        );
        assert_eq!(
            rotated.verify(Some(&old_token)).unwrap().user_id,
            UserId(7),
            "within the grace period"
        );
        let new_token = rotated
            .issue(&Holder::household(UserId(7), "u"), queue())
            .unwrap()
            .0;
        assert!(
            tokens(NEW).verify(Some(&new_token)).is_ok(),
            "signed with the new key"
        );
        assert!(tokens(OLD).verify(Some(&new_token)).is_err());

        rotated.set_keys(
            &NEW.to_owned().into(),
            Some((
                &OLD.to_owned().into(),
                Some(Utc::now() - Duration::seconds(1)),
            )),
        );
        assert!(
            rotated.verify(Some(&old_token)).is_err(),
            "after the grace period"
        );
    }

    #[test]
    fn a_token_names_its_reply_queue_by_a_hash_never_by_the_name_that_reads_it() {
        use base64::Engine as _;
        let t = tokens(OLD);
        let token = t
            .issue(&Holder::household(UserId(7), "u"), queue())
            .unwrap()
            .0;
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.split('.').nth(1).unwrap())
            .unwrap();
        let claims = String::from_utf8(claims).unwrap();
        let name = queue().to_string();
        assert!(
            !claims.contains(&name),
            "the queue's name is in the token: {claims}"
        );
        assert!(
            !claims.contains(&name.replace('-', "")),
            "the queue's name is in the token: {claims}"
        );
        let session = t.verify(Some(&token)).unwrap();
        assert!(session.bound_to(queue()));
        let other = QueueName::parse("0b5a7c1e-8f3d-4a2b-9c6e-1d2f3a4b5c6e").unwrap();
        assert!(!session.bound_to(other));
    }

    #[test]
    fn a_token_with_another_algorithm_or_a_tampered_claim_is_refused() {
        let t = tokens(OLD);
        let token = t
            .issue(&Holder::household(UserId(7), "u"), queue())
            .unwrap()
            .0;
        let parts: Vec<&str> = token.split('.').collect();
        // alg: none
        let none_header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";
        assert!(
            t.verify(Some(&format!("{none_header}.{}.", parts[1])))
                .is_err()
        );
        // One character of the claims changed, signature kept.
        let mut claims = parts[1].to_owned();
        let last = claims.pop().unwrap();
        claims.push(if last == 'A' { 'B' } else { 'A' });
        assert!(
            t.verify(Some(&format!("{}.{claims}.{}", parts[0], parts[2])))
                .is_err()
        );
    }
}
