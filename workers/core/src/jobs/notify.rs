//! The sender job: drains the notification outbox (see [`crate::notify::outbox`]), and lists the
//! mails that kept failing (`qbill notifications failed`).

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use serde::Serialize;

use crate::services::Services;

/// What one run sent: mails, and texts.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Report {
    pub sent: u64,
    /// Failed, to be tried again.
    pub failed: u64,
    /// Failed for the last time.
    pub dead: u64,
    pub sms: crate::notify::sms::Report,
}

/// Sends every mail and text that is due, with retries and backoff across runs.
pub async fn run(services: &Services) -> anyhow::Result<Report> {
    let mail = crate::notify::outbox::deliver(services, None).await?;
    let sms = crate::notify::sms::deliver(services, None).await?;
    tracing::info!(
        job = "notify",
        sent = mail.sent,
        failed = mail.failed,
        dead = mail.dead,
        sms.sent = sms.sent,
        sms.failed = sms.failed,
        sms.dead = sms.dead,
        "notify job done"
    );
    Ok(Report {
        sent: mail.sent,
        failed: mail.failed,
        dead: mail.dead,
        sms,
    })
}

/// A mail that was given up on.
#[derive(Debug, Serialize)]
pub struct Failed {
    pub id: i64,
    pub user_id: i64,
    pub event: String,
    pub created_at: DateTime<Utc>,
    pub attempts: i32,
    pub last_error: Option<String>,
}

/// The mails marked dead, newest first (at most `limit`).
pub async fn failed(pool: &Pool, limit: i64) -> anyhow::Result<Vec<Failed>> {
    let rows = pool
        .get()
        .await?
        .query(
            "SELECT id, user_id, event, created_at, attempts, last_error FROM notifications
             WHERE mail_status = 'dead' ORDER BY id DESC LIMIT $1",
            &[&limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Failed {
            id: r.get("id"),
            user_id: r.get("user_id"),
            event: r.get("event"),
            created_at: r.get("created_at"),
            attempts: r.get("attempts"),
            last_error: r.get("last_error"),
        })
        .collect())
}
