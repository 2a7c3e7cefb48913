//! Saved cards: the household's cards kept by the processor on a customer of its own, made the
//! first time it saves one (`users.stripe_customer_id`). Every call here is to the processor,
//! outside any transaction; the books keep the customer's id only.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Processor;
use super::stripe::{self, PaymentMethod};
use crate::error::{ErrorCode, HandlerError};
use crate::services::Services;
use crate::types::UserId;

/// A saved card as the household sees it: which card, never its number.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SavedCard {
    /// What `payments` takes as `payment_method` to pay with it.
    pub payment_method_id: String,
    pub brand: String,
    pub last4: String,
    pub exp_month: u32,
    pub exp_year: u32,
}

impl SavedCard {
    pub fn of(method: &PaymentMethod) -> Self {
        let card = method.card.clone();
        Self {
            payment_method_id: method.id.clone(),
            brand: card
                .as_ref()
                .and_then(|c| c.brand.clone())
                .unwrap_or_else(|| "card".to_owned()),
            last4: card
                .as_ref()
                .and_then(|c| c.last4.clone())
                .unwrap_or_default(),
            exp_month: card.as_ref().and_then(|c| c.exp_month).unwrap_or(0),
            exp_year: card.as_ref().and_then(|c| c.exp_year).unwrap_or(0),
        }
    }
}

/// The processor of a deployment that takes cards, or the refusal of one that does not.
pub fn processor(services: &Services) -> Result<&Processor, HandlerError> {
    services.processor.as_deref().ok_or_else(|| {
        HandlerError::rejected(
            ErrorCode::Conflict,
            "saved cards are kept by the payments processor, and this deployment has none (QBILL_PAYMENTS=ledger)",
        )
    })
}

/// A processor's refusal or absence, sorted as the worker acts on it.
pub fn unavailable(e: stripe::Error) -> HandlerError {
    match e {
        stripe::Error::Unavailable(e) => HandlerError::Transient(e),
        other => HandlerError::internal(other),
    }
}

/// The user's customer at the processor, if one was made.
pub async fn customer(services: &Services, user: UserId) -> Result<Option<String>, HandlerError> {
    let client = crate::store::client(&services.store).await?;
    Ok(client
        .query_opt(
            "SELECT stripe_customer_id FROM users WHERE id = $1",
            &[&user.0],
        )
        .await?
        .and_then(|r| r.get(0)))
}

/// The user's customer, made now if it was not (two requests at once make one: the processor's
/// idempotency key is the user's, and the first id written is the one kept).
pub async fn ensure_customer(
    services: &Services,
    processor: &Processor,
    user: UserId,
) -> Result<String, HandlerError> {
    if let Some(customer) = customer(services, user).await? {
        return Ok(customer);
    }
    let made = processor
        .stripe
        .create_customer(user.0)
        .await
        .map_err(unavailable)?;
    let client = crate::store::client(&services.store).await?;
    let kept: String = client
        .query_one(
            "WITH set AS (UPDATE users SET stripe_customer_id = $2
                          WHERE id = $1 AND stripe_customer_id IS NULL RETURNING stripe_customer_id)
             SELECT coalesce((SELECT stripe_customer_id FROM set),
                             (SELECT stripe_customer_id FROM users WHERE id = $1))",
            &[&user.0, &made],
        )
        .await?
        .get(0);
    if kept != made {
        // Another request made one first (a processor without idempotency keys made two).
        if let Err(e) = processor.stripe.delete_customer(&made).await {
            tracing::warn!(customer = %made, error = %e, "could not delete a customer made twice");
        }
    }
    Ok(kept)
}

/// The user's saved cards, oldest first as the processor lists them.
pub async fn cards(
    services: &Services,
    processor: &Processor,
    user: UserId,
) -> Result<Vec<SavedCard>, HandlerError> {
    let Some(customer) = customer(services, user).await? else {
        return Ok(Vec::new());
    };
    let cards = processor
        .stripe
        .customer_cards(&customer)
        .await
        .map_err(unavailable)?;
    Ok(cards.iter().map(SavedCard::of).collect())
}

/// Forgets the customers of deleted accounts at the processor (their cards detached, then the
/// customer deleted), and then their ids: the reconcile job's sweep for any the deletion's own
/// attempt left. How many.
pub async fn forget_deleted(services: &Services, processor: &Processor) -> anyhow::Result<u64> {
    let client = crate::store::client(&services.store).await?;
    let users: Vec<i64> = client
        .query(
            "SELECT id FROM users WHERE deleted_at IS NOT NULL AND stripe_customer_id IS NOT NULL LIMIT 1000",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    drop(client);
    let mut forgotten = 0;
    for user in users {
        forgotten += forget(services, processor, UserId(user)).await?;
    }
    Ok(forgotten)
}

/// Forgets a deleted account's customer at the processor; 1 if this call did.
pub async fn forget(
    services: &Services,
    processor: &Processor,
    user: UserId,
) -> anyhow::Result<u64> {
    let client = crate::store::client(&services.store).await?;
    let Some(row) = client
        .query_opt(
            "SELECT stripe_customer_id FROM users WHERE id = $1 AND deleted_at IS NOT NULL AND stripe_customer_id IS NOT NULL",
            &[&user.0],
        )
        .await?
    else {
        return Ok(0);
    };
    drop(client);
    let customer: String = row.get(0);
    for card in processor.stripe.customer_cards(&customer).await? {
        processor.stripe.detach_payment_method(&card.id).await?;
    }
    processor.stripe.delete_customer(&customer).await?;
    let client = crate::store::client(&services.store).await?;
    Ok(client
        .execute(
            "UPDATE users SET stripe_customer_id = NULL WHERE id = $1 AND stripe_customer_id = $2",
            &[&user.0, &customer],
        )
        .await?)
}
