//! `events`: a provider's event feed (`POST /providers/{provider_id}/events`
//! {`since_id`?, `types`?, `limit`?}), for its own users and operators: its events after
//! `since_id` (from the oldest kept without it), in the feed's order ([`crate::events::feed`]: a
//! reader that goes on from the last event it read never misses one that committed late), of the
//! `types` asked for, [`DEFAULT_LIMIT`] at a time. Events are kept 30 days: a provider that cannot
//! receive webhooks polls the feed, and one that was down replays from it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Callers, Context, ErrorCode, HandlerError, HandlerResult, Route, body};
use crate::call::Path;
use crate::common::provider_access;
use crate::events::feed::{self, Position};
use crate::events::{Event, Type};
use crate::types::{ParseError, ProviderId, Role};

pub const DEFAULT_LIMIT: i64 = 100;
pub const MAX_LIMIT: i64 = 500;

#[derive(Debug)]
pub struct Request {
    pub provider: ProviderId,
    pub since_id: Option<i64>,
    pub types: Vec<Type>,
    pub limit: i64,
}

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Body {
    /// Events after this one (the `next_since_id` of the page before); left out: from the oldest
    /// kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub since_id: Option<i64>,
    /// Only these types; empty or left out: every type.
    #[serde(default)]
    #[schemars(with = "Vec<Type>", length(max = 10))]
    pub types: Vec<String>,
    /// Events a page, at most 500 (100 if left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 500))]
    pub limit: Option<i64>,
}

/// The reply's data, kind `events`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct EventsData {
    pub provider_id: ProviderId,
    pub events: Vec<Event>,
    /// Where to go on from: the last event of this page, or the `since_id` asked for when the
    /// page is empty.
    pub next_since_id: Option<i64>,
    /// Whether more events are there already.
    pub has_more: bool,
}

impl Route for Request {
    const PATH: &str = "/providers/{provider_id}/events";
    const SUMMARY: &str =
        "The provider's events after a given one, in order, a page at a time (kept 30 days).";
    type Body = Body;
    type Reply = EventsData;
    const CALLERS: Callers = Callers::Roles(&[Role::Provider, Role::Operator]);

    fn parse(path: &Path, raw: Map<String, Value>) -> Result<Self, ParseError> {
        let b: Body = body(raw)?;
        if b.since_id.is_some_and(|id| id < 1) {
            return Err(ParseError::new("`since_id` must be a positive whole number"));
        }
        let limit = b.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ParseError::new(format!(
                "`limit` must be between 1 and {MAX_LIMIT}"
            )));
        }
        Ok(Self {
            provider: path.provider()?,
            since_id: b.since_id,
            types: Type::parse_list(&b.types)?,
            limit,
        })
    }

    async fn run(&self, cx: &Context<'_>) -> HandlerResult {
        let client = crate::store::client(&cx.services.store).await?;
        provider_access(cx, &*client, self.provider).await?;
        let from = match self.since_id {
            None => Position::default(),
            Some(id) => feed::position_of(&*client, self.provider, id)
                .await
                .map_err(HandlerError::internal)?
                .ok_or_else(|| {
                    HandlerError::rejected(
                        ErrorCode::NotFound,
                        format!(
                            "event {id} is not one of provider {}'s kept events (events are kept 30 days); read from the start without since_id",
                            self.provider
                        ),
                    )
                })?,
        };
        let mut page = feed::page(&*client, Some(self.provider), from, &self.types, self.limit + 1)
            .await
            .map_err(HandlerError::internal)?;
        let has_more = page.len() as i64 > self.limit;
        page.truncate(self.limit as usize);
        let events: Vec<Event> = page.into_iter().map(|(_, e)| e).collect();
        Request::reply(&EventsData {
            provider_id: self.provider,
            next_since_id: events.last().map(|e| e.id).or(self.since_id),
            events,
            has_more,
        })
    }
}
