//! `bill`: one bill of an apartment, for its owner or an operator
//! (`POST /apartments/{apartment_id}/bills/{bill_id}`): the bill as `utils` shows it, with its
//! lines and its events from the audit trail.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Callers, Context, ErrorCode, HandlerError, HandlerResult, Route, body};
use crate::call::Path;
use crate::common::{BILL_COLUMNS, BillView, authorize};
use crate::types::{ApartmentId, BillId, ParseError, Role};

#[derive(Debug)]
pub struct Request {
    pub apartment: ApartmentId,
    pub bill_id: BillId,
}

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Body {}

/// The reply's data, kind `bill`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct BillData {
    #[serde(flatten)]
    pub bill: BillView,
    /// As the provider sent them.
    #[schemars(with = "Option<Vec<crate::common::BillLine>>")]
    pub lines: Option<Value>,
    pub events: Vec<Event>,
}

/// A change of the bill's status, as the audit trail recorded it.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Event {
    pub at: DateTime<Utc>,
    pub status: String,
}

impl Route for Request {
    const PATH: &str = "/apartments/{apartment_id}/bills/{bill_id}";
    const SUMMARY: &str = "One bill of the apartment with its lines and events.";
    type Body = Body;
    type Reply = BillData;
    const CALLERS: Callers = Callers::Roles(&[Role::Household, Role::Operator]);
    /// Its access check is the first thing it asks the database.
    const EPOCH_AT_ACCESS: bool = true;

    fn parse(path: &Path, raw: Map<String, Value>) -> Result<Self, ParseError> {
        let _: Body = body(raw)?;
        Ok(Self {
            apartment: path.apartment()?,
            bill_id: path.bill()?,
        })
    }

    fn apartment(&self) -> Option<ApartmentId> {
        Some(self.apartment)
    }

    async fn run(&self, cx: &Context<'_>) -> HandlerResult {
        let client = crate::store::client(&cx.services.store).await?;
        let access = authorize(cx, &*client, self.apartment).await?;
        let row = client
            .query_opt(
                &format!(
                    "SELECT {BILL_COLUMNS}, b.lines FROM bills b JOIN providers p ON p.id = b.provider_id
                     WHERE b.id = $1 AND b.apartment_id = $2"
                ),
                &[&self.bill_id.0, &self.apartment.0],
            )
            .await?;
        let Some(row) = row else {
            return Err(HandlerError::rejected(
                ErrorCode::NotFound,
                format!("apartment {} has no bill {}", self.apartment, self.bill_id),
            ));
        };
        let mut bill = BillView::from_row(&row)?;
        bill.count_days_overdue(access.db_now.date_naive());
        // Rows written before bills had an `open` state call it `unpaid`.
        let events = client
            .query(
                "SELECT occurred_at AS at, CASE new_state->>'status' WHEN 'unpaid' THEN 'open' ELSE new_state->>'status' END AS status
                 FROM audit_events
                 WHERE entity = 'bill' AND entity_id = $1 AND action IN ('created', 'status_changed')
                 ORDER BY id",
                &[&self.bill_id.0.to_string()],
            )
            .await?
            .iter()
            .map(|r| Event {
                at: r.get("at"),
                status: r.get("status"),
            })
            .collect();
        Request::reply(&BillData {
            bill,
            lines: row.get("lines"),
            events,
        })
    }
}
