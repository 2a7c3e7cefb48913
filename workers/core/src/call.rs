//! Who asked and where the answer goes: the parts of a request that are the same for every route,
//! read by [`crate::envelope`] before the route reads its own body.

use secrecy::SecretString;

use crate::types::{ParseError, QueueName, RequestId, Source};

#[derive(Debug)]
pub struct Call {
    pub reply_to: QueueName,
    pub request_id: RequestId,
    /// The bearer token, when the client sent one.
    pub token: Option<SecretString>,
    pub gateway_request_id: Option<String>,
    /// When the gateway accepted the request (its `request_time`, epoch milliseconds).
    pub requested_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Where the request came from, as the gateway saw it.
    pub source: Source,
}

/// The parameters of the request's path, as the gateway passed them, still raw: each route
/// parses those it has.
#[derive(Debug, Clone, Default)]
pub struct Path {
    pub apartment_id: Option<String>,
    pub provider_id: Option<String>,
    pub bill_id: Option<String>,
    pub payment_id: Option<String>,
    pub payment_method_id: Option<String>,
    pub webhook_id: Option<String>,
}

impl Path {
    /// The path parameter `name`, parsed, or why not.
    pub fn get<T>(
        raw: &Option<String>,
        name: &str,
        parse: impl FnOnce(&str) -> Result<T, ParseError>,
    ) -> Result<T, ParseError> {
        raw.as_deref()
            .ok_or_else(|| ParseError::new(format!("the {name} is missing from the path")))
            .and_then(parse)
    }

    pub fn apartment(&self) -> Result<crate::types::ApartmentId, ParseError> {
        Self::get(
            &self.apartment_id,
            "apartment id",
            crate::types::ApartmentId::parse,
        )
    }

    pub fn provider(&self) -> Result<crate::types::ProviderId, ParseError> {
        Self::get(
            &self.provider_id,
            "provider id",
            crate::types::ProviderId::parse,
        )
    }

    pub fn bill(&self) -> Result<crate::types::BillId, ParseError> {
        Self::get(&self.bill_id, "bill id", crate::types::BillId::parse)
    }

    /// A saved card's PaymentMethod id: `pm_`, then letters, digits or `_`.
    pub fn payment_method(&self) -> Result<String, ParseError> {
        Self::get(&self.payment_method_id, "payment method id", |raw| {
            let valid = raw.len() <= 255
                && raw.strip_prefix("pm_").is_some_and(|r| {
                    !r.is_empty() && r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                });
            if valid {
                Ok(raw.to_owned())
            } else {
                Err(ParseError::new(format!(
                    "payment method id {raw:?} is not a saved card's id (pm_…)"
                )))
            }
        })
    }

    /// A webhook endpoint's id: a UUID.
    pub fn webhook(&self) -> Result<uuid::Uuid, ParseError> {
        Self::get(&self.webhook_id, "webhook id", |raw| {
            uuid::Uuid::parse_str(raw)
                .map_err(|_| ParseError::new(format!("webhook id {raw:?} is not a UUID")))
        })
    }

    pub fn payment(&self) -> Result<uuid::Uuid, ParseError> {
        Self::get(&self.payment_id, "payment id", |raw| {
            uuid::Uuid::parse_str(raw)
                .map_err(|_| ParseError::new(format!("payment id {raw:?} is not a UUID")))
        })
    }
}
