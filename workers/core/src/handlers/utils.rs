//! `utils`: the apartment's unpaid bills with totals by utility, by provider and overall.

use std::collections::BTreeMap;

use deadpool_postgres::GenericClient;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::{Access, BILL_COLUMNS, BillView, HandlerResult, authorize, to_data};
use crate::cache::CacheKey;
use crate::engine::Engine;
use crate::envelope::Envelope;
use crate::types::{ApartmentId, Currency, amount_string};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UtilsData {
    pub apartment_id: ApartmentId,
    pub currency: Currency,
    pub bills: Vec<BillView>,
    pub totals: Totals,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Totals {
    pub by_utility: BTreeMap<String, String>,
    pub by_provider: BTreeMap<String, String>,
    pub total: String,
    pub currency: Currency,
}

pub async fn run(engine: &Engine, envelope: &Envelope, apartment: ApartmentId) -> HandlerResult {
    let client = engine.store.get().await?;
    let key = CacheKey::Utils { apartment };
    // Who may read, and what the cache holds, asked at once; the entry counts only if it was
    // read at the apartment's current version.
    let (access, cached) = tokio::join!(
        authorize(engine, envelope, &client, apartment),
        engine.cache.get_versioned::<UtilsData>(key)
    );
    let access = access?;
    if let Some((version, cached)) = cached
        && version == access.version
    {
        return to_data(&cached);
    }
    let data = load(&client, &access).await?;
    engine.cache.put_versioned(key, access.version, &data).await;
    to_data(&data)
}

async fn load(
    client: &impl GenericClient,
    access: &Access,
) -> Result<UtilsData, super::HandlerError> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {BILL_COLUMNS} FROM bills b JOIN providers p ON p.id = b.provider_id
             WHERE b.apartment_id = $1 AND b.status = 'unpaid'
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
        totals: totals(&bills, access.currency),
        bills,
    })
}

fn totals(bills: &[BillView], currency: Currency) -> Totals {
    let mut by_utility: BTreeMap<String, Decimal> = BTreeMap::new();
    let mut by_provider: BTreeMap<String, Decimal> = BTreeMap::new();
    let mut total = Decimal::ZERO;
    for bill in bills {
        *by_utility.entry(bill.utility.clone()).or_default() += bill.amount;
        *by_provider.entry(bill.provider.clone()).or_default() += bill.amount;
        total += bill.amount;
    }
    let strings =
        |m: BTreeMap<String, Decimal>| m.into_iter().map(|(k, v)| (k, amount_string(v))).collect();
    Totals {
        by_utility: strings(by_utility),
        by_provider: strings(by_provider),
        total: amount_string(total),
        currency,
    }
}
