//! `document`: a receipt, a bill or a statement of an apartment as a PDF or CSV file (a statement
//! also as a spreadsheet, XLSX), for its owner or an operator
//! (`POST /apartments/{apartment_id}/documents`). The file goes to S3; the reply (kind
//! `document`) carries a presigned link to it, never the file itself.
//!
//! A document is issued once (see [`crate::documents::issue`]): asking again for the same subject
//! and format gives the same document, with the same `sha256`, and a fresh link.

use chrono::NaiveDate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{Callers, Context, ErrorCode, HandlerError, HandlerResult, Route, body};
use crate::call::Path;
use crate::common::authorize;
use crate::contract;
use crate::documents::{self, DocumentData, Format, Subject};
use crate::types::{ApartmentId, BillId, ParseError, Role, parse_date};

/// The longest statement: a year and a day, so that any calendar year fits.
pub const MAX_STATEMENT_DAYS: i64 = 366;

#[derive(Debug)]
pub struct Request {
    pub apartment: ApartmentId,
    pub subject: Subject,
    pub format: Format,
}

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Body {
    #[schemars(extend("enum" = ["receipt", "bill", "statement"]))]
    pub kind: String,
    /// `xlsx` for statements only.
    #[schemars(extend("enum" = ["pdf", "csv", "xlsx"]))]
    pub format: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "contract::Uuid")]
    pub payment_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub bill_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "contract::Date")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "contract::Date")]
    pub to: Option<String>,
}

impl Route for Request {
    const PATH: &str = "/apartments/{apartment_id}/documents";
    const SUMMARY: &str =
        "A receipt, a bill or a statement as PDF or CSV (a statement also XLSX), with a link valid 15 minutes.";
    type Body = Body;
    type Reply = DocumentData;
    const CALLERS: Callers = Callers::Roles(&[Role::Household, Role::Operator]);

    fn parse(path: &Path, raw: Map<String, Value>) -> Result<Self, ParseError> {
        let b: Body = body(raw)?;
        let format = Format::parse(&b.format)?;
        let only = |kind: &str, wanted: &str, extra: bool| {
            if extra {
                Err(ParseError::new(format!(
                    "a {kind} takes {wanted} and no other subject field"
                )))
            } else {
                Ok(())
            }
        };
        let subject = match b.kind.as_str() {
            "receipt" => {
                only(
                    "receipt",
                    "`payment_id`",
                    b.bill_id.is_some() || b.from.is_some() || b.to.is_some(),
                )?;
                let raw = b
                    .payment_id
                    .ok_or_else(|| ParseError::new("a receipt needs `payment_id`"))?;
                Subject::Receipt(
                    Uuid::parse_str(&raw).map_err(|_| {
                        ParseError::new("`payment_id` must be a payment's id, a UUID")
                    })?,
                )
            }
            "bill" => {
                only(
                    "bill",
                    "`bill_id`",
                    b.payment_id.is_some() || b.from.is_some() || b.to.is_some(),
                )?;
                let id = b
                    .bill_id
                    .ok_or_else(|| ParseError::new("a bill needs `bill_id`"))?;
                if id <= 0 {
                    return Err(ParseError::new("`bill_id` must be a positive whole number"));
                }
                Subject::Bill(BillId(id))
            }
            "statement" => {
                only(
                    "statement",
                    "`from` and `to`",
                    b.payment_id.is_some() || b.bill_id.is_some(),
                )?;
                let (Some(from), Some(to)) = (b.from, b.to) else {
                    return Err(ParseError::new(
                        "a statement needs `from` and `to`, its first and last day",
                    ));
                };
                let (from, to) = (parse_date("from", &from)?, parse_date("to", &to)?);
                if from > to {
                    return Err(ParseError::new("`from` must not be after `to`"));
                }
                if (to - from).num_days() >= MAX_STATEMENT_DAYS {
                    return Err(ParseError::new(format!(
                        "a statement covers at most {MAX_STATEMENT_DAYS} days; ask for one per year"
                    )));
                }
                Subject::Statement { from, to }
            }
            other => {
                return Err(ParseError::new(format!(
                    "`kind` must be receipt, bill or statement, not {other:?}"
                )));
            }
        };
        if format == Format::Xlsx && !matches!(subject, Subject::Statement { .. }) {
            return Err(ParseError::new(
                "a spreadsheet (xlsx) is for statements; a receipt or a bill is pdf or csv",
            ));
        }
        Ok(Self {
            apartment: path.apartment()?,
            subject,
            format,
        })
    }

    fn apartment(&self) -> Option<ApartmentId> {
        Some(self.apartment)
    }

    async fn run(&self, cx: &Context<'_>) -> HandlerResult {
        let files = &cx.services.files;
        if files.bucket().is_none() {
            return Err(HandlerError::internal(anyhow::anyhow!(
                "documents are not configured on this engine (QBILL_DOCUMENTS_BUCKET)"
            )));
        }
        let mut client = crate::store::client(&cx.services.store).await?;
        let access = authorize(cx, &*client, self.apartment).await?;
        if let Subject::Statement { to, .. } = self.subject {
            let today: NaiveDate = access.db_now.date_naive();
            if to >= today {
                return Err(HandlerError::rejected(
                    ErrorCode::InvalidRequest,
                    format!(
                        "a statement covers whole past days: `to` must be before today ({today}, UTC)"
                    ),
                ));
            }
        }
        let user = cx.caller()?.user_id;
        let issued = documents::issue(
            files,
            &mut client,
            documents::Owner::Apartment(self.apartment),
            user,
            self.subject,
            self.format,
        )
        .await?;
        Request::reply(&DocumentData::linked(files, &issued).await?)
    }
}
