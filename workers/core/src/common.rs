//! What several routes share: the apartment access check, the bill as clients see it, pages of
//! long lists, and reads through the versioned cache.

use chrono::NaiveDate;
use deadpool_postgres::GenericClient;
use rust_decimal::Decimal;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::cache::CacheKey;
use crate::error::{ErrorCode, HandlerError};
use crate::money::Money;
use crate::routes::Context;
use crate::types::{ApartmentId, BillId, Currency, ParseError, ProviderId, Role};

/// An apartment the caller may act on, as it stands now.
pub struct Access {
    pub apartment: ApartmentId,
    /// The apartment's row version: a cached entry of its data is used only at this version.
    pub version: i64,
    pub currency: Currency,
    /// The database's clock when access was checked: history windows are cut by it.
    pub db_now: chrono::DateTime<chrono::Utc>,
}

/// The apartment's version and currency, whether user `$2` owns apartment `$1`, and the
/// database's clock; [`access`] reads its row.
pub const ACCESS: &str = "SELECT a.version, a.currency, EXISTS (SELECT 1 FROM apartment_owners o
                              WHERE o.apartment_id = a.id AND o.user_id = $2) AS owned,
                              clock_timestamp() AS db_now
                          FROM apartments a WHERE a.id = $1";

/// Whether the apartment exists and `role` may act on it (its owner, or an operator), from the
/// row of [`ACCESS`] (none: no such apartment).
pub fn access(
    apartment: ApartmentId,
    role: Role,
    row: Option<tokio_postgres::Row>,
) -> Result<Access, HandlerError> {
    let Some(row) = row else {
        return Err(HandlerError::rejected(
            ErrorCode::NotFound,
            format!("apartment {apartment} does not exist"),
        ));
    };
    if !row.get::<_, bool>("owned") && role != Role::Operator {
        return Err(HandlerError::rejected(
            ErrorCode::Forbidden,
            format!("apartment {apartment} is not yours"),
        ));
    }
    let currency =
        Currency::parse(row.get("currency")).map_err(|e| HandlerError::Internal(e.into()))?;
    Ok(Access {
        apartment,
        version: row.get("version"),
        currency,
        db_now: row.get("db_now"),
    })
}

/// [`ACCESS`] with the caller's session epoch first (none: the user was deleted), for a route
/// that checks the epoch here rather than in a round trip of its own ([`Route::EPOCH_AT_ACCESS`]).
/// Always one row; `present` (the last column) is false when the apartment does not exist.
///
/// [`Route::EPOCH_AT_ACCESS`]: super::Route::EPOCH_AT_ACCESS
pub const ACCESS_AND_EPOCH: &str = "SELECT a.version, a.currency, EXISTS (SELECT 1 FROM apartment_owners o
                                       WHERE o.apartment_id = a.id AND o.user_id = $2) AS owned,
                                   clock_timestamp() AS db_now,
                                   (SELECT session_epoch FROM users WHERE id = $2 AND deleted_at IS NULL) AS session_epoch,
                                   a.id IS NOT NULL AS present
                               FROM (SELECT) AS one LEFT JOIN apartments a ON a.id = $1";

/// Checks, on `client`, that the caller may act on the apartment (and, for a route that checks
/// it here, that the caller's session is still open).
pub async fn authorize(
    cx: &Context<'_>,
    client: &impl GenericClient,
    apartment: ApartmentId,
) -> Result<Access, HandlerError> {
    let session = cx.caller()?;
    if !cx.epoch_pending() {
        let statement = client.prepare_cached(ACCESS).await?;
        let row = client
            .query_opt(&statement, &[&apartment.0, &session.user_id.0])
            .await?;
        return access(apartment, session.role, row);
    }
    let statement = client.prepare_cached(ACCESS_AND_EPOCH).await?;
    let row = client
        .query_one(&statement, &[&apartment.0, &session.user_id.0])
        .await?;
    crate::accounts::session::still_open(session, row.get("session_epoch"))?;
    cx.epoch_checked();
    let present: bool = row.get("present");
    access(apartment, session.role, present.then_some(row))
}

/// A bill as clients see it, in `utils` and (with its payment) in `histories`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "Bill")]
pub struct BillView {
    pub bill_id: BillId,
    pub utility: String,
    pub provider: String,
    pub period_start: NaiveDate,
    pub period_end: NaiveDate,
    pub due_date: NaiveDate,
    /// `amount` and `currency`.
    #[serde(flatten)]
    pub money: Money,
    /// `open`, `overdue`, `processing` (reserved by a card payment under way), `paid` or `void`.
    #[schemars(with = "crate::contract::BillStatus")]
    pub status: String,
    /// Whole days since the due date for an overdue bill, else 0; counted when the bill is read
    /// (a cached copy keeps the 0 it was stored with, see [`BillView::count_days_overdue`]).
    #[serde(default)]
    pub days_overdue: i64,
    /// For a late fee: the bill it is charged on.
    pub late_fee_of: Option<BillId>,
}

/// A line of a bill. Quantities and unit prices are decimals of up to six places, carried as
/// strings; a line's amount may be negative (a credit).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(extend("additionalProperties" = false))]
pub struct BillLine {
    #[schemars(length(min = 1, max = 60))]
    pub description: String,
    #[schemars(with = "crate::contract::Quantity")]
    pub quantity: String,
    #[schemars(with = "crate::contract::Quantity")]
    pub unit_price: String,
    #[schemars(with = "crate::contract::LineAmount")]
    pub amount: String,
}

impl BillView {
    /// Sets [`BillView::days_overdue`] as of `today`.
    pub fn count_days_overdue(&mut self, today: NaiveDate) {
        self.days_overdue = if self.status == "overdue" {
            (today - self.due_date).num_days().max(0)
        } else {
            0
        };
    }

    /// Reads the columns of [`BILL_COLUMNS`], by name.
    pub fn from_row(row: &tokio_postgres::Row) -> Result<Self, HandlerError> {
        let currency =
            Currency::parse(row.get("currency")).map_err(|e| HandlerError::Internal(e.into()))?;
        Ok(Self {
            bill_id: BillId(row.get("bill_id")),
            utility: row.get("utility"),
            provider: row.get("provider"),
            period_start: row.get("period_start"),
            period_end: row.get("period_end"),
            due_date: row.get("due_date"),
            money: Money::new(row.get("amount"), currency),
            status: row.get("status"),
            days_overdue: 0,
            late_fee_of: row.get::<_, Option<i64>>("late_fee_of").map(BillId),
        })
    }
}

/// The bill columns `BillView::from_row` reads, over `bills b JOIN providers p`.
pub const BILL_COLUMNS: &str = "b.id AS bill_id, b.utility, p.name AS provider, b.period_start, b.period_end, b.due_date, b.amount, b.currency,
    CASE WHEN b.reserved_by IS NOT NULL THEN 'processing' ELSE b.status END AS status, b.late_fee_of";

/// The largest reply the engine sends, in bytes of JSON. SQS takes messages of up to 1 MiB, but a
/// poll through the gateway hands out up to ten replies in one HTTP response, and API Gateway's
/// responses stop at 10 MB: a quarter of a MiB each keeps ten well inside. Handlers page what
/// could grow past it (bills, settled history, apartments), so only a bug reaches it.
pub const MAX_REPLY_BYTES: usize = 256 * 1024;

/// The most items one page of a list carries, and the most bytes of JSON they may take together,
/// so that a reply stays well below [`MAX_REPLY_BYTES`] whatever the items hold
/// (the rest of the budget is the reply's other fields).
pub const PAGE_ITEMS: usize = 500;
pub const PAGE_BYTES: usize = MAX_REPLY_BYTES / 2;

/// How many of `items`, from the front, go on one page: at most [`PAGE_ITEMS`] and
/// [`PAGE_BYTES`], and at least one, so that a cursor always moves on.
pub fn page_len<T: Serialize>(items: &[T]) -> usize {
    let mut bytes = 0;
    for (taken, item) in items.iter().enumerate() {
        bytes += json_len(item) + 1;
        if taken == PAGE_ITEMS || (bytes > PAGE_BYTES && taken > 0) {
            return taken;
        }
    }
    items.len()
}

/// The page of `items` (in the order the cursor counts) after those `carried` says earlier pages
/// carried, and its last item when more follow: where the next cursor points.
pub fn page_after<T: Serialize>(items: &[T], carried: impl Fn(&T) -> bool) -> (&[T], Option<&T>) {
    let rest = &items[items.partition_point(carried)..];
    let page = &rest[..page_len(rest)];
    let more = (page.len() < rest.len()).then(|| page.last()).flatten();
    (page, more)
}

/// Checks that the caller may read `apartment`, and gives its data as it stands: the cache's
/// entry under `key` if it was read at the apartment's current version (both asked at once), or
/// else what `load` reads, which is then cached at that version.
pub async fn read_versioned<T: Serialize + DeserializeOwned>(
    cx: &Context<'_>,
    apartment: ApartmentId,
    key: CacheKey,
    load: impl AsyncFnOnce(&deadpool_postgres::Object, &Access) -> Result<T, HandlerError>,
) -> Result<(Access, T), HandlerError> {
    let client = crate::store::client(&cx.services.store).await?;
    let (access, cached) = tokio::join!(
        authorize(cx, &*client, apartment),
        cx.services.cache.get_versioned::<T>(key)
    );
    let access = access?;
    let data = match cached {
        Some((version, cached)) if version == access.version => cached,
        _ => {
            let loaded = load(&client, &access).await?;
            cx.services
                .cache
                .put_versioned(key, access.version, &loaded)
                .await;
            loaded
        }
    };
    Ok((access, data))
}

/// The length of `value` as JSON, without building it.
pub fn json_len<T: Serialize>(value: &T) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Writing to a counter cannot fail, and these values always serialise.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

/// A provider as the provider routes need it.
pub struct ProviderRow {
    pub id: ProviderId,
    pub currency: Currency,
}

/// Checks that the caller may act for `provider` (its own users, or an operator; a provider's
/// user naming another provider is `forbidden` whether or not that one exists), and that it
/// exists; on `client`, optionally locking its row (`FOR SHARE`, against a concurrent change of
/// its policy).
pub async fn provider_access(
    cx: &Context<'_>,
    client: &impl GenericClient,
    provider: ProviderId,
) -> Result<ProviderRow, HandlerError> {
    let session = cx.caller()?;
    if session.role == Role::Provider && session.provider != Some(provider) {
        return Err(HandlerError::rejected(
            ErrorCode::Forbidden,
            format!("you act for another provider than {provider}"),
        ));
    }
    let statement = client
        .prepare_cached("SELECT currency FROM providers WHERE id = $1")
        .await?;
    let Some(row) = client.query_opt(&statement, &[&provider.0]).await? else {
        return Err(HandlerError::rejected(
            ErrorCode::NotFound,
            format!("provider {provider} does not exist"),
        ));
    };
    Ok(ProviderRow {
        id: provider,
        currency: Currency::parse(row.get(0)).map_err(HandlerError::internal)?,
    })
}

/// How many bills one payment may settle (by card, or made elsewhere).
pub const MAX_BILLS_PER_PAYMENT: usize = 100;

/// The refusal of a payment naming a bill its provider voided.
pub fn voided(bill: BillId) -> HandlerError {
    HandlerError::rejected(
        ErrorCode::Conflict,
        format!("bill {bill} was voided by its provider and cannot be paid"),
    )
}

/// The bills a payment names, as listed: 1 to [`MAX_BILLS_PER_PAYMENT`] of them, each a positive
/// id, none twice.
pub fn bills_to_pay(raw: &[i64]) -> Result<Vec<BillId>, ParseError> {
    if raw.is_empty() {
        return Err(ParseError::new("`bills_id` must name at least one bill"));
    }
    if raw.len() > MAX_BILLS_PER_PAYMENT {
        return Err(ParseError::new(format!(
            "one payment settles at most {MAX_BILLS_PER_PAYMENT} bills"
        )));
    }
    let mut bills: Vec<BillId> = Vec::with_capacity(raw.len());
    for &id in raw {
        if id <= 0 {
            return Err(ParseError::new(format!(
                "bill id {id} is not a positive whole number"
            )));
        }
        if bills.contains(&BillId(id)) {
            return Err(ParseError::new(format!("bill {id} is listed twice")));
        }
        bills.push(BillId(id));
    }
    Ok(bills)
}

/// An amount as the contract carries it: a decimal string with exactly two places, above zero
/// and below the largest the database holds.
pub fn parse_amount(field: &str, raw: &str) -> Result<Decimal, ParseError> {
    let invalid = || {
        ParseError::new(format!(
            "`{field}` must be an amount above zero with two decimal places, like \"12.50\""
        ))
    };
    let (whole, cents) = raw.split_once('.').ok_or_else(invalid)?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || whole.len() > 12 || cents.len() != 2 || !digits(cents) {
        return Err(invalid());
    }
    let amount: Decimal = raw.parse().map_err(|_| invalid())?;
    if amount <= Decimal::ZERO {
        return Err(invalid());
    }
    Ok(amount)
}

/// A person's text (a name, an address, a reason): 1 to `max` characters as sent (the gateway's
/// bound), none of them a control character, not blank; trimmed.
pub fn text(field: &str, raw: &str, max: usize) -> Result<String, ParseError> {
    let trimmed = raw.trim();
    if trimmed.is_empty() || raw.chars().count() > max || raw.chars().any(char::is_control) {
        return Err(ParseError::new(format!(
            "`{field}` must be 1 to {max} characters without control characters"
        )));
    }
    Ok(trimmed.to_owned())
}

/// Bumps the version of these apartments (locked in id order, as every transaction locks them),
/// so that no cached read of their bills outlives the transaction's commit. The lock is the
/// `NO KEY UPDATE` the update takes anyway: a transaction that added a row naming the apartment
/// (a payment) holds a key-share lock on it, and two such transactions asking for the stronger
/// `FOR UPDATE` each waited for the other's (a deadlock the chaos run found).
pub async fn bump_apartments(
    client: &impl GenericClient,
    apartments: &[i64],
) -> Result<(), HandlerError> {
    if apartments.is_empty() {
        return Ok(());
    }
    client
        .execute(
            "UPDATE apartments SET version = cache_version()
             WHERE id IN (SELECT id FROM apartments WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE)",
            &[&apartments],
        )
        .await?;
    Ok(())
}

/// The longest window of settlements, in days: a year and a day.
pub const MAX_SETTLEMENT_DAYS: i64 = 366;

/// A window of whole UTC days, `from` to `to`, at most [`MAX_SETTLEMENT_DAYS`] long.
pub fn window(from: &str, to: &str) -> Result<(NaiveDate, NaiveDate), ParseError> {
    let from = crate::types::parse_date("from", from)?;
    let to = crate::types::parse_date("to", to)?;
    if to < from {
        return Err(ParseError::new(format!(
            "`to` {to} is before `from` {from}"
        )));
    }
    if (to - from).num_days() + 1 > MAX_SETTLEMENT_DAYS {
        return Err(ParseError::new(format!(
            "a window is at most {MAX_SETTLEMENT_DAYS} days; ask for several"
        )));
    }
    Ok((from, to))
}

/// The first day of `from`..=`to` that is not closed, if any. The settle job closes days in
/// order, from the first with a settled payment; a day before that one had nothing to close and
/// can gain nothing (payments are stamped when they are written), so it counts as closed.
pub async fn first_open(
    client: &impl GenericClient,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Option<NaiveDate>, HandlerError> {
    Ok(client
        .query_one(
            "SELECT CASE WHEN max(day) IS NULL THEN $1::date
                         WHEN max(day) >= $2::date THEN NULL
                         ELSE greatest($1::date, max(day) + 1) END
             FROM settlement_days",
            &[&from, &to],
        )
        .await?
        .get(0))
}

/// Refuses a window that runs past the last closed day (its documents would change later).
pub fn closed_through(open_from: Option<NaiveDate>) -> Result<(), HandlerError> {
    match open_from {
        None => Ok(()),
        Some(day) => Err(HandlerError::rejected(
            ErrorCode::Conflict,
            format!(
                "{day} is not closed yet (the settle job closes each UTC day once it is over); ask for a window that ends before it"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_stops_at_its_item_count_or_its_bytes_and_never_at_nothing() {
        assert_eq!(page_len::<u8>(&[]), 0);
        assert_eq!(page_len(&[1u8; 20]), 20);
        assert_eq!(page_len(&vec![1u8; PAGE_ITEMS * 2]), PAGE_ITEMS);
        let big = "x".repeat(PAGE_BYTES / 3);
        assert_eq!(page_len(&vec![big.clone(); 10]), 2);
        let huge = "x".repeat(PAGE_BYTES * 2);
        assert_eq!(
            page_len(&vec![huge; 3]),
            1,
            "one item even if it alone is over"
        );
        assert_eq!(json_len(&big), big.len() + 2);
    }
}
