//! `bill_void`: a provider voids one of its bills that is open or overdue
//! (`POST /providers/{provider_id}/bills/{bill_id}/void`). A void bill leaves `utils` and cannot
//! be paid. Voiding it again gets the same reply; a paid bill is `already_paid`. A late fee is a
//! bill of its own: voiding a bill leaves its fee, which the provider voids separately if it
//! should go too.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Callers, Context, ErrorCode, HandlerError, HandlerResult, Kind, Route, body};
use crate::call::Path;
use crate::common::{bump_apartments, provider_access, text};
use crate::idempotency;
use crate::types::{BillId, ParseError, ProviderId, Role};

/// The longest reason, in characters.
pub const MAX_REASON_CHARS: usize = 200;

#[derive(Debug, Serialize, JsonSchema)]
pub struct Request {
    pub provider_id: ProviderId,
    pub bill_id: BillId,
    pub reason: String,
}

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Body {
    #[schemars(length(min = 1, max = 200))]
    pub reason: String,
}

/// The reply's data, kind `bill_void`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct VoidData {
    pub bill_id: BillId,
    pub status: &'static str,
    pub voided_at: DateTime<Utc>,
}

impl Route for Request {
    const PATH: &str = "/providers/{provider_id}/bills/{bill_id}/void";
    const SUMMARY: &str = "Voids an open or overdue bill.";
    type Body = Body;
    type Reply = VoidData;
    const CALLERS: Callers = Callers::Roles(&[Role::Provider, Role::Operator]);

    fn parse(path: &Path, raw: Map<String, Value>) -> Result<Self, ParseError> {
        let b: Body = body(raw)?;
        Ok(Self {
            provider_id: path.provider()?,
            bill_id: path.bill()?,
            reason: text("reason", &b.reason, MAX_REASON_CHARS)?,
        })
    }

    async fn run(&self, cx: &Context<'_>) -> HandlerResult {
        idempotency::once(cx, Kind::BillVoid, self, async |tx| {
        provider_access(cx, tx, self.provider_id).await?;
        let bill = self.bill_id;
        let row = tx
            .query_opt(
                "SELECT status, voided_at, apartment_id FROM bills WHERE id = $1 AND provider_id = $2 FOR UPDATE",
                &[&bill.0, &self.provider_id.0],
            )
            .await?;
        let Some(row) = row else {
            return Err(HandlerError::rejected(
                ErrorCode::NotFound,
                format!("provider {} has no bill {bill}", self.provider_id),
            ));
        };
        let voided_at: DateTime<Utc> = match row.get::<_, &str>("status") {
            "paid" => {
                return Err(HandlerError::rejected(
                    ErrorCode::AlreadyPaid,
                    format!("bill {bill} is paid; a paid bill cannot be voided"),
                ));
            }
            "void" => row.get::<_, Option<DateTime<Utc>>>("voided_at").ok_or_else(|| {
                HandlerError::internal(anyhow::anyhow!("void bill {bill} without voided_at"))
            })?,
            _ => {
                let voided_at = tx
                    .query_one(
                        "UPDATE bills SET status = 'void', voided_at = clock_timestamp(), void_reason = $2
                         WHERE id = $1 RETURNING voided_at",
                        &[&bill.0, &self.reason],
                    )
                    .await?
                    .get(0);
                let apartment: Option<i64> = row.get("apartment_id");
                bump_apartments(tx, &apartment.into_iter().collect::<Vec<_>>()).await?;
                voided_at
            }
        };
        let data = Request::reply(&VoidData {
            bill_id: bill,
            status: "void",
            voided_at,
        })?;
        Ok(data)
        })
        .await
    }
}
