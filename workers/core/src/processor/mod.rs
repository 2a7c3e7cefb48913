//! The payments processor: how a card payment's money moves, and how qbill's books follow.
//!
//! The flow (docs/payments.md has the picture): the `payments` route records a payment
//! `pending` that reserves its bills, in the transaction that claims the request. After the
//! commit, [`charge`] creates the payment's PaymentIntent (the payment's id is its idempotency
//! key, so a repeat is the same intent) and, with a PaymentMethod, confirms it at once. What the
//! processor answers, there, in a webhook ([`webhook`]) or to the jobs that ask
//! (`jobs::expire_payments`, `jobs::reconcile`), is applied to the books by [`book::apply`], once
//! and in one direction: a succeeded payment stays succeeded. No call to the processor happens
//! inside a database transaction; the pending payment is what carries the call across a crash
//! (the request's redelivery, or the expiry job, finishes it).

pub mod book;
pub mod refund;
pub mod saved;
pub mod settle;
pub mod signature;
pub mod stripe;
pub mod webhook;

use secrecy::SecretString;

use crate::config::{StripeConfig, StripeKeys};
use crate::error::HandlerError;
use crate::services::Services;
use book::{Payment, Via};
use stripe::{IntentStatus, NewIntent, Stripe};

/// The processor as the worker holds it: the API client and the webhook signing secrets.
#[derive(Debug)]
pub struct Processor {
    pub stripe: Stripe,
    webhook_secrets: Vec<SecretString>,
}

impl Processor {
    /// Reads the keys (from the environment or Secrets Manager) once, at start.
    pub async fn from_config(config: &StripeConfig) -> anyhow::Result<Self> {
        let (secret_key, webhook_secrets) = match &config.keys {
            StripeKeys::Given {
                secret_key,
                webhook_secrets,
            } => (secret_key.clone(), webhook_secrets.clone()),
            StripeKeys::Secret { arn } => {
                let secret = crate::managed::secret(arn, None)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("secret {arn} has no current version"))?;
                read_secret(&secret.value)?
            }
        };
        if webhook_secrets.is_empty() {
            anyhow::bail!(
                "payments through Stripe need a webhook signing secret (QBILL_STRIPE_WEBHOOK_SECRET)"
            );
        }
        Ok(Self::new(
            Stripe::new(&config.api_base, secret_key)?,
            webhook_secrets,
        ))
    }

    pub fn new(stripe: Stripe, webhook_secrets: Vec<SecretString>) -> Self {
        Self {
            stripe,
            webhook_secrets,
        }
    }

    pub fn webhook_secrets(&self) -> &[SecretString] {
        &self.webhook_secrets
    }
}

/// The Secrets Manager secret's JSON: `secret_key`, `webhook_secret`, and
/// `previous_webhook_secret` while a new one is rotated in.
fn read_secret(value: &SecretString) -> anyhow::Result<(SecretString, Vec<SecretString>)> {
    use secrecy::ExposeSecret;
    #[derive(serde::Deserialize)]
    struct Keys {
        secret_key: String,
        webhook_secret: String,
        #[serde(default)]
        previous_webhook_secret: Option<String>,
    }
    let keys: Keys = serde_json::from_str(value.expose_secret())
        .map_err(|_| anyhow::anyhow!("the Stripe secret is not the expected JSON object"))?;
    let mut webhook = vec![SecretString::from(keys.webhook_secret)];
    webhook.extend(keys.previous_webhook_secret.map(SecretString::from));
    Ok((keys.secret_key.into(), webhook))
}

/// Where a payment stands after [`charge`]: the books' status, and what the client needs next.
#[derive(Debug)]
pub struct Charged {
    pub payment: Payment,
    /// For Stripe.js, while the payment waits on the household (to enter a card, or to pass its
    /// bank's check).
    pub client_secret: Option<String>,
}

/// Asks the processor for the payment's money, after the transaction that recorded it committed:
/// creates its intent (the same one if asked again), confirms it with `payment_method` if
/// given, and applies the answer. A processor out of reach is [`HandlerError::Transient`]: the
/// request is received again and asks again, with the same idempotency key.
pub async fn charge(
    services: &Services,
    processor: &Processor,
    payment: Payment,
    payment_method: Option<&str>,
) -> Result<Charged, HandlerError> {
    if payment.is_final() {
        return Ok(Charged {
            payment,
            client_secret: None,
        });
    }
    let intent = match &payment.intent_id {
        // Asked before (this is a repeat): where it stands now.
        Some(id) => processor.stripe.retrieve_intent(id).await,
        None => {
            let saved_on = match saved_card(services, processor, &payment, payment_method).await? {
                Saved::No => None,
                Saved::On(customer) => Some(customer),
                Saved::Elsewhere => {
                    let card = stripe::CardError {
                        code: Some("payment_method_not_yours".into()),
                        ..Default::default()
                    };
                    let payment = book::fail(services, payment.id, &card, Via::Confirm).await?;
                    return Ok(Charged {
                        payment,
                        client_secret: None,
                    });
                }
            };
            processor
                .stripe
                .create_intent(&NewIntent {
                    payment_id: payment.id,
                    apartment_id: payment.apartment_id,
                    amount: payment
                        .total
                        .minor_units()
                        .map_err(HandlerError::internal)?,
                    currency: payment.total.currency().as_str(),
                    payment_method,
                    saved_on: saved_on.as_deref(),
                })
                .await
        }
    };
    let (intent, refusal) = match intent {
        Ok(intent) => (intent, None),
        Err(stripe::Error::Card(card)) => match card.payment_intent.clone() {
            Some(intent) => (*intent, Some(card)),
            // A refusal without its intent: the books hear of it from the webhook or the jobs.
            None => {
                let payment = book::fail(services, payment.id, &card, Via::Confirm).await?;
                return Ok(Charged {
                    payment,
                    client_secret: None,
                });
            }
        },
        Err(stripe::Error::Unavailable(e)) => return Err(HandlerError::Transient(e)),
        Err(stripe::Error::Refused(e)) => return Err(HandlerError::internal(e)),
    };
    let client_secret = intent.client_secret.clone();
    let confirmed = payment_method.is_some() || refusal.is_some();
    let payment = match refusal {
        Some(card) => book::fail(services, payment.id, &card, Via::Confirm).await?,
        None => book::apply(services, payment.id, &intent, Via::Confirm, confirmed).await?,
    };
    // A refused card's intent is cancelled, so that nothing can capture it later: the household
    // starts again with a new payment. A failure to cancel is left to the expiry job.
    if payment.status == "failed"
        && let Err(e) = processor.stripe.cancel_intent(&intent.id).await
    {
        tracing::warn!(intent = %intent.id, error = %e, "could not cancel a refused intent");
    }
    let waiting = matches!(
        intent.status,
        IntentStatus::RequiresPaymentMethod
            | IntentStatus::RequiresConfirmation
            | IntentStatus::RequiresAction
    );
    Ok(Charged {
        client_secret: (waiting && !payment.is_final())
            .then_some(client_secret)
            .flatten(),
        payment,
    })
}

/// Whether a payment's card is one the household saved.
enum Saved {
    /// A card entered for this payment (or none).
    No,
    /// Saved on the household's customer: charged off-session, on it.
    On(String),
    /// Saved on someone else's customer: never charged for this household.
    Elsewhere,
}

/// Reads, for a PaymentMethod (`pm_…`), whether it is saved, and on whose customer.
async fn saved_card(
    services: &Services,
    processor: &Processor,
    payment: &Payment,
    payment_method: Option<&str>,
) -> Result<Saved, HandlerError> {
    let Some(method) = payment_method.filter(|m| m.starts_with("pm_")) else {
        return Ok(Saved::No);
    };
    let card = match processor.stripe.retrieve_payment_method(method).await {
        Ok(card) => card,
        Err(stripe::Error::Unavailable(e)) => return Err(HandlerError::Transient(e)),
        // Unknown to the processor: the confirm refuses it, as it would any bad card.
        Err(_) => return Ok(Saved::No),
    };
    let Some(owner) = card.customer else {
        return Ok(Saved::No);
    };
    let client = crate::store::client(&services.store).await?;
    let ours: Option<String> = client
        .query_opt(
            "SELECT stripe_customer_id FROM users WHERE id = $1",
            &[&payment.user_id],
        )
        .await?
        .and_then(|r| r.get(0));
    Ok(if ours.as_deref() == Some(owner.as_str()) {
        Saved::On(owner)
    } else {
        Saved::Elsewhere
    })
}

/// A sentence for people for the processor's decline code.
pub fn decline_message(code: &str) -> &'static str {
    match code {
        "insufficient_funds" => {
            "The card was declined: there is not enough money on it. Try another card."
        }
        "expired_card" => "The card has expired. Try another card.",
        "incorrect_cvc" | "invalid_cvc" => {
            "The card's security code is wrong. Check it and try again."
        }
        "incorrect_number" | "invalid_number" => {
            "The card number is wrong. Check it and try again."
        }
        "processing_error" => {
            "The card could not be charged because of an error at the bank. Try again in a moment."
        }
        "payment_method_not_yours" => {
            "This saved card is not one of yours. Pay with one of your cards."
        }
        "authentication_required" => {
            "The card's bank asks you to confirm this payment. Pay again and confirm it."
        }
        _ => "The card was declined by its bank. Try another card, or ask the bank why.",
    }
}
