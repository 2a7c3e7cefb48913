//! The processor's word applied to the books: a card payment's status follows its intent's, its
//! bills are paid when the money was captured and released when it will not be. Each change is
//! one transaction with the payment row locked, so the confirm's answer, a webhook and a job that
//! arrive together apply in turn, and each after the first finds nothing left to do. A payment
//! that succeeded never changes again: a late `failed` is ignored. A change the books cannot
//! take (money captured for a payment released, or an amount other than the ledger's) is a
//! discrepancy: logged, counted, and changed nothing; `qbill jobs reconcile` lists them.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use rust_decimal::Decimal;
use uuid::Uuid;

use super::stripe::{CardError, Intent, IntentStatus};
use crate::cache::CacheKey;
use crate::error::HandlerError;
use crate::money::Money;
use crate::services::Services;
use crate::types::{ApartmentId, BillId, Currency, amount};
use schemars::JsonSchema;
use serde::Serialize;

/// Who told the books: the audit trail's `via`.
#[derive(Debug, Clone, Copy)]
pub enum Via {
    /// The answer to creating or confirming the intent, in the payment's own request.
    Confirm,
    Webhook,
    Expiry,
    Reconcile,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Confirm => "confirm",
            Self::Webhook => "webhook",
            Self::Expiry => "expiry",
            Self::Reconcile => "reconcile",
        }
    }
}

/// The reply's data, kind `payments`: the payment and where it stands.
#[derive(Debug, Clone, Serialize, serde::Deserialize, JsonSchema)]
#[schemars(rename = "PaymentsData")]
pub struct Receipt {
    pub payment_id: Uuid,
    pub apartment_id: ApartmentId,
    pub bills_id: Vec<BillId>,
    #[serde(with = "amount")]
    #[schemars(with = "crate::contract::Amount")]
    pub total: Decimal,
    pub currency: Currency,
    /// `succeeded` (the bills are paid), `pending` (waiting for the card: confirm it with
    /// `client_secret`), `requires_action` (the card's bank asks the household: `client_secret`),
    /// `processing` (the processor is at work; a webhook settles it), `failed` (the card was
    /// refused: `failure_code`, `failure_message`; the bills can be paid again) or `canceled`.
    #[schemars(with = "crate::contract::PaymentStatus")]
    pub status: String,
    /// When the money was captured; none until it was.
    pub paid_at: Option<DateTime<Utc>>,
    /// For Stripe.js, while the payment waits on the household.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// The processor's decline code, for a refused card.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_code: Option<String>,
    /// Why, in a sentence for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_message: Option<String>,
    /// For a payment made elsewhere and recorded by an operator or the provider: how the money
    /// came, the payer's reference and the day it was received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<External>,
}

/// How a payment made outside qbill came.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, JsonSchema)]
pub struct External {
    pub method: ExternalMethod,
    /// The payer's reference: the transfer's, the cheque's number, the cash receipt's.
    #[schemars(length(min = 1, max = 100))]
    pub reference: String,
    #[schemars(with = "crate::contract::Date")]
    pub received_on: chrono::NaiveDate,
}

/// How money paid outside qbill came.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExternalMethod {
    BankTransfer,
    Cash,
    Cheque,
    Other,
}

impl ExternalMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BankTransfer => "bank_transfer",
            Self::Cash => "cash",
            Self::Cheque => "cheque",
            Self::Other => "other",
        }
    }

    fn parse(raw: &str) -> Option<Self> {
        [Self::BankTransfer, Self::Cash, Self::Cheque, Self::Other]
            .into_iter()
            .find(|m| m.as_str() == raw)
    }
}

impl Receipt {
    /// The reply for a card payment as the books hold it.
    pub fn of(payment: &Payment, client_secret: Option<String>) -> Self {
        Self {
            payment_id: payment.id,
            apartment_id: ApartmentId(payment.apartment_id),
            bills_id: payment.bills.iter().map(|b| BillId(*b)).collect(),
            total: payment.total.amount(),
            currency: payment.total.currency(),
            status: payment.status.clone(),
            paid_at: payment.paid_at,
            client_secret,
            failure_code: payment.failure_code.clone(),
            failure_message: payment.failure_message.clone(),
            external: payment.external.clone(),
        }
    }
}

/// A payment as the books hold it.
#[derive(Debug, Clone)]
pub struct Payment {
    pub id: Uuid,
    pub apartment_id: i64,
    pub user_id: i64,
    pub status: String,
    pub intent_id: Option<String>,
    pub total: Money,
    pub bills: Vec<i64>,
    pub failure_code: Option<String>,
    pub failure_message: Option<String>,
    pub created_at: DateTime<Utc>,
    /// When the money was captured (for a settled payment).
    pub paid_at: Option<DateTime<Utc>>,
    /// For a payment made elsewhere.
    pub external: Option<External>,
}

impl Payment {
    /// Whether its status can change no more.
    pub fn is_final(&self) -> bool {
        matches!(self.status.as_str(), "succeeded" | "failed" | "canceled")
    }

    pub const COLUMNS: &str =
        "id, apartment_id, user_id, status, intent_id, total, currency, bills,
        failure_code, failure_message, created_at, paid_at, external_method, external_reference,
        received_on";

    pub fn from_row(row: &tokio_postgres::Row) -> Result<Self, HandlerError> {
        let currency: String = row.get("currency");
        let status: String = row.get("status");
        let paid_at: DateTime<Utc> = row.get("paid_at");
        Ok(Self {
            id: row.get("id"),
            apartment_id: row.get("apartment_id"),
            user_id: row.get("user_id"),
            intent_id: row.get("intent_id"),
            total: Money::new(
                row.get::<_, Decimal>("total"),
                Currency::parse(&currency).map_err(HandlerError::internal)?,
            ),
            bills: row.get("bills"),
            failure_code: row.get("failure_code"),
            failure_message: row.get("failure_message"),
            created_at: row.get("created_at"),
            paid_at: (status == "succeeded").then_some(paid_at),
            status,
            external: match row.get::<_, Option<&str>>("external_method") {
                Some(method) => Some(External {
                    method: ExternalMethod::parse(method).ok_or_else(|| {
                        HandlerError::internal(anyhow::anyhow!("unknown payment method {method}"))
                    })?,
                    reference: row.get("external_reference"),
                    received_on: row.get("received_on"),
                }),
                None => None,
            },
        })
    }
}

/// The payment `id`, as it stands.
pub async fn load(client: &impl GenericClient, id: Uuid) -> Result<Option<Payment>, HandlerError> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {} FROM payments WHERE id = $1",
            Payment::COLUMNS
        ))
        .await?;
    client
        .query_opt(&statement, &[&id])
        .await?
        .as_ref()
        .map(Payment::from_row)
        .transpose()
}

/// What came of [`change`].
enum Changed {
    /// The payment as it stands after, and whether this call changed it.
    Done(Box<Payment>, bool),
    /// The event was claimed before: nothing was done.
    Repeat,
    /// No payment has that id: nothing was done.
    Missing,
}

impl Changed {
    /// For a change that claims no event, of a payment that exists.
    fn done(self, id: Uuid) -> Result<(Payment, bool), HandlerError> {
        match self {
            Self::Done(payment, changed) => Ok((*payment, changed)),
            Self::Repeat => unreachable!("no event was claimed"),
            Self::Missing => Err(HandlerError::internal(anyhow::anyhow!(
                "payment {id} does not exist"
            ))),
        }
    }
}

/// What became of an event of the processor ([`apply_event`]).
#[derive(Debug)]
pub enum Applied {
    /// Applied now; the payment as it stands after.
    Now(Box<Payment>),
    /// Applied before: nothing was done.
    Before,
    /// No payment of ours has that id.
    NoPayment,
}

/// What to do to a payment.
pub(super) enum Change {
    Settle,
    Release {
        status: &'static str,
        code: Option<String>,
        message: Option<String>,
    },
    Status(&'static str),
    Nothing,
}

/// Applies what `intent` says to payment `id` (`confirmed`: the intent was confirmed, so an
/// intent waiting for a payment method again means the card was refused).
pub async fn apply(
    services: &Services,
    id: Uuid,
    intent: &Intent,
    via: Via,
    confirmed: bool,
) -> Result<Payment, HandlerError> {
    applied(services, id, intent, via, confirmed)
        .await
        .map(|(payment, _)| payment)
}

/// [`apply`], saying whether this call changed the payment (a job's count: two runs at once
/// change each payment once, and only the one that did counts it).
pub async fn applied(
    services: &Services,
    id: Uuid,
    intent: &Intent,
    via: Via,
    confirmed: bool,
) -> Result<(Payment, bool), HandlerError> {
    change(
        services,
        id,
        Some(&intent.id),
        via,
        None,
        decide_from(intent, confirmed),
    )
    .await?
    .done(id)
}

/// [`apply`], claiming the processor's event `(id, type)` in the same transaction (nothing is
/// done twice).
pub async fn apply_event(
    services: &Services,
    id: Uuid,
    intent: &Intent,
    via: Via,
    confirmed: bool,
    event: Option<(&str, &str)>,
) -> Result<Applied, HandlerError> {
    Ok(
        match change(
            services,
            id,
            Some(&intent.id),
            via,
            event,
            decide_from(intent, confirmed),
        )
        .await?
        {
            Changed::Done(payment, _) => Applied::Now(payment),
            Changed::Repeat => Applied::Before,
            Changed::Missing => Applied::NoPayment,
        },
    )
}

/// What `intent` asks of a payment (`confirmed`: see [`apply`]).
pub(super) fn decide_from(
    intent: &Intent,
    confirmed: bool,
) -> impl FnOnce(&Payment) -> Change + '_ {
    move |payment| {
        let currency_matches = intent
            .currency
            .eq_ignore_ascii_case(payment.total.currency().as_str());
        let amount_matches = payment.total.minor_units().ok() == Some(intent.amount);
        match intent.status {
            IntentStatus::Succeeded if !(currency_matches && amount_matches) => {
                discrepancy(
                    payment,
                    "amount_differs",
                    &format!(
                        "the processor captured {} {} for a payment of {}",
                        intent.amount, intent.currency, payment.total
                    ),
                );
                Change::Nothing
            }
            IntentStatus::Succeeded => Change::Settle,
            IntentStatus::Canceled => Change::Release {
                status: "canceled",
                code: None,
                message: None,
            },
            IntentStatus::RequiresPaymentMethod
                if confirmed || intent.last_payment_error.is_some() =>
            {
                let card = intent.last_payment_error.clone().unwrap_or_default();
                let code = card.best_code();
                Change::Release {
                    status: "failed",
                    message: Some(super::decline_message(&code).to_owned()),
                    code: Some(code),
                }
            }
            IntentStatus::RequiresAction => Change::Status("requires_action"),
            IntentStatus::Processing | IntentStatus::RequiresCapture => {
                Change::Status("processing")
            }
            _ => Change::Nothing,
        }
    }
}

/// Records that the processor refused the payment's card: the payment `failed`, its bills
/// released.
pub async fn fail(
    services: &Services,
    id: Uuid,
    card: &CardError,
    via: Via,
) -> Result<Payment, HandlerError> {
    let code = card.best_code();
    let intent = card.payment_intent.as_ref().map(|i| i.id.clone());
    change(services, id, intent.as_deref(), via, None, |_| {
        Change::Release {
            status: "failed",
            message: Some(super::decline_message(&code).to_owned()),
            code: Some(code.clone()),
        }
    })
    .await?
    .done(id)
    .map(|(payment, _)| payment)
}

/// Cancels a payment the processor never took money for (the expiry job, after cancelling its
/// intent or finding none): its bills released; whether this call changed it.
pub async fn cancel(
    services: &Services,
    id: Uuid,
    via: Via,
) -> Result<(Payment, bool), HandlerError> {
    change(services, id, None, via, None, |_| Change::Release {
        status: "canceled",
        code: Some("expired".into()),
        message: Some("The payment was not completed in time; its bills can be paid again.".into()),
    })
    .await?
    .done(id)
}

/// One change of a payment, with it locked: `decide` sees the payment as it stands. With an
/// `event`, claims it once the payment is locked (two deliveries of one event wait on the lock;
/// the second finds it claimed).
async fn change(
    services: &Services,
    id: Uuid,
    intent_id: Option<&str>,
    via: Via,
    event: Option<(&str, &str)>,
    decide: impl FnOnce(&Payment) -> Change,
) -> Result<Changed, HandlerError> {
    let mut client = crate::store::client(&services.store).await?;
    let tx = client.transaction().await?;
    tx.execute("SELECT set_config('qbill.via', $1, true)", &[&via.as_str()])
        .await?;
    let row = tx
        .query_opt(
            &format!(
                "SELECT {} FROM payments WHERE id = $1 FOR UPDATE",
                Payment::COLUMNS
            ),
            &[&id],
        )
        .await?;
    let Some(row) = row else {
        return Ok(Changed::Missing);
    };
    let payment = Payment::from_row(&row)?;
    if let Some((event, kind)) = event {
        let claimed = tx
            .execute(
                "INSERT INTO processor_events (id, type, payment_id) VALUES ($1, $2, $3)
                 ON CONFLICT (id) DO NOTHING",
                &[&event, &kind, &id],
            )
            .await?;
        if claimed == 0 {
            return Ok(Changed::Repeat);
        }
    }
    // The intent's id is the books' from the first answer on.
    if payment.intent_id.is_none()
        && let Some(intent) = intent_id
    {
        tx.execute(
            "UPDATE payments SET intent_id = $2 WHERE id = $1",
            &[&id, &intent],
        )
        .await?;
    }
    let change = next_change(&payment, decide);
    let mut mail = None;
    let changed = !matches!(change, Change::Nothing);
    match change {
        Change::Nothing => {}
        Change::Status(status) => {
            tx.execute(
                "UPDATE payments SET status = $2 WHERE id = $1 AND status <> $2",
                &[&id, &status],
            )
            .await?;
        }
        Change::Settle => {
            tx.execute(
                "UPDATE payments SET status = 'succeeded', paid_at = clock_timestamp() WHERE id = $1",
                &[&id],
            )
            .await?;
            tx.execute(
                "UPDATE bills SET status = 'paid', payment_id = $1, reserved_by = NULL WHERE reserved_by = $1",
                &[&id],
            )
            .await?;
            mail = tx
                .query_one(RECEIPT, &[&[id].as_slice()])
                .await?
                .get::<_, Option<i64>>(0);
        }
        Change::Release {
            status,
            code,
            message,
        } => {
            tx.execute(
                "UPDATE payments SET status = $2, failure_code = $3, failure_message = $4 WHERE id = $1",
                &[&id, &status, &code, &message],
            )
            .await?;
            tx.execute(
                "UPDATE bills SET reserved_by = NULL WHERE reserved_by = $1",
                &[&id],
            )
            .await?;
        }
    }
    if changed {
        crate::common::bump_apartments(&tx, &[payment.apartment_id]).await?;
    }
    let after = tx
        .query_one(
            &format!("SELECT {} FROM payments WHERE id = $1", Payment::COLUMNS),
            &[&id],
        )
        .await?;
    tx.commit().await?;
    let after = Payment::from_row(&after)?;
    if changed {
        crate::metrics::payment_status(&after.status, via.as_str());
        let apartment = ApartmentId(payment.apartment_id);
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
    Ok(Changed::Done(Box::new(after), changed))
}

/// What `decide` may do to `payment` as it stands: the books only move forward. A payment
/// captured changes no more; one released takes no capture (a discrepancy, told loudly).
pub(super) fn next_change(payment: &Payment, decide: impl FnOnce(&Payment) -> Change) -> Change {
    match payment.status.as_str() {
        // Captured: nothing undoes it (a refund will, the next issue's).
        "succeeded" => Change::Nothing,
        "failed" | "canceled" => match decide(payment) {
            Change::Settle => {
                discrepancy(
                    payment,
                    "captured_after_release",
                    "the processor captured the money of a payment whose bills were released",
                );
                Change::Nothing
            }
            _ => Change::Nothing,
        },
        _ => decide(payment),
    }
}

/// The receipts: the `payment.succeeded` notification of each settled payment of `$1`, with its
/// bills as the mail and the inbox list them; the mail to send of each, if any.
pub(crate) const RECEIPT: &str = "SELECT notify(p.user_id, 'payment.succeeded', 'payment.succeeded:' || p.id,
        jsonb_build_object('payment_id', p.id, 'apartment_id', p.apartment_id, 'total', p.total::text,
                           'currency', p.currency, 'paid_at', p.paid_at,
                           'bills', (SELECT coalesce(jsonb_agg(jsonb_build_object('id', b.id, 'provider', v.name,
                                                                  'utility', replace(b.utility, '_', ' '),
                                                                  'amount', b.amount::text) ORDER BY b.id), '[]')
                                     FROM bills b JOIN providers v ON v.id = b.provider_id
                                     WHERE b.payment_id = p.id)))
    FROM payments p WHERE p.id = ANY($1)";

/// A difference between the processor and the books, told loudly; nothing is changed.
fn discrepancy(payment: &Payment, kind: &'static str, what: &str) {
    crate::metrics::payment_discrepancy(kind);
    tracing::error!(
        payment = %payment.id,
        intent = ?payment.intent_id,
        discrepancy = kind,
        "{what}; the books were not changed"
    );
}
