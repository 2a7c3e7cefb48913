//! `policy`: a provider's grace days and late fee (`POST /providers/{provider_id}/policy`), which
//! the overdue job ([`crate::jobs::overdue`]) applies. Setting the policy it has is a no-op.

use rust_decimal::Decimal;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Callers, Context, HandlerResult, Kind, Route, body};
use crate::call::Path;
use crate::common::{parse_amount, provider_access};
use crate::contract;
use crate::idempotency;
use crate::types::{ParseError, ProviderId, Role, amount};

/// The most grace days a policy gives.
pub const MAX_GRACE_DAYS: i32 = 365;

#[derive(Debug, Serialize)]
pub struct Request {
    pub provider_id: ProviderId,
    pub grace_days: i32,
    pub late_fee: Option<LateFee>,
}

/// What a bill costs once it is overdue: a fixed amount, or a percentage of the bill (rounded
/// half away from zero to the cent), at most `cap` when given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LateFee {
    pub kind: FeeKind,
    #[serde(with = "amount")]
    #[schemars(with = "crate::contract::Amount")]
    pub value: Decimal,
    #[serde(
        default,
        with = "optional_amount",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<crate::contract::Amount>")]
    pub cap: Option<Decimal>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FeeKind {
    Fixed,
    Percent,
}

impl FeeKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Fixed => "fixed",
            Self::Percent => "percent",
        }
    }
}

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Body {
    #[schemars(range(min = 0, max = 365))]
    pub grace_days: i32,
    #[schemars(required, schema_with = "late_fee_schema")]
    pub late_fee: Option<FeeBody>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FeeBody {
    pub kind: FeeKind,
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cap: Option<String>,
}

/// `null` (no fee) or the fee. No `type`, so that null passes (OpenAPI 3.0 has no null type that
/// every validator reads alike); the worker refuses anything else.
fn late_fee_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let amount = generator.subschema_for::<contract::Amount>();
    schemars::json_schema!({
        "additionalProperties": false,
        "required": ["kind", "value"],
        "properties": {
            "kind": { "type": "string", "enum": ["fixed", "percent"] },
            "value": amount,
            "cap": amount,
        }
    })
}

/// The reply's data, kind `policy`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct PolicyData {
    pub provider_id: ProviderId,
    pub grace_days: i32,
    pub late_fee: Option<LateFee>,
}

impl Route for Request {
    const PATH: &str = "/providers/{provider_id}/policy";
    const SUMMARY: &str = "Sets grace days and late fee.";
    type Body = Body;
    type Reply = PolicyData;
    const CALLERS: Callers = Callers::Roles(&[Role::Provider, Role::Operator]);

    fn parse(path: &Path, raw: Map<String, Value>) -> Result<Self, ParseError> {
        let b: Body = body(raw)?;
        if !(0..=MAX_GRACE_DAYS).contains(&b.grace_days) {
            return Err(ParseError::new(format!(
                "`grace_days` must be 0 to {MAX_GRACE_DAYS}"
            )));
        }
        let late_fee = b
            .late_fee
            .map(|fee| {
                let value = parse_amount("late_fee.value", &fee.value)?;
                if fee.kind == FeeKind::Percent && value > Decimal::ONE_HUNDRED {
                    return Err(ParseError::new(
                        "a percent `late_fee.value` must be at most 100.00",
                    ));
                }
                let cap = fee
                    .cap
                    .as_deref()
                    .map(|cap| parse_amount("late_fee.cap", cap))
                    .transpose()?;
                Ok(LateFee {
                    kind: fee.kind,
                    value,
                    cap,
                })
            })
            .transpose()?;
        Ok(Self {
            provider_id: path.provider()?,
            grace_days: b.grace_days,
            late_fee,
        })
    }

    async fn run(&self, cx: &Context<'_>) -> HandlerResult {
        idempotency::once(cx, Kind::Policy, self, async |tx| {
        provider_access(cx, tx, self.provider_id).await?;
        let fee = self.late_fee.as_ref();
        tx.execute(
            "UPDATE providers SET grace_days = $2, late_fee_kind = $3, late_fee_value = $4, late_fee_cap = $5
             WHERE id = $1",
            &[
                &self.provider_id.0,
                &self.grace_days,
                &fee.map(|f| f.kind.as_str()),
                &fee.map(|f| f.value),
                &fee.and_then(|f| f.cap),
            ],
        )
        .await?;
        let data = Request::reply(&PolicyData {
            provider_id: self.provider_id,
            grace_days: self.grace_days,
            late_fee: self.late_fee.clone(),
        })?;
        Ok(data)
        })
        .await
    }
}

/// Serde helper for optional amounts carried as two-place strings.
mod optional_amount {
    use rust_decimal::Decimal;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<Decimal>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(v) => s.serialize_str(&crate::types::amount_string(*v)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|raw| raw.parse().map_err(serde::de::Error::custom))
            .transpose()
    }
}
