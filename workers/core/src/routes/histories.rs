//! `histories`: settled bills, as a delta against the window of history the client already holds.
//!
//! The client says which payment dates it holds in full (`date_down`..`date_up`); the reply
//! carries every settled bill paid outside that window and the window the client then holds in
//! full. That window ends with the last UTC day that was over ten minutes ago by the database's
//! clock (payments are stamped by it when written, and commit within that margin): today, and
//! just after midnight yesterday too, can still gain payments, so their settled bills come again
//! in every sync until the day is safely over. Clients de-duplicate by `bill_id`.
//!
//! The bills come in pages of at most [`crate::common::PAGE_ITEMS`], in the order of payment time and bill
//! id; a reply with more to come carries a `next_cursor`, which the client sends back as `cursor`
//! (with the same `date_down` and `date_up`) for the next page. Every page names the same window,
//! the one of the first page, and the client holds it once it has the last page.

use std::fmt;

use chrono::{DateTime, Days, NaiveDate, Utc};
use deadpool_postgres::GenericClient;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Callers, Context, HandlerError, HandlerResult, Route, body};
use crate::cache::CacheKey;
use crate::call::Path;
use crate::common::{Access, BILL_COLUMNS, BillView, page_after, read_versioned};
use crate::contract;
use crate::processor::refund::RefundLine;
use crate::types::{ApartmentId, BillId, Currency, ParseError, Role, parse_date};

#[derive(Debug)]
pub struct Request {
    pub apartment: ApartmentId,
    /// The window of settled history the client already holds.
    pub window: Option<DateWindow>,
    pub cursor: Option<Cursor>,
}

/// The window of settled history, by payment date, that the client already holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateWindow {
    pub date_down: NaiveDate,
    pub date_up: NaiveDate,
}

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Body {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "contract::Date")]
    pub date_down: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "contract::Date")]
    pub date_up: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "contract::Cursor")]
    pub cursor: Option<String>,
}

impl Route for Request {
    const PATH: &str = "/apartments/{apartment_id}/histories";
    const SUMMARY: &str = "Settled bills the client lacks, by payment-date window.";
    type Body = Body;
    type Reply = HistoriesData;
    const CALLERS: Callers = Callers::Roles(&[Role::Household, Role::Operator]);
    /// Its access check is the first thing it asks the database.
    const EPOCH_AT_ACCESS: bool = true;

    fn parse(
        path: &Path,
        raw: serde_json::Map<String, serde_json::Value>,
    ) -> Result<Self, ParseError> {
        let b: Body = body(raw)?;
        let window = match (b.date_down, b.date_up) {
            (None, None) => None,
            (Some(down), Some(up)) => {
                let date_down = parse_date("date_down", &down)?;
                let date_up = parse_date("date_up", &up)?;
                if date_down > date_up {
                    return Err(ParseError::new("`date_down` must not be after `date_up`"));
                }
                Some(DateWindow { date_down, date_up })
            }
            _ => {
                return Err(ParseError::new(
                    "`date_down` and `date_up` go together: send both or neither",
                ));
            }
        };
        Ok(Self {
            apartment: path.apartment()?,
            window,
            cursor: b.cursor.as_deref().map(Cursor::parse).transpose()?,
        })
    }

    fn apartment(&self) -> Option<ApartmentId> {
        Some(self.apartment)
    }

    async fn run(&self, cx: &Context<'_>) -> HandlerResult {
        run(cx, self.apartment, self.window, self.cursor).await
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SettledBill {
    #[serde(flatten)]
    pub bill: BillView,
    pub paid_at: DateTime<Utc>,
    pub payment_id: Uuid,
}

/// Money of a payment given back.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RefundedPayment {
    #[serde(flatten)]
    pub refund: RefundLine,
    pub payment_id: Uuid,
    /// Whether this refund made the payment refunded whole, its bills due again (they leave the
    /// settled bills from this reply on; a client drops them by `payment_id`).
    pub whole: bool,
}

/// An apartment's history as it is cached: settled bills and refunds.
#[derive(Debug, Serialize, Deserialize)]
struct History {
    settled: Vec<SettledBill>,
    refunds: Vec<RefundedPayment>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct HistoriesData {
    pub apartment_id: ApartmentId,
    pub currency: Currency,
    pub settled: Vec<SettledBill>,
    /// The refunds that went back outside the window the client holds (by the day they went
    /// back), on the first page only.
    pub refunds: Vec<RefundedPayment>,
    pub date_down: NaiveDate,
    pub date_up: NaiveDate,
    /// Send it back as `cursor` for the next page; `null` on the last page.
    #[schemars(with = "Option<String>")]
    pub next_cursor: Option<Cursor>,
}

/// Where a page ended (the payment time and id of its last bill), and the last day of the window
/// the first page named, which the later pages keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub paid_at: DateTime<Utc>,
    pub bill: BillId,
    pub date_up: NaiveDate,
}

impl Cursor {
    /// `1790000000123456.1081.2026-11-29` (microseconds since the epoch, bill id, date), as the
    /// previous page's `next_cursor` gave it.
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let invalid = || ParseError::new("`cursor` must be a `next_cursor` of an earlier page");
        let mut parts = raw.split('.');
        let (Some(micros), Some(id), Some(date), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid());
        };
        let digits =
            |s: &str| !s.is_empty() && s.len() <= 18 && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(micros) || date.len() != 10 {
            return Err(invalid());
        }
        Ok(Self {
            paid_at: micros
                .parse()
                .ok()
                .and_then(DateTime::from_timestamp_micros)
                .ok_or_else(invalid)?,
            bill: BillId::parse(id).map_err(|_| invalid())?,
            date_up: NaiveDate::parse_from_str(date, "%Y-%m-%d").map_err(|_| invalid())?,
        })
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}.{}",
            self.paid_at.timestamp_micros(),
            self.bill,
            self.date_up.format("%Y-%m-%d")
        )
    }
}

impl Serialize for Cursor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

async fn run(
    cx: &Context<'_>,
    apartment: ApartmentId,
    held: Option<DateWindow>,
    cursor: Option<Cursor>,
) -> HandlerResult {
    let key = CacheKey::Histories { apartment };
    let (access, history) = read_versioned(cx, apartment, key, async |client, access| {
        load(client, access).await
    })
    .await?;
    let History { settled, refunds } = history;
    // A day counts as over ten minutes after it ended: the margin for a payment written just
    // before midnight whose transaction commits just after.
    let today = (access.db_now - chrono::Duration::minutes(10)).date_naive();
    let delta = delta(&settled, &refunds, held, today, cursor);
    // Bills are in the order of payment time and id, as the cursor counts.
    let (page, more) = page_after(&delta.settled, |s| {
        cursor.is_some_and(|c| (s.paid_at, s.bill.bill_id) <= (c.paid_at, c.bill))
    });
    Request::reply(&HistoriesData {
        apartment_id: access.apartment,
        currency: access.currency,
        settled: page.iter().map(|s| (*s).clone()).collect(),
        refunds: if cursor.is_none() {
            delta.refunds.into_iter().cloned().collect()
        } else {
            Vec::new()
        },
        date_down: delta.date_down,
        date_up: delta.date_up,
        next_cursor: more.map(|last| Cursor {
            paid_at: last.paid_at,
            bill: last.bill.bill_id,
            date_up: delta.date_up,
        }),
    })
}

struct Delta<'a> {
    settled: Vec<&'a SettledBill>,
    refunds: Vec<&'a RefundedPayment>,
    date_down: NaiveDate,
    date_up: NaiveDate,
}

/// What the client lacks, given what it holds, on `today` (or, paging on, as of the first page).
fn delta<'a>(
    settled: &'a [SettledBill],
    refunds: &'a [RefundedPayment],
    held: Option<DateWindow>,
    today: NaiveDate,
    cursor: Option<Cursor>,
) -> Delta<'a> {
    let complete_through = today.checked_sub_days(Days::new(1)).unwrap_or(today);
    // Later pages keep the first page's window: a day that ended since may still have gained a
    // payment before the cursor, which those pages would not carry.
    let complete_through = cursor.map_or(complete_through, |c| c.date_up.min(complete_through));
    // A client cannot hold a day that is not over yet.
    let held = held
        .map(|w| DateWindow {
            date_down: w.date_down,
            date_up: w.date_up.min(complete_through),
        })
        .filter(|w| w.date_down <= w.date_up);
    let holds = |day: NaiveDate| held.is_some_and(|w| w.date_down <= day && day <= w.date_up);
    let refunded_on = |r: &RefundedPayment| r.refund.refunded_at.map(|at| at.date_naive());
    let earliest = settled
        .iter()
        .map(|s| s.paid_at.date_naive())
        .chain(refunds.iter().filter_map(refunded_on))
        .min();
    let date_down = [held.map(|w| w.date_down), earliest, Some(complete_through)]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(complete_through);
    Delta {
        settled: settled
            .iter()
            .filter(|s| !holds(s.paid_at.date_naive()))
            .collect(),
        refunds: refunds
            .iter()
            .filter(|r| refunded_on(r).is_some_and(|day| !holds(day)))
            .collect(),
        date_down,
        date_up: complete_through,
    }
}

async fn load(client: &impl GenericClient, access: &Access) -> Result<History, HandlerError> {
    let refunds = client
        .prepare_cached(
            "SELECT r.id, r.payment_id, r.amount, r.currency, r.reason, r.status, r.created_at,
                    r.succeeded_at, r.succeeded_at = max(r.succeeded_at) OVER (PARTITION BY r.payment_id)
                                    AND pay.refunded = pay.total AS whole
             FROM payments pay JOIN refunds r ON r.payment_id = pay.id
             WHERE pay.apartment_id = $1 AND r.status = 'succeeded'
             ORDER BY r.succeeded_at, r.id",
        )
        .await?;
    let refunds = client
        .query(&refunds, &[&access.apartment.0])
        .await?
        .iter()
        .map(|row| {
            Ok(RefundedPayment {
                refund: RefundLine {
                    refund_id: row.get("id"),
                    amount: row.get("amount"),
                    currency: Currency::parse(row.get::<_, &str>("currency"))
                        .map_err(HandlerError::internal)?,
                    reason: row.get("reason"),
                    status: row.get("status"),
                    created_at: row.get("created_at"),
                    refunded_at: row.get("succeeded_at"),
                },
                payment_id: row.get("payment_id"),
                whole: row.get("whole"),
            })
        })
        .collect::<Result<_, HandlerError>>()?;
    Ok(History {
        settled: settled(client, access).await?,
        refunds,
    })
}

async fn settled(
    client: &impl GenericClient,
    access: &Access,
) -> Result<Vec<SettledBill>, HandlerError> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {BILL_COLUMNS}, pay.paid_at, pay.id AS payment_id
             FROM bills b JOIN providers p ON p.id = b.provider_id JOIN payments pay ON pay.id = b.payment_id
             WHERE b.apartment_id = $1 AND b.status = 'paid'
             ORDER BY pay.paid_at, b.id"
        ))
        .await?;
    let rows = client.query(&statement, &[&access.apartment.0]).await?;
    rows.iter()
        .map(|row| {
            Ok(SettledBill {
                bill: BillView::from_row(row)?,
                paid_at: row.get("paid_at"),
                payment_id: row.get("payment_id"),
            })
        })
        .collect()
}
