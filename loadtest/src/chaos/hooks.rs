//! The providers' webhooks under chaos: every provider of the run's bills gets an endpoint on a
//! receiver here, which verifies each delivery with the Standard Webhooks library and, while the
//! faults run, answers some with a 503 (the workers' events timer sends them, through the cut
//! and paused Postgres like everything else). After the run the receiver is healed and the
//! waiting deliveries are sent; then [`check`]: every event of a settled payment (its
//! `payment.succeeded` per provider, its bills' `bill.paid`) arrived at least once, none arrived
//! for a payment that did not settle, and every signature verified.

use std::collections::{BTreeSet, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, bail};
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use deadpool_postgres::Pool;
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::verdict::Verdict;

/// One in this many first deliveries is answered 503 while the faults run.
const REFUSE_ONE_IN: u64 = 6;

#[derive(Default)]
struct Inbox {
    /// (type, payment, provider, bill) of each accepted delivery.
    accepted: Vec<(String, String, i64, Option<i64>)>,
    ids: HashSet<String>,
    unverified: Vec<String>,
}

/// The receiver and the endpoints it is registered as.
pub struct Receiver {
    endpoints: Vec<Uuid>,
    inbox: Arc<Mutex<Inbox>>,
    healed: Arc<AtomicBool>,
    seen: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
}

/// What the webhooks did, for the run's summary line.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Tally {
    pub endpoints: usize,
    /// Deliveries that reached the receiver, and those it answered 503.
    pub received: u64,
    pub refused: u64,
    /// Distinct events accepted.
    pub events: usize,
    /// Events of settled payments expected, and missing.
    pub expected: usize,
    pub missing: usize,
}

impl Receiver {
    /// Listens on 127.0.0.1 and registers an endpoint for every provider of `apartments`' bills.
    pub async fn start(db: &Pool, apartments: &[i64], seed: u64) -> anyhow::Result<Self> {
        let inbox = Arc::new(Mutex::new(Inbox::default()));
        let healed = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(AtomicU64::new(0));
        let refused = Arc::new(AtomicU64::new(0));
        let client = db.get().await?;
        let providers: Vec<i64> = client
            .query(
                "SELECT DISTINCT provider_id FROM bills WHERE apartment_id = ANY($1) ORDER BY 1",
                &[&apartments],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hooks", listener.local_addr()?);
        let mut endpoints = Vec::new();
        let mut secrets = Vec::new();
        for provider in providers {
            let id = Uuid::new_v4();
            let secret = qbill_core::events::webhooks::new_secret();
            client
                .execute(
                    "INSERT INTO webhook_endpoints (id, provider_id, url, secret) VALUES ($1, $2, $3, $4)",
                    &[&id, &provider, &url, &secret],
                )
                .await?;
            endpoints.push(id);
            secrets.push(secret);
        }
        let app = axum::Router::new().route(
            "/hooks",
            axum::routing::post({
                let (inbox, healed, seen, refused, secrets) = (
                    inbox.clone(),
                    healed.clone(),
                    seen.clone(),
                    refused.clone(),
                    secrets.clone(),
                );
                move |headers: HeaderMap, body: Bytes| {
                    let (inbox, healed, seen, refused, secrets) = (
                        inbox.clone(),
                        healed.clone(),
                        seen.clone(),
                        refused.clone(),
                        secrets.clone(),
                    );
                    async move {
                        let n = seen.fetch_add(1, Ordering::Relaxed);
                        let id = header(&headers, "webhook-id");
                        // Refused by the seed, not by chance: a replayed run refuses the same.
                        if !healed.load(Ordering::Relaxed)
                            && (seed ^ n)
                                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                                .is_multiple_of(REFUSE_ONE_IN)
                        {
                            refused.fetch_add(1, Ordering::Relaxed);
                            return StatusCode::SERVICE_UNAVAILABLE;
                        }
                        let verified = secrets.iter().any(|secret| {
                            standardwebhooks::Webhook::new(secret)
                                .is_ok_and(|w| w.verify(&body, &headers).is_ok())
                        });
                        let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        let mut inbox = inbox.lock().expect("the inbox");
                        if !verified {
                            inbox.unverified.push(id);
                            return StatusCode::BAD_REQUEST;
                        }
                        if inbox.ids.insert(id) {
                            inbox.accepted.push((
                                event["type"].as_str().unwrap_or_default().to_owned(),
                                event["data"]["payment_id"]
                                    .as_str()
                                    .unwrap_or_default()
                                    .to_owned(),
                                event["provider_id"].as_i64().unwrap_or_default(),
                                event["data"]["bill_id"].as_i64(),
                            ));
                        }
                        StatusCode::OK
                    }
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Self {
            endpoints,
            inbox,
            healed,
            seen,
            refused,
        })
    }

    /// Answers everything from now on, and sends what waits (every worker stopped: a delivery
    /// left `sending` by one that died goes again), until nothing of the run's endpoints waits.
    pub async fn flush(
        &self,
        db: &Pool,
        qbill: &Path,
        database_url: &str,
        env: &[(String, String)],
    ) -> anyhow::Result<()> {
        self.healed.store(true, Ordering::Relaxed);
        for _ in 0..20 {
            let waiting = db
                .get()
                .await?
                .execute(
                    "UPDATE webhook_deliveries SET next_attempt_at = now()
                     WHERE endpoint_id = ANY($1) AND status IN ('pending', 'sending')",
                    &[&self.endpoints],
                )
                .await?;
            if waiting == 0 {
                return Ok(());
            }
            let out = tokio::process::Command::new(qbill)
                .args(["jobs", "events"])
                .env("DATABASE_URL", database_url)
                .envs(env.iter().cloned())
                .env("QBILL_WEBHOOKS_ALLOW_LOCAL", "true")
                .env("QBILL_LOG", "warn")
                .output()
                .await?;
            if !out.status.success() {
                bail!(
                    "qbill jobs events failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        bail!("webhook deliveries still waiting after 20 runs of the events job")
    }

    /// Every event of a settled payment of `apartments` arrived; none of another.
    pub async fn check(
        &self,
        db: &Pool,
        apartments: &[i64],
        verdict: &mut Verdict,
    ) -> anyhow::Result<Tally> {
        let client = db.get().await?;
        let mut expected: BTreeSet<(String, String, i64, Option<i64>)> = BTreeSet::new();
        for row in client
            .query(
                "SELECT p.id::text, b.provider_id, b.id FROM payments p
                 JOIN bills b ON b.id = ANY (p.bills)
                 WHERE p.apartment_id = ANY($1) AND p.status = 'succeeded'",
                &[&apartments],
            )
            .await
            .context("the settled payments")?
        {
            let (payment, provider, bill): (String, i64, i64) =
                (row.get(0), row.get(1), row.get(2));
            expected.insert(("payment.succeeded".into(), payment.clone(), provider, None));
            expected.insert(("bill.paid".into(), payment, provider, Some(bill)));
        }
        let settled: HashSet<String> = expected.iter().map(|e| e.1.clone()).collect();
        let inbox = self.inbox.lock().expect("the inbox");
        let got: BTreeSet<(String, String, i64, Option<i64>)> = inbox
            .accepted
            .iter()
            .filter(|(kind, ..)| kind == "payment.succeeded" || kind == "bill.paid")
            .map(|(kind, payment, provider, bill)| {
                let bill = if kind == "bill.paid" { *bill } else { None };
                (kind.clone(), payment.clone(), *provider, bill)
            })
            .collect();
        let missing: Vec<String> = expected
            .difference(&got)
            .map(|(kind, payment, provider, bill)| {
                format!("{kind} {payment} provider {provider} bill {bill:?}")
            })
            .collect();
        if !missing.is_empty() {
            verdict.violated(
                "events of a settled payment never delivered to its provider's webhook",
                &missing,
            );
        }
        let unsettled: Vec<String> = got
            .iter()
            .filter(|(_, payment, ..)| !settled.contains(payment))
            .map(|(kind, payment, ..)| format!("{kind} {payment}"))
            .collect();
        if !unsettled.is_empty() {
            verdict.violated(
                "webhooks delivered for a payment that did not settle",
                &unsettled,
            );
        }
        if !inbox.unverified.is_empty() {
            verdict.violated(
                "webhook deliveries whose signature did not verify",
                &inbox.unverified,
            );
        }
        Ok(Tally {
            endpoints: self.endpoints.len(),
            received: self.seen.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            events: inbox.ids.len(),
            expected: expected.len(),
            missing: missing.len(),
        })
    }
}

fn header(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}
