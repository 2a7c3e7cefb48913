//! `me_payment_method_delete`: the household forgets a saved card
//! (`POST /me/payment-methods/{payment_method_id}/delete`): it is detached from the household's
//! customer at the processor, and can pay no more. Only the caller's own saved card: any other
//! id, or one deleted already, is answered as one that does not exist.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Callers, Context, ErrorCode, HandlerError, HandlerResult, Route, body};
use crate::call::Path;
use crate::processor::saved::{self, SavedCard, unavailable};
use crate::types::{ParseError, Role};

#[derive(Debug)]
pub struct Request {
    pub payment_method: String,
}

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Body {}

/// The reply's data, kind `me_payment_method_delete`: the cards still saved.
#[derive(Debug, Serialize, JsonSchema)]
pub struct DeletedCardData {
    pub deleted: String,
    pub cards: Vec<SavedCard>,
}

impl Route for Request {
    const PATH: &str = "/me/payment-methods/{payment_method_id}/delete";
    const SUMMARY: &str = "Forgets one of the household's saved cards.";
    type Body = Body;
    type Reply = DeletedCardData;
    const CALLERS: Callers = Callers::Roles(&[Role::Household]);

    fn parse(path: &Path, raw: Map<String, Value>) -> Result<Self, ParseError> {
        let _: Body = body(raw)?;
        Ok(Self {
            payment_method: path.payment_method()?,
        })
    }

    async fn run(&self, cx: &Context<'_>) -> HandlerResult {
        let processor = saved::processor(cx.services)?;
        let user = cx.caller()?.user_id;
        let not_found = || {
            HandlerError::rejected(
                ErrorCode::NotFound,
                format!("you have no saved card {}", self.payment_method),
            )
        };
        let cards = saved::cards(cx.services, processor, user).await?;
        if !cards.iter().any(|c| c.payment_method_id == self.payment_method) {
            return Err(not_found());
        }
        processor
            .stripe
            .detach_payment_method(&self.payment_method)
            .await
            .map_err(unavailable)?;
        Request::reply(&DeletedCardData {
            deleted: self.payment_method.clone(),
            cards: saved::cards(cx.services, processor, user).await?,
        })
    }
}
