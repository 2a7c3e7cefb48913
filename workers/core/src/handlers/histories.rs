//! `histories`: settled bills, as a delta against the window of history the client already holds.
//!
//! The client says which payment dates it holds in full (`date_down`..`date_up`); the reply
//! carries every settled bill paid outside that window and the window the client then holds in
//! full. That window ends with the last UTC day that was over ten minutes ago by the database's
//! clock (payments are stamped by it when written, and commit within that margin): today, and
//! just after midnight yesterday too, can still gain payments, so their settled bills come again
//! in every sync until the day is safely over. Clients de-duplicate by `bill_id`.

use chrono::{DateTime, Days, NaiveDate, Utc};
use deadpool_postgres::GenericClient;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Access, BILL_COLUMNS, BillView, HandlerError, HandlerResult, authorize, to_data};
use crate::cache::CacheKey;
use crate::engine::Engine;
use crate::envelope::{DateWindow, Envelope};
use crate::types::{ApartmentId, Currency};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SettledBill {
    #[serde(flatten)]
    pub bill: BillView,
    pub paid_at: DateTime<Utc>,
    pub payment_id: Uuid,
}

#[derive(Debug, Serialize)]
pub struct HistoriesData<'a> {
    pub apartment_id: ApartmentId,
    pub currency: Currency,
    pub settled: Vec<&'a SettledBill>,
    pub date_down: NaiveDate,
    pub date_up: NaiveDate,
}

pub async fn run(
    engine: &Engine,
    envelope: &Envelope,
    apartment: ApartmentId,
    held: Option<DateWindow>,
) -> HandlerResult {
    let client = engine.store.get().await?;
    let key = CacheKey::Histories { apartment };
    // Who may read, and what the cache holds, asked at once; the entry counts only if it was
    // read at the apartment's current version.
    let (access, cached) = tokio::join!(
        authorize(engine, envelope, &client, apartment),
        engine.cache.get_versioned::<Vec<SettledBill>>(key)
    );
    let access = access?;
    let settled = match cached {
        Some((version, cached)) if version == access.version => cached,
        _ => {
            let loaded = load(&client, &access).await?;
            engine
                .cache
                .put_versioned(key, access.version, &loaded)
                .await;
            loaded
        }
    };
    // A day counts as over ten minutes after it ended: the margin for a payment written just
    // before midnight whose transaction commits just after.
    let today = (access.db_now - chrono::Duration::minutes(10)).date_naive();
    to_data(&delta(&access, &settled, held, today))
}

/// What the client lacks, given what it holds, on `today`.
fn delta<'a>(
    access: &Access,
    settled: &'a [SettledBill],
    held: Option<DateWindow>,
    today: NaiveDate,
) -> HistoriesData<'a> {
    let complete_through = today.checked_sub_days(Days::new(1)).unwrap_or(today);
    // A client cannot hold a day that is not over yet.
    let held = held
        .map(|w| DateWindow {
            down: w.down,
            up: w.up.min(complete_through),
        })
        .filter(|w| w.down <= w.up);
    let holds = |day: NaiveDate| held.is_some_and(|w| w.down <= day && day <= w.up);
    let earliest = settled.iter().map(|s| s.paid_at.date_naive()).min();
    let date_down = [held.map(|w| w.down), earliest, Some(complete_through)]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(complete_through);
    HistoriesData {
        apartment_id: access.apartment,
        currency: access.currency,
        settled: settled
            .iter()
            .filter(|s| !holds(s.paid_at.date_naive()))
            .collect(),
        date_down,
        date_up: complete_through,
    }
}

async fn load(
    client: &impl GenericClient,
    access: &Access,
) -> Result<Vec<SettledBill>, HandlerError> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {BILL_COLUMNS}, pay.paid_at, pay.id
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
                paid_at: row.get(8),
                payment_id: row.get(9),
            })
        })
        .collect()
}
