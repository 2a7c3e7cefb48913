//! Delivering webhooks: at least once, each delivery taken by one sender at a time.
//!
//! A sender takes due deliveries with a lease (status `sending` until [`LEASE`] from now),
//! skipping rows another sender holds, so two senders at once never send one delivery twice at
//! once; the request is made with no transaction open. A 2xx within
//! [`super::outbound::TIMEOUT`] marks it `delivered`; anything else is an attempt recorded and a
//! later try ([`backoff`]), until the delivery is [`GIVE_UP_AFTER`] old: then it is `failed`, and
//! its endpoint, if nothing reached it since the delivery was made, is disabled and the
//! provider's users are mailed. A sender that dies mid-request leaves the lease to run out, and
//! the delivery goes again: receivers deduplicate on `webhook-id`.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::Serialize;
use uuid::Uuid;

use super::Event;
use super::webhooks::sign;
use crate::services::Services;

/// A taken delivery counts as being sent for this long (the request's timeout and then some).
pub const LEASE: Duration = Duration::from_secs(60);
/// A delivery still failing this long after it was made is given up.
pub const GIVE_UP_AFTER: chrono::Duration = chrono::Duration::days(3);
/// Deliveries taken at once, and sent at once.
const BATCH: i64 = 100;
const AT_ONCE: usize = 16;
/// The most of an endpoint's answer kept with an attempt.
const ERROR_CHARS: usize = 300;

/// How long to wait after the `attempts`-th failure: 5 s, doubling, at most 12 hours (about
/// 20 attempts over the 3 days).
pub fn backoff(attempts: i32) -> Duration {
    let exponent = attempts.clamp(1, 20) as u32 - 1;
    Duration::from_secs((5u64 << exponent).min(12 * 3600))
}

/// What one run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Report {
    pub delivered: u64,
    /// Failed, to be tried again.
    pub failed: u64,
    /// Failed for the last time.
    pub given_up: u64,
    /// Endpoints disabled after their deliveries failed for 3 days.
    pub disabled: u64,
}

const TAKE: &str = "WITH due AS (
        SELECT d.id FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
        WHERE d.status IN ('pending', 'sending') AND d.next_attempt_at <= now() AND e.enabled
        ORDER BY d.next_attempt_at, d.id LIMIT $1 FOR UPDATE OF d SKIP LOCKED)
    UPDATE webhook_deliveries d
    SET status = 'sending', attempts = d.attempts + 1, next_attempt_at = clock_timestamp() + make_interval(secs => $2)
    FROM due, events ev, webhook_endpoints e
    WHERE d.id = due.id AND ev.id = d.event_id AND e.id = d.endpoint_id
    RETURNING d.id AS delivery_id, d.attempts, d.created_at, e.id AS endpoint_id, e.url, e.secret,
              CASE WHEN e.previous_secret_until > now() THEN e.previous_secret END AS previous_secret,
              ev.id, ev.type, ev.provider_id, ev.occurred_at, ev.data";

struct Taken {
    delivery: i64,
    attempts: i32,
    created_at: chrono::DateTime<chrono::Utc>,
    endpoint: Uuid,
    url: String,
    secrets: Vec<String>,
    event: Event,
}

/// How one attempt went.
struct Attempt {
    status_code: Option<u16>,
    error: Option<String>,
    took: Duration,
}

impl Attempt {
    fn delivered(&self) -> bool {
        self.error.is_none() && self.status_code.is_some_and(|c| (200..300).contains(&c))
    }
}

/// Sends every due delivery, batch after batch, until none is due.
pub async fn run(services: &Services) -> anyhow::Result<Report> {
    let mut report = Report::default();
    loop {
        let taken = take(services).await?;
        if taken.is_empty() {
            return Ok(report);
        }
        let results: Vec<anyhow::Result<Report>> = futures::stream::iter(taken)
            .map(|t| send_one(services, t))
            .buffer_unordered(AT_ONCE)
            .collect()
            .await;
        for result in results {
            let r = result?;
            report.delivered += r.delivered;
            report.failed += r.failed;
            report.given_up += r.given_up;
            report.disabled += r.disabled;
        }
    }
}

async fn take(services: &Services) -> anyhow::Result<Vec<Taken>> {
    let client = crate::store::client(&services.store).await?;
    let rows = client.query(TAKE, &[&BATCH, &LEASE.as_secs_f64()]).await?;
    rows.iter()
        .map(|r| {
            let mut secrets = vec![r.try_get::<_, String>("secret")?];
            if let Some(previous) = r.try_get::<_, Option<String>>("previous_secret")? {
                secrets.push(previous);
            }
            Ok(Taken {
                delivery: r.try_get("delivery_id")?,
                attempts: r.try_get("attempts")?,
                created_at: r.try_get("created_at")?,
                endpoint: r.try_get("endpoint_id")?,
                url: r.try_get("url")?,
                secrets,
                event: Event::from_row(r)?,
            })
        })
        .collect()
}

/// The request, with no transaction open.
async fn attempt(services: &Services, taken: &Taken) -> Attempt {
    let started = Instant::now();
    let body = serde_json::to_vec(&taken.event).expect("an event serialises");
    let message_id = taken.event.message_id();
    let timestamp = chrono::Utc::now().timestamp();
    let secrets: Vec<&str> = taken.secrets.iter().map(String::as_str).collect();
    let outbound = &services.outbound;
    let url = match reqwest::Url::parse(&taken.url) {
        Ok(url) => url,
        Err(e) => {
            return Attempt {
                status_code: None,
                error: Some(format!("the url is not one: {e}")),
                took: started.elapsed(),
            };
        }
    };
    if let Err(e) = super::outbound::check_url(&url, outbound.allow_local) {
        return Attempt {
            status_code: None,
            error: Some(e.to_string()),
            took: started.elapsed(),
        };
    }
    let sent = outbound
        .client
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", &message_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header(
            "webhook-signature",
            sign(&message_id, timestamp, &body, &secrets),
        )
        .body(body)
        .send()
        .await;
    match sent {
        Ok(response) => {
            let status = response.status().as_u16();
            let error = if response.status().is_success() {
                None
            } else {
                let text = response.text().await.unwrap_or_default();
                Some(format!(
                    "answered {status}: {}",
                    text.chars().take(ERROR_CHARS).collect::<String>()
                ))
            };
            Attempt {
                status_code: Some(status),
                error,
                took: started.elapsed(),
            }
        }
        Err(e) => Attempt {
            status_code: None,
            error: Some(describe(&e)),
            took: started.elapsed(),
        },
    }
}

/// A request's failure, with its causes (a refused address is a cause of a connect error).
fn describe(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        "no answer within 10 s".to_owned()
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text.chars().take(ERROR_CHARS).collect()
}

const DELIVERED: &str = "UPDATE webhook_deliveries SET status = 'delivered', delivered_at = now(), next_attempt_at = NULL
    WHERE id = $1 AND status = 'sending'";

const FAILED: &str = "UPDATE webhook_deliveries
    SET status = CASE WHEN $3 THEN 'failed' ELSE 'pending' END,
        next_attempt_at = CASE WHEN $3 THEN NULL ELSE clock_timestamp() + make_interval(secs => $2) END
    WHERE id = $1 AND status = 'sending'
    RETURNING status";

const ATTEMPT: &str = "INSERT INTO webhook_attempts (delivery_id, status_code, error, duration_ms) VALUES ($1, $2, $3, $4)";

/// Disables the endpoint of a delivery given up on, unless something reached it since the
/// delivery was made (then only that event's deliveries fail); its provider's users are told.
const DISABLE: &str = "UPDATE webhook_endpoints e
    SET enabled = false, updated_at = now(),
        disabled_reason = 'deliveries failed for 3 days (last: ' || left($3, 200) || ')'
    WHERE e.id = $1 AND e.enabled
      AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.endpoint_id = e.id AND d.delivered_at >= $2)
    RETURNING e.provider_id, e.url";

const TELL_PROVIDER: &str =
    "SELECT notify(u.id, 'webhook.disabled', 'webhook.disabled:' || $1::text || ':' || $2::text,
        jsonb_build_object('endpoint_id', $1::text, 'url', $3::text, 'reason', $4::text))
    FROM users u WHERE u.provider_id = $5 AND u.deleted_at IS NULL";

async fn send_one(services: &Services, taken: Taken) -> anyhow::Result<Report> {
    let outcome = attempt(services, &taken).await;
    let mut client = crate::store::client(&services.store).await?;
    let tx = client.transaction().await?;
    // Locked, so its event is not forgotten under it; gone already (forgotten meanwhile, or its
    // endpoint deleted), there is nothing to record.
    if tx
        .query_opt(
            "SELECT 1 FROM webhook_deliveries WHERE id = $1 FOR UPDATE",
            &[&taken.delivery],
        )
        .await?
        .is_none()
    {
        return Ok(Report::default());
    }
    tx.execute(
        ATTEMPT,
        &[
            &taken.delivery,
            &outcome.status_code.map(i32::from),
            &outcome.error,
            &(outcome.took.as_millis().min(i32::MAX as u128) as i32),
        ],
    )
    .await?;
    let mut report = Report::default();
    let mut mails = Vec::new();
    if outcome.delivered() {
        tx.execute(DELIVERED, &[&taken.delivery]).await?;
        report.delivered = 1;
        crate::metrics::webhook_delivery("delivered");
    } else {
        let give_up = chrono::Utc::now() - taken.created_at >= GIVE_UP_AFTER;
        let status: Option<String> = tx
            .query_opt(
                FAILED,
                &[
                    &taken.delivery,
                    &backoff(taken.attempts).as_secs_f64(),
                    &give_up,
                ],
            )
            .await?
            .map(|r| r.get(0));
        let error = outcome.error.clone().unwrap_or_default();
        if status.as_deref() == Some("failed") {
            report.given_up = 1;
            crate::metrics::webhook_delivery("given_up");
            if let Some(row) = tx
                .query_opt(DISABLE, &[&taken.endpoint, &taken.created_at, &error])
                .await?
            {
                report.disabled = 1;
                let provider: i64 = row.get(0);
                let url: String = row.get(1);
                let reason = "its deliveries failed for 3 days";
                for r in tx
                    .query(
                        TELL_PROVIDER,
                        &[
                            &taken.endpoint.to_string(),
                            &taken.delivery.to_string(),
                            &url,
                            &reason,
                            &provider,
                        ],
                    )
                    .await?
                {
                    if let Some(id) = r.get::<_, Option<i64>>(0) {
                        mails.push(id);
                    }
                }
                tracing::warn!(webhook.endpoint = %taken.endpoint, provider, "webhook endpoint disabled after 3 days of failed deliveries");
            }
        } else {
            report.failed = 1;
            crate::metrics::webhook_delivery("failed");
        }
        tracing::info!(
            webhook.delivery = taken.delivery,
            webhook.endpoint = %taken.endpoint,
            webhook.attempts = taken.attempts,
            error = %error,
            "webhook not delivered"
        );
    }
    tx.commit().await?;
    crate::notify::outbox::send_now(services, &mails).await;
    Ok(report)
}
