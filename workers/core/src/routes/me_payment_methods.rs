//! `me_payment_methods`: a household saves a card (`POST /me/payment-methods`). Without a body
//! field it starts: the household's customer at the processor is made if it was not, and the
//! reply carries a SetupIntent's `client_secret`, which Stripe.js confirms with the card the
//! household types (qbill never sees the number). With the confirmed `setup_intent_id` it
//! finishes: the intent is read back from the processor, must be the caller's own and succeeded,
//! and its card is kept on the customer (Stripe does that itself; a processor that does not gets
//! it done here); the reply lists the saved cards. Every call to the processor is outside any
//! transaction, and each step asked again does the same.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Callers, Context, ErrorCode, HandlerError, HandlerResult, Route, body};
use crate::call::Path;
use crate::processor::saved::{self, SavedCard, unavailable};
use crate::types::{ParseError, Role};

#[derive(Debug)]
pub struct Request {
    /// None: start saving a card; the SetupIntent Stripe.js confirmed: finish.
    pub setup_intent: Option<String>,
}

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Body {
    /// The SetupIntent Stripe.js confirmed (`seti_…`), to finish saving its card.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 6, max = 255), regex(pattern = r"^seti_[A-Za-z0-9_]+$"))]
    pub setup_intent_id: Option<String>,
}

/// The reply's data, kind `me_payment_methods`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct PaymentMethodsData {
    /// When starting: the SetupIntent to confirm with Stripe.js, and its secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup_intent_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// When finishing: the card saved now, and every saved card.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saved: Option<SavedCard>,
    pub cards: Vec<SavedCard>,
}

impl Route for Request {
    const PATH: &str = "/me/payment-methods";
    const SUMMARY: &str = "Starts saving a card (a SetupIntent for Stripe.js), or, with the confirmed setup_intent_id, saves it.";
    type Body = Body;
    type Reply = PaymentMethodsData;
    const CALLERS: Callers = Callers::Roles(&[Role::Household]);

    fn parse(_: &Path, raw: Map<String, Value>) -> Result<Self, ParseError> {
        let b: Body = body(raw)?;
        if let Some(id) = &b.setup_intent_id {
            let valid = id.len() <= 255
                && id
                    .strip_prefix("seti_")
                    .is_some_and(|r| !r.is_empty() && r.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_'));
            if !valid {
                return Err(ParseError::new(
                    "`setup_intent_id` must be a SetupIntent's id (seti_, then letters, digits or _)",
                ));
            }
        }
        Ok(Self {
            setup_intent: b.setup_intent_id,
        })
    }

    async fn run(&self, cx: &Context<'_>) -> HandlerResult {
        let processor = saved::processor(cx.services)?;
        let user = cx.caller()?.user_id;
        let customer = saved::ensure_customer(cx.services, processor, user).await?;
        let Some(setup) = &self.setup_intent else {
            let intent = processor
                .stripe
                .create_setup_intent(&customer, user.0)
                .await
                .map_err(unavailable)?;
            return Request::reply(&PaymentMethodsData {
                setup_intent_id: Some(intent.id),
                client_secret: intent.client_secret,
                saved: None,
                cards: saved::cards(cx.services, processor, user).await?,
            });
        };
        let intent = match processor.stripe.retrieve_setup_intent(setup).await {
            Ok(intent) => intent,
            Err(crate::processor::stripe::Error::Refused(_)) => {
                return Err(HandlerError::rejected(
                    ErrorCode::NotFound,
                    format!("no setup of a card {setup}"),
                ));
            }
            Err(e) => return Err(unavailable(e)),
        };
        if intent.customer.as_deref() != Some(customer.as_str()) {
            // Another household's: answered as one that does not exist.
            return Err(HandlerError::rejected(
                ErrorCode::NotFound,
                format!("no setup of a card {setup}"),
            ));
        }
        let Some(method) = intent.payment_method.filter(|_| intent.status == "succeeded") else {
            return Err(HandlerError::rejected(
                ErrorCode::Conflict,
                format!(
                    "the setup of this card is {}: confirm it with Stripe.js first (the card's bank may ask)",
                    intent.status
                ),
            ));
        };
        let attached = processor
            .stripe
            .attach_payment_method(&method, &customer)
            .await
            .map_err(unavailable)?;
        Request::reply(&PaymentMethodsData {
            setup_intent_id: None,
            client_secret: None,
            saved: Some(SavedCard::of(&attached)),
            cards: saved::cards(cx.services, processor, user).await?,
        })
    }
}
