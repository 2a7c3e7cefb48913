//! The named shapes of the contract: what the routes' bodies and replies share, whose JSON Schemas
//! become the gateway's request models and the web app's types. Each route declares its path,
//! callers, summary, body and reply types ([`crate::routes::Route`]), listed by
//! [`crate::routes::operations`]. `qbill contract` writes
//! `gateway-config/openapi.yaml`'s routes and models, check-gateway's lists, the web app's route
//! map and the docs' table from them; `qbill contract --check` fails on any drift.
//!
//! The bounds here are the gateway's, checked before a request is enqueued; the worker checks
//! every field again and says what is wrong ([`crate::types::ParseError`]). A text provider sends
//! is bounded so that the largest valid batch of bills, in compact JSON with every text at its
//! bound in 4-byte UTF-8, is 248 KiB: one SQS message (256 KiB, attributes included). Padding it
//! with whitespace, or escaping characters as \uXXXX, can push a body past that; SQS then refuses
//! it and the POST answers 502, enqueueing nothing.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

use crate::notify::Event;
/// An ISO 4217 code: its schema is the type's own.
pub use crate::types::Currency;

/// A shape with a name of its own in `components/schemas`, which bodies refer to.
macro_rules! named {
    ($($(#[$doc:meta])* $name:ident = $schema:tt;)*) => {$(
        $(#[$doc])*
        pub struct $name;

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!($schema)
            }
        }
    )*};
}

named! {
    /// Lower case only: SQS queue names are case-sensitive, and the reply queue is named by this
    /// exact text both when the worker sends and when the client polls.
    Uuid = {
        "type": "string",
        "pattern": "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
    };
    Date = { "type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$" };
    /// A username and a password as a person types them, bounded only: where they are new
    /// (signing up, a new password) the worker judges the rest and answers `invalid_request`
    /// saying why.
    Username = { "type": "string", "minLength": 1, "maxLength": 63 };
    Password = { "type": "string", "minLength": 1, "maxLength": 1024 };
    /// The gateway only checks for an @; the worker reads the address.
    Email = { "type": "string", "minLength": 3, "maxLength": 254, "pattern": "@" };
    /// A token qbill issued (an email's verification or reset token, a refresh token): opaque.
    IssuedToken = { "type": "string", "minLength": 1, "maxLength": 200 };
    /// A page's `next_cursor`, sent back for the next page: digits, dashes and dots.
    Cursor = { "type": "string", "pattern": "^[0-9][0-9.-]{0,63}$" };
    Amount = { "type": "string", "pattern": "^[0-9]{1,12}[.][0-9]{2}$" };
    NewUsername = { "type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{1,62}$" };
    NewPassword = { "type": "string", "minLength": 10, "maxLength": 1024 };
    ProviderIdentifier = { "type": "string", "pattern": "^[A-Za-z0-9._:/-]{1,40}$" };
    /// A quantity or a unit price: up to six places.
    Quantity = { "type": "string", "pattern": "^[0-9]{1,12}([.][0-9]{1,6})?$" };
    /// A bill line's amount, which may be a credit.
    LineAmount = { "type": "string", "pattern": "^-?[0-9]{1,12}[.][0-9]{2}$" };
}

/// The empty body: only `queue_name` and `request_id`.
#[derive(serde::Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

/// By event, the channels to turn on (true) or off (false); events and channels left out are
/// left as they are. Its events are those a person may choose ([`Event::PREFERABLE`]).
pub struct NotificationPreferences;

impl JsonSchema for NotificationPreferences {
    fn schema_name() -> Cow<'static, str> {
        "NotificationPreferences".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let channels = generator.subschema_for::<NotificationChannels>();
        let properties: serde_json::Map<String, serde_json::Value> = Event::PREFERABLE
            .iter()
            .map(|event| (event.as_str().to_owned(), channels.clone().into()))
            .collect();
        json_schema!({
            "type": "object",
            "additionalProperties": false,
            "properties": properties,
        })
    }
}

named! {
    /// A bill's status, in replies.
    BillStatus = { "type": "string", "enum": ["open", "overdue", "processing", "paid", "void"] };
}

named! {
    /// A payment's status, in replies.
    PaymentStatus = {
        "type": "string",
        "enum": ["pending", "requires_action", "processing", "succeeded", "failed", "canceled"]
    };
}

named! {
    /// A refund's status, in replies.
    RefundStatus = {
        "type": "string",
        "enum": ["pending", "succeeded", "failed", "canceled"]
    };
}

named! {
    NotificationChannels = {
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "email": { "type": "boolean" },
            "inbox": { "type": "boolean" },
            "sms": { "type": "boolean" }
        }
    };
}
