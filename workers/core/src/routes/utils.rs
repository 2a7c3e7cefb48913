//! `utils`: the apartment's unpaid bills with totals by utility, by provider and overall.
//!
//! The bills come in pages of at most [`crate::common::PAGE_ITEMS`], in the order of due date and id; a
//! reply with more to come carries a `next_cursor`, which the client sends back as `cursor` for
//! the next page. Every page carries the totals of all the unpaid bills as they stand.

use std::collections::BTreeMap;
use std::fmt;

use chrono::NaiveDate;
use deadpool_postgres::GenericClient;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Callers, Context, HandlerError, HandlerResult, Route, body};
use crate::cache::CacheKey;
use crate::call::Path;
use crate::common::{Access, BILL_COLUMNS, BillView, page_after, read_versioned};
use crate::money::Money;
use crate::contract;
use crate::types::{ApartmentId, BillId, Currency, ParseError, Role, amount_string};

#[derive(Debug)]
pub struct Request {
    pub apartment: ApartmentId,
    /// Where the previous page ended; `None` for the first page.
    pub cursor: Option<Cursor>,
}

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Body {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "contract::Cursor")]
    pub cursor: Option<String>,
}

impl Route for Request {
    const PATH: &str = "/apartments/{apartment_id}/utils";
    const SUMMARY: &str = "The apartment's unpaid bills with totals.";
    type Body = Body;
    type Reply = UtilsPage;
    const CALLERS: Callers = Callers::Roles(&[Role::Household, Role::Operator]);
    /// Its access check is the first thing it asks the database.
    const EPOCH_AT_ACCESS: bool = true;

    fn parse(
        path: &Path,
        raw: serde_json::Map<String, serde_json::Value>,
    ) -> Result<Self, ParseError> {
        let b: Body = body(raw)?;
        Ok(Self {
            apartment: path.apartment()?,
            cursor: b.cursor.as_deref().map(Cursor::parse).transpose()?,
        })
    }

    fn apartment(&self) -> Option<ApartmentId> {
        Some(self.apartment)
    }

    async fn run(&self, cx: &Context<'_>) -> HandlerResult {
        let apartment = self.apartment;
        let key = CacheKey::Utils { apartment };
        let (access, mut data) = read_versioned(cx, apartment, key, async |client, access| {
            load(client, access).await
        })
        .await?;
        let today = access.db_now.date_naive();
        for bill in &mut data.bills {
            bill.count_days_overdue(today);
        }
        Request::reply(&page(&data, self.cursor))
    }
}

/// Every unpaid bill of the apartment with their totals: what is read and cached.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct UtilsData {
    pub apartment_id: ApartmentId,
    pub currency: Currency,
    pub bills: Vec<BillView>,
    pub totals: Totals,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Totals {
    pub by_utility: BTreeMap<String, String>,
    pub by_provider: BTreeMap<String, String>,
    pub total: String,
    pub currency: Currency,
}

/// One page of the reply.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "UtilsData")]
pub struct UtilsPage {
    pub apartment_id: ApartmentId,
    pub currency: Currency,
    pub bills: Vec<BillView>,
    /// Of every unpaid bill, not only this page's.
    pub totals: Totals,
    /// How many unpaid bills there are in all.
    pub bills_count: usize,
    /// Send it back as `cursor` for the next page; `null` on the last page.
    #[schemars(with = "Option<String>")]
    pub next_cursor: Option<Cursor>,
}

/// Where a page ended: the due date and id of its last bill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub due_date: NaiveDate,
    pub bill: BillId,
}

impl Cursor {
    /// `2026-08-20.1081`, as the previous page's `next_cursor` gave it.
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let invalid = || ParseError::new("`cursor` must be a `next_cursor` of an earlier page");
        let (date, id) = raw.split_once('.').ok_or_else(invalid)?;
        if date.len() != 10 {
            return Err(invalid());
        }
        Ok(Self {
            due_date: NaiveDate::parse_from_str(date, "%Y-%m-%d").map_err(|_| invalid())?,
            bill: BillId::parse(id).map_err(|_| invalid())?,
        })
    }

    fn after(bill: &BillView) -> Self {
        Self {
            due_date: bill.due_date,
            bill: bill.bill_id,
        }
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.due_date.format("%Y-%m-%d"), self.bill)
    }
}

impl Serialize for Cursor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The page after `cursor` (the first without one).
fn page(data: &UtilsData, cursor: Option<Cursor>) -> UtilsPage {
    // Bills are in the order of due date and id, as the cursor counts.
    let (bills, more) = page_after(&data.bills, |b| {
        cursor.is_some_and(|c| (b.due_date, b.bill_id) <= (c.due_date, c.bill))
    });
    UtilsPage {
        apartment_id: data.apartment_id,
        currency: data.currency,
        bills: bills.to_vec(),
        totals: data.totals.clone(),
        bills_count: data.bills.len(),
        next_cursor: more.map(Cursor::after),
    }
}

async fn load(client: &impl GenericClient, access: &Access) -> Result<UtilsData, HandlerError> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {BILL_COLUMNS} FROM bills b JOIN providers p ON p.id = b.provider_id
             WHERE b.apartment_id = $1 AND b.status IN ('open', 'overdue')
             ORDER BY b.due_date, b.id"
        ))
        .await?;
    let rows = client.query(&statement, &[&access.apartment.0]).await?;
    let bills = rows
        .iter()
        .map(BillView::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(UtilsData {
        apartment_id: access.apartment,
        currency: access.currency,
        totals: totals(&bills, access.currency)?,
        bills,
    })
}

/// The totals of `bills`, all of the apartment's `currency`: a bill in another is a fault of
/// the books, refused rather than added.
fn totals(bills: &[BillView], currency: Currency) -> Result<Totals, HandlerError> {
    let mut by_utility: BTreeMap<String, Money> = BTreeMap::new();
    let mut by_provider: BTreeMap<String, Money> = BTreeMap::new();
    let mut total = Money::zero(currency);
    let add = |sum: &mut Money, money: Money| -> Result<(), HandlerError> {
        *sum = sum.checked_add(money).map_err(HandlerError::internal)?;
        Ok(())
    };
    for bill in bills {
        let zero = Money::zero(currency);
        add(by_utility.entry(bill.utility.clone()).or_insert(zero), bill.money)?;
        add(by_provider.entry(bill.provider.clone()).or_insert(zero), bill.money)?;
        add(&mut total, bill.money)?;
    }
    let strings = |m: BTreeMap<String, Money>| {
        m.into_iter()
            .map(|(k, v)| (k, amount_string(v.amount())))
            .collect()
    };
    Ok(Totals {
        by_utility: strings(by_utility),
        by_provider: strings(by_provider),
        total: amount_string(total.amount()),
        currency,
    })
}
