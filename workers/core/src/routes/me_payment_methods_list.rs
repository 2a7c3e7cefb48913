//! `me_payment_methods_list`: the household's saved cards (`POST /me/payment-methods/list`):
//! brand, last four digits and expiry, and the id `payments` takes to pay with one. Read from the
//! processor, which keeps them; a household that never saved one has none.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Callers, Context, HandlerResult, Route, body};
use crate::call::Path;
use crate::processor::saved::{self, SavedCard};
use crate::types::{ParseError, Role};

#[derive(Debug)]
pub struct Request {}

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Body {}

/// The reply's data, kind `me_payment_methods_list`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SavedCardsData {
    pub cards: Vec<SavedCard>,
}

impl Route for Request {
    const PATH: &str = "/me/payment-methods/list";
    const SUMMARY: &str = "The household's saved cards: brand, last four digits, expiry.";
    type Body = Body;
    type Reply = SavedCardsData;
    const CALLERS: Callers = Callers::Roles(&[Role::Household]);

    fn parse(_: &Path, raw: Map<String, Value>) -> Result<Self, ParseError> {
        let _: Body = body(raw)?;
        Ok(Self {})
    }

    async fn run(&self, cx: &Context<'_>) -> HandlerResult {
        let processor = saved::processor(cx.services)?;
        let user = cx.caller()?.user_id;
        Request::reply(&SavedCardsData {
            cards: saved::cards(cx.services, processor, user).await?,
        })
    }
}
