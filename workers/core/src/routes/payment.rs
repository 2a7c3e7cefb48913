//! `payment`: one payment of an apartment, for its owner or an operator
//! (`POST /apartments/{apartment_id}/payments/{payment_id}`): where it stands, as `payments`
//! answered it, and its history from the audit trail. For a client that lost the reply, or waits
//! for the processor's webhook to settle a payment it confirmed with Stripe.js; with the refunds
//! of it and what they gave back.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{Callers, Context, ErrorCode, HandlerError, HandlerResult, Route, body};
use crate::call::Path;
use crate::common::authorize;
use crate::processor::book::{self, Receipt};
use crate::processor::refund::{self, RefundLine};
use crate::types::amount;
use rust_decimal::Decimal;
use crate::types::{ApartmentId, ParseError, Role};

#[derive(Debug)]
pub struct Request {
    pub apartment: ApartmentId,
    pub payment: Uuid,
}

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Body {}

/// The reply's data, kind `payment`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct PaymentData {
    #[serde(flatten)]
    pub payment: Receipt,
    /// Its changes of status, oldest first.
    pub history: Vec<Step>,
    /// What of it was given back (its succeeded refunds).
    #[serde(with = "amount")]
    #[schemars(with = "crate::contract::Amount")]
    pub refunded: Decimal,
    /// Its refunds, oldest first, whatever became of them.
    pub refunds: Vec<RefundLine>,
}

/// A change of the payment's status, as the audit trail recorded it.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Step {
    pub at: DateTime<Utc>,
    #[schemars(with = "crate::contract::PaymentStatus")]
    pub status: String,
    /// Who said so: `request`, `confirm`, `webhook`, `expiry` or `reconcile`.
    pub via: String,
}

impl Route for Request {
    const PATH: &str = "/apartments/{apartment_id}/payments/{payment_id}";
    const SUMMARY: &str = "One payment of the apartment, where it stands and its history.";
    type Body = Body;
    type Reply = PaymentData;
    const CALLERS: Callers = Callers::Roles(&[Role::Household, Role::Operator]);
    /// Its access check is the first thing it asks the database.
    const EPOCH_AT_ACCESS: bool = true;

    fn parse(path: &Path, raw: Map<String, Value>) -> Result<Self, ParseError> {
        let _: Body = body(raw)?;
        Ok(Self {
            apartment: path.apartment()?,
            payment: path.payment()?,
        })
    }

    fn apartment(&self) -> Option<ApartmentId> {
        Some(self.apartment)
    }

    async fn run(&self, cx: &Context<'_>) -> HandlerResult {
        let client = crate::store::client(&cx.services.store).await?;
        authorize(cx, &*client, self.apartment).await?;
        let payment = book::load(&*client, self.payment)
            .await?
            .filter(|p| p.apartment_id == self.apartment.0);
        let Some(payment) = payment else {
            return Err(HandlerError::rejected(
                ErrorCode::NotFound,
                format!("apartment {} has no payment {}", self.apartment, self.payment),
            ));
        };
        let history = client
            .query(
                "SELECT occurred_at AS at,
                        CASE action WHEN 'created' THEN
                            CASE WHEN new_state ? 'status' THEN new_state->>'status' ELSE 'succeeded' END
                        ELSE new_state->>'status' END AS status,
                        CASE action WHEN 'created' THEN 'request' ELSE coalesce(new_state->>'via', 'request') END AS via
                 FROM audit_events
                 WHERE entity = 'payment' AND entity_id = $1
                   AND (action = 'created' OR old_state->>'status' IS DISTINCT FROM new_state->>'status')
                 ORDER BY id",
                &[&self.payment.to_string()],
            )
            .await?
            .iter()
            .map(|r| Step {
                at: r.get("at"),
                status: r.get("status"),
                via: r.get("via"),
            })
            .collect();
        let refunds: Vec<RefundLine> = refund::of_payment(&*client, self.payment)
            .await?
            .iter()
            .map(RefundLine::of)
            .collect();
        Request::reply(&PaymentData {
            refunded: refunds
                .iter()
                .filter(|r| r.status == "succeeded")
                .map(|r| r.amount)
                .sum(),
            refunds,
            payment: Receipt::of(&payment, None),
            history,
        })
    }
}
