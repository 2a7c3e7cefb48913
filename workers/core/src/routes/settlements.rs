//! `settlements`: what a provider was owed, day by day (`POST /providers/{provider_id}/settlements`
//! {`from`, `to`}), for the provider's own users and operators. Each closed UTC day of the window
//! with activity is one settlement per currency: payments settled (`gross`), refunds, the
//! processor's fees and the `net`, and what of it the provider received itself
//! (`collected_elsewhere`: payments made elsewhere). Days of the window not closed yet are named
//! (`open_from`): the settle job closes each day once it is over, and a closed day never
//! changes. The lines, each naming its payment, are in the settlement documents (CSV, XLSX,
//! PDF: the `provider_documents` route).

use chrono::NaiveDate;
use rust_decimal::Decimal;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Callers, Context, HandlerError, HandlerResult, Route, body};
use crate::call::Path;
use crate::common::{first_open, provider_access, window};
use crate::contract;
use crate::types::{Currency, ParseError, ProviderId, Role, amount};

#[derive(Debug)]
pub struct Request {
    pub provider: ProviderId,
    pub from: NaiveDate,
    pub to: NaiveDate,
}

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Body {
    /// The first UTC day, `YYYY-MM-DD`.
    #[schemars(with = "contract::Date")]
    pub from: String,
    /// The last UTC day, included.
    #[schemars(with = "contract::Date")]
    pub to: String,
}

/// One provider's day in one currency.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Settlement {
    #[schemars(with = "contract::Date")]
    pub day: NaiveDate,
    pub currency: Currency,
    pub payments: i32,
    pub refunds_count: i32,
    #[serde(with = "amount")]
    #[schemars(with = "contract::Amount")]
    pub gross: Decimal,
    #[serde(with = "amount")]
    #[schemars(with = "contract::Amount")]
    pub refunds: Decimal,
    #[serde(with = "amount")]
    #[schemars(with = "contract::Amount")]
    pub fees: Decimal,
    /// gross − refunds − fees (negative on a day of more refunds than payments).
    #[serde(with = "amount")]
    #[schemars(with = "contract::LineAmount")]
    pub net: Decimal,
    /// What of gross the provider received itself (payments made elsewhere).
    #[serde(with = "amount")]
    #[schemars(with = "contract::Amount")]
    pub collected_elsewhere: Decimal,
}

/// The reply's data, kind `settlements`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SettlementsData {
    pub provider_id: ProviderId,
    #[schemars(with = "contract::Date")]
    pub from: NaiveDate,
    #[schemars(with = "contract::Date")]
    pub to: NaiveDate,
    /// The closed days with activity, oldest first.
    pub settlements: Vec<Settlement>,
    /// The first day of the window not closed yet, if any: it and the days after are still open.
    #[schemars(with = "Option<contract::Date>")]
    pub open_from: Option<NaiveDate>,
}

impl Route for Request {
    const PATH: &str = "/providers/{provider_id}/settlements";
    const SUMMARY: &str =
        "What the provider was owed each closed day of a window: payments, refunds, fees and net.";
    type Body = Body;
    type Reply = SettlementsData;
    const CALLERS: Callers = Callers::Roles(&[Role::Provider, Role::Operator]);

    fn parse(path: &Path, raw: Map<String, Value>) -> Result<Self, ParseError> {
        let b: Body = body(raw)?;
        let (from, to) = window(&b.from, &b.to)?;
        Ok(Self {
            provider: path.provider()?,
            from,
            to,
        })
    }

    async fn run(&self, cx: &Context<'_>) -> HandlerResult {
        let client = crate::store::client(&cx.services.store).await?;
        provider_access(cx, &*client, self.provider).await?;
        let rows = client
            .query(
                "SELECT day, currency, payments, refunds_count, gross, refunds, fees, net, collected_elsewhere
                 FROM settlements WHERE provider_id = $1 AND day BETWEEN $2 AND $3
                 ORDER BY day, currency",
                &[&self.provider.0, &self.from, &self.to],
            )
            .await?;
        let settlements = rows
            .iter()
            .map(|r| {
                Ok(Settlement {
                    day: r.get("day"),
                    currency: Currency::parse(r.get::<_, &str>("currency"))
                        .map_err(HandlerError::internal)?,
                    payments: r.get("payments"),
                    refunds_count: r.get("refunds_count"),
                    gross: r.get("gross"),
                    refunds: r.get("refunds"),
                    fees: r.get("fees"),
                    net: r.get("net"),
                    collected_elsewhere: r.get("collected_elsewhere"),
                })
            })
            .collect::<Result<_, HandlerError>>()?;
        Request::reply(&SettlementsData {
            provider_id: self.provider,
            from: self.from,
            to: self.to,
            settlements,
            open_from: first_open(&*client, self.from, self.to).await?,
        })
    }
}
