//! Delivering the outbox's mails: at least once, each mail taken by one sender at a time.
//!
//! A sender takes due mails with a lease (status `sending` until [`LEASE`] from now), skipping rows
//! another sender holds, so two senders at once never send the same mail. A sent mail is marked
//! `sent`; a failed one goes back to `pending` with a later attempt ([`backoff`]), and after
//! [`MAX_ATTEMPTS`] it is marked `dead` and listed by `qbill notifications failed`. A sender that
//! dies between sending and marking leaves the lease to run out, and the mail goes again: at least
//! once, never lost.

use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use serde::Serialize;
use serde_json::Value;

use super::{Event, templates};
use crate::documents::{self, Format, Subject};
use crate::services::Services;
use crate::types::{ApartmentId, UserId};

/// A taken mail counts as being sent for this long.
pub const LEASE: Duration = Duration::from_secs(120);
/// Attempts before a mail is marked dead.
pub const MAX_ATTEMPTS: i32 = 8;
/// Mails taken at once, and sent at once.
const BATCH: i64 = 50;
const AT_ONCE: usize = 10;

/// How long to wait after the `attempts`-th failure: 30 s, doubling, at most 6 h.
pub fn backoff(attempts: i32) -> Duration {
    let exponent = attempts.clamp(1, 16) as u32 - 1;
    Duration::from_secs((30u64 << exponent).min(6 * 3600))
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

impl Report {
    fn add(&mut self, other: Report) {
        self.sent += other.sent;
        self.failed += other.failed;
        self.dead += other.dead;
    }
}

const TAKE: &str = "WITH due AS (
        SELECT id FROM notifications
        WHERE mail_status IN ('pending', 'sending') AND next_attempt_at <= now()
          AND ($1::bigint[] IS NULL OR id = ANY($1))
        ORDER BY next_attempt_at, id LIMIT $2 FOR UPDATE SKIP LOCKED)
    UPDATE notifications n
    SET mail_status = 'sending', attempts = n.attempts + 1, next_attempt_at = now() + make_interval(secs => $3)
    FROM due WHERE n.id = due.id
    RETURNING n.id, n.event, n.data, n.mail_to, n.attempts,
              (SELECT coalesce(u.display_name, u.username) FROM users u WHERE u.id = n.user_id) AS name,
              n.user_id";

const SENT: &str = "UPDATE notifications n
    SET mail_status = 'sent', sent_at = now(), message_id = $2, last_error = NULL, next_attempt_at = NULL,
        mail_to = CASE WHEN u.deleted_at IS NULL THEN n.mail_to END
    FROM users u WHERE n.id = $1 AND u.id = n.user_id";

const FAILED: &str = "UPDATE notifications
    SET mail_status = CASE WHEN attempts >= $3 THEN 'dead' ELSE 'pending' END,
        next_attempt_at = now() + make_interval(secs => $2), last_error = $4
    WHERE id = $1 AND mail_status = 'sending'
    RETURNING mail_status";

struct Taken {
    id: i64,
    event: String,
    data: Value,
    to: String,
    attempts: i32,
    name: Option<String>,
    user: i64,
}

/// Sends the due mails, batch after batch, until none is due. With `only`, sends just those
/// (the mails a request recorded), if they are due and no other sender holds them.
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
            report.add(result?);
        }
        if only.is_some() {
            return Ok(report);
        }
    }
}

/// Sends the mails a request just committed, at once; a failure only logs (the outbox keeps
/// them for the sender job).
pub async fn send_now(services: &Services, ids: &[i64]) {
    if ids.is_empty() {
        return;
    }
    match deliver(services, Some(ids)).await {
        Ok(report) if report.failed + report.dead > 0 => {
            tracing::warn!(
                mail.failed = report.failed + report.dead,
                "a mail could not be sent at once; the sender will try again"
            );
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(
            error = %format!("{e:#}"),
            "mails could not be sent at once; the sender will try again"
        ),
    }
}

async fn take(services: &Services, only: Option<&[i64]>) -> anyhow::Result<Vec<Taken>> {
    let client = crate::store::client(&services.store).await?;
    let only: Option<Vec<i64>> = only.map(<[i64]>::to_vec);
    let rows = client
        .query(TAKE, &[&only, &BATCH, &LEASE.as_secs_f64()])
        .await?;
    Ok(rows
        .iter()
        .map(|r| Taken {
            id: r.get("id"),
            event: r.get("event"),
            data: r.get("data"),
            to: r.get("mail_to"),
            attempts: r.get("attempts"),
            name: r.get("name"),
            user: r.get("user_id"),
        })
        .collect())
}

async fn send_one(services: &Services, mut taken: Taken) -> anyhow::Result<Report> {
    let outcome = match link_document(services, &mut taken).await {
        // The document could not be issued now (S3 unreachable, say): tried again later.
        Err(e) => Err((e, false)),
        Ok(()) => render_and_send(services, &taken).await,
    };
    record(services, &taken, outcome).await
}

async fn render_and_send(
    services: &Services,
    taken: &Taken,
) -> Result<String, (anyhow::Error, bool)> {
    match render(services, taken) {
        Ok(mail) => services
            .mail
            .send(&taken.to, &mail.subject, &mail.text, &mail.html)
            .await
            .map_err(|e| (e, false)),
        // A mail that cannot be rendered never will be: dead at once.
        Err(e) => Err((e, true)),
    }
}

/// A receipt mail links its receipt, a PDF document issued for it (once: the same document
/// whenever it is asked for), by a link that works as long as S3 and the signing credentials
/// allow (7 days at most). Without a documents bucket, the mail goes without the link.
async fn link_document(services: &Services, taken: &mut Taken) -> anyhow::Result<()> {
    let files = &services.files;
    if taken.event != Event::PaymentSucceeded.as_str() || files.bucket().is_none() {
        return Ok(());
    }
    let apartment = taken.data["apartment_id"]
        .as_i64()
        .context("a receipt names its apartment")?;
    let payment: uuid::Uuid = taken.data["payment_id"]
        .as_str()
        .context("a receipt names its payment")?
        .parse()?;
    let mut client = crate::store::client(&services.store).await?;
    let issued = documents::issue(
        files,
        &mut client,
        documents::Owner::Apartment(ApartmentId(apartment)),
        UserId(taken.user),
        Subject::Receipt(payment),
        Format::Pdf,
    )
    .await?;
    let link = files
        .link(&issued.object_key, files.config.mail_url_lifetime)
        .await?;
    taken.data["document_url"] = Value::String(link.url);
    taken.data["document_expires"] = Value::String(crate::format::time(link.expires_at));
    Ok(())
}

/// Records how sending went.
async fn record(
    services: &Services,
    taken: &Taken,
    outcome: Result<String, (anyhow::Error, bool)>,
) -> anyhow::Result<Report> {
    let client = crate::store::client(&services.store).await?;
    match outcome {
        Ok(message_id) => {
            client.execute(SENT, &[&taken.id, &message_id]).await?;
            tracing::info!(mail.id = taken.id, mail.event = %taken.event, "mail sent");
            Ok(Report {
                sent: 1,
                ..Report::default()
            })
        }
        Err((e, permanent)) => {
            // A permanent failure is dead whatever its attempts.
            let dead_after = if permanent { 0 } else { MAX_ATTEMPTS };
            let error = format!("{e:#}");
            let status: Option<String> = client
                .query_opt(
                    FAILED,
                    &[
                        &taken.id,
                        &backoff(taken.attempts).as_secs_f64(),
                        &dead_after,
                        &error,
                    ],
                )
                .await?
                .map(|r| r.get(0));
            let dead = status.as_deref() == Some("dead");
            tracing::warn!(
                mail.id = taken.id,
                mail.event = %taken.event,
                mail.attempts = taken.attempts,
                mail.dead = dead,
                error = %error,
                "mail not sent"
            );
            Ok(if dead {
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

/// The mail for a taken row: a verification or reset mail gets its link, derived from the nonce
/// the row keeps, and the security mail of an address change the link that puts the old address
/// back (from its `undo_nonce`).
fn render(services: &Services, taken: &Taken) -> anyhow::Result<templates::Rendered> {
    let event = Event::parse(&taken.event)?;
    let web_url = services.mail.config.web_url.trim_end_matches('/');
    let mut data = taken.data.clone();
    let page = match event {
        Event::VerifyEmail => Some("verify-email"),
        Event::PasswordReset => Some("reset-password"),
        _ => None,
    };
    if let (Some(page), Some(nonce)) = (page, data.get("nonce").and_then(Value::as_str)) {
        let token = services.tokens.email_token(nonce);
        data["link"] = Value::String(format!("{web_url}/{page}?token={token}"));
    }
    if let Some(nonce) = data.get("undo_nonce").and_then(Value::as_str) {
        let token = services.tokens.email_token(nonce);
        data["undo_link"] = Value::String(format!("{web_url}/undo-email?token={token}"));
    }
    templates::render(
        event,
        &data,
        taken.name.as_deref().unwrap_or("there"),
        web_url,
    )
}
