//! The settle job: closes each UTC day once, for every provider, into settlements (`sql/V22`).
//! A day is closed once it has been over for [`MARGIN`] (a payment stamped just before midnight
//! commits within it), from the day after the last closed one (or the first day with a settled
//! payment) through yesterday. Before closing a day, the processor's fee on each card payment of
//! the day is read from its balance transaction, outside any transaction; a day whose fees cannot
//! be read yet (the processor out of reach) waits for the next run, and so do the days after it.
//!
//! Each day is one transaction that first claims the day (`settlement_days`): two runs at once
//! close it once, the second finding it claimed. A closed day never changes: a refund that
//! succeeds later lands on the day it succeeded.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::Serialize;

use crate::processor::stripe;
use crate::services::Services;

/// How long after midnight a day is closed.
pub const MARGIN: Duration = Duration::minutes(10);

/// What one run did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Days closed by this run.
    pub days: u64,
    /// Settlements (provider, day, currency) written.
    pub settlements: u64,
    /// Their lines.
    pub lines: u64,
    /// Card payments whose fee was read from the processor.
    pub fees_read: u64,
    /// The first day left open because its fees could not be read yet.
    pub waiting: Option<NaiveDate>,
}

/// Closes every day through `until` (at most yesterday's, once [`MARGIN`] past midnight).
pub async fn run(services: &Services, until: Option<NaiveDate>) -> anyhow::Result<Report> {
    let mut report = Report::default();
    let client = crate::store::client(&services.store).await?;
    let row = client
        .query_one(
            "SELECT (SELECT max(day) FROM settlement_days) AS last,
                    (SELECT min(paid_at) FROM payments WHERE status = 'succeeded') AS first,
                    clock_timestamp() AS now",
            &[],
        )
        .await?;
    drop(client);
    let now: DateTime<Utc> = row.get("now");
    let latest = (now - MARGIN)
        .date_naive()
        .pred_opt()
        .expect("a day before");
    let last = until.map_or(latest, |u| u.min(latest));
    let first = match row.get::<_, Option<NaiveDate>>("last") {
        Some(closed) => closed.succ_opt().expect("a day after"),
        None => match row.get::<_, Option<DateTime<Utc>>>("first") {
            Some(first) => first.date_naive(),
            None => {
                tracing::info!(job = "settle", "no settled payment yet: nothing to close");
                return Ok(report);
            }
        },
    };
    let mut day = first;
    while day <= last {
        match read_fees(services, day).await {
            Ok(read) => report.fees_read += read,
            Err(e) => {
                tracing::warn!(job = "settle", %day, error = format!("{e:#}"), "the processor's fees could not be read; the day waits for the next run");
                report.waiting = Some(day);
                break;
            }
        }
        if let Some((settlements, lines)) = close(services, day).await? {
            report.days += 1;
            report.settlements += settlements;
            report.lines += lines;
        }
        day = day.succ_opt().expect("a day after");
    }
    tracing::info!(
        job = "settle",
        days = report.days,
        settlements = report.settlements,
        fees_read = report.fees_read,
        "settlements closed"
    );
    Ok(report)
}

/// Midnight UTC at the start of `day`.
fn start(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_opt(0, 0, 0).expect("midnight").and_utc()
}

/// Reads the processor's fee of every card payment of `day` that has none yet; how many.
async fn read_fees(services: &Services, day: NaiveDate) -> anyhow::Result<u64> {
    let client = crate::store::client(&services.store).await?;
    let waiting = client
        .query(
            "SELECT id, intent_id, currency FROM payments
             WHERE status = 'succeeded' AND paid_at >= $1 AND paid_at < $2
               AND processor = 'stripe' AND processor_fee IS NULL",
            &[&start(day), &start(day + Duration::days(1))],
        )
        .await?;
    drop(client);
    if waiting.is_empty() {
        return Ok(0);
    }
    let processor = services.processor.as_ref().ok_or_else(|| {
        anyhow::anyhow!(
            "card payments to settle, and this worker has no processor to read their fees from"
        )
    })?;
    let mut read = 0;
    for row in waiting {
        let id: uuid::Uuid = row.get("id");
        let intent: Option<String> = row.get("intent_id");
        let currency: String = row.get("currency");
        let intent =
            intent.ok_or_else(|| anyhow::anyhow!("settled card payment {id} without an intent"))?;
        let fee = match processor.stripe.intent_fee(&intent).await {
            Ok(fee) => fee,
            Err(stripe::Error::Unavailable(e)) => return Err(e),
            Err(e) => return Err(e.into()),
        };
        let fee = match fee {
            Some((fee, fee_currency)) if fee_currency.eq_ignore_ascii_case(&currency) => {
                crate::money::Money::from_minor_units(
                    fee,
                    crate::types::Currency::parse(&currency)?,
                )
                .amount()
            }
            Some((_, other)) => anyhow::bail!(
                "payment {id}'s fee is in {other}, not in its currency {currency}: settlements hold one currency per line"
            ),
            // The processor reports no fee for it (yet): none is charged on the day.
            None => rust_decimal::Decimal::ZERO,
        };
        let client = crate::store::client(&services.store).await?;
        read += client
            .execute(
                "UPDATE payments SET processor_fee = $2 WHERE id = $1 AND processor_fee IS NULL",
                &[&id, &fee],
            )
            .await?;
    }
    Ok(read)
}

/// Closes `day`: its settlements and their lines, in one transaction; `None` if another run
/// closed it first.
async fn close(services: &Services, day: NaiveDate) -> anyhow::Result<Option<(u64, u64)>> {
    let mut client = crate::store::client(&services.store).await?;
    let tx = client.transaction().await?;
    let claimed = tx
        .execute(
            "INSERT INTO settlement_days (day) VALUES ($1) ON CONFLICT (day) DO NOTHING",
            &[&day],
        )
        .await?;
    if claimed == 0 {
        return Ok(None);
    }
    let (from, to) = (start(day), start(day + Duration::days(1)));
    let lines = tx.execute(CLOSE, &[&day, &from, &to]).await?;
    let settlements: i64 = tx
        .query_one("SELECT count(*) FROM settlements WHERE day = $1", &[&day])
        .await?
        .get(0);
    tx.commit().await?;
    Ok(Some((settlements as u64, lines)))
}

/// A day's settlements and lines (`$1` the day, `$2`..`$3` its bounds): each settled payment's
/// part for each provider, with the processor's fee split as the payment is (in proportion, cut
/// to the cent, the largest part taking what is left), and each succeeded refund's part.
const CLOSE: &str = "
    WITH pay AS (
        SELECT p.id, p.currency, p.paid_at, p.total, coalesce(p.processor_fee, 0) AS fee, p.bills,
               CASE p.processor WHEN 'stripe' THEN 'card' ELSE p.processor END AS via
        FROM payments p
        WHERE p.status = 'succeeded' AND p.paid_at >= $2 AND p.paid_at < $3),
    parts AS (
        SELECT pay.id, pay.currency, pay.paid_at, pay.via, pay.fee, pay.total, b.provider_id,
               sum(b.amount) AS amount
        FROM pay JOIN bills b ON b.id = ANY(pay.bills)
        GROUP BY pay.id, pay.currency, pay.paid_at, pay.via, pay.fee, pay.total, b.provider_id),
    ranked AS (
        SELECT parts.*, trunc(fee * amount / total, 2) AS cut,
               row_number() OVER (PARTITION BY id ORDER BY amount DESC, provider_id) AS rank
        FROM parts),
    lines AS (
        SELECT provider_id, currency, 'payment' AS kind, id AS payment_id, NULL::uuid AS refund_id, via,
               paid_at AS at, amount,
               cut + CASE WHEN rank = 1 THEN fee - sum(cut) OVER (PARTITION BY id) ELSE 0 END AS fee
        FROM ranked
        UNION ALL
        SELECT rp.provider_id, r.currency, 'refund', r.payment_id, r.id,
               CASE p.processor WHEN 'stripe' THEN 'card' ELSE p.processor END, r.succeeded_at, rp.amount, 0
        FROM refunds r JOIN refund_parts rp ON rp.refund_id = r.id JOIN payments p ON p.id = r.payment_id
        WHERE r.status = 'succeeded' AND r.succeeded_at >= $2 AND r.succeeded_at < $3),
    sums AS (
        INSERT INTO settlements (provider_id, day, currency, payments, refunds_count, gross, refunds, fees, net,
                                 collected_elsewhere)
        SELECT provider_id, $1, currency,
               count(*) FILTER (WHERE kind = 'payment'), count(*) FILTER (WHERE kind = 'refund'),
               coalesce(sum(amount) FILTER (WHERE kind = 'payment'), 0),
               coalesce(sum(amount) FILTER (WHERE kind = 'refund'), 0),
               sum(fee),
               coalesce(sum(amount) FILTER (WHERE kind = 'payment'), 0)
                   - coalesce(sum(amount) FILTER (WHERE kind = 'refund'), 0) - sum(fee),
               coalesce(sum(amount) FILTER (WHERE kind = 'payment' AND via = 'external'), 0)
        FROM lines GROUP BY provider_id, currency
        RETURNING 1)
    INSERT INTO settlement_lines (provider_id, day, currency, kind, payment_id, refund_id, via, at, amount, fee)
    SELECT provider_id, $1, currency, kind, payment_id, refund_id, via, at, amount, fee FROM lines";
