//! A client of the HTTP contract: POST a request, then long-poll the reply queue for its reply.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use qbill_core::routes::{Route, auth, histories, payments, utils};
use serde_json::{Value, json};
use uuid::Uuid;

pub struct GatewayClient {
    http: reqwest::Client,
    base: String,
    queue: Uuid,
    token: Option<String>,
    /// Replies read while waiting for another one, kept for whoever asks next.
    pending: Vec<Value>,
}

/// What the gateway said to a POST.
#[derive(Debug)]
pub struct Accepted {
    pub status: u16,
    pub body: Value,
}

impl GatewayClient {
    /// A client with its own reply queue, named by `queue`.
    pub fn new(base: &str, queue: Uuid) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(40))
            // `Authorization`, not `authorization`: LocalStack's gateway checks a required
            // header's name case-sensitively (AWS does not; HTTP names are case-insensitive).
            .http1_title_case_headers()
            .build()
            .expect("an HTTP client");
        Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            queue,
            token: None,
            pending: Vec::new(),
        }
    }

    pub fn queue(&self) -> Uuid {
        self.queue
    }

    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    pub fn set_token(&mut self, token: Option<String>) {
        self.token = token;
    }

    /// Sends route `R`'s own body to its path (its `{name}` segments from `params`) and waits
    /// for the reply.
    pub async fn send<R: Route>(
        &mut self,
        params: Params<'_>,
        body: &R::Body,
        request_id: Uuid,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        let path = fill_path(R::PATH, params)?;
        let fields = serde_json::to_value(body).context("a body that is not JSON")?;
        self.request(&path, request_id, fields, timeout).await
    }

    /// POSTs `fields` plus `queue_name` and `request_id` to `path`, with the bearer token if any.
    pub async fn post(
        &self,
        path: &str,
        request_id: Uuid,
        fields: Value,
    ) -> anyhow::Result<Accepted> {
        let mut body = json!({ "queue_name": self.queue, "request_id": request_id });
        if let (Value::Object(body), Value::Object(fields)) = (&mut body, fields) {
            body.extend(fields);
        }
        self.post_raw(path, body.to_string()).await
    }

    /// POSTs a body as it is, for tests of what the gateway refuses.
    pub async fn post_raw(&self, path: &str, body: String) -> anyhow::Result<Accepted> {
        let mut request = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("POST {path}"))?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok(Accepted { status, body })
    }

    /// One long poll of the reply queue through `{poll_path}/{queue}`; replies read are consumed.
    pub async fn poll(&self, poll_path: &str, wait_seconds: u64) -> anyhow::Result<Vec<Value>> {
        let url = format!(
            "{}{poll_path}/{}?wait={}",
            self.base,
            self.queue,
            wait_seconds.min(20)
        );
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .with_context(|| format!("GET {poll_path}"))?;
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .with_context(|| format!("GET {poll_path} answered {status}"))?;
        if !status.is_success() {
            bail!("GET {poll_path} answered {status}: {body}");
        }
        match body.get("replies") {
            Some(Value::Array(replies)) => Ok(replies.clone()),
            _ => bail!("GET {poll_path} answered without a replies list: {body}"),
        }
    }

    /// POSTs a request and waits up to `timeout` for the reply with its request id.
    pub async fn request(
        &mut self,
        path: &str,
        request_id: Uuid,
        fields: Value,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        let accepted = self.post(path, request_id, fields).await?;
        if accepted.status != 202 {
            bail!(
                "POST {path} was not accepted: {} {}",
                accepted.status,
                accepted.body
            );
        }
        self.wait_for("/replies", request_id, timeout).await
    }

    /// Waits for the reply to `request_id`, polling `{poll_path}/{queue}`.
    pub async fn wait_for(
        &mut self,
        poll_path: &str,
        request_id: Uuid,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        let deadline = Instant::now() + timeout;
        let wanted = request_id.to_string();
        loop {
            if let Some(at) = self
                .pending
                .iter()
                .position(|r| r["request_id"] == wanted.as_str())
            {
                return Ok(self.pending.remove(at));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("no reply to request {request_id} within {timeout:?}");
            }
            let asked = Instant::now();
            let replies = self.poll(poll_path, left.as_secs().clamp(1, 20)).await?;
            // An empty answer that came at once means the reply queue does not exist yet (the
            // worker creates it with the first reply): wait a little instead of spinning.
            if replies.is_empty() && asked.elapsed() < Duration::from_millis(500) {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            self.pending.extend(replies);
        }
    }

    /// Logs in; on success the client keeps the token for the apartment routes.
    pub async fn auth(
        &mut self,
        username: &str,
        password: &str,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        let body = auth::Body {
            username: username.to_owned(),
            password: password.to_owned(),
        };
        let reply = self
            .send::<auth::Request>(&[], &body, Uuid::new_v4(), timeout)
            .await?;
        if let Some(token) = reply["data"]["token"].as_str() {
            self.token = Some(token.to_owned());
        }
        Ok(reply)
    }

    /// `utils` of an apartment (its first page), under `request_id`.
    pub async fn utils(
        &mut self,
        apartment: i64,
        request_id: Uuid,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        self.utils_page(apartment, None, request_id, timeout).await
    }

    /// The page of `utils` after `cursor` (a `next_cursor` of the page before).
    pub async fn utils_page(
        &mut self,
        apartment: i64,
        cursor: Option<&str>,
        request_id: Uuid,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        let body = utils::Body {
            cursor: cursor.map(str::to_owned),
        };
        self.send::<utils::Request>(&[("apartment_id", &apartment)], &body, request_id, timeout)
            .await
    }

    /// `histories` of an apartment (its first page), under `request_id`; `window` is the
    /// (date_down, date_up) the client holds.
    pub async fn histories(
        &mut self,
        apartment: i64,
        window: Option<(&str, &str)>,
        request_id: Uuid,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        self.histories_page(apartment, window, None, request_id, timeout)
            .await
    }

    /// The page of `histories` after `cursor` (a `next_cursor` of the page before, asked with
    /// the same window).
    pub async fn histories_page(
        &mut self,
        apartment: i64,
        window: Option<(&str, &str)>,
        cursor: Option<&str>,
        request_id: Uuid,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        let body = histories::Body {
            date_down: window.map(|(down, _)| down.to_owned()),
            date_up: window.map(|(_, up)| up.to_owned()),
            cursor: cursor.map(str::to_owned),
        };
        self.send::<histories::Request>(&[("apartment_id", &apartment)], &body, request_id, timeout)
            .await
    }

    /// Pays `bills` of an apartment under `request_id` (reuse it to repeat the payment safely),
    /// with the card `payment_method` if given (else the reply carries the `client_secret` for
    /// Stripe.js).
    pub async fn pay(
        &mut self,
        apartment: i64,
        bills: &[i64],
        payment_method: Option<String>,
        request_id: Uuid,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        let body = payments::Body {
            bills_id: bills.to_vec(),
            payment_method,
        };
        self.send::<payments::Request>(&[("apartment_id", &apartment)], &body, request_id, timeout)
            .await
    }
}

/// A path's `{name}` segments and their values.
pub type Params<'a> = &'a [(&'a str, &'a (dyn std::fmt::Display + Sync))];

/// `path` with its `{name}` segments filled from `params` (ids: numbers and UUIDs).
pub fn fill_path(path: &str, params: Params<'_>) -> anyhow::Result<String> {
    let mut filled = Vec::new();
    for segment in path.split('/') {
        match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(name) => {
                let (_, value) = params
                    .iter()
                    .find(|(n, _)| *n == name)
                    .with_context(|| format!("the path {path} needs {name}"))?;
                filled.push(value.to_string());
            }
            None => filled.push(segment.to_owned()),
        }
    }
    Ok(filled.join("/"))
}
