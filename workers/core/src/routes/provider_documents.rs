//! `provider_documents`: a provider's settlements over closed days as a document
//! (`POST /providers/{provider_id}/documents` {`kind`: `settlement`, `format`: `pdf`, `csv` or
//! `xlsx`, `from`, `to`}), for the provider's own users and operators: every line of every day,
//! each naming its payment, with the day's totals and the window's. The file goes to S3 and the
//! reply (kind `provider_documents`) carries a presigned link, as the apartments' documents do; the same
//! window and format give the same document. A window that runs past the last closed day is
//! refused: its document would change once the day closes.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Callers, Context, HandlerError, HandlerResult, Route, body};
use crate::call::Path;
use crate::common::{closed_through, first_open, provider_access, window};
use crate::contract;
use crate::documents::{self, DocumentData, Format, Owner, Subject};
use crate::types::{ParseError, ProviderId, Role};

#[derive(Debug)]
pub struct Request {
    pub provider: ProviderId,
    pub subject: Subject,
    pub format: Format,
}

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Body {
    #[schemars(extend("enum" = ["settlement"]))]
    pub kind: String,
    #[schemars(extend("enum" = ["pdf", "csv", "xlsx"]))]
    pub format: String,
    /// The first UTC day.
    #[schemars(with = "contract::Date")]
    pub from: String,
    /// The last UTC day, included.
    #[schemars(with = "contract::Date")]
    pub to: String,
}

impl Route for Request {
    const PATH: &str = "/providers/{provider_id}/documents";
    const SUMMARY: &str =
        "The provider's settlements over closed days as PDF, CSV or XLSX, with a link valid 15 minutes.";
    type Body = Body;
    type Reply = DocumentData;
    const CALLERS: Callers = Callers::Roles(&[Role::Provider, Role::Operator]);

    fn parse(path: &Path, raw: Map<String, Value>) -> Result<Self, ParseError> {
        let b: Body = body(raw)?;
        if b.kind != "settlement" {
            return Err(ParseError::new(format!(
                "`kind` must be settlement, not {:?}",
                b.kind
            )));
        }
        let format = Format::parse(&b.format)?;
        let (from, to) = window(&b.from, &b.to)?;
        Ok(Self {
            provider: path.provider()?,
            subject: Subject::Settlement { from, to },
            format,
        })
    }

    async fn run(&self, cx: &Context<'_>) -> HandlerResult {
        let files = &cx.services.files;
        if files.bucket().is_none() {
            return Err(HandlerError::internal(anyhow::anyhow!(
                "documents are not configured on this engine (QBILL_DOCUMENTS_BUCKET)"
            )));
        }
        let mut client = crate::store::client(&cx.services.store).await?;
        provider_access(cx, &*client, self.provider).await?;
        let Subject::Settlement { from, to } = self.subject else {
            unreachable!("parsed as a settlement");
        };
        closed_through(first_open(&*client, from, to).await?)?;
        let issued = documents::issue(
            files,
            &mut client,
            Owner::Provider(self.provider),
            cx.caller()?.user_id,
            self.subject,
            self.format,
        )
        .await?;
        Request::reply(&DocumentData::linked(files, &issued).await?)
    }
}
