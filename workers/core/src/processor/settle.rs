//! The `payment_intent.succeeded` webhooks of one receive, settled together: one transaction and
//! two round trips for the lot, where each alone ([`super::book::apply_event`]) takes a
//! transaction of ten statements. Each event keeps its own outcome, as if it had come alone.
//!
//! The first round trip begins the transaction, locks the payments (in id order, so that two
//! batches never deadlock, and before their bills, as a payment alone locks them) and claims the
//! events of payments that exist, one statement each, pipelined. What each event does is then
//! decided in Rust from the locked rows, in the batch's order, with [`super::book`]'s rules (a
//! second event for a payment the batch settles finds it settled). The second round trip writes:
//! the intents' ids where the books had none, the payments settled and their bills paid (one
//! statement each for the batch, so the audit triggers run once), the receipts, the versions
//! bumped, and the commit. After the commit: the receipts' mails and the cached reads.

use std::collections::HashMap;

use tokio_postgres::Row;
use uuid::Uuid;

use super::book::{self, Applied, Change, Payment, Via};
use super::stripe::Intent;
use crate::cache::CacheKey;
use crate::error::HandlerError;
use crate::routes::payments::{Params, each};
use crate::services::Services;
use crate::types::ApartmentId;

/// One `payment_intent.succeeded` event of the batch: its id and the payment its intent names.
pub struct Succeeded<'a> {
    pub event: &'a str,
    pub kind: &'a str,
    pub payment: Uuid,
    pub intent: &'a Intent,
}

/// Settles `batch`, an outcome for each in its order. On an `Err` nothing was written.
pub async fn together(
    services: &Services,
    batch: &[Succeeded<'_>],
) -> Result<Vec<Applied>, HandlerError> {
    let mut client = crate::store::client(&services.store).await?;
    client.set_in_transaction(true);
    let done = in_one_transaction(&client, batch).await;
    if done.is_ok() || client.batch_execute("ROLLBACK").await.is_ok() {
        client.set_in_transaction(false);
    }
    let Done {
        applied,
        mails,
        settled,
    } = done?;
    drop(client);

    // Only after the commit: the receipts' mails, and the cached reads of the apartments paid for.
    for _ in &settled {
        crate::metrics::payment_status("succeeded", Via::Webhook.as_str());
    }
    let forget: Vec<CacheKey> = settled
        .iter()
        .flat_map(|&apartment| {
            let apartment = ApartmentId(apartment);
            [
                CacheKey::Utils { apartment },
                CacheKey::Histories { apartment },
            ]
        })
        .collect();
    if !forget.is_empty() {
        services.cache.forget(&forget).await;
    }
    crate::notify::outbox::send_now(services, &mails).await;
    Ok(applied)
}

/// What the transaction did: an outcome per event, the receipts' mails to send, and the
/// apartments whose payments it settled.
struct Done {
    applied: Vec<Applied>,
    mails: Vec<i64>,
    settled: Vec<i64>,
}

const VIA: &str = "SELECT set_config('qbill.via', $1, true)";

/// An event claimed for its payment, if the payment exists (an event for no payment of ours is
/// not claimed, as alone); returns its id if claimed now.
const CLAIM: &str = "INSERT INTO processor_events (id, type, payment_id)
    SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM payments WHERE id = $3)
    ON CONFLICT (id) DO NOTHING RETURNING id";

/// The intent's id is the books' from the first answer on.
const INTENT: &str = "UPDATE payments SET intent_id = $2 WHERE id = $1 AND intent_id IS NULL";

const SETTLE: &str = "UPDATE payments SET status = 'succeeded', paid_at = clock_timestamp()
    WHERE id = ANY($1) RETURNING id, paid_at";

/// The bills the settled payments reserved, paid by them: `$1` the payments' bills, `$2` the
/// payments.
const PAY_BILLS: &str =
    "UPDATE bills SET status = 'paid', payment_id = reserved_by, reserved_by = NULL
    WHERE id = ANY($1) AND reserved_by = ANY($2)";

async fn in_one_transaction(
    tx: &deadpool_postgres::Client,
    batch: &[Succeeded<'_>],
) -> Result<Done, HandlerError> {
    // Statements are prepared once per connection. A payment is locked by one statement per
    // payment, in id order.
    let lock = format!(
        "SELECT {} FROM payments WHERE id = $1 FOR UPDATE",
        Payment::COLUMNS
    );
    let (via, lock, claim, set_intent, settle, pay_bills, receipts, bump) = tokio::try_join!(
        tx.prepare_cached(VIA),
        tx.prepare_cached(&lock),
        tx.prepare_cached(CLAIM),
        tx.prepare_cached(INTENT),
        tx.prepare_cached(SETTLE),
        tx.prepare_cached(PAY_BILLS),
        tx.prepare_cached(book::RECEIPT),
        tx.prepare_cached(crate::routes::payments::BUMP),
    )?;

    // Phase one: the payments locked, in id order, then the events claimed.
    let mut ids: Vec<Uuid> = batch.iter().map(|s| s.payment).collect();
    ids.sort_unstable();
    ids.dedup();
    let via_name = Via::Webhook.as_str();
    let via_params: Params<1> = [&via_name];
    let (_, _, locked, claimed) = tokio::try_join!(
        tx.batch_execute("BEGIN"),
        tx.query_one(&via, &via_params),
        each(tx, &lock, ids.iter().map(|id| [id as _]).collect()),
        each(
            tx,
            &claim,
            batch
                .iter()
                .map(|s| [&s.event as _, &s.kind as _, &s.payment as _])
                .collect()
        ),
    )?;
    let mut payments: HashMap<Uuid, Payment> = HashMap::with_capacity(ids.len());
    for row in locked.iter().flat_map(|rows| rows.first()) {
        let payment = Payment::from_row(row)?;
        payments.insert(payment.id, payment);
    }

    // Phase two, in Rust: each event in turn, as the books would take them one after another.
    let mut applied = Vec::with_capacity(batch.len());
    let mut intents: Vec<(Uuid, &str)> = Vec::new();
    let mut settling: Vec<Uuid> = Vec::new();
    for (event, claimed) in batch.iter().zip(&claimed) {
        let Some(payment) = payments.get_mut(&event.payment) else {
            applied.push(Applied::NoPayment);
            continue;
        };
        if claimed.is_empty() {
            applied.push(Applied::Before);
            continue;
        }
        if payment.intent_id.is_none() {
            payment.intent_id = Some(event.intent.id.clone());
            intents.push((payment.id, &event.intent.id));
        }
        if let Change::Settle = book::next_change(payment, book::decide_from(event.intent, false)) {
            payment.status = "succeeded".to_owned();
            settling.push(payment.id);
        }
        applied.push(Applied::Now(Box::new(payment.clone())));
    }
    if intents.is_empty() && settling.is_empty() {
        tx.batch_execute("COMMIT").await?;
        return Ok(Done {
            applied,
            mails: Vec::new(),
            settled: Vec::new(),
        });
    }

    // Phase three: the writes and the commit, in one round trip.
    let bills: Vec<i64> = settling
        .iter()
        .flat_map(|id| payments[id].bills.iter().copied())
        .collect();
    let mut apartments: Vec<i64> = settling
        .iter()
        .map(|id| payments[id].apartment_id)
        .collect();
    apartments.sort_unstable();
    apartments.dedup();
    let settle_params: Params<1> = [&settling];
    let bill_params: Params<2> = [&bills, &settling];
    let (_, settled, bills_paid, receipts, _, _) = tokio::try_join!(
        each(
            tx,
            &set_intent,
            intents
                .iter()
                .map(|(id, intent)| [id as _, intent as _])
                .collect()
        ),
        tx.query(&settle, &settle_params),
        tx.execute(&pay_bills, &bill_params),
        tx.query(&receipts, &settle_params),
        each(tx, &bump, apartments.iter().map(|a| [a as _]).collect()),
        tx.batch_execute("COMMIT"),
    )?;
    if settled.len() != settling.len() || bills_paid as usize > bills.len() {
        tracing::error!(
            payments = settling.len(),
            settled = settled.len(),
            bills = bills.len(),
            bills_paid,
            "a batch of webhooks settled other counts of payments or bills than it decided"
        );
    }
    let paid_at: HashMap<Uuid, chrono::DateTime<chrono::Utc>> = settled
        .iter()
        .map(|row: &Row| (row.get(0), row.get(1)))
        .collect();
    // The outcomes hold each payment as it stood after its event: settled ones get their time.
    for outcome in &mut applied {
        if let Applied::Now(payment) = outcome
            && payment.status == "succeeded"
            && payment.paid_at.is_none()
        {
            payment.paid_at = paid_at.get(&payment.id).copied();
        }
    }
    let mails = receipts
        .iter()
        .filter_map(|row| row.get::<_, Option<i64>>(0))
        .collect();
    let settled = settling
        .iter()
        .map(|id| payments[id].apartment_id)
        .collect();
    Ok(Done {
        applied,
        mails,
        settled,
    })
}
