//! `payments_external`: a payment made outside qbill (a bank transfer, cash at the provider's
//! desk, a cheque), recorded by an operator or by the provider whose bills it pays
//! (`POST /apartments/{apartment_id}/payments/external`). All or none of the bills, as a card
//! payment: it settles them when it is written, its payer is the household that owns the
//! apartment (which gets the receipt, by mail and in its inbox), and the reply is the receipt
//! with how the money came. The same request id again gets the same receipt and changes nothing;
//! a bill paid already, voided, or held by a card payment under way refuses the whole payment.

use chrono::NaiveDate;
use rust_decimal::Decimal;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{Callers, Context, ErrorCode, HandlerError, HandlerResult, Kind, Route, body};
use crate::cache::CacheKey;
use crate::call::Path;
use crate::common::{bills_to_pay, bump_apartments, text, voided};
use crate::idempotency;
use crate::money::Money;
use crate::processor::book::{External, ExternalMethod, RECEIPT, Receipt};
use crate::types::{ApartmentId, BillId, Currency, ParseError, Role};

/// The longest reference, in characters.
pub const MAX_REFERENCE_CHARS: usize = 100;
/// How far back a payment's day of receipt may be: older is a typing mistake more often than a
/// payment found in a drawer (an operator records that one with the day it is recorded, and the
/// true day in the reference).
pub const MAX_DAYS_BACK: i64 = 400;

#[derive(Debug, Serialize)]
pub struct Request {
    pub apartment: ApartmentId,
    /// Distinct, in the order the caller listed them.
    pub bills_id: Vec<BillId>,
    pub method: ExternalMethod,
    pub reference: String,
    pub received_on: NaiveDate,
}

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Body {
    #[schemars(length(min = 1, max = 100), extend("uniqueItems" = true), inner(range(min = 1)))]
    pub bills_id: Vec<i64>,
    /// How the money came: `bank_transfer`, `cash`, `cheque` or `other`.
    pub method: ExternalMethod,
    /// The payer's reference: the transfer's, the cheque's number, the cash receipt's.
    #[schemars(length(min = 1, max = 100))]
    pub reference: String,
    /// The day the money was received (`YYYY-MM-DD`), not in the future.
    #[schemars(with = "crate::contract::Date")]
    pub received_on: NaiveDate,
}

impl Route for Request {
    const PATH: &str = "/apartments/{apartment_id}/payments/external";
    const SUMMARY: &str =
        "Records a payment made outside qbill (a transfer, cash, a cheque) that settles the chosen bills, all or none.";
    type Body = Body;
    type Reply = Receipt;
    const CALLERS: Callers = Callers::Roles(&[Role::Provider, Role::Operator]);

    fn parse(path: &Path, raw: Map<String, Value>) -> Result<Self, ParseError> {
        let b: Body = body(raw)?;
        let bills_id = bills_to_pay(&b.bills_id)?;
        let today = chrono::Utc::now().date_naive();
        if b.received_on > today {
            return Err(ParseError::new(format!(
                "`received_on` {} is in the future (today is {today} UTC)",
                b.received_on
            )));
        }
        if (today - b.received_on).num_days() > MAX_DAYS_BACK {
            return Err(ParseError::new(format!(
                "`received_on` {} is more than {MAX_DAYS_BACK} days ago",
                b.received_on
            )));
        }
        Ok(Self {
            apartment: path.apartment()?,
            bills_id,
            method: b.method,
            reference: text("reference", &b.reference, MAX_REFERENCE_CHARS)?,
            received_on: b.received_on,
        })
    }

    fn apartment(&self) -> Option<ApartmentId> {
        Some(self.apartment)
    }

    async fn run(&self, cx: &Context<'_>) -> HandlerResult {
        let caller = cx.caller()?;
        let mut mail = None;
        let data = idempotency::once(cx, Kind::PaymentsExternal, self, async |tx| {
            let apartment = tx
                .query_opt(
                    "SELECT currency, (SELECT min(user_id) FROM apartment_owners WHERE apartment_id = a.id) AS owner
                     FROM apartments a WHERE id = $1",
                    &[&self.apartment.0],
                )
                .await?;
            let Some(apartment) = apartment else {
                return Err(HandlerError::rejected(
                    ErrorCode::NotFound,
                    format!("apartment {} does not exist", self.apartment),
                ));
            };
            let currency = Currency::parse(apartment.get("currency")).map_err(HandlerError::internal)?;
            let owner: Option<i64> = apartment.get("owner");
            let ids: Vec<i64> = self.bills_id.iter().map(|b| b.0).collect();
            let rows = tx
                .query(
                    "SELECT id, apartment_id, provider_id, status, reserved_by, amount
                     FROM bills WHERE id = ANY($1) ORDER BY id FOR UPDATE",
                    &[&ids],
                )
                .await?;
            let mut total = Money::zero(currency);
            let mut paid = Vec::new();
            for bill in &self.bills_id {
                let Some(row) = rows.iter().find(|r| r.get::<_, i64>("id") == bill.0) else {
                    return Err(HandlerError::rejected(
                        ErrorCode::NotFound,
                        format!("bill {bill} does not exist"),
                    ));
                };
                if row.get::<_, Option<i64>>("apartment_id") != Some(self.apartment.0) {
                    return Err(HandlerError::rejected(
                        ErrorCode::NotFound,
                        format!("bill {bill} is not a bill of apartment {}", self.apartment),
                    ));
                }
                if caller.role == Role::Provider
                    && caller.provider.map(|p| p.0) != Some(row.get::<_, i64>("provider_id"))
                {
                    return Err(HandlerError::rejected(
                        ErrorCode::Forbidden,
                        format!("bill {bill} is another provider's: a provider records payments of its own bills only"),
                    ));
                }
                match row.get::<_, &str>("status") {
                    "paid" => paid.push(bill.to_string()),
                    "void" => return Err(voided(*bill)),
                    _ => {}
                }
                if let Some(card) = row.get::<_, Option<Uuid>>("reserved_by") {
                    return Err(HandlerError::rejected(
                        ErrorCode::Conflict,
                        format!("bill {bill} is held by card payment {card} under way; record this payment once that one failed or expired"),
                    ));
                }
                total = total
                    .checked_add(Money::new(row.get::<_, Decimal>("amount"), currency))
                    .map_err(HandlerError::internal)?;
            }
            if !paid.is_empty() {
                return Err(HandlerError::rejected(
                    ErrorCode::AlreadyPaid,
                    format!("already paid: bill {}; nothing was recorded", paid.join(", ")),
                ));
            }
            let payment_id = Uuid::new_v4();
            let payer = owner.unwrap_or(caller.user_id.0);
            let paid_at = tx
                .query_one(
                    "INSERT INTO payments (id, apartment_id, user_id, request_id, total, currency, status, processor,
                                           bills, external_method, external_reference, received_on, recorded_by)
                     VALUES ($1, $2, $3, $4, $5, $6, 'succeeded', 'external', $7, $8, $9, $10, $11)
                     RETURNING paid_at",
                    &[
                        &payment_id,
                        &self.apartment.0,
                        &payer,
                        &cx.call.request_id.0,
                        &total.amount(),
                        &currency.as_str(),
                        &ids,
                        &self.method.as_str(),
                        &self.reference,
                        &self.received_on,
                        &caller.user_id.0,
                    ],
                )
                .await?
                .get(0);
            tx.execute(
                "UPDATE bills SET status = 'paid', payment_id = $1 WHERE id = ANY($2)",
                &[&payment_id, &ids],
            )
            .await?;
            // The receipt goes to the household; an apartment no household owns yet has nobody
            // to tell (its bills' account gets the history when it is linked).
            if owner.is_some() {
                mail = tx.query_one(RECEIPT, &[&[payment_id].as_slice()]).await?.get(0);
            }
            bump_apartments(tx, &[self.apartment.0]).await?;
            // Counted here, where a repeat (answered from the stored reply) never comes.
            crate::metrics::payment_status("succeeded", "external");
            Self::reply(&Receipt {
                payment_id,
                apartment_id: self.apartment,
                bills_id: self.bills_id.clone(),
                total: total.amount(),
                currency,
                status: "succeeded".to_owned(),
                paid_at: Some(paid_at),
                client_secret: None,
                failure_code: None,
                failure_message: None,
                external: Some(External {
                    method: self.method,
                    reference: self.reference.clone(),
                    received_on: self.received_on,
                }),
            })
        })
        .await?;
        cx.mail_after_commit(mail);
        let apartment = self.apartment;
        cx.services
            .cache
            .forget(&[
                CacheKey::Utils { apartment },
                CacheKey::Histories { apartment },
            ])
            .await;
        Ok(data)
    }
}
