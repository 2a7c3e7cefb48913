//! One bill of a provider's batch: its fields, how they are read, and what makes it the same
//! bill when it is sent again.

use chrono::NaiveDate;
use rust_decimal::Decimal;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{MAX_ADDRESS_CHARS, MAX_DESCRIPTION_CHARS, MAX_ID_CHARS, MAX_LINES, MAX_UTILITY_CHARS};
use crate::common::text;
use crate::contract;
use crate::common::BillLine;
use crate::money::Money;
use crate::types::{Currency, ParseError, parse_date};

/// One bill as the provider sent it, parsed.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Item {
    pub external_id: String,
    pub account_number: String,
    pub address: String,
    pub utility: String,
    pub period_start: NaiveDate,
    pub period_end: NaiveDate,
    pub due_date: NaiveDate,
    /// `amount` and `currency`.
    #[serde(flatten)]
    pub money: Money,
    pub lines: Option<Vec<BillLine>>,
}

/// A bill as a provider sends it (the gateway's `BillItem`).
#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "BillItem")]
pub struct ItemBody {
    #[schemars(with = "contract::ProviderIdentifier")]
    external_id: String,
    #[schemars(with = "contract::ProviderIdentifier")]
    account_number: String,
    #[schemars(length(min = 1, max = 120))]
    address: String,
    #[schemars(regex(pattern = "^[a-z_]{1,32}$"))]
    utility: String,
    #[schemars(with = "contract::Date")]
    period_start: String,
    #[schemars(with = "contract::Date")]
    period_end: String,
    #[schemars(with = "contract::Date")]
    due_date: String,
    #[schemars(with = "contract::Amount")]
    amount: String,
    #[schemars(with = "contract::Currency")]
    currency: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 5))]
    lines: Option<Vec<BillLine>>,
}

pub fn parse_item(raw: Value) -> Result<Item, ParseError> {
    let b: ItemBody =
        serde_json::from_value(raw).map_err(|e| ParseError::new(format!("invalid bill: {e}")))?;
    let item = Item {
        external_id: identifier("external_id", &b.external_id)?,
        account_number: identifier("account_number", &b.account_number)?,
        address: text("address", &b.address, MAX_ADDRESS_CHARS)?,
        utility: utility(&b.utility)?,
        period_start: parse_date("period_start", &b.period_start)?,
        period_end: parse_date("period_end", &b.period_end)?,
        due_date: parse_date("due_date", &b.due_date)?,
        money: Money::parse("amount", &b.amount, Currency::parse(&b.currency)?)?,
        lines: b.lines.map(parse_lines).transpose()?,
    };
    if item.period_start > item.period_end {
        return Err(ParseError::new(
            "`period_start` must not be after `period_end`",
        ));
    }
    if let Some(lines) = &item.lines {
        let sum: Decimal = lines
            .iter()
            .map(|l| l.amount.parse::<Decimal>().unwrap_or_default())
            .sum();
        if sum != item.money.amount() {
            return Err(ParseError::new(format!(
                "the lines add up to {sum}, not to the bill's `amount` {}",
                item.money.amount()
            )));
        }
    }
    Ok(item)
}

fn parse_lines(lines: Vec<BillLine>) -> Result<Vec<BillLine>, ParseError> {
    if lines.is_empty() || lines.len() > MAX_LINES {
        return Err(ParseError::new(format!(
            "`lines`, when given, must hold 1 to {MAX_LINES} lines"
        )));
    }
    lines
        .into_iter()
        .enumerate()
        .map(|(i, line)| {
            let at = |e: ParseError| ParseError::new(format!("lines[{i}]: {}", e.0));
            Ok(BillLine {
                description: text("description", &line.description, MAX_DESCRIPTION_CHARS)
                    .map_err(at)?,
                quantity: decimal("quantity", &line.quantity, 6, false).map_err(at)?,
                unit_price: decimal("unit_price", &line.unit_price, 6, false).map_err(at)?,
                amount: decimal("amount", &line.amount, 2, true)
                    .and_then(|a| {
                        if a.split_once('.').is_some_and(|(_, c)| c.len() == 2) {
                            Ok(a)
                        } else {
                            Err(ParseError::new(
                                "`amount` must have two decimal places, like \"12.50\"",
                            ))
                        }
                    })
                    .map_err(at)?,
            })
        })
        .collect()
}

/// A provider's identifier: 1 to [`MAX_ID_CHARS`] of letters, digits, `.`, `_`, `-`, `/`, `:`.
fn identifier(field: &str, raw: &str) -> Result<String, ParseError> {
    let valid = !raw.is_empty()
        && raw.len() <= MAX_ID_CHARS
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/:".contains(&b));
    if !valid {
        return Err(ParseError::new(format!(
            "`{field}` must be 1 to {MAX_ID_CHARS} letters, digits, '.', '_', '-', '/' or ':'"
        )));
    }
    Ok(raw.to_owned())
}

fn utility(raw: &str) -> Result<String, ParseError> {
    let valid = !raw.is_empty()
        && raw.len() <= MAX_UTILITY_CHARS
        && raw.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    if !valid {
        return Err(ParseError::new(format!(
            "`utility` must be a utility code such as gas or electricity (a-z and '_', at most {MAX_UTILITY_CHARS})"
        )));
    }
    Ok(raw.to_owned())
}

/// A plain decimal (optionally signed) with at most 12 digits before the point and `places` after.
fn decimal(field: &str, raw: &str, places: usize, signed: bool) -> Result<String, ParseError> {
    let unsigned = if signed {
        raw.strip_prefix('-').unwrap_or(raw)
    } else {
        raw
    };
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let valid = !whole.is_empty()
        && whole.len() <= 12
        && digits(whole)
        && digits(fraction)
        && fraction.len() <= places
        && (fraction.is_empty() != unsigned.contains('.'));
    if !valid {
        return Err(ParseError::new(format!(
            "`{field}` must be a decimal with at most {places} places, like \"12.5\""
        )));
    }
    Ok(raw.to_owned())
}

/// SHA-256 of the item as parsed: what makes a bill sent again the same bill.
pub fn content_hash(item: &Item) -> Vec<u8> {
    let canonical = serde_json::to_string(item).expect("an item always serialises");
    Sha256::digest(canonical.as_bytes()).to_vec()
}
