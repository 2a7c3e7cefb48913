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
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::common::{ACCESS, access, to_data};
use super::{
    Callers, Context, ErrorCode, HandlerError, HandlerResult, Kind, Route, body, idempotency,
};
use crate::cache::CacheKey;
use crate::call::Path;
use crate::types::{ApartmentId, BillId, Currency, ParseError, Role, amount};

/// How many bills one payment may settle.
pub const MAX_BILLS_PER_PAYMENT: usize = 100;

#[derive(Debug)]
pub struct Request {
    pub apartment: ApartmentId,
    /// Distinct, in the order the client listed them.
    pub bills_id: Vec<BillId>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    bills_id: Vec<i64>,
}

impl Route for Request {
    const CALLERS: Callers = Callers::Roles(&[Role::Household]);

    fn parse(path: &Path, raw: serde_json::Map<String, Value>) -> Result<Self, ParseError> {
        let b: Body = body(raw)?;
        if b.bills_id.is_empty() {
            return Err(ParseError::new("`bills_id` must name at least one bill"));
        }
        if b.bills_id.len() > MAX_BILLS_PER_PAYMENT {
            return Err(ParseError::new(format!(
                "one payment settles at most {MAX_BILLS_PER_PAYMENT} bills"
            )));
        }
        let mut bills_id = Vec::with_capacity(b.bills_id.len());
        for id in b.bills_id {
            if id <= 0 {
                return Err(ParseError::new(format!(
                    "bill id {id} is not a positive whole number"
                )));
            }
            let id = BillId(id);
            if bills_id.contains(&id) {
                return Err(ParseError::new(format!("bill {id} is listed twice")));
            }
            bills_id.push(id);
        }
        Ok(Self {
            apartment: path.apartment()?,
            bills_id,
        })
    }

    fn apartment(&self) -> Option<ApartmentId> {
        Some(self.apartment)
    }

    async fn run(&self, cx: &Context<'_>) -> HandlerResult {
        run(cx, self.apartment, &self.bills_id).await
    }
}

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

/// Records the `payment.succeeded` notification (the receipt) of a payment, with its bills.
const RECEIPT: &str = "SELECT notify($1, 'payment.succeeded', 'payment.succeeded:' || p.id,
        jsonb_build_object('payment_id', p.id, 'apartment_id', p.apartment_id, 'total', p.total::text,
                           'currency', p.currency, 'paid_at', p.paid_at,
                           'bills', (SELECT jsonb_agg(jsonb_build_object('id', b.id, 'provider', v.name,
                                                                         'utility', replace(b.utility, '_', ' '),
                                                                         'amount', b.amount::text) ORDER BY b.id)
                                     FROM bills b JOIN providers v ON v.id = b.provider_id WHERE b.payment_id = p.id)))
    FROM payments p WHERE p.id = $2";

async fn run(cx: &Context<'_>, apartment: ApartmentId, bills: &[BillId]) -> HandlerResult {
    let session = cx.caller()?;
    let user = session.user_id;
    let call = cx.call;
    let fingerprint = fingerprint(apartment, bills);
    let ids: Vec<i64> = bills.iter().map(|b| b.0).collect();

    let mut client = crate::store::client(&cx.services.store).await?;
    let tx = client.transaction().await?;
    // Statements are prepared once per connection; after that, each step below is one round
    // trip: the statements of a step are pipelined, sent together and answered in order.
    let (check, claim, lock, clock, insert, settle, bump, record) = tokio::try_join!(
        tx.prepare_cached(ACCESS),
        tx.prepare_cached(
            "INSERT INTO processed_requests (request_id, user_id, kind, fingerprint) VALUES ($1, $2, 'payments', $3)
             ON CONFLICT (request_id) DO NOTHING RETURNING 1",
        ),
        tx.prepare_cached("SELECT id, apartment_id, status, amount FROM bills WHERE id = ANY($1) ORDER BY id FOR UPDATE"),
        tx.prepare_cached("SELECT clock_timestamp()"),
        tx.prepare_cached(
            "INSERT INTO payments (id, apartment_id, user_id, request_id, total, currency, paid_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        ),
        tx.prepare_cached("UPDATE bills SET status = 'paid', payment_id = $1 WHERE id = ANY($2)"),
        tx.prepare_cached("UPDATE apartments SET version = version + 1 WHERE id = $1"),
        tx.prepare_cached("UPDATE processed_requests SET reply = $2 WHERE request_id = $1"),
    )?;

    // 1. Who may pay, and the claim on the request id. A refusal rolls the claim back.
    let fingerprint = fingerprint.as_slice();
    let check_params: [&(dyn ToSql + Sync); 2] = [&apartment.0, &user.0];
    let claim_params: [&(dyn ToSql + Sync); 3] = [&call.request_id.0, &user.0, &fingerprint];
    let (row, claimed) = tokio::try_join!(
        tx.query_opt(&check, &check_params),
        tx.query_opt(&claim, &claim_params),
    )?;
    let access = access(apartment, session.role, row)?;
    if claimed.is_none() {
        return idempotency::replay(&tx, call, user, Kind::Payments, fingerprint).await;
    }

    // 2. The bills, locked in id order; then the clock, read once the locks are held, so a
    // payment that waited is not dated back.
    let lock_params: [&(dyn ToSql + Sync); 1] = [&ids];
    let (rows, now) = tokio::try_join!(tx.query(&lock, &lock_params), tx.query_one(&clock, &[]))?;
    let paid_at: DateTime<Utc> = now.get(0);
    let mut total = Decimal::ZERO;
    let mut paid = Vec::new();
    for bill in bills {
        let Some(row) = rows.iter().find(|r| r.get::<_, i64>(0) == bill.0) else {
            return Err(HandlerError::rejected(
                ErrorCode::NotFound,
                format!("bill {bill} does not exist"),
            ));
        };
        if row.get::<_, Option<i64>>(1) != Some(apartment.0) {
            return Err(HandlerError::rejected(
                ErrorCode::NotFound,
                format!("bill {bill} is not a bill of apartment {apartment}"),
            ));
        }
        match row.get::<_, &str>(2) {
            "paid" => paid.push(bill.to_string()),
            "void" => {
                return Err(HandlerError::rejected(
                    ErrorCode::Conflict,
                    format!("bill {bill} was voided by its provider and cannot be paid"),
                ));
            }
            _ => {}
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

    // 3. The payment, the bills settled, the apartment's version bumped and the receipt kept
    // for repeats, in one round trip.
    let receipt = Receipt {
        payment_id: Uuid::new_v4(),
        apartment_id: apartment,
        bills_id: bills.to_vec(),
        total,
        currency: access.currency,
        paid_at,
    };
    let data = to_data(&receipt)?;
    let currency = access.currency.as_str();
    let insert_params: [&(dyn ToSql + Sync); 7] = [
        &receipt.payment_id,
        &apartment.0,
        &user.0,
        &call.request_id.0,
        &total,
        &currency,
        &paid_at,
    ];
    let settle_params: [&(dyn ToSql + Sync); 2] = [&receipt.payment_id, &ids];
    let bump_params: [&(dyn ToSql + Sync); 1] = [&apartment.0];
    let record_params: [&(dyn ToSql + Sync); 2] = [&call.request_id.0, &data];
    let (_, settled, _, _) = tokio::try_join!(
        tx.execute(&insert, &insert_params),
        tx.execute(&settle, &settle_params),
        tx.execute(&bump, &bump_params),
        tx.execute(&record, &record_params),
    )?;
    if settled != ids.len() as u64 {
        return Err(HandlerError::Internal(anyhow::anyhow!(
            "settled {settled} of {} locked bills",
            ids.len()
        )));
    }
    // The receipt, in the payment's transaction: one per payment.
    let receipt_mail: Option<i64> = tx
        .query_one(RECEIPT, &[&user.0, &receipt.payment_id])
        .await?
        .get(0);
    tx.commit().await?;
    cx.mail_after_commit(receipt_mail);

    // Only after the commit: readers already ignore the old version; this just frees the memory.
    cx.services
        .cache
        .forget(&[
            CacheKey::Utils { apartment },
            CacheKey::Histories { apartment },
        ])
        .await;
    Ok(data)
}

/// The request's canonical form, hashed: the apartment and the set of bills.
fn fingerprint(apartment: ApartmentId, bills: &[BillId]) -> [u8; 32] {
    let mut sorted: Vec<i64> = bills.iter().map(|b| b.0).collect();
    sorted.sort_unstable();
    let canonical = format!("payments\n{apartment}\n{sorted:?}");
    Sha256::digest(canonical.as_bytes()).into()
}
