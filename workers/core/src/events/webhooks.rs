//! A provider's webhook endpoints, and how a delivery is signed.
//!
//! Signatures follow the Standard Webhooks specification: the secret is `whsec_` and the base64
//! of 32 random bytes; a delivery carries `webhook-id` (the event's, the same on every attempt),
//! `webhook-timestamp` (Unix seconds of the attempt) and `webhook-signature`, `v1,` and the base64
//! of an HMAC-SHA256 of `<id>.<timestamp>.<body>` under the decoded secret. After a rotation the
//! old secret signs too for [`ROTATION_OVERLAP`] (two signatures, space-separated), so a receiver
//! that has not switched yet keeps verifying.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use hmac::{Hmac, KeyInit, Mac};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use uuid::Uuid;

use super::Type;
use crate::error::{ErrorCode, HandlerError};
use crate::types::{ParseError, ProviderId};

/// How long a rotated-out secret still signs.
pub const ROTATION_OVERLAP: chrono::Duration = chrono::Duration::hours(24);
/// The most endpoints one provider may have.
pub const MAX_ENDPOINTS_PER_PROVIDER: i64 = 10;

/// A new signing secret.
pub fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("whsec_{}", STANDARD.encode(bytes))
}

/// The `webhook-signature` of `body` under each of `secrets`.
pub fn sign(message_id: &str, timestamp: i64, body: &[u8], secrets: &[&str]) -> String {
    secrets
        .iter()
        .map(|secret| {
            let key = STANDARD
                .decode(secret.trim_start_matches("whsec_"))
                .expect("a secret this module made is base64");
            let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes any key");
            mac.update(message_id.as_bytes());
            mac.update(b".");
            mac.update(timestamp.to_string().as_bytes());
            mac.update(b".");
            mac.update(body);
            format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// An endpoint as its provider sees it (never its secret, except once: [`Created`]).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Endpoint {
    pub id: Uuid,
    pub provider_id: ProviderId,
    pub url: String,
    /// The event types it is sent; empty: every type.
    pub types: Vec<Type>,
    pub enabled: bool,
    /// Why it is disabled: by its provider, or after 3 days of failed deliveries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Until when the secret a rotation replaced still signs beside the new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret_until: Option<DateTime<Utc>>,
    /// Deliveries waiting to be sent (or retried).
    pub pending: i64,
}

/// An endpoint just made or rotated, with its signing secret: the one time it is shown.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Created {
    #[serde(flatten)]
    pub endpoint: Endpoint,
    /// `whsec_…`: keep it; it is not shown again.
    pub secret: String,
}

pub const COLUMNS: &str = "e.id, e.provider_id, e.url, e.types, e.enabled, e.disabled_reason, e.created_at,
    e.updated_at, CASE WHEN e.previous_secret_until > now() THEN e.previous_secret_until END AS previous_secret_until,
    (SELECT count(*) FROM webhook_deliveries d WHERE d.endpoint_id = e.id AND d.status IN ('pending', 'sending')) AS pending";

impl Endpoint {
    pub fn from_row(row: &tokio_postgres::Row) -> Result<Self, HandlerError> {
        let types: Vec<String> = row.get("types");
        Ok(Self {
            id: row.get("id"),
            provider_id: ProviderId(row.get("provider_id")),
            url: row.get("url"),
            types: Type::parse_list(&types).map_err(HandlerError::internal)?,
            enabled: row.get("enabled"),
            disabled_reason: row.get("disabled_reason"),
            created_at: row.get("created_at"),
            updated_at: row.get("updated_at"),
            previous_secret_until: row.get("previous_secret_until"),
            pending: row.get("pending"),
        })
    }
}

/// The endpoint `id` of `provider`, locked for a change when `lock`; `not_found` when it is not
/// the provider's (whether or not it exists).
pub async fn load(
    client: &impl GenericClient,
    provider: ProviderId,
    id: Uuid,
    lock: bool,
) -> Result<Endpoint, HandlerError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM webhook_endpoints e WHERE e.id = $1 AND e.provider_id = $2{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    let row = client
        .query_opt(&sql, &[&id, &provider.0])
        .await?
        .ok_or_else(|| {
            HandlerError::rejected(
                ErrorCode::NotFound,
                format!("provider {provider} has no webhook endpoint {id}"),
            )
        })?;
    Endpoint::from_row(&row)
}

/// The endpoint's current signing secret: shown only in the reply that made it (and its repeats).
pub async fn secret(
    client: &impl GenericClient,
    provider: ProviderId,
    id: Uuid,
) -> Result<String, HandlerError> {
    let row = client
        .query_opt(
            "SELECT secret FROM webhook_endpoints WHERE id = $1 AND provider_id = $2",
            &[&id, &provider.0],
        )
        .await?
        .ok_or_else(|| {
            HandlerError::rejected(
                ErrorCode::NotFound,
                format!("webhook endpoint {id} was deleted since"),
            )
        })?;
    Ok(row.get(0))
}

/// The types as the table keeps them.
pub fn type_names(types: &[Type]) -> Vec<String> {
    types.iter().map(|t| t.as_str().to_owned()).collect()
}

/// Reads a request's `types`: known types, none twice, at most every type.
pub fn parse_types(raw: &[String]) -> Result<Vec<Type>, ParseError> {
    Type::parse_list(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_specification_example_signs_as_the_specification_says() {
        // The test vector of the specification's reference libraries: its secret, id,
        // timestamp and body, and the signature they give.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        let signature = sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body, &[secret]);
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn a_new_secret_is_32_random_bytes_and_two_differ() {
        let a = new_secret();
        let b = new_secret();
        assert_ne!(a, b);
        assert_eq!(
            STANDARD
                .decode(a.trim_start_matches("whsec_"))
                .unwrap()
                .len(),
            32
        );
    }
}
