//! Typed values parsed once at the edge; past the envelope, nothing handles raw strings.

use std::fmt;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Why a value could not be parsed: shown to the client in an `invalid_request` reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

impl ParseError {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

fn parse_uuid(field: &str, raw: &str) -> Result<Uuid, ParseError> {
    // Only the canonical hyphenated form in lower case: braces, URNs and simple hex would name
    // other queues, and SQS queue names are case-sensitive (the client polls by this exact text).
    let canonical = raw.len() == 36 && !raw.bytes().any(|b| b.is_ascii_uppercase());
    match Uuid::try_parse(raw) {
        Ok(uuid) if canonical => Ok(uuid),
        _ => Err(ParseError::new(format!(
            "`{field}` must be a lower-case UUID like 0b5a7c1e-8f3d-4a2b-9c6e-1d2f3a4b5c6d"
        ))),
    }
}

/// A date like `2026-01-31` in the field `field`.
pub fn parse_date(field: &str, raw: &str) -> Result<NaiveDate, ParseError> {
    if raw.len() != 10 {
        return Err(ParseError::new(format!(
            "`{field}` must be a date like 2026-01-31"
        )));
    }
    NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .map_err(|_| ParseError::new(format!("`{field}` must be a date like 2026-01-31")))
}

/// The client's reply queue, as the client named it: a UUID. The SQS queue name adds the
/// deployment's reply prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct QueueName(Uuid);

impl QueueName {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        parse_uuid("queue_name", raw).map(Self)
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }

    /// The SQS queue name under the shared reply prefix.
    pub fn sqs_name(&self, prefix: &str) -> String {
        format!("{prefix}{}", self.0.hyphenated())
    }
}

impl fmt::Display for QueueName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// The client's correlation and idempotency key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RequestId(pub Uuid);

impl RequestId {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        parse_uuid("request_id", raw).map(Self)
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

macro_rules! positive_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl $name {
            pub fn parse(raw: &str) -> Result<Self, ParseError> {
                let digits_only = !raw.is_empty() && raw.len() <= 18 && raw.bytes().all(|b| b.is_ascii_digit());
                match raw.parse::<i64>() {
                    Ok(id) if digits_only && id > 0 => Ok(Self(id)),
                    _ => Err(ParseError::new(concat!($what, " must be a positive whole number"))),
                }
            }
        }

        impl $name {
            /// The id as a JSON number in the body's field `field` gives it.
            pub fn from_body(field: &str, id: i64) -> Result<Self, ParseError> {
                if id > 0 {
                    Ok(Self(id))
                } else {
                    Err(ParseError::new(format!("`{field}` must be a positive whole number")))
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

positive_id!(
    /// An apartment, as named in the request path.
    ApartmentId,
    "the apartment id"
);
positive_id!(
    /// A bill, as listed in `bills_id`.
    BillId,
    "a bill id"
);
positive_id!(
    /// A user, as carried in the token's `sub`.
    UserId,
    "the user id"
);
positive_id!(
    /// A provider of utilities, as named in the path of a provider's route.
    ProviderId,
    "the provider id"
);

/// What a user may do; a token carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Pays and reads the bills of the apartments it owns (or linked).
    Household,
    /// Acts for one provider: sends its bills, voids them, sets its policy.
    Provider,
    /// Runs the service: creates providers and users, reads any apartment, never pays.
    Operator,
}

impl Role {
    /// Every role: each has an account (`me`, its profile, password, inbox).
    pub const EVERYONE: &[Role] = &[Role::Household, Role::Provider, Role::Operator];

    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        match raw {
            "household" => Ok(Self::Household),
            "provider" => Ok(Self::Provider),
            "operator" => Ok(Self::Operator),
            _ => Err(ParseError::new(
                "`role` must be one of household, provider, operator",
            )),
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Household => "household",
            Self::Provider => "provider",
            Self::Operator => "operator",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a request came from, as the gateway saw it (`$context.identity.sourceIp`), in the form
/// the login throttle counts by: an IPv4 address, or the /64 network of an IPv6 one (a single
/// host is usually given a whole /64, so counting addresses would let it guess 2^64 times over).
/// [`Source::UNKNOWN`] when the message does not say, as when it did not come through the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Source(String);

impl Source {
    pub const UNKNOWN: &str = "unknown";

    /// Reads the gateway's attribute; anything that is not an IP address counts as unknown.
    pub fn parse(raw: Option<&str>) -> Self {
        let address = raw.and_then(|raw| raw.trim().parse::<std::net::IpAddr>().ok());
        Self(match address {
            Some(std::net::IpAddr::V4(v4)) => v4.to_string(),
            Some(std::net::IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => v4.to_string(),
                None => {
                    let network = u128::from(v6) & !((1u128 << 64) - 1);
                    format!("{}/64", std::net::Ipv6Addr::from(network))
                }
            },
            None => Self::UNKNOWN.to_owned(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An ISO 4217 code such as `EUR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency([u8; 3]);

impl Currency {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let bytes = raw.trim_end().as_bytes();
        match bytes {
            [a, b, c] if bytes.iter().all(u8::is_ascii_uppercase) => Ok(Self([*a, *b, *c])),
            _ => Err(ParseError::new(format!(
                "`{raw}` is not an ISO 4217 currency code"
            ))),
        }
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII upper-case letters get in through `parse`.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Three capital letters, in requests and replies alike.
impl schemars::JsonSchema for Currency {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Currency".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "pattern": "^[A-Z]{3}$" })
    }
}

impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// Formats an amount the way the contract carries it: a decimal string with two places.
pub fn amount_string(amount: Decimal) -> String {
    let mut rounded = amount.round_dp(2);
    rounded.rescale(2);
    rounded.to_string()
}

/// Serde helper for `Decimal` fields carried as two-place strings.
/// Lower-case hex of `bytes`: a digest as replies carry it, or a fingerprint that must not hold
/// the token itself.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub mod amount {
    use rust_decimal::Decimal;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Decimal, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::amount_string(*value))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
        let raw = String::deserialize(d)?;
        raw.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names_must_be_canonical_uuids() {
        assert!(QueueName::parse("0b5a7c1e-8f3d-4a2b-9c6e-1d2f3a4b5c6d").is_ok());
        for bad in [
            "",
            "qbill-requests",
            "0b5a7c1e8f3d4a2b9c6e1d2f3a4b5c6d",
            "{0b5a7c1e-8f3d-4a2b-9c6e-1d2f3a4b5c6d}",
            "../0b5a7c1e-8f3d-4a2b-9c6e-1d2f3a4",
        ] {
            assert!(QueueName::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn ids_are_positive_plain_integers() {
        assert_eq!(ApartmentId::parse("42"), Ok(ApartmentId(42)));
        for bad in [
            "0",
            "-1",
            "+1",
            "1e3",
            " 1",
            "1.0",
            "99999999999999999999",
            "",
        ] {
            assert!(ApartmentId::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn sources_are_ipv4_addresses_or_ipv6_networks() {
        assert_eq!(Source::parse(Some("203.0.113.7")).as_str(), "203.0.113.7");
        assert_eq!(
            Source::parse(Some("2001:db8:1:2:aaaa:bbbb:cccc:dddd")),
            Source::parse(Some("2001:db8:1:2::1"))
        );
        assert_eq!(
            Source::parse(Some("2001:db8:1:2::1")).as_str(),
            "2001:db8:1:2::/64"
        );
        assert_ne!(
            Source::parse(Some("2001:db8:1:2::1")),
            Source::parse(Some("2001:db8:1:3::1"))
        );
        assert_eq!(
            Source::parse(Some("::ffff:192.0.2.1")).as_str(),
            "192.0.2.1"
        );
        for unknown in [None, Some(""), Some("test-invoke-source-ip"), Some("1.2.3")] {
            assert_eq!(Source::parse(unknown).as_str(), Source::UNKNOWN);
        }
    }

    #[test]
    fn amounts_always_carry_two_decimal_places() {
        assert_eq!(amount_string(Decimal::new(12, 0)), "12.00");
        assert_eq!(amount_string(Decimal::new(12345, 2)), "123.45");
        assert_eq!(amount_string(Decimal::new(1005, 3)), "1.00");
    }
}
