//! `payments`: settles the chosen bills of one apartment in one transaction, all or none.
//!
//! The request id is claimed first, inside the transaction: a duplicate delivered at the same
//! moment waits on that row until this transaction ends, then replays the stored receipt (or, if
//! this one was rejected and rolled back, runs afresh). Bills are locked in id order, so
//! overlapping payments queue up instead of deadlocking, and each bill is paid exactly once.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{HandlerError, HandlerResult, authorize, to_data};
use crate::cache::CacheKey;
use crate::engine::Engine;
use crate::envelope::Envelope;
use crate::reply::ErrorCode;
use crate::types::{ApartmentId, BillId, Currency, amount};

#[derive(Debug, Serialize)]
pub struct Receipt {
    pub payment_id: Uuid,
    pub apartment_id: ApartmentId,
    pub bills_id: Vec<BillId>,
    #[serde(with = "amount")]
    pub total: Decimal,
    pub currency: Currency,
    pub paid_at: DateTime<Utc>,
}

pub async fn run(
    engine: &Engine,
    envelope: &Envelope,
    apartment: ApartmentId,
    bills: &[BillId],
) -> HandlerResult {
    let access = authorize(engine, envelope, apartment).await?;
    let user = access.session.user_id;
    let fingerprint = fingerprint(apartment, bills);
    let ids: Vec<i64> = bills.iter().map(|b| b.0).collect();

    let mut client = engine.store.get().await?;
    let tx = client.transaction().await?;

    let claim = tx
        .prepare_cached(
            "INSERT INTO processed_requests (request_id, user_id, kind, fingerprint) VALUES ($1, $2, 'payments', $3)
             ON CONFLICT (request_id) DO NOTHING RETURNING 1",
        )
        .await?;
    if tx
        .query_opt(
            &claim,
            &[&envelope.request_id.0, &user.0, &fingerprint.as_slice()],
        )
        .await?
        .is_none()
    {
        return replay(&tx, envelope, user.0, &fingerprint).await;
    }

    let lock = tx
        .prepare_cached("SELECT id, apartment_id, status, amount FROM bills WHERE id = ANY($1) ORDER BY id FOR UPDATE")
        .await?;
    let rows = tx.query(&lock, &[&ids]).await?;
    let mut total = Decimal::ZERO;
    let mut paid = Vec::new();
    for bill in bills {
        let Some(row) = rows.iter().find(|r| r.get::<_, i64>(0) == bill.0) else {
            return Err(HandlerError::rejected(
                ErrorCode::NotFound,
                format!("bill {bill} does not exist"),
            ));
        };
        if row.get::<_, i64>(1) != apartment.0 {
            return Err(HandlerError::rejected(
                ErrorCode::NotFound,
                format!("bill {bill} is not a bill of apartment {apartment}"),
            ));
        }
        if row.get::<_, &str>(2) == "paid" {
            paid.push(bill.to_string());
        }
        total += row.get::<_, Decimal>(3);
    }
    if !paid.is_empty() {
        return Err(HandlerError::rejected(
            ErrorCode::AlreadyPaid,
            format!(
                "already paid: bill {}; nothing was charged",
                paid.join(", ")
            ),
        ));
    }

    let payment_id = Uuid::new_v4();
    let insert = tx
        .prepare_cached(
            "INSERT INTO payments (id, apartment_id, user_id, request_id, total, currency)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING paid_at",
        )
        .await?;
    let paid_at: DateTime<Utc> = tx
        .query_one(
            &insert,
            &[
                &payment_id,
                &apartment.0,
                &user.0,
                &envelope.request_id.0,
                &total,
                &access.currency.as_str(),
            ],
        )
        .await?
        .get(0);
    let settle = tx
        .prepare_cached("UPDATE bills SET status = 'paid', payment_id = $1 WHERE id = ANY($2)")
        .await?;
    let settled = tx.execute(&settle, &[&payment_id, &ids]).await?;
    if settled != ids.len() as u64 {
        return Err(HandlerError::Internal(anyhow::anyhow!(
            "settled {settled} of {} locked bills",
            ids.len()
        )));
    }
    let bump = tx
        .prepare_cached(
            "UPDATE apartments SET version = version + 1 WHERE id = $1 RETURNING version",
        )
        .await?;
    let version: i64 = tx.query_one(&bump, &[&apartment.0]).await?.get(0);

    let receipt = Receipt {
        payment_id,
        apartment_id: apartment,
        bills_id: bills.to_vec(),
        total,
        currency: access.currency,
        paid_at,
    };
    let data = to_data(&receipt)?;
    let record = tx
        .prepare_cached("UPDATE processed_requests SET reply = $2 WHERE request_id = $1")
        .await?;
    tx.execute(&record, &[&envelope.request_id.0, &data])
        .await?;
    tx.commit().await?;

    // Only after the commit: readers already ignore the old version; this just frees the memory.
    let old = version - 1;
    engine
        .cache
        .forget(&[
            CacheKey::Utils {
                apartment,
                version: old,
            },
            CacheKey::Histories {
                apartment,
                version: old,
            },
        ])
        .await;
    Ok(data)
}

/// The request id was seen before: the same request gets the same receipt; another request is
/// refused.
async fn replay(
    tx: &tokio_postgres::Transaction<'_>,
    envelope: &Envelope,
    user: i64,
    fingerprint: &[u8],
) -> HandlerResult {
    let row = tx
        .query_one(
            "SELECT user_id, kind, fingerprint, reply FROM processed_requests WHERE request_id = $1",
            &[&envelope.request_id.0],
        )
        .await?;
    let same = row.get::<_, i64>(0) == user
        && row.get::<_, &str>(1) == "payments"
        && row.get::<_, &[u8]>(2) == fingerprint;
    if !same {
        return Err(HandlerError::rejected(
            ErrorCode::Conflict,
            "this request_id was already used for a different request; use a new request_id",
        ));
    }
    let reply: Option<Value> = row.get(3);
    tracing::info!(
        billing.replayed = true,
        "payment request seen before; replaying its receipt"
    );
    reply.ok_or_else(|| {
        HandlerError::Internal(anyhow::anyhow!("processed request without a stored reply"))
    })
}

/// The request's canonical form, hashed: the apartment and the set of bills.
fn fingerprint(apartment: ApartmentId, bills: &[BillId]) -> [u8; 32] {
    let mut sorted: Vec<i64> = bills.iter().map(|b| b.0).collect();
    sorted.sort_unstable();
    let canonical = format!("payments\n{apartment}\n{sorted:?}");
    Sha256::digest(canonical.as_bytes()).into()
}
