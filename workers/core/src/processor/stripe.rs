//! The few calls of Stripe's API that payments make, typed: PaymentIntents (create, confirm,
//! read, cancel, list, and the fee on their charge), refunds (create, list) and, for clients that
//! have no Stripe.js (the CLI, the tests), a card PaymentMethod.
//!
//! A small client over `reqwest` rather than `async-stripe`: five endpoints, form-encoded, whose
//! answers we read a dozen fields of; the generated crate compiles every object of Stripe's API
//! (see docs/payments.md for what it cost to build). Errors are sorted the way the worker acts on
//! them: a card the processor refused ([`Error::Card`]), a processor we could not reach or that
//! failed (retry: [`Error::Unavailable`]), and anything else, which is a bug of ours.

use std::collections::HashMap;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// How long one call to the processor may take before it counts as unavailable.
pub const TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Clone)]
pub struct Stripe {
    http: reqwest::Client,
    base: String,
    key: SecretString,
}

impl std::fmt::Debug for Stripe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stripe").field("base", &self.base).finish()
    }
}

/// A PaymentIntent, as far as payments read it.
#[derive(Debug, Clone, Deserialize)]
pub struct Intent {
    pub id: String,
    pub status: IntentStatus,
    /// In the currency's minor units.
    pub amount: i64,
    /// Lower case, as Stripe writes it.
    pub currency: String,
    #[serde(default)]
    pub client_secret: Option<String>,
    #[serde(default)]
    pub metadata: HashMap<String, String>,
    #[serde(default)]
    pub last_payment_error: Option<CardError>,
    #[serde(default)]
    pub created: i64,
}

impl Intent {
    /// The qbill payment it was made for (its metadata's `payment_id`).
    pub fn payment_id(&self) -> Option<uuid::Uuid> {
        self.metadata
            .get("payment_id")
            .and_then(|p| uuid::Uuid::parse_str(p).ok())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntentStatus {
    RequiresPaymentMethod,
    RequiresConfirmation,
    RequiresAction,
    Processing,
    RequiresCapture,
    Canceled,
    Succeeded,
}

/// Why the processor refused a card: its codes and its message.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CardError {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub decline_code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub payment_intent: Option<Box<Intent>>,
}

impl CardError {
    /// The most precise code the processor gave: the decline code, else the error code.
    pub fn best_code(&self) -> String {
        self.decline_code
            .clone()
            .or_else(|| self.code.clone())
            .unwrap_or_else(|| "card_declined".to_owned())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The card was refused; the intent (when the processor sent it) says where it stands.
    #[error("the card was refused: {}", .0.best_code())]
    Card(Box<CardError>),
    /// Not reached, timed out, rate limited or failed on its side: try again later.
    #[error("the payments processor is unavailable: {0:#}")]
    Unavailable(anyhow::Error),
    /// Refused what we sent: a bug of ours (or a key that is wrong).
    #[error("the payments processor refused the call: {0:#}")]
    Refused(anyhow::Error),
}

/// A refund, as far as refunds read it.
#[derive(Debug, Clone, Deserialize)]
pub struct Refund {
    pub id: String,
    pub status: RefundStatus,
    /// In the currency's minor units.
    pub amount: i64,
    pub currency: String,
    #[serde(default)]
    pub payment_intent: Option<String>,
    #[serde(default)]
    pub metadata: HashMap<String, String>,
    #[serde(default)]
    pub failure_reason: Option<String>,
    #[serde(default)]
    pub created: i64,
}

impl Refund {
    /// The qbill refund it was made for (its metadata's `refund_id`).
    pub fn refund_id(&self) -> Option<uuid::Uuid> {
        self.metadata
            .get("refund_id")
            .and_then(|p| uuid::Uuid::parse_str(p).ok())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundStatus {
    Pending,
    RequiresAction,
    Succeeded,
    Failed,
    Canceled,
}

/// What to refund.
pub struct NewRefund<'a> {
    pub refund_id: uuid::Uuid,
    pub payment_id: uuid::Uuid,
    pub intent: &'a str,
    /// In the currency's minor units.
    pub amount: i64,
    /// The operator's words; Stripe's own `reason` takes three fixed values, so it goes in the
    /// metadata.
    pub reason: &'a str,
}

/// A page of the processor's objects (intents, refunds).
#[derive(Debug, Deserialize)]
pub struct Page<T = Intent> {
    pub data: Vec<T>,
    #[serde(default)]
    pub has_more: bool,
    /// The cursor for the next page.
    #[serde(skip)]
    pub last: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Debug, Deserialize)]
struct ErrorDetail {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(flatten)]
    card: CardError,
}

#[derive(Debug, Deserialize)]
struct Token {
    card: Created,
}

#[derive(Debug, Deserialize)]
struct Created {
    id: String,
}

/// What to create an intent with.
pub struct NewIntent<'a> {
    pub payment_id: uuid::Uuid,
    pub apartment_id: i64,
    pub amount: i64,
    pub currency: &'a str,
    /// Confirmed at once with this PaymentMethod, or left for Stripe.js to confirm.
    pub payment_method: Option<&'a str>,
    /// A card saved on this customer, charged while the household is not there to confirm
    /// (`off_session`): its bank may still ask, and the payment then waits on the household.
    pub saved_on: Option<&'a str>,
}

/// A SetupIntent: a card being saved on a customer, confirmed by Stripe.js.
#[derive(Debug, Clone, Deserialize)]
pub struct SetupIntent {
    pub id: String,
    pub status: String,
    #[serde(default)]
    pub client_secret: Option<String>,
    #[serde(default)]
    pub customer: Option<String>,
    #[serde(default)]
    pub payment_method: Option<String>,
}

/// A card PaymentMethod, as far as saved cards read it.
#[derive(Debug, Clone, Deserialize)]
pub struct PaymentMethod {
    pub id: String,
    #[serde(default)]
    pub customer: Option<String>,
    #[serde(default)]
    pub card: Option<CardDetails>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CardDetails {
    #[serde(default)]
    pub brand: Option<String>,
    #[serde(default)]
    pub last4: Option<String>,
    #[serde(default)]
    pub exp_month: Option<u32>,
    #[serde(default)]
    pub exp_year: Option<u32>,
}

impl Stripe {
    pub fn new(base: &str, key: SecretString) -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(TIMEOUT)
                .connect_timeout(Duration::from_secs(5))
                .build()?,
            base: base.trim_end_matches('/').to_owned(),
            key,
        })
    }

    /// Creates the payment's intent, confirming it with `payment_method` if given. The
    /// idempotency key is the payment's: the same payment asked twice is one intent.
    pub async fn create_intent(&self, new: &NewIntent<'_>) -> Result<Intent, Error> {
        let payment = new.payment_id.to_string();
        let mut form = vec![
            ("amount", new.amount.to_string()),
            ("currency", new.currency.to_ascii_lowercase()),
            ("metadata[payment_id]", payment.clone()),
            ("metadata[apartment_id]", new.apartment_id.to_string()),
            ("payment_method_types[]", "card".to_owned()),
        ];
        if let Some(method) = new.payment_method {
            form.push(("payment_method", method.to_owned()));
            form.push(("confirm", "true".to_owned()));
            if let Some(customer) = new.saved_on {
                form.push(("customer", customer.to_owned()));
                form.push(("off_session", "true".to_owned()));
            }
        }
        self.post(
            "/v1/payment_intents",
            &form,
            Some(&format!("qbill-payment-{payment}")),
        )
        .await
    }

    pub async fn retrieve_intent(&self, id: &str) -> Result<Intent, Error> {
        self.send(
            self.http
                .get(self.url(&format!("/v1/payment_intents/{id}"))),
            None,
        )
        .await
    }

    /// Cancels an intent; one that succeeded or was cancelled already is answered as it is.
    pub async fn cancel_intent(&self, id: &str) -> Result<Intent, Error> {
        match self
            .post(&format!("/v1/payment_intents/{id}/cancel"), &[], None)
            .await
        {
            Err(Error::Refused(e)) => {
                let intent = self.retrieve_intent(id).await?;
                if matches!(
                    intent.status,
                    IntentStatus::Succeeded | IntentStatus::Canceled
                ) {
                    Ok(intent)
                } else {
                    Err(Error::Refused(e))
                }
            }
            other => other,
        }
    }

    /// The intents created at or after `since` (Unix seconds), a page of up to 100 after the
    /// intent `after`. A server that cannot filter by creation time (localstripe) is asked for
    /// every intent, and the page is filtered here.
    pub async fn list_intents(&self, since: i64, after: Option<&str>) -> Result<Page, Error> {
        self.list(
            "/v1/payment_intents",
            since,
            after,
            |i: &Intent| i.created,
            |i| &i.id,
        )
        .await
    }

    /// A page of a list endpoint's objects created at or after `since`.
    async fn list<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        since: i64,
        after: Option<&str>,
        created: impl Fn(&T) -> i64,
        id: impl Fn(&T) -> &String,
    ) -> Result<Page<T>, Error> {
        let mut query = vec![("limit", "100".to_owned())];
        if let Some(after) = after {
            query.push(("starting_after", after.to_owned()));
        }
        let mut filtered = query.clone();
        filtered.push(("created[gte]", since.to_string()));
        let url = self.url(path);
        match self
            .send::<Page<T>>(self.http.get(&url).query(&filtered), None)
            .await
        {
            Err(Error::Refused(e)) if format!("{e}").contains("Unexpected created") => {
                let mut page: Page<T> = self.send(self.http.get(&url).query(&query), None).await?;
                // The cursor is the page's last object, whether or not it is in the window.
                page.last = page.data.last().map(|i| id(i).clone());
                page.data.retain(|i| created(i) >= since);
                Ok(page)
            }
            other => other.map(|mut page| {
                page.last = page.data.last().map(|i| id(i).clone());
                page
            }),
        }
    }

    /// Makes the household's customer (the idempotency key is the user's: asked twice, one).
    pub async fn create_customer(&self, user_id: i64) -> Result<String, Error> {
        let created: Created = self
            .post(
                "/v1/customers",
                &[("metadata[user_id]", user_id.to_string())],
                Some(&format!("qbill-customer-{user_id}")),
            )
            .await?;
        Ok(created.id)
    }

    /// Deletes a customer (its cards with it); one deleted already is gone as wanted.
    pub async fn delete_customer(&self, id: &str) -> Result<(), Error> {
        match self
            .send::<serde_json::Value>(
                self.http.delete(self.url(&format!("/v1/customers/{id}"))),
                None,
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(Error::Refused(e)) if format!("{e}").contains("404") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Starts saving a card on `customer`, for payments the household is not there to confirm.
    pub async fn create_setup_intent(
        &self,
        customer: &str,
        user_id: i64,
    ) -> Result<SetupIntent, Error> {
        self.post(
            "/v1/setup_intents",
            &[
                ("customer", customer.to_owned()),
                ("usage", "off_session".to_owned()),
                ("payment_method_types[]", "card".to_owned()),
                ("metadata[user_id]", user_id.to_string()),
            ],
            None,
        )
        .await
    }

    pub async fn retrieve_setup_intent(&self, id: &str) -> Result<SetupIntent, Error> {
        self.send(
            self.http.get(self.url(&format!("/v1/setup_intents/{id}"))),
            None,
        )
        .await
    }

    pub async fn retrieve_payment_method(&self, id: &str) -> Result<PaymentMethod, Error> {
        self.send(
            self.http
                .get(self.url(&format!("/v1/payment_methods/{id}"))),
            None,
        )
        .await
    }

    /// Saves a card on `customer` (again is the same).
    pub async fn attach_payment_method(
        &self,
        id: &str,
        customer: &str,
    ) -> Result<PaymentMethod, Error> {
        self.post(
            &format!("/v1/payment_methods/{id}/attach"),
            &[("customer", customer.to_owned())],
            None,
        )
        .await
    }

    pub async fn detach_payment_method(&self, id: &str) -> Result<PaymentMethod, Error> {
        self.post(&format!("/v1/payment_methods/{id}/detach"), &[], None)
            .await
    }

    /// The cards saved on `customer` (at most 100).
    pub async fn customer_cards(&self, customer: &str) -> Result<Vec<PaymentMethod>, Error> {
        let page: Page<PaymentMethod> = self
            .send(
                self.http.get(self.url("/v1/payment_methods")).query(&[
                    ("customer", customer),
                    ("type", "card"),
                    ("limit", "100"),
                ]),
                None,
            )
            .await?;
        Ok(page.data)
    }

    /// The processor's fee on the intent's charge, and its currency (from the charge's balance
    /// transaction); none while the processor reports no balance transaction for it.
    pub async fn intent_fee(&self, id: &str) -> Result<Option<(i64, String)>, Error> {
        #[derive(Deserialize)]
        struct WithCharge {
            latest_charge: Option<Charge>,
        }
        #[derive(Deserialize)]
        struct Charge {
            balance_transaction: Option<Balance>,
        }
        #[derive(Deserialize)]
        struct Balance {
            fee: i64,
            currency: String,
        }
        let intent: WithCharge = self
            .send(
                self.http
                    .get(self.url(&format!("/v1/payment_intents/{id}")))
                    .query(&[("expand[]", "latest_charge.balance_transaction")]),
                None,
            )
            .await?;
        Ok(intent
            .latest_charge
            .and_then(|c| c.balance_transaction)
            .map(|b| (b.fee, b.currency)))
    }

    /// Refunds `amount` of the intent. The idempotency key is the refund's: the same refund asked
    /// twice is one.
    pub async fn create_refund(&self, new: &NewRefund<'_>) -> Result<Refund, Error> {
        let refund = new.refund_id.to_string();
        let form = vec![
            ("payment_intent", new.intent.to_owned()),
            ("amount", new.amount.to_string()),
            ("metadata[refund_id]", refund.clone()),
            ("metadata[payment_id]", new.payment_id.to_string()),
            ("metadata[reason]", new.reason.to_owned()),
        ];
        self.post(
            "/v1/refunds",
            &form,
            Some(&format!("qbill-refund-{refund}")),
        )
        .await
    }

    /// The refunds of an intent, newest first (at most 100: a payment takes fewer).
    pub async fn intent_refunds(&self, intent: &str) -> Result<Vec<Refund>, Error> {
        let page: Page<Refund> = self
            .send(
                self.http
                    .get(self.url("/v1/refunds"))
                    .query(&[("payment_intent", intent), ("limit", "100")]),
                None,
            )
            .await?;
        Ok(page.data)
    }

    /// The refunds created at or after `since` (Unix seconds), a page of up to 100 after the
    /// refund `after`; filtered here where the server cannot (localstripe), as intents are.
    pub async fn list_refunds(
        &self,
        since: i64,
        after: Option<&str>,
    ) -> Result<Page<Refund>, Error> {
        self.list(
            "/v1/refunds",
            since,
            after,
            |r: &Refund| r.created,
            |r| &r.id,
        )
        .await
    }

    /// A card to pay with, from its number, made with the publishable `key` as Stripe.js makes
    /// one in a browser (a token; its card's id is what `payment_method` takes). For the CLI and
    /// the tests, with test cards only.
    pub async fn card(
        base: &str,
        key: &str,
        number: &str,
        exp_month: u32,
        exp_year: u32,
        cvc: &str,
    ) -> anyhow::Result<String> {
        let client = Self::new(base, key.to_owned().into())?;
        let form = [
            ("key", key.to_owned()),
            ("card[number]", number.to_owned()),
            ("card[exp_month]", exp_month.to_string()),
            ("card[exp_year]", exp_year.to_string()),
            ("card[cvc]", cvc.to_owned()),
        ];
        let token: Token = client
            .post("/v1/tokens", &form, None)
            .await
            .map_err(anyhow::Error::new)?;
        Ok(token.card.id)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn post<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        form: &[(&str, String)],
        idempotency_key: Option<&str>,
    ) -> Result<T, Error> {
        self.send(self.http.post(self.url(path)).form(form), idempotency_key)
            .await
    }

    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        idempotency_key: Option<&str>,
    ) -> Result<T, Error> {
        let mut request = request
            .bearer_auth(self.key.expose_secret())
            .header("Stripe-Version", "2024-06-20");
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        let response = request
            .send()
            .await
            .map_err(|e| Error::Unavailable(e.into()))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| Error::Unavailable(e.into()))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| {
                Error::Refused(anyhow::anyhow!(
                    "an answer we cannot read ({e}): {}",
                    preview(&bytes)
                ))
            });
        }
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(Error::Unavailable(anyhow::anyhow!(
                "HTTP {status}: {}",
                preview(&bytes)
            )));
        }
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body)
                if body.error.kind.as_deref() == Some("card_error") || status.as_u16() == 402 =>
            {
                Err(Error::Card(Box::new(body.error.card)))
            }
            _ => Err(Error::Refused(anyhow::anyhow!(
                "HTTP {status}: {}",
                preview(&bytes)
            ))),
        }
    }
}

/// The start of a body, for an error message.
fn preview(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned()
}
