//! A provider's webhook receiver on 127.0.0.1: it keeps what it gets, verifies each delivery's
//! signature with the Standard Webhooks library (not qbill's own code), and answers as told (up,
//! down with a 503, slow, or redirecting elsewhere).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// How the receiver answers.
#[derive(Debug, Clone)]
pub enum Mode {
    Up,
    /// A 503, as a receiver being deployed.
    Down,
    /// A 200 after this long.
    Slow(Duration),
    /// A 307 to this URL.
    Redirect(String),
}

/// One delivery as it arrived.
#[derive(Debug, Clone)]
pub struct Received {
    pub id: String,
    pub timestamp: String,
    pub signature: String,
    pub body: Value,
    /// The body as it came, byte for byte (what a signature covers).
    pub raw: Vec<u8>,
    /// Whether the signature verified under one of the receiver's secrets.
    pub verified: bool,
    /// Whether it was answered with a 2xx.
    pub accepted: bool,
}

#[derive(Default)]
struct State {
    mode: Option<Mode>,
    secrets: Vec<String>,
    received: Vec<Received>,
}

#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    state: Arc<Mutex<State>>,
}

impl Receiver {
    /// Listens on a free port of 127.0.0.1, up.
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(State {
            mode: Some(Mode::Up),
            ..State::default()
        }));
        let shared = state.clone();
        let app = axum::Router::new().route(
            "/hooks",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let state = shared.clone();
                async move { receive(state, headers, body).await }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url: format!("http://{address}/hooks"),
            state,
        }
    }

    pub fn set_mode(&self, mode: Mode) {
        self.state.lock().unwrap().mode = Some(mode);
    }

    /// The secrets it verifies with (an endpoint's, as registration or a rotation showed it).
    pub fn trust(&self, secret: &str) {
        self.state.lock().unwrap().secrets.push(secret.to_owned());
    }

    pub fn forget_secrets(&self) {
        self.state.lock().unwrap().secrets.clear();
    }

    /// Everything that arrived, in order.
    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    /// The accepted deliveries' bodies.
    pub fn accepted(&self) -> Vec<Value> {
        self.received()
            .into_iter()
            .filter(|r| r.accepted)
            .map(|r| r.body)
            .collect()
    }
}

async fn receive(state: Arc<Mutex<State>>, headers: HeaderMap, body: Bytes) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (mode, secrets) = {
        let s = state.lock().unwrap();
        (s.mode.clone().unwrap_or(Mode::Up), s.secrets.clone())
    };
    // Any one of the secrets the receiver holds verifies it, as a receiver mid-rotation does.
    let verified = secrets.iter().any(|secret| {
        let mut map = http::HeaderMap::new();
        for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
            if let Some(v) = headers.get(name) {
                map.insert(
                    http::HeaderName::from_static(name),
                    http::HeaderValue::from_bytes(v.as_bytes()).unwrap(),
                );
            }
        }
        standardwebhooks::Webhook::new(secret)
            .map(|w| w.verify(&body, &map).is_ok())
            .unwrap_or(false)
    });
    let (status, answer) = match &mode {
        Mode::Up => (StatusCode::OK, None),
        Mode::Down => (StatusCode::SERVICE_UNAVAILABLE, None),
        Mode::Slow(pause) => {
            tokio::time::sleep(*pause).await;
            (StatusCode::OK, None)
        }
        Mode::Redirect(to) => (StatusCode::TEMPORARY_REDIRECT, Some(to.clone())),
    };
    state.lock().unwrap().received.push(Received {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        raw: body.to_vec(),
        verified,
        accepted: status.is_success(),
    });
    match answer {
        Some(location) => (status, [("location", location)]).into_response(),
        None => (status, "").into_response(),
    }
}
