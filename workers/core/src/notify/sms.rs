//! Text messages: a phone number's verification code, and notifications a user turned SMS on for,
//! sent through Amazon SNS (`Publish` to a phone number; LocalStack's SNS keeps what it was sent).
//!
//! Both go from the `sms_outbox` table (`sql/V25__sms.sql`), written in the transaction of what
//! they tell: a code by the profile route, a notification by `notify()`. After the commit the
//! route sends its code at once ([`send_now`]); the sender job (`notify`) drains the rest, at
//! least once, with a lease and backoff, as it drains mail. A text is short: a notification is
//! its mail's subject (the same templates), a code six digits.
//!
//! A code is never stored: it is derived from the verification's nonce with the engine's key
//! ([`code`]), so neither the outbox nor a leaked database shows it.

use std::time::Duration;

use aws_sdk_sns::types::MessageAttributeValue;
use futures::StreamExt;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use super::{Event, templates};
use crate::error::HandlerError;
use crate::services::Services;
use crate::token::Tokens;
use crate::types::UserId;

/// The event of a verification code's text.
pub const VERIFY: &str = "phone.verify";
/// A taken text counts as being sent for this long.
pub const LEASE: Duration = Duration::from_secs(120);
/// Attempts before a text is given up.
pub const MAX_ATTEMPTS: i32 = 6;
const BATCH: i64 = 50;
const AT_ONCE: usize = 10;
/// What starts every text, so its reader knows who sends it.
const SENDER: &str = "qbill";

/// Sends texts; the SNS client is built on first use.
#[derive(Default)]
pub struct Texter {
    client: OnceCell<aws_sdk_sns::Client>,
}

impl Texter {
    async fn client(&self) -> &aws_sdk_sns::Client {
        self.client
            .get_or_init(|| async { aws_sdk_sns::Client::new(crate::managed::sdk().await) })
            .await
    }

    /// Sends `text` to `phone` as a transactional SMS; SNS's message id.
    pub async fn send(&self, phone: &str, text: &str) -> anyhow::Result<String> {
        let sent = self
            .client()
            .await
            .publish()
            .phone_number(phone)
            .message(text)
            .message_attributes(
                "AWS.SNS.SMS.SMSType",
                MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value("Transactional")
                    .build()?,
            )
            .send()
            .await?;
        Ok(sent.message_id().unwrap_or_default().to_owned())
    }
}

/// Forgets the user's number: verified or waiting, and the texts not yet sent to it (a profile
/// that removes it, and a deletion).
pub async fn forget_number(
    tx: &impl deadpool_postgres::GenericClient,
    user: UserId,
) -> Result<(), HandlerError> {
    tx.execute(
        "UPDATE users SET phone = NULL, phone_verified_at = NULL WHERE id = $1",
        &[&user.0],
    )
    .await?;
    tx.execute(
        "DELETE FROM phone_verifications WHERE user_id = $1",
        &[&user.0],
    )
    .await?;
    tx.execute(
        "UPDATE sms_outbox SET status = 'dead', phone = NULL, data = '{}', next_attempt_at = NULL,
                last_error = 'the number was removed'
         WHERE user_id = $1 AND status IN ('pending', 'sending')",
        &[&user.0],
    )
    .await?;
    Ok(())
}

/// The six-digit code of a verification's `nonce`.
pub fn code(tokens: &Tokens, nonce: &str) -> String {
    let derived = tokens.email_token(&format!("phone:{nonce}"));
    let digest = Sha256::digest(derived.as_bytes());
    let n = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) % 1_000_000;
    format!("{n:06}")
}

/// What one drain did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Report {
    pub sent: u64,
    /// Failed, to be tried again.
    pub failed: u64,
    /// Failed for the last time.
    pub dead: u64,
}

const TAKE: &str = "WITH due AS (
        SELECT id FROM sms_outbox
        WHERE status IN ('pending', 'sending') AND next_attempt_at <= now()
          AND ($1::bigint[] IS NULL OR id = ANY($1))
        ORDER BY next_attempt_at, id LIMIT $2 FOR UPDATE SKIP LOCKED)
    UPDATE sms_outbox s
    SET status = 'sending', attempts = s.attempts + 1, next_attempt_at = now() + make_interval(secs => $3)
    FROM due WHERE s.id = due.id
    RETURNING s.id, s.event, s.phone, s.attempts, s.data AS code_data,
              (SELECT n.data FROM notifications n WHERE n.id = s.notification_id) AS data,
              (SELECT coalesce(u.display_name, u.username) FROM users u WHERE u.id = s.user_id) AS name";

const SENT: &str =
    "UPDATE sms_outbox SET status = 'sent', sent_at = now(), message_id = $2, phone = NULL,
        data = '{}', last_error = NULL, next_attempt_at = NULL
    WHERE id = $1 AND status = 'sending'";

const FAILED: &str = "UPDATE sms_outbox
    SET status = CASE WHEN attempts >= $3 THEN 'dead' ELSE 'pending' END,
        phone = CASE WHEN attempts >= $3 THEN NULL ELSE phone END,
        next_attempt_at = CASE WHEN attempts >= $3 THEN NULL ELSE now() + make_interval(secs => $2) END,
        last_error = $4
    WHERE id = $1 AND status = 'sending'
    RETURNING status";

struct Taken {
    id: i64,
    event: String,
    phone: String,
    attempts: i32,
    text: anyhow::Result<String>,
}

/// Sends the due texts until none is due; with `only`, just those (a request's own).
pub async fn deliver(services: &Services, only: Option<&[i64]>) -> anyhow::Result<Report> {
    let mut report = Report::default();
    loop {
        let taken = take(services, only).await?;
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
            report.sent += r.sent;
            report.failed += r.failed;
            report.dead += r.dead;
        }
        if only.is_some() {
            return Ok(report);
        }
    }
}

/// Sends the texts a request just committed; a failure only logs (the outbox keeps them).
pub async fn send_now(services: &Services, ids: &[i64]) {
    if ids.is_empty() {
        return;
    }
    if let Err(e) = deliver(services, Some(ids)).await {
        tracing::warn!(error = %format!("{e:#}"), "texts could not be sent at once; the sender will try again");
    }
}

async fn take(services: &Services, only: Option<&[i64]>) -> anyhow::Result<Vec<Taken>> {
    let client = crate::store::client(&services.store).await?;
    let only: Option<Vec<i64>> = only.map(<[i64]>::to_vec);
    let rows = client
        .query(TAKE, &[&only, &BATCH, &LEASE.as_secs_f64()])
        .await?;
    let web_url = services.mail.config.web_url.trim_end_matches('/');
    Ok(rows
        .iter()
        .map(|r| {
            let event: String = r.get("event");
            let text = if event == VERIFY {
                let data: Value = r.get("code_data");
                data["nonce"]
                    .as_str()
                    .map(|nonce| {
                        format!(
                            "{SENDER}: your code is {}. It verifies this number for your account and works for 10 minutes.",
                            code(&services.tokens, nonce)
                        )
                    })
                    .ok_or_else(|| anyhow::anyhow!("a verification text without its nonce"))
            } else {
                let name: Option<String> = r.get("name");
                r.get::<_, Option<Value>>("data")
                    .ok_or_else(|| anyhow::anyhow!("the notification is gone"))
                    .and_then(|data| {
                        let rendered = templates::render(
                            Event::parse(&event)?,
                            &data,
                            name.as_deref().unwrap_or("there"),
                            web_url,
                        )?;
                        Ok(format!("{SENDER}: {}", rendered.subject))
                    })
            };
            Taken {
                id: r.get("id"),
                event,
                phone: r.get("phone"),
                attempts: r.get("attempts"),
                text,
            }
        })
        .collect())
}

async fn send_one(services: &Services, taken: Taken) -> anyhow::Result<Report> {
    let (outcome, permanent) = match &taken.text {
        Ok(text) => (services.sms.send(&taken.phone, text).await, false),
        // What cannot be rendered never will be.
        Err(e) => (Err(anyhow::anyhow!("{e:#}")), true),
    };
    let client = crate::store::client(&services.store).await?;
    match outcome {
        Ok(message_id) => {
            client.execute(SENT, &[&taken.id, &message_id]).await?;
            tracing::info!(sms.id = taken.id, sms.event = %taken.event, "text sent");
            Ok(Report {
                sent: 1,
                ..Report::default()
            })
        }
        Err(e) => {
            let error = format!("{e:#}");
            let dead_after = if permanent { 0 } else { MAX_ATTEMPTS };
            let status: Option<String> = client
                .query_opt(
                    FAILED,
                    &[
                        &taken.id,
                        &super::outbox::backoff(taken.attempts).as_secs_f64(),
                        &dead_after,
                        &error,
                    ],
                )
                .await?
                .map(|r| r.get(0));
            tracing::warn!(sms.id = taken.id, sms.event = %taken.event, sms.attempts = taken.attempts, error = %error, "text not sent");
            Ok(if status.as_deref() == Some("dead") {
                Report {
                    dead: 1,
                    ..Report::default()
                }
            } else {
                Report {
                    failed: 1,
                    ..Report::default()
                }
            })
        }
    }
}
