//! The envelope: one message from the shared request queue, as the gateway wrote it.
//!
//! The gateway puts the client's JSON body in the message body, verbatim, and what the body cannot
//! say in message attributes: the route, the path's apartment id, the Authorization header and the
//! gateway's request id and time. [`Envelope::parse`] turns that into typed values once; a message
//! that does not parse becomes a [`Rejection`], answered when a reply queue can be read from it.

use std::collections::HashMap;

use secrecy::SecretString;
use serde_json::Value;

pub use crate::call::{Call, Path};
use crate::routes::{Kind, Request};
use crate::types::{ParseError, QueueName, RequestId, Source};

/// Message attribute names written by `gateway-config/`.
pub mod attribute {
    pub const ROUTE: &str = "route";
    pub const APARTMENT_ID: &str = "apartment_id";
    pub const PROVIDER_ID: &str = "provider_id";
    pub const BILL_ID: &str = "bill_id";
    pub const PAYMENT_ID: &str = "payment_id";
    pub const PAYMENT_METHOD_ID: &str = "payment_method_id";
    pub const WEBHOOK_ID: &str = "webhook_id";
    pub const AUTHORIZATION: &str = "authorization";
    pub const GATEWAY_REQUEST_ID: &str = "gateway_request_id";
    pub const REQUEST_TIME: &str = "request_time";
    /// The caller's address as the gateway saw it (`/auth` only), prefixed with
    /// [`super::SOURCE_IP_MARKER`].
    pub const SOURCE_IP: &str = "source_ip";
}

/// The gateway prefixes the Authorization header with this, so that the attribute is never empty
/// (SQS refuses empty attribute values) even when the client sent no header.
pub const AUTHORIZATION_MARKER: &str = "header:";

/// The gateway prefixes the source address with this, so that the attribute is never empty.
pub const SOURCE_IP_MARKER: &str = "ip:";

/// Larger bodies are refused before they are parsed: SQS messages stop at 256 KiB (the body and
/// the attributes together), and the largest valid request (a provider's batch of bills) is
/// bounded to fit.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// A message as any transport hands it over.
#[derive(Debug, Clone, Default)]
pub struct InboundMessage {
    /// The transport's own id, for logs.
    pub message_id: String,
    pub body: String,
    pub attributes: HashMap<String, String>,
}

/// A request that parsed: who to answer, what was asked.
#[derive(Debug)]
pub struct Envelope {
    pub call: Call,
    pub request: Request,
}

/// A message that did not parse. With a reply queue, the client gets an `invalid_request` reply;
/// without one there is nobody to tell, and the message is dropped with a log line.
#[derive(Debug)]
pub struct Rejection {
    pub reply_to: Option<QueueName>,
    pub request_id: Option<RequestId>,
    pub kind: Kind,
    pub reason: ParseError,
}

impl Envelope {
    pub fn parse(message: &InboundMessage) -> Result<Self, Rejection> {
        let kind = message
            .attributes
            .get(attribute::ROUTE)
            .map_or(Kind::Unknown, |r| Kind::parse(r));
        let unanswerable = |reason| Rejection {
            reply_to: None,
            request_id: None,
            kind,
            reason,
        };

        if message.body.len() > MAX_BODY_BYTES {
            return Err(unanswerable(ParseError::new(format!(
                "the body is larger than {MAX_BODY_BYTES} bytes"
            ))));
        }
        let mut body = match serde_json::from_str(&message.body) {
            Ok(Value::Object(map)) => map,
            Ok(_) => {
                return Err(unanswerable(ParseError::new(
                    "the body must be a JSON object",
                )));
            }
            Err(e) => {
                return Err(unanswerable(ParseError::new(format!(
                    "the body is not valid JSON: {e}"
                ))));
            }
        };
        let reply_to = body
            .get("queue_name")
            .and_then(Value::as_str)
            .ok_or_else(|| ParseError::new("`queue_name` is required and must be a string"))
            .and_then(QueueName::parse)
            .map_err(unanswerable)?;

        // From here on the client can be told what went wrong.
        let answerable = |request_id, reason| Rejection {
            reply_to: Some(reply_to),
            request_id,
            kind,
            reason,
        };
        let request_id = body
            .get("request_id")
            .and_then(Value::as_str)
            .ok_or_else(|| ParseError::new("`request_id` is required and must be a string"))
            .and_then(RequestId::parse)
            .map_err(|reason| answerable(None, reason))?;
        body.remove("queue_name");
        body.remove("request_id");
        let path = Path {
            apartment_id: message.attributes.get(attribute::APARTMENT_ID).cloned(),
            provider_id: message.attributes.get(attribute::PROVIDER_ID).cloned(),
            bill_id: message.attributes.get(attribute::BILL_ID).cloned(),
            payment_id: message.attributes.get(attribute::PAYMENT_ID).cloned(),
            payment_method_id: message
                .attributes
                .get(attribute::PAYMENT_METHOD_ID)
                .cloned(),
            webhook_id: message.attributes.get(attribute::WEBHOOK_ID).cloned(),
        };
        let request = match kind {
            Kind::Unknown => Err(ParseError::new(format!(
                "unknown route {:?}",
                message
                    .attributes
                    .get(attribute::ROUTE)
                    .map(String::as_str)
                    .unwrap_or("")
            ))),
            kind => Request::parse(kind, &path, body),
        }
        .map_err(|reason| answerable(Some(request_id), reason))?;
        let call = Call {
            reply_to,
            request_id,
            token: bearer_token(message.attributes.get(attribute::AUTHORIZATION)),
            gateway_request_id: message
                .attributes
                .get(attribute::GATEWAY_REQUEST_ID)
                .cloned(),
            requested_at: message
                .attributes
                .get(attribute::REQUEST_TIME)
                .and_then(|ms| ms.parse::<i64>().ok())
                .and_then(chrono::DateTime::from_timestamp_millis),
            source: Source::parse(
                message
                    .attributes
                    .get(attribute::SOURCE_IP)
                    .map(|raw| raw.strip_prefix(SOURCE_IP_MARKER).unwrap_or(raw.as_str())),
            ),
        };
        Ok(Self { call, request })
    }
}

/// `Bearer <token>` from the Authorization attribute; anything else counts as no token.
fn bearer_token(attribute: Option<&String>) -> Option<SecretString> {
    let header = attribute?;
    let header = header
        .strip_prefix(AUTHORIZATION_MARKER)
        .unwrap_or(header)
        .trim();
    let (scheme, token) = header.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned().into())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const ROUTES: [&str; 6] = ["auth", "utils", "histories", "payments", "refunds", ""];

    fn message(
        body: String,
        route: &str,
        apartment: String,
        authorization: String,
    ) -> InboundMessage {
        InboundMessage {
            message_id: "m".into(),
            body,
            attributes: HashMap::from([
                (attribute::ROUTE.to_owned(), route.to_owned()),
                (attribute::APARTMENT_ID.to_owned(), apartment),
                (attribute::AUTHORIZATION.to_owned(), authorization),
            ]),
        }
    }

    /// JSON objects built from the contract's field names with values of any shape.
    fn near_miss_body() -> impl Strategy<Value = String> {
        let value = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
                .map_or(serde_json::Value::Null, serde_json::Value::Number)),
            ".{0,40}".prop_map(serde_json::Value::from),
            Just(serde_json::Value::from(
                "0b5a7c1e-8f3d-4a2b-9c6e-1d2f3a4b5c6d"
            )),
            prop::collection::vec(any::<i64>(), 0..5).prop_map(serde_json::Value::from),
        ];
        let field = prop::sample::select(vec![
            "queue_name",
            "request_id",
            "username",
            "password",
            "bills_id",
            "date_down",
            "date_up",
            "cursor",
            "x",
        ]);
        prop::collection::btree_map(field, value, 0..7).prop_map(|m| {
            serde_json::Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
                .to_string()
        })
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_the_parser(
            body in prop::collection::vec(any::<u8>(), 0..512),
            route in prop::sample::select(ROUTES.to_vec()),
            apartment in ".{0,24}",
            authorization in ".{0,80}",
        ) {
            let body = String::from_utf8_lossy(&body).into_owned();
            let _ = Envelope::parse(&message(body, route, apartment, authorization));
        }

        #[test]
        fn near_miss_bodies_parse_or_are_refused_with_a_reason(
            body in near_miss_body(),
            route in prop::sample::select(ROUTES.to_vec()),
            apartment in prop_oneof![Just("1".to_owned()), ".{0,12}"],
        ) {
            match Envelope::parse(&message(body, route, apartment, "header:Bearer t".into())) {
                Ok(envelope) => prop_assert_eq!(envelope.request.kind().as_str(), route),
                Err(rejection) => prop_assert!(!rejection.reason.0.is_empty()),
            }
        }
    }
}
