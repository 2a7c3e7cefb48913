//! The handlers against real Postgres and Redis, through the engine's front door: messages shaped
//! as the gateway shapes them go in, replies come out. No SQS here; see `e2e` for that.

mod accounts;
mod apartments_link;
mod auth;
mod cache;
mod card_payments;
mod cognito;
mod documents;
mod envelope;
mod histories;
mod me_sessions;
mod notify;
mod overdue;
mod pages;
mod payments;
mod payments_external;
mod phones;
mod refunds;
mod saved_cards;
mod settlements;
mod takeover;
mod utils;
mod webhooks;

use qbill_core::types::QueueName;
use qbill_core::{Engine, Outcome};
pub use qbill_tests::bill_ids;
use qbill_tests::{TestDb, engine, message, token_for};
use serde_json::{Value, json};
use uuid::Uuid;

/// A token of `user` acting as `role` (for `provider`), bound to the fixture's queue: how an
/// operator or a provider's user calls.
pub fn token(
    f: &Fixture,
    user: (i64, &str),
    role: qbill_core::types::Role,
    provider: Option<i64>,
) -> String {
    f.engine
        .services
        .tokens
        .issue(
            &qbill_core::token::Holder {
                user_id: qbill_core::types::UserId(user.0),
                username: user.1.to_owned(),
                role,
                provider: provider.map(qbill_core::types::ProviderId),
                epoch: 0,
            },
            f.queue,
        )
        .unwrap()
        .0
}

/// The seed's operator, `ops`.
pub fn operator(f: &Fixture) -> String {
    token(f, (3, "ops"), qbill_core::types::Role::Operator, None)
}

/// Northwind Energy's API user (provider 1).
pub fn northwind(f: &Fixture) -> String {
    token(
        f,
        (4, "northwind"),
        qbill_core::types::Role::Provider,
        Some(1),
    )
}

/// The demo users of the seed: (id, username).
pub const DEMO: (i64, &str) = (1, "demo");
pub const DEMO2: (i64, &str) = (2, "demo2");

pub struct Fixture {
    pub db: TestDb,
    pub engine: Engine,
    pub queue: QueueName,
}

impl Fixture {
    /// A fresh database with the demo set, and an engine caching in the shared Redis.
    pub async fn new() -> Self {
        let db = TestDb::fresh().await;
        let engine = engine(&db, Some(&qbill_tests::env("REDIS_URL")));
        Self {
            db,
            engine,
            queue: QueueName::parse(&Uuid::new_v4().to_string()).unwrap(),
        }
    }

    pub fn token(&self, user: (i64, &str)) -> String {
        token_for(user.0, user.1, self.queue)
    }

    /// Sends a request with a new request id; returns the reply as JSON.
    pub async fn ask(
        &self,
        route: &str,
        apartment: Option<i64>,
        token: Option<&str>,
        fields: Value,
    ) -> Value {
        self.ask_as(Uuid::new_v4(), route, apartment, token, fields)
            .await
    }

    pub async fn ask_as(
        &self,
        request_id: Uuid,
        route: &str,
        apartment: Option<i64>,
        token: Option<&str>,
        fields: Value,
    ) -> Value {
        let mut body = json!({ "queue_name": self.queue.to_string(), "request_id": request_id });
        body.as_object_mut()
            .unwrap()
            .extend(fields.as_object().cloned().unwrap_or_default());
        self.send(message(route, apartment, token, body)).await
    }

    /// A request of a route without an apartment as the gateway enqueues it for a caller at
    /// `address`: with the `Authorization` header when there is a token.
    pub fn addressed(
        &self,
        route: &str,
        token: Option<&str>,
        fields: Value,
        address: &str,
    ) -> qbill_core::envelope::InboundMessage {
        use qbill_core::envelope::{AUTHORIZATION_MARKER, SOURCE_IP_MARKER, attribute};
        let mut body =
            json!({ "queue_name": self.queue.to_string(), "request_id": Uuid::new_v4() });
        body.as_object_mut()
            .unwrap()
            .extend(fields.as_object().cloned().unwrap_or_default());
        let mut inbound = message(route, None, None, body);
        inbound.attributes.insert(
            attribute::SOURCE_IP.into(),
            format!("{SOURCE_IP_MARKER}{address}"),
        );
        if let Some(token) = token {
            inbound.attributes.insert(
                attribute::AUTHORIZATION.into(),
                format!("{AUTHORIZATION_MARKER}Bearer {token}"),
            );
        }
        inbound
    }

    /// A login as the gateway would enqueue it for a caller at `address`.
    pub fn login_message(
        &self,
        address: &str,
        username: &str,
        password: &str,
    ) -> qbill_core::envelope::InboundMessage {
        let body = json!({
            "queue_name": self.queue.to_string(),
            "request_id": Uuid::new_v4(),
            "username": username,
            "password": password,
        });
        let mut login = message("auth", None, None, body);
        login.attributes.insert(
            qbill_core::envelope::attribute::SOURCE_IP.into(),
            format!("{}{address}", qbill_core::envelope::SOURCE_IP_MARKER),
        );
        login
    }

    /// Logs in as `username` from `address`; returns the reply.
    pub async fn log_in_from(&self, address: &str, username: &str, password: &str) -> Value {
        self.send(self.login_message(address, username, password))
            .await
    }

    pub async fn send(&self, inbound: qbill_core::envelope::InboundMessage) -> Value {
        match self
            .engine
            .handle(&inbound)
            .await
            .expect("no transient failure")
        {
            Outcome::Reply { to, reply, .. } => {
                assert_eq!(to, self.queue, "the reply goes to the client's queue");
                serde_json::to_value(&reply).unwrap()
            }
            Outcome::Drop => panic!("the message was dropped"),
        }
    }

    pub async fn demo_utils(&self, apartment: i64) -> Value {
        let reply = self
            .ask("utils", Some(apartment), Some(&self.token(DEMO)), json!({}))
            .await;
        assert_eq!(reply["status"], "ok", "{reply}");
        reply["data"].clone()
    }

    pub async fn pay(&self, apartment: i64, bills: &[i64]) -> Value {
        self.ask(
            "payments",
            Some(apartment),
            Some(&self.token(DEMO)),
            json!({ "bills_id": bills }),
        )
        .await
    }
}

pub fn error_code(reply: &Value) -> &str {
    assert_eq!(reply["status"], "error", "expected an error reply: {reply}");
    reply["error"]["code"].as_str().expect("an error code")
}
