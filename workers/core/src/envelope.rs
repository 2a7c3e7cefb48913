//! The envelope: one message from the shared request queue, as the gateway wrote it.
//!
//! The gateway puts the client's JSON body in the message body, verbatim, and what the body cannot
//! say in message attributes: the route, the path's apartment id, the Authorization header and the
//! gateway's request id and time. [`Envelope::parse`] turns that into typed values once; a message
//! that does not parse becomes a [`Rejection`], answered when a reply queue can be read from it.

use std::collections::HashMap;

use chrono::NaiveDate;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::Value;

use crate::handlers::{histories, utils};
use crate::reply::Kind;
use crate::types::{ApartmentId, BillId, ParseError, QueueName, RequestId, Source};

/// Message attribute names written by `gateway-config/`.
pub mod attribute {
    pub const ROUTE: &str = "route";
    pub const APARTMENT_ID: &str = "apartment_id";
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

/// Larger bodies are refused before they are parsed. Real requests are a few hundred bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// How many bills one payment may settle.
pub const MAX_BILLS_PER_PAYMENT: usize = 100;
/// Bounds the Argon2 work an attacker can ask for with one login.
pub const MAX_PASSWORD_BYTES: usize = 1024;

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
    pub reply_to: QueueName,
    pub request_id: RequestId,
    pub command: Command,
    /// The bearer token, when the client sent one.
    pub token: Option<SecretString>,
    pub gateway_request_id: Option<String>,
    /// When the gateway accepted the request (its `request_time`, epoch milliseconds).
    pub requested_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Where the request came from, as the gateway saw it.
    pub source: Source,
}

/// One variant per route; the handler of each lives in `handlers/` under the same name.
#[derive(Debug)]
pub enum Command {
    Auth {
        username: String,
        password: SecretString,
    },
    Utils {
        apartment: ApartmentId,
        /// Where the previous page ended; `None` for the first page.
        cursor: Option<utils::Cursor>,
    },
    Histories {
        apartment: ApartmentId,
        window: Option<DateWindow>,
        cursor: Option<histories::Cursor>,
    },
    Payments {
        apartment: ApartmentId,
        bills: Vec<BillId>,
    },
}

impl Command {
    pub fn kind(&self) -> Kind {
        match self {
            Self::Auth { .. } => Kind::Auth,
            Self::Utils { .. } => Kind::Utils,
            Self::Histories { .. } => Kind::Histories,
            Self::Payments { .. } => Kind::Payments,
        }
    }
}

/// The window of settled history, by payment date, that the client already holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateWindow {
    pub down: NaiveDate,
    pub up: NaiveDate,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthBody {
    #[allow(dead_code)]
    queue_name: Value,
    #[allow(dead_code)]
    request_id: Value,
    username: String,
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UtilsBody {
    #[allow(dead_code)]
    queue_name: Value,
    #[allow(dead_code)]
    request_id: Value,
    #[serde(default)]
    cursor: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoriesBody {
    #[allow(dead_code)]
    queue_name: Value,
    #[allow(dead_code)]
    request_id: Value,
    #[serde(default)]
    date_down: Option<String>,
    #[serde(default)]
    date_up: Option<String>,
    #[serde(default)]
    cursor: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PaymentsBody {
    #[allow(dead_code)]
    queue_name: Value,
    #[allow(dead_code)]
    request_id: Value,
    bills_id: Vec<i64>,
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
        let body: Value = match serde_json::from_str(&message.body) {
            Ok(Value::Object(map)) => Value::Object(map),
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
        let command = parse_command(kind, &message.attributes, body)
            .map_err(|reason| answerable(Some(request_id), reason))?;
        Ok(Self {
            reply_to,
            request_id,
            command,
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
        })
    }
}

fn parse_command(
    kind: Kind,
    attributes: &HashMap<String, String>,
    body: Value,
) -> Result<Command, ParseError> {
    let apartment = || {
        attributes
            .get(attribute::APARTMENT_ID)
            .ok_or_else(|| ParseError::new("the apartment id is missing from the path"))
            .and_then(|raw| ApartmentId::parse(raw))
    };
    let body_error = |e: serde_json::Error| ParseError::new(format!("invalid body: {e}"));
    match kind {
        Kind::Auth => {
            let b: AuthBody = serde_json::from_value(body).map_err(body_error)?;
            let username = b.username.trim().to_ascii_lowercase();
            if username.is_empty() || username.len() > 63 {
                return Err(ParseError::new("`username` must be 1 to 63 characters"));
            }
            // Postgres refuses NUL in text, and no username has control characters.
            if username.chars().any(char::is_control) {
                return Err(ParseError::new(
                    "`username` must not contain control characters",
                ));
            }
            if b.password.is_empty() || b.password.len() > MAX_PASSWORD_BYTES {
                return Err(ParseError::new(format!(
                    "`password` must be 1 to {MAX_PASSWORD_BYTES} bytes"
                )));
            }
            Ok(Command::Auth {
                username,
                password: b.password.into(),
            })
        }
        Kind::Utils => {
            let b: UtilsBody = serde_json::from_value(body).map_err(body_error)?;
            Ok(Command::Utils {
                apartment: apartment()?,
                cursor: b.cursor.as_deref().map(utils::Cursor::parse).transpose()?,
            })
        }
        Kind::Histories => {
            let b: HistoriesBody = serde_json::from_value(body).map_err(body_error)?;
            let window = match (b.date_down, b.date_up) {
                (None, None) => None,
                (Some(down), Some(up)) => {
                    let down = parse_date("date_down", &down)?;
                    let up = parse_date("date_up", &up)?;
                    if down > up {
                        return Err(ParseError::new("`date_down` must not be after `date_up`"));
                    }
                    Some(DateWindow { down, up })
                }
                _ => {
                    return Err(ParseError::new(
                        "`date_down` and `date_up` go together: send both or neither",
                    ));
                }
            };
            Ok(Command::Histories {
                apartment: apartment()?,
                window,
                cursor: b
                    .cursor
                    .as_deref()
                    .map(histories::Cursor::parse)
                    .transpose()?,
            })
        }
        Kind::Payments => {
            let b: PaymentsBody = serde_json::from_value(body).map_err(body_error)?;
            if b.bills_id.is_empty() {
                return Err(ParseError::new("`bills_id` must name at least one bill"));
            }
            if b.bills_id.len() > MAX_BILLS_PER_PAYMENT {
                return Err(ParseError::new(format!(
                    "one payment settles at most {MAX_BILLS_PER_PAYMENT} bills"
                )));
            }
            let mut bills = Vec::with_capacity(b.bills_id.len());
            for id in b.bills_id {
                if id <= 0 {
                    return Err(ParseError::new(format!(
                        "bill id {id} is not a positive whole number"
                    )));
                }
                let id = BillId(id);
                if bills.contains(&id) {
                    return Err(ParseError::new(format!("bill {id} is listed twice")));
                }
                bills.push(id);
            }
            Ok(Command::Payments {
                apartment: apartment()?,
                bills,
            })
        }
        Kind::Unknown => Err(ParseError::new(format!(
            "unknown route {:?}",
            attributes
                .get(attribute::ROUTE)
                .map(String::as_str)
                .unwrap_or("")
        ))),
    }
}

fn parse_date(field: &str, raw: &str) -> Result<NaiveDate, ParseError> {
    if raw.len() != 10 {
        return Err(ParseError::new(format!(
            "`{field}` must be a date like 2026-01-31"
        )));
    }
    NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .map_err(|_| ParseError::new(format!("`{field}` must be a date like 2026-01-31")))
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

impl Command {
    /// The apartment the request is about, for apartment routes.
    pub fn apartment(&self) -> Option<crate::types::ApartmentId> {
        match self {
            Self::Auth { .. } => None,
            Self::Utils { apartment, .. }
            | Self::Histories { apartment, .. }
            | Self::Payments { apartment, .. } => Some(*apartment),
        }
    }
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
                Ok(envelope) => prop_assert_eq!(envelope.command.kind().as_str(), route),
                Err(rejection) => prop_assert!(!rejection.reason.0.is_empty()),
            }
        }
    }
}
