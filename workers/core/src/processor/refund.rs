//! Refunds in the books: money of a settled card payment given back, all or part.
//!
//! The `refund` route records a refund `pending` with its payment locked (so two at once never
//! give back more than the payment took), in the transaction that claims the request. After the
//! commit, [`send`] asks the processor (the refund's id is its idempotency key, and in its
//! metadata, so a repeat finds the refund it made), and the answer, a webhook
//! (`refund.updated`, `charge.refunded`) or the reconciliation is applied by [`apply`], once, with
//! the payment locked: a refund that succeeded adds to the payment's `refunded`, mails the
//! household, and, once the payment is refunded whole, makes its bills due again (`open`, or
//! `overdue` if past their grace already: a late fee charged stays, and none is charged for the
//! refund). A refund the processor refused or failed gives its amount back to what can be
//! refunded. A refund that succeeded never changes again; a later failure of it at the processor
//! is a discrepancy, told loudly, for an operator.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Processor;
use super::book::Via;
use super::stripe::{self, NewRefund, RefundStatus};
use crate::cache::CacheKey;
use crate::error::HandlerError;
use crate::money::Money;
use crate::services::Services;
use crate::types::{ApartmentId, BillId, Currency, amount};

/// A refund as the books hold it, with what it needs of its payment.
#[derive(Debug, Clone)]
pub struct Refund {
    pub id: Uuid,
    pub payment_id: Uuid,
    pub apartment_id: i64,
    pub amount: Money,
    pub reason: String,
    /// `pending`, `succeeded`, `failed` or `canceled`.
    pub status: String,
    pub processor_refund_id: Option<String>,
    pub failure_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub succeeded_at: Option<DateTime<Utc>>,
    /// The payment's intent.
    pub intent_id: Option<String>,
    /// The payment's total and what of it was given back, after this refund if it succeeded.
    pub payment_total: Money,
    pub payment_refunded: Money,
    /// The bills due again because the payment was refunded whole.
    pub reopened: Vec<i64>,
}

impl Refund {
    pub fn is_final(&self) -> bool {
        self.status != "pending"
    }

    const SELECT: &str =
        "SELECT r.id, r.payment_id, p.apartment_id, r.amount, r.currency, r.reason, r.status,
            r.processor_refund_id, r.failure_reason, r.created_at, r.succeeded_at, p.intent_id,
            p.total, p.refunded,
            CASE WHEN p.refunded = p.total THEN array(SELECT unnest(p.bills) EXCEPT
                                                     SELECT id FROM bills WHERE payment_id = p.id)
                 ELSE '{}' END AS reopened
        FROM refunds r JOIN payments p ON p.id = r.payment_id";

    fn from_row(row: &tokio_postgres::Row) -> Result<Self, HandlerError> {
        let currency =
            Currency::parse(row.get::<_, &str>("currency")).map_err(HandlerError::internal)?;
        let mut reopened: Vec<i64> = row.get("reopened");
        reopened.sort_unstable();
        Ok(Self {
            id: row.get("id"),
            payment_id: row.get("payment_id"),
            apartment_id: row.get("apartment_id"),
            amount: Money::new(row.get("amount"), currency),
            reason: row.get("reason"),
            status: row.get("status"),
            processor_refund_id: row.get("processor_refund_id"),
            failure_reason: row.get("failure_reason"),
            created_at: row.get("created_at"),
            succeeded_at: row.get("succeeded_at"),
            intent_id: row.get("intent_id"),
            payment_total: Money::new(row.get("total"), currency),
            payment_refunded: Money::new(row.get("refunded"), currency),
            reopened,
        })
    }
}

/// A refund as a payment's reply and the history list it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RefundLine {
    pub refund_id: Uuid,
    #[serde(with = "amount")]
    #[schemars(with = "crate::contract::Amount")]
    pub amount: Decimal,
    pub currency: Currency,
    pub reason: String,
    /// `pending` (the processor is at work), `succeeded` (the money went back), `failed` or
    /// `canceled` (it did not; the amount can be refunded again).
    #[schemars(with = "crate::contract::RefundStatus")]
    pub status: String,
    pub created_at: DateTime<Utc>,
    /// When the money went back; none until it did.
    pub refunded_at: Option<DateTime<Utc>>,
}

impl RefundLine {
    pub fn of(refund: &Refund) -> Self {
        Self {
            refund_id: refund.id,
            amount: refund.amount.amount(),
            currency: refund.amount.currency(),
            reason: refund.reason.clone(),
            status: refund.status.clone(),
            created_at: refund.created_at,
            refunded_at: refund.succeeded_at,
        }
    }
}

/// The refund `id`, as it stands.
pub async fn load(
    client: &impl deadpool_postgres::GenericClient,
    id: Uuid,
) -> Result<Option<Refund>, HandlerError> {
    let statement = client
        .prepare_cached(&format!("{} WHERE r.id = $1", Refund::SELECT))
        .await?;
    client
        .query_opt(&statement, &[&id])
        .await?
        .as_ref()
        .map(Refund::from_row)
        .transpose()
}

/// The refunds of a payment, oldest first.
pub async fn of_payment(
    client: &impl deadpool_postgres::GenericClient,
    payment: Uuid,
) -> Result<Vec<Refund>, HandlerError> {
    let statement = client
        .prepare_cached(&format!(
            "{} WHERE r.payment_id = $1 ORDER BY r.created_at, r.id",
            Refund::SELECT
        ))
        .await?;
    client
        .query(&statement, &[&payment])
        .await?
        .iter()
        .map(Refund::from_row)
        .collect()
}

/// Asks the processor for refund `id`'s money, after the transaction that recorded it committed,
/// and applies the answer. `asked_before`: the request came again, so the processor may hold the
/// refund already (it is looked for by its metadata before one is made, for a processor that
/// keeps no idempotency keys). A processor out of reach is [`HandlerError::Transient`]: the
/// request comes again and asks again.
pub async fn send(
    services: &Services,
    processor: &Processor,
    id: Uuid,
    asked_before: bool,
) -> Result<Refund, HandlerError> {
    let refund = load(&*crate::store::client(&services.store).await?, id)
        .await?
        .ok_or_else(|| HandlerError::internal(anyhow::anyhow!("refund {id} is gone")))?;
    if refund.is_final() {
        return Ok(refund);
    }
    let intent = refund.intent_id.clone().ok_or_else(|| {
        HandlerError::internal(anyhow::anyhow!(
            "refund {id} of payment {} without an intent",
            refund.payment_id
        ))
    })?;
    let found = if asked_before || refund.processor_refund_id.is_some() {
        match processor.stripe.intent_refunds(&intent).await {
            Ok(refunds) => refunds.into_iter().find(|r| r.refund_id() == Some(id)),
            Err(stripe::Error::Unavailable(e)) => return Err(HandlerError::Transient(e)),
            Err(e) => return Err(HandlerError::internal(e)),
        }
    } else {
        None
    };
    let answer = match found {
        Some(found) => found,
        None => {
            // Another delivery of this request may have asked meanwhile (a worker paused past
            // the visibility timeout wakes here): what the books say then decides, so that a
            // processor keeping no idempotency keys (localstripe) is not asked twice.
            let now = load(&*crate::store::client(&services.store).await?, id)
                .await?
                .ok_or_else(|| HandlerError::internal(anyhow::anyhow!("refund {id} is gone")))?;
            if now.is_final() {
                return Ok(now);
            }
            if now.processor_refund_id.is_some() {
                return Err(HandlerError::Transient(anyhow::anyhow!(
                    "refund {id} was asked for by another delivery meanwhile; the next one reads it"
                )));
            }
            match processor
                .stripe
                .create_refund(&NewRefund {
                    refund_id: id,
                    payment_id: refund.payment_id,
                    intent: &intent,
                    amount: refund
                        .amount
                        .minor_units()
                        .map_err(HandlerError::internal)?,
                    reason: &refund.reason,
                })
                .await
            {
                Ok(answer) => answer,
                Err(stripe::Error::Unavailable(e)) => return Err(HandlerError::Transient(e)),
                // Refused: no money moved; what it would have given back can be refunded again.
                Err(e) => {
                    tracing::warn!(refund = %id, error = %e, "the processor refused a refund");
                    return refuse(services, id, &e.to_string()).await;
                }
            }
        }
    };
    match apply(services, id, &answer, Via::Confirm, None).await? {
        Applied::Now(refund) => Ok(*refund),
        _ => Ok(refund),
    }
}

/// Records that the processor refused refund `id`: `failed`, with why.
async fn refuse(services: &Services, id: Uuid, why: &str) -> Result<Refund, HandlerError> {
    let mut client = crate::store::client(&services.store).await?;
    let tx = client.transaction().await?;
    tx.execute(
        "SELECT set_config('qbill.via', $1, true)",
        &[&Via::Confirm.as_str()],
    )
    .await?;
    tx.execute(
        "SELECT 1 FROM payments WHERE id = (SELECT payment_id FROM refunds WHERE id = $1) FOR UPDATE",
        &[&id],
    )
    .await?;
    let why: String = why.chars().take(300).collect();
    tx.execute(
        "UPDATE refunds SET status = 'failed', failure_reason = $2 WHERE id = $1 AND status = 'pending'",
        &[&id, &why],
    )
    .await?;
    let refund = load(&tx, id)
        .await?
        .ok_or_else(|| HandlerError::internal(anyhow::anyhow!("refund {id} is gone")))?;
    tx.commit().await?;
    crate::metrics::refund_status(&refund.status, Via::Confirm.as_str());
    Ok(refund)
}

/// What came of [`apply`].
#[derive(Debug)]
pub enum Applied {
    /// Applied; the refund as it stands after.
    Now(Box<Refund>),
    /// Its event was claimed before: nothing was done.
    Before,
    /// No refund of ours has that id.
    Missing,
}

/// Applies what the processor says of refund `id`, claiming its event `(id, type)` if any.
pub async fn apply(
    services: &Services,
    id: Uuid,
    answer: &stripe::Refund,
    via: Via,
    event: Option<(&str, &str)>,
) -> Result<Applied, HandlerError> {
    let mut client = crate::store::client(&services.store).await?;
    let tx = client.transaction().await?;
    tx.execute("SELECT set_config('qbill.via', $1, true)", &[&via.as_str()])
        .await?;
    // The payment first, as the route locks it, then the refund.
    let payment = tx
        .query_opt(
            "SELECT p.id, p.user_id FROM payments p WHERE p.id = (SELECT payment_id FROM refunds WHERE id = $1)
             FOR UPDATE",
            &[&id],
        )
        .await?;
    let Some(payment) = payment else {
        return Ok(Applied::Missing);
    };
    let payment_id: Uuid = payment.get("id");
    let user_id: i64 = payment.get("user_id");
    if let Some((event, kind)) = event {
        let claimed = tx
            .execute(
                "INSERT INTO processor_events (id, type, payment_id) VALUES ($1, $2, $3)
                 ON CONFLICT (id) DO NOTHING",
                &[&event, &kind, &payment_id],
            )
            .await?;
        if claimed == 0 {
            return Ok(Applied::Before);
        }
    }
    let before = load(&tx, id)
        .await?
        .ok_or_else(|| HandlerError::internal(anyhow::anyhow!("refund {id} is gone")))?;
    if before.processor_refund_id.is_none() {
        tx.execute(
            "UPDATE refunds SET processor_refund_id = $2 WHERE id = $1",
            &[&id, &answer.id],
        )
        .await?;
    }
    let matches = before.amount.minor_units().ok() == Some(answer.amount)
        && answer
            .currency
            .eq_ignore_ascii_case(before.amount.currency().as_str());
    let mut mail = None;
    let mut changed = false;
    match (before.status.as_str(), answer.status) {
        ("pending", RefundStatus::Succeeded) if !matches => discrepancy(
            &before,
            "refund_amount_differs",
            &format!(
                "the processor refunded {} {} for a refund of {}",
                answer.amount, answer.currency, before.amount
            ),
        ),
        ("pending", RefundStatus::Succeeded) => {
            changed = true;
            tx.execute(
                "UPDATE refunds SET status = 'succeeded', succeeded_at = clock_timestamp() WHERE id = $1",
                &[&id],
            )
            .await?;
            let whole: bool = tx
                .query_one(
                    "UPDATE payments SET refunded = refunded + $2 WHERE id = $1 RETURNING refunded = total",
                    &[&payment_id, &before.amount.amount()],
                )
                .await?
                .get(0);
            if whole {
                tx.execute(REOPEN, &[&payment_id]).await?;
            }
            tx.execute(PARTS, &[&id]).await?;
            mail = tx
                .query_one(NOTICE, &[&id, &user_id])
                .await?
                .get::<_, Option<i64>>(0);
        }
        ("pending", RefundStatus::Failed | RefundStatus::Canceled) => {
            changed = true;
            let status = if answer.status == RefundStatus::Failed {
                "failed"
            } else {
                "canceled"
            };
            tx.execute(
                "UPDATE refunds SET status = $2, failure_reason = $3 WHERE id = $1",
                &[&id, &status, &answer.failure_reason],
            )
            .await?;
        }
        ("succeeded", RefundStatus::Failed | RefundStatus::Canceled) => discrepancy(
            &before,
            "refund_failed_after_success",
            "the processor says a refund that succeeded failed: the money may not have gone back",
        ),
        _ => {}
    }
    if changed {
        crate::common::bump_apartments(&tx, &[before.apartment_id]).await?;
    }
    let after = load(&tx, id)
        .await?
        .ok_or_else(|| HandlerError::internal(anyhow::anyhow!("refund {id} is gone")))?;
    tx.commit().await?;
    if changed {
        crate::metrics::refund_status(&after.status, via.as_str());
        let apartment = ApartmentId(after.apartment_id);
        services
            .cache
            .forget(&[
                CacheKey::Utils { apartment },
                CacheKey::Histories { apartment },
            ])
            .await;
    }
    if let Some(mail) = mail {
        crate::notify::outbox::send_now(services, &[mail]).await;
    }
    Ok(Applied::Now(Box::new(after)))
}

/// The bills of a payment refunded whole, due again: `overdue` if past their grace already (its
/// late fee, if one was charged, stays; none is charged for the refund), else `open`.
const REOPEN: &str = "UPDATE bills b
    SET status = CASE WHEN b.due_date + v.grace_days < (now() AT TIME ZONE 'UTC')::date THEN 'overdue' ELSE 'open' END,
        payment_id = NULL
    FROM providers v WHERE v.id = b.provider_id AND b.payment_id = $1";

/// The refund's part for each provider (`sql/V21`), once it succeeded and the payment's
/// `refunded` counts it.
const PARTS: &str = "INSERT INTO refund_parts (refund_id, provider_id, amount)
    WITH r AS (SELECT r.id, r.payment_id, r.amount, p.total, p.refunded = p.total AS whole, p.bills
               FROM refunds r JOIN payments p ON p.id = r.payment_id WHERE r.id = $1),
         shares AS (SELECT b.provider_id, sum(b.amount) AS share
                    FROM r JOIN bills b ON b.id = ANY(r.bills) GROUP BY b.provider_id),
         given AS (SELECT rp.provider_id, sum(rp.amount) AS given
                   FROM r JOIN refunds x ON x.payment_id = r.payment_id JOIN refund_parts rp ON rp.refund_id = x.id
                   GROUP BY rp.provider_id),
         split AS (SELECT s.provider_id,
                          CASE WHEN r.whole THEN s.share - coalesce(g.given, 0)
                               ELSE trunc(r.amount * s.share / r.total, 2) END AS part,
                          row_number() OVER (ORDER BY s.share DESC, s.provider_id) AS rank
                   FROM shares s CROSS JOIN r LEFT JOIN given g ON g.provider_id = s.provider_id),
         parts AS (SELECT provider_id,
                          part + CASE WHEN rank = 1 AND NOT (SELECT whole FROM r)
                                      THEN (SELECT amount FROM r) - sum(part) OVER () ELSE 0 END AS part
                   FROM split)
    SELECT $1, provider_id, part FROM parts WHERE part > 0";

/// The household's notice of a refund (`refund.succeeded`); the mail to send, if any.
const NOTICE: &str = "SELECT notify($2, 'refund.succeeded', 'refund.succeeded:' || r.id,
        jsonb_build_object('refund_id', r.id, 'payment_id', p.id, 'apartment_id', p.apartment_id,
                           'amount', r.amount::text, 'currency', r.currency, 'reason', r.reason,
                           'refunded_at', r.succeeded_at, 'payment_total', p.total::text,
                           'refunded', p.refunded::text, 'whole', p.refunded = p.total,
                           'bills', CASE WHEN p.refunded = p.total THEN to_jsonb(p.bills) ELSE '[]' END))
    FROM refunds r JOIN payments p ON p.id = r.payment_id WHERE r.id = $1";

/// A difference between the processor and the books, told loudly; nothing is changed.
fn discrepancy(refund: &Refund, kind: &'static str, what: &str) {
    crate::metrics::payment_discrepancy(kind);
    tracing::error!(
        refund = %refund.id,
        payment = %refund.payment_id,
        processor_refund = ?refund.processor_refund_id,
        discrepancy = kind,
        "{what}; the books were not changed"
    );
}

/// The bills a refund made due again, as the reply names them.
pub fn reopened(refund: &Refund) -> Vec<BillId> {
    refund.reopened.iter().map(|b| BillId(*b)).collect()
}
