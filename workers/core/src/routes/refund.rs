//! `refund`: an operator gives back all or part of a settled card payment
//! (`POST /payments/{payment_id}/refund`), `amount` (default: all that is left) with a `reason`.
//!
//! The refund is recorded `pending` with the payment locked, in the transaction that claims the
//! request: refunds of one payment queue up there, so the pending and succeeded ones never add up
//! to more than the payment took, even when two are sent at once. After the commit the processor
//! is asked ([`crate::processor::refund::send`]) and its answer settles it: the reply says
//! `succeeded` when the processor answered at once, else `pending` (a webhook or the
//! reconciliation settles it; the payment route shows where it stands). The same request id
//! again is the same refund. A payment refunded whole has its bills due again; the household is
//! mailed each refund.

use rust_decimal::Decimal;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{Callers, Context, ErrorCode, HandlerError, HandlerResult, Kind, Route, body};
use crate::call::Path;
use crate::common::{parse_amount, text};
use crate::idempotency;
use crate::money::Money;
use crate::processor::refund::{self, Refund, RefundLine};
use crate::types::{ApartmentId, BillId, Currency, ParseError, Role, amount};

/// The longest reason, in characters.
pub const MAX_REASON_CHARS: usize = 200;
/// The most refunds one payment takes (failed ones included): a bound on what a runaway script
/// of an operator can ask of the processor for one payment.
pub const MAX_REFUNDS_PER_PAYMENT: i64 = 10;

#[derive(Debug, Serialize)]
pub struct Request {
    pub payment: Uuid,
    /// None: all that is left to refund.
    pub amount: Option<Decimal>,
    pub reason: String,
}

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Body {
    /// How much to give back; all that is left if left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "crate::contract::Amount")]
    pub amount: Option<String>,
    /// Why, for the household's mail and the audit trail.
    #[schemars(length(min = 1, max = 200))]
    pub reason: String,
}

/// The reply's data, kind `refund`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RefundData {
    #[serde(flatten)]
    pub refund: RefundLine,
    pub payment_id: Uuid,
    pub apartment_id: ApartmentId,
    #[serde(with = "amount")]
    #[schemars(with = "crate::contract::Amount")]
    pub payment_total: Decimal,
    /// What of the payment was given back so far (succeeded refunds).
    #[serde(with = "amount")]
    #[schemars(with = "crate::contract::Amount")]
    pub payment_refunded: Decimal,
    /// Why the processor refused it, for a `failed` refund.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// The bills due again, once the payment was refunded whole.
    pub bills_reopened: Vec<BillId>,
}

impl RefundData {
    fn of(refund: &Refund) -> Self {
        Self {
            refund: RefundLine::of(refund),
            payment_id: refund.payment_id,
            apartment_id: ApartmentId(refund.apartment_id),
            payment_total: refund.payment_total.amount(),
            payment_refunded: refund.payment_refunded.amount(),
            failure_reason: refund.failure_reason.clone(),
            bills_reopened: refund::reopened(refund),
        }
    }
}

impl Route for Request {
    const PATH: &str = "/payments/{payment_id}/refund";
    const SUMMARY: &str =
        "Gives back all or part of a settled card payment; a payment refunded whole has its bills due again.";
    type Body = Body;
    type Reply = RefundData;
    const CALLERS: Callers = Callers::Roles(&[Role::Operator]);

    fn parse(path: &Path, raw: Map<String, Value>) -> Result<Self, ParseError> {
        let b: Body = body(raw)?;
        Ok(Self {
            payment: path.payment()?,
            amount: b
                .amount
                .as_deref()
                .map(|a| parse_amount("amount", a))
                .transpose()?,
            reason: text("reason", &b.reason, MAX_REASON_CHARS)?,
        })
    }

    async fn run(&self, cx: &Context<'_>) -> HandlerResult {
        let Some(processor) = &cx.services.processor else {
            return Err(HandlerError::rejected(
                ErrorCode::Conflict,
                "refunds go through the payments processor, and this deployment has none (QBILL_PAYMENTS=ledger)",
            ));
        };
        let mut asked_before = true;
        let data = idempotency::once(cx, Kind::Refund, self, async |tx| {
            asked_before = false;
            let id = self.record(cx, tx).await?;
            let refund = refund::load(tx, id)
                .await?
                .ok_or_else(|| HandlerError::internal(anyhow::anyhow!("refund {id} is gone")))?;
            Self::reply(&RefundData::of(&refund))
        })
        .await?;
        let id = data
            .get("refund_id")
            .and_then(Value::as_str)
            .and_then(|id| id.parse().ok())
            .ok_or_else(|| {
                HandlerError::internal(anyhow::anyhow!("a refund's reply without its id"))
            })?;
        // After the commit: the processor asked (a repeat asks again and finds the same refund).
        let refund = refund::send(cx.services, processor, id, asked_before).await?;
        Self::reply(&RefundData::of(&refund))
    }
}

impl Request {
    /// Records the refund `pending`, with its payment locked; its id.
    async fn record(
        &self,
        cx: &Context<'_>,
        tx: &deadpool_postgres::Transaction<'_>,
    ) -> Result<Uuid, HandlerError> {
        // The payment locked first, its refunds read after, in a statement of their own: a
        // statement that waited for the lock still reads what it reads with the snapshot it
        // started with, which misses the refund of the transaction it waited for.
        let payment = tx
            .query_opt(
                "SELECT status, processor, total, currency, external_method FROM payments WHERE id = $1 FOR UPDATE",
                &[&self.payment],
            )
            .await?;
        let Some(payment) = payment else {
            return Err(HandlerError::rejected(
                ErrorCode::NotFound,
                format!("payment {} does not exist", self.payment),
            ));
        };
        let processor: &str = payment.get("processor");
        if processor != "stripe" {
            return Err(HandlerError::rejected(
                ErrorCode::Conflict,
                match processor {
                    "external" => format!(
                        "payment {} was made outside qbill ({}): give the money back the way it came",
                        self.payment,
                        payment.get::<_, &str>("external_method").replace('_', " ")
                    ),
                    _ => format!(
                        "payment {} was recorded without a processor: there is no money to give back",
                        self.payment
                    ),
                },
            ));
        }
        let refunds = tx
            .query_one(
                "SELECT coalesce(sum(amount) FILTER (WHERE status IN ('pending', 'succeeded')), 0), count(*)
                 FROM refunds WHERE payment_id = $1",
                &[&self.payment],
            )
            .await?;
        let status: &str = payment.get("status");
        if status != "succeeded" {
            return Err(HandlerError::rejected(
                ErrorCode::Conflict,
                format!(
                    "payment {} is {status}: only a settled payment is refunded",
                    self.payment
                ),
            ));
        }
        if refunds.get::<_, i64>(1) >= MAX_REFUNDS_PER_PAYMENT {
            return Err(HandlerError::rejected(
                ErrorCode::Conflict,
                format!(
                    "payment {} has had {MAX_REFUNDS_PER_PAYMENT} refunds, the most one payment takes",
                    self.payment
                ),
            ));
        }
        let currency =
            Currency::parse(payment.get::<_, &str>("currency")).map_err(HandlerError::internal)?;
        let total = Money::new(payment.get("total"), currency);
        let held = Money::new(refunds.get(0), currency);
        let left = total.amount() - held.amount();
        if left <= Decimal::ZERO {
            return Err(HandlerError::rejected(
                ErrorCode::Conflict,
                format!(
                    "payment {} of {total} is refunded in full already (refunds under way included)",
                    self.payment
                ),
            ));
        }
        let amount = Money::new(self.amount.unwrap_or(left), currency);
        if amount.amount() > left {
            return Err(HandlerError::rejected(
                ErrorCode::Conflict,
                format!(
                    "a refund of {amount} is more than what is left to refund of payment {}: {} of {total} (refunds under way included)",
                    self.payment,
                    Money::new(left, currency)
                ),
            ));
        }
        if amount.minor_units().is_err() {
            return Err(HandlerError::rejected(
                ErrorCode::InvalidRequest,
                format!("{amount} has more decimal places than {currency} has"),
            ));
        }
        let id = Uuid::new_v4();
        tx.execute(
            "INSERT INTO refunds (id, payment_id, request_id, requested_by, amount, currency, reason)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &id,
                &self.payment,
                &cx.call.request_id.0,
                &cx.caller()?.user_id.0,
                &amount.amount(),
                &currency.as_str(),
                &self.reason,
            ],
        )
        .await?;
        Ok(id)
    }
}
