//! `payments`: pays the chosen bills of one apartment, all or none.
//!
//! With a processor (`QBILL_PAYMENTS=stripe`), the transaction records the payment `pending`
//! and reserves its bills (a reserved bill cannot be in a second payment); after the commit the
//! processor is asked for the money ([`crate::processor::charge`]), and its answer settles or
//! releases them. In the ledger mode (the benchmark's) the transaction settles the bills itself.
//!
//! Payments are settled in batches (the messages of one receive, up to ten), each payment with
//! its own outcome; see [`settle`]. The request id is claimed first, inside the transaction: a
//! duplicate delivered at the same moment waits on that row until this transaction ends, then
//! replays the stored receipt (or, if this one was refused, runs afresh). Bills are locked in id
//! order, so overlapping payments queue up instead of deadlocking, and each bill is paid exactly
//! once.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use schemars::JsonSchema;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, Statement};
use uuid::Uuid;

use super::{Batched, Callers, Context, ErrorCode, HandlerError, HandlerResult, Kind, Route, body};
use crate::accounts::session::{SESSION_EPOCH, still_open};
use crate::cache::CacheKey;
use crate::call::Path;
use crate::common::{ACCESS, Access, access, bills_to_pay, voided};
use crate::idempotency;
use crate::money::Money;
pub use crate::processor::book::Receipt;
use crate::services::Services;
use crate::types::{ApartmentId, BillId, Currency, ParseError, Role};

pub use crate::common::MAX_BILLS_PER_PAYMENT;

#[derive(Debug)]
pub struct Request {
    pub apartment: ApartmentId,
    /// Distinct, in the order the client listed them.
    pub bills_id: Vec<BillId>,
    /// The card to confirm with at once (a PaymentMethod id), or none: the reply then carries
    /// the `client_secret` for Stripe.js to confirm with.
    pub payment_method: Option<String>,
}

#[derive(serde::Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Body {
    #[schemars(length(min = 1, max = 100), extend("uniqueItems" = true), inner(range(min = 1)))]
    pub bills_id: Vec<i64>,
    /// A PaymentMethod the client made with Stripe.js or Stripe's API (`pm_…`), or a card's id
    /// (`card_…`, from a token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 4, max = 255), regex(pattern = r"^(pm|card)_[A-Za-z0-9_]+$"))]
    pub payment_method: Option<String>,
}

impl Route for Request {
    const PATH: &str = "/apartments/{apartment_id}/payments";
    const SUMMARY: &str = "Pays the chosen bills, all or none; the reply is a receipt.";
    type Body = Body;
    type Reply = Receipt;
    const CALLERS: Callers = Callers::Roles(&[Role::Household]);

    fn parse(path: &Path, raw: serde_json::Map<String, Value>) -> Result<Self, ParseError> {
        let b: Body = body(raw)?;
        let bills_id = bills_to_pay(&b.bills_id)?;
        if let Some(method) = &b.payment_method
            && !valid_method(method)
        {
            return Err(ParseError::new(
                "`payment_method` must be a PaymentMethod id (pm_ or card_, then letters, digits or _)",
            ));
        }
        Ok(Self {
            apartment: path.apartment()?,
            bills_id,
            payment_method: b.payment_method,
        })
    }

    fn apartment(&self) -> Option<ApartmentId> {
        Some(self.apartment)
    }

    /// A payment that came alone, its session checked (with a Cognito identity): a batch of one.
    async fn run(&self, cx: &Context<'_>) -> HandlerResult {
        let payment = Batched {
            call: cx.call,
            request: self,
            session: cx.caller()?.clone(),
            epoch_checked: true,
        };
        settle(cx.services, &[payment])
            .await
            .pop()
            .expect("one result per payment")
    }

    /// The payments of one receive, in one transaction ([`settle`]).
    const BATCHES: bool = true;

    async fn run_batch(services: &Services, batch: &[Batched<'_, Self>]) -> Vec<HandlerResult> {
        settle(services, batch).await
    }
}

/// Whether `method` looks like a PaymentMethod id (`pm_`) or a card's (`card_`, from a token),
/// then letters, digits or `_`.
fn valid_method(method: &str) -> bool {
    method.len() <= 255
        && method
            .strip_prefix("pm_")
            .or_else(|| method.strip_prefix("card_"))
            .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
}

/// One payment of a batch: the call, the request and the caller its token names.
type Payment<'a> = Batched<'a, Request>;

/// Settles a batch of payments, each with its own outcome, as if each had run alone: one
/// payment's refusal, or a repeat of another's request id, never fails or delays the others.
///
/// The batch shares one transaction and two round trips. The first begins it and reads the
/// callers' session epochs and who may pay for which apartment, claims the request ids (in
/// request id order), locks the bills (in id order), then the apartments (in id order), and
/// reads the clock. The second writes the payments, settles the bills, bumps the versions, keeps
/// the receipts for repeats, releases the refused requests' claims, records the receipts'
/// notifications and commits. Every batch takes its locks in the same order (claims, then bills,
/// then apartments, each by id; a payment alone always took them in that order too), so two
/// batches never deadlock.
///
/// No savepoints: every refusal is decided in Rust between the two round trips, from rows this
/// transaction holds locked, before anything is written, so there is nothing to undo but the
/// refused requests' claims, deleted in the same transaction. The writes are one statement per
/// kind of row for the whole batch where no table is read to find the rows (inserts from arrays,
/// bills by their locked ids), so the audit triggers run once per statement. If the batch fails
/// in a way that is not transient (a bug, a constraint), each payment runs again alone, so that
/// only the guilty one gets the `internal` reply. A request id twice in one batch (a duplicate
/// delivery) runs once in the batch, and its repeat after the batch committed, as a replay.
pub async fn settle(services: &Services, batch: &[Payment<'_>]) -> Vec<HandlerResult> {
    let mut first = Vec::with_capacity(batch.len());
    let mut repeats = Vec::new();
    let mut seen = HashSet::with_capacity(batch.len());
    for (i, payment) in batch.iter().enumerate() {
        if seen.insert(payment.call.request_id) {
            first.push(i);
        } else {
            repeats.push(i);
        }
    }
    let mut results: Vec<Option<HandlerResult>> = (0..batch.len()).map(|_| None).collect();
    let together: Vec<&Payment<'_>> = first.iter().map(|&i| &batch[i]).collect();
    if !together.is_empty() {
        for (i, result) in first.iter().zip(settle_apart(services, &together).await) {
            results[*i] = Some(result);
        }
    }
    for i in repeats {
        results[i] = Some(
            settle_apart(services, &[&batch[i]])
                .await
                .pop()
                .expect("one result per payment"),
        );
    }
    results
        .into_iter()
        .map(|r| r.expect("every payment settled"))
        .collect()
}

/// [`together`], and when a batch of more than one fails for a reason that is not transient,
/// each of its payments alone.
async fn settle_apart(services: &Services, batch: &[&Payment<'_>]) -> Vec<HandlerResult> {
    match together(services, batch).await {
        Ok(results) => results,
        Err(HandlerError::Transient(e)) => {
            let reason = format!("{e:#}");
            batch
                .iter()
                .map(|_| Err(HandlerError::Transient(anyhow::anyhow!("{reason}"))))
                .collect()
        }
        Err(e) if batch.len() == 1 => vec![Err(e)],
        Err(e) => {
            tracing::warn!(
                error = format!("{e:#}"),
                payments = batch.len(),
                "a batch of payments failed; each runs alone"
            );
            let alone = batch.iter().map(|p| async move {
                together(services, &[*p])
                    .await
                    .and_then(|mut r| {
                        r.pop()
                            .ok_or_else(|| HandlerError::internal(anyhow::anyhow!("no result")))
                    })
                    .unwrap_or_else(Err)
            });
            futures::future::join_all(alone).await
        }
    }
}

// The statements of a batch. Users, apartments and claims are looked up one key at a time (`= $1`,
// the statement run once per key, pipelined): a prepared statement keeps the generic plan it got
// when first run (`sql/V8`), and a join with an array, or `= ANY($1)`, over a table that was small
// then keeps scanning all of it as it grows (profiling found `processed_requests`, which grows
// with every request, read whole once a batch). The claims, the payments and the receipts come
// from arrays, which read no table to find their rows. The bills are locked and settled by
// `id = ANY($1)`, as a payment alone always found them.

/// The claims, taken in request id order; returns the ids claimed now.
const CLAIM: &str = "INSERT INTO processed_requests (request_id, user_id, kind, fingerprint)
    SELECT r, u, 'payments', f FROM unnest($1::uuid[], $2::bigint[], $3::bytea[]) AS t(r, u, f) ORDER BY r
    ON CONFLICT (request_id) DO NOTHING RETURNING request_id";

/// A claim as it stands, for a request claimed before (columns as `idempotency::judge` reads
/// them).
const CLAIMED: &str =
    "SELECT user_id, kind, fingerprint, reply FROM processed_requests WHERE request_id = $1";

/// The bills, locked in id order, with what the receipts name of them.
const LOCK_BILLS: &str =
    "SELECT b.id, b.apartment_id, b.status, b.reserved_by, b.amount, b.currency, v.name AS provider,
        replace(b.utility, '_', ' ') AS utility
    FROM bills b JOIN providers v ON v.id = b.provider_id
    WHERE b.id = ANY($1) ORDER BY b.id FOR UPDATE OF b";

/// An apartment whose version the batch may bump, locked in id order after the bills (as a
/// payment's bump always came after its bills); `NO KEY UPDATE`, what the bump takes anyway, so
/// that bills can still be added to it meanwhile.
const LOCK_APARTMENT: &str = "SELECT 1 FROM apartments WHERE id = $1 FOR NO KEY UPDATE";

const CLOCK: &str = "SELECT clock_timestamp()";

/// The payments: `succeeded` in the ledger mode, `pending` with a processor (`$8`: its name, or
/// `ledger`); each one's bills as a `{…}` array literal.
const INSERT_PAYMENTS: &str = "INSERT INTO payments (id, apartment_id, user_id, request_id, total, currency, paid_at,
                                                    created_at, status, processor, bills)
    SELECT i, a, u, r, t, c, p, p, CASE WHEN $8 = 'ledger' THEN 'succeeded' ELSE 'pending' END, $8, b::bigint[]
    FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::uuid[], $5::numeric[], $6::text[], $7::timestamptz[], $9::text[])
         AS x(i, a, u, r, t, c, p, b)";

/// A card payment's bills, reserved by it: `$1` the bills, `$2` the payment of each.
const RESERVE: &str =
    "UPDATE bills SET reserved_by = ($2::uuid[])[array_position($1::bigint[], id)] WHERE id = ANY($1)";

/// Every bill of the batch's payments, in one statement (its audit trigger runs once): `$1` the
/// bills, `$2` the payment of each.
const SETTLE: &str =
    "UPDATE bills SET status = 'paid', payment_id = ($2::uuid[])[array_position($1::bigint[], id)]
    WHERE id = ANY($1)";

pub(crate) const BUMP: &str = "UPDATE apartments SET version = cache_version() WHERE id = $1";

const RECORD: &str = "UPDATE processed_requests SET reply = $2 WHERE request_id = $1";

/// Lets go of a refused request's claim, so that it runs afresh if it comes again.
/// Gives the refused requests' claims back (`sql/V14`: the application role deletes no
/// processed request itself; the function deletes only claims still without a reply).
const RELEASE: &str = "SELECT release_claims($1::uuid[])";

/// Records the `payment.succeeded` notification (the receipt) of each payment, with its bills;
/// returns the mail to send of each, if any.
const RECEIPTS: &str = "SELECT notify(t.user_id, 'payment.succeeded', 'payment.succeeded:' || t.payment_id,
        jsonb_build_object('payment_id', t.payment_id, 'apartment_id', t.apartment_id, 'total', t.total::text,
                           'currency', t.currency, 'paid_at', t.paid_at, 'bills', t.bills))
    FROM unnest($1::bigint[], $2::uuid[], $3::bigint[], $4::numeric[], $5::text[], $6::timestamptz[], $7::jsonb[])
         AS t(user_id, payment_id, apartment_id, total, currency, paid_at, bills)";

pub(crate) type Params<'a, const N: usize> = [&'a (dyn ToSql + Sync); N];

/// Runs `statement` once per parameter list, pipelined: the calls go out together, in order,
/// and are answered in order.
pub(crate) async fn each<const N: usize>(
    tx: &tokio_postgres::Client,
    statement: &Statement,
    params: Vec<Params<'_, N>>,
) -> Result<Vec<Vec<Row>>, tokio_postgres::Error> {
    futures::future::try_join_all(params.iter().map(|p| tx.query(statement, p))).await
}

/// A bill as the batch holds it locked: whose it is, its state (updated as the batch's payments
/// settle it) and its amount.
struct Held {
    apartment: Option<i64>,
    status: String,
    /// The card payment under way that holds it, if any.
    reserved_by: Option<Uuid>,
    money: Money,
    provider: String,
    utility: String,
}

/// One transaction for the whole batch; see [`settle`]. An `Err` is the batch's, rolled back.
async fn together(
    services: &Services,
    batch: &[&Payment<'_>],
) -> Result<Vec<HandlerResult>, HandlerError> {
    let mut client = crate::store::client(&services.store).await?;
    client.set_in_transaction(true);
    let card = services.processor.is_some();
    let settled = in_one_transaction(&client, batch, card).await;
    if settled.is_ok() || client.batch_execute("ROLLBACK").await.is_ok() {
        client.set_in_transaction(false);
    }
    let Settled {
        mut results,
        mails,
        paid,
    } = settled?;
    drop(client);
    if let Some(processor) = &services.processor {
        // After the commit: the processor asked for each card payment's money (a repeat of a
        // request asks again, and gets the same intent), together.
        let charges = batch.iter().zip(results.iter_mut()).map(|(payment, result)| async move {
            let Ok(data) = result else { return };
            *result = charge(services, processor, data, payment.request.payment_method.as_deref()).await;
        });
        futures::future::join_all(charges).await;
    }

    // Only after the commit: the receipts' mails, and the cached reads of the apartments paid
    // for (readers already ignore the old version; this just frees the memory).
    crate::notify::outbox::send_now(services, &mails).await;
    let forget: Vec<CacheKey> = paid
        .into_iter()
        .flat_map(|apartment| {
            [
                CacheKey::Utils { apartment },
                CacheKey::Histories { apartment },
            ]
        })
        .collect();
    if !forget.is_empty() {
        services.cache.forget(&forget).await;
    }
    Ok(results)
}

/// Asks the processor for the money of the card payment whose reply (recorded, or replayed) is
/// `data`, and answers with where the payment stands then.
async fn charge(
    services: &Services,
    processor: &crate::processor::Processor,
    data: &Value,
    payment_method: Option<&str>,
) -> HandlerResult {
    // Only its id: a reply kept from before payments had a status (a repeat across the upgrade)
    // names its payment too.
    let id: Uuid = data
        .get("payment_id")
        .and_then(Value::as_str)
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| HandlerError::internal(anyhow::anyhow!("a payment's reply without its id")))?;
    let client = crate::store::client(&services.store).await?;
    let payment = crate::processor::book::load(&*client, id)
        .await?
        .ok_or_else(|| HandlerError::internal(anyhow::anyhow!("payment {id} is gone")))?;
    drop(client);
    let charged = crate::processor::charge(services, processor, payment, payment_method).await?;
    Request::reply(&Receipt::of(&charged.payment, charged.client_secret))
}

/// What a batch's transaction did: an outcome per payment, the receipts' mails to send and the
/// apartments paid for.
struct Settled {
    results: Vec<HandlerResult>,
    mails: Vec<i64>,
    paid: Vec<ApartmentId>,
}

/// The batch's transaction, on `client`: its `BEGIN` goes out with the first round trip's
/// statements and its `COMMIT` with the last's. On an `Err`, the transaction may still be open.
async fn in_one_transaction(
    tx: &deadpool_postgres::Client,
    batch: &[&Payment<'_>],
    card: bool,
) -> Result<Settled, HandlerError> {
    let keys = Keys::of(batch);
    let mut locked = lock(tx, &keys).await?;
    let mut decided = decide(batch, &keys, &mut locked, card);
    let mut results = std::mem::take(&mut decided.results);
    let mut mails = Vec::new();
    if decided.accepted.is_empty() && decided.released.is_empty() && decided.kept.is_empty() {
        tx.batch_execute("COMMIT").await?;
    } else {
        let written = write(
            tx,
            &keys,
            &locked.bills,
            &decided,
            card,
            locked.paid_at,
        )
        .await?;
        mails = written.mails;
        for ((i, _), reply) in decided.accepted.iter().zip(written.data) {
            results[*i] = Some(Ok(reply));
        }
    }
    Ok(Settled {
        results: results
            .into_iter()
            .map(|r| r.expect("every payment has an outcome"))
            .collect(),
        mails,
        paid: decided.accepted.iter().map(|(_, r)| r.apartment_id).collect(),
    })
}

/// What the batch's statements are about, by payment (in the batch's order) and sorted where
/// they lock.
struct Keys {
    fingerprints: Vec<[u8; 32]>,
    request_ids: Vec<Uuid>,
    users: Vec<i64>,
    apartments: Vec<i64>,
    /// The users whose session epoch the batch checks, sorted.
    unchecked: Vec<i64>,
    /// Every bill named, sorted: the lock order.
    all_bills: Vec<i64>,
    /// Every apartment named, sorted: the lock order.
    sorted_apartments: Vec<i64>,
}

impl Keys {
    fn of(batch: &[&Payment<'_>]) -> Self {
        let mut unchecked: Vec<i64> = batch
            .iter()
            .filter(|p| !p.epoch_checked)
            .map(|p| p.session.user_id.0)
            .collect();
        unchecked.sort_unstable();
        unchecked.dedup();
        let mut all_bills: Vec<i64> = batch
            .iter()
            .flat_map(|p| p.request.bills_id.iter().map(|b| b.0))
            .collect();
        all_bills.sort_unstable();
        all_bills.dedup();
        let apartments: Vec<i64> = batch.iter().map(|p| p.request.apartment.0).collect();
        let mut sorted_apartments = apartments.clone();
        sorted_apartments.sort_unstable();
        sorted_apartments.dedup();
        Self {
            fingerprints: batch.iter().map(|p| fingerprint(p.request)).collect(),
            request_ids: batch.iter().map(|p| p.call.request_id.0).collect(),
            users: batch.iter().map(|p| p.session.user_id.0).collect(),
            apartments,
            unchecked,
            all_bills,
            sorted_apartments,
        }
    }
}

/// What the first round trip read and holds locked.
struct Locked {
    paid_at: DateTime<Utc>,
    /// The session epoch of each user in [`Keys::unchecked`] (none: deleted).
    epochs: HashMap<i64, i32>,
    /// The access row of each payment's caller and apartment, in the batch's order.
    access_rows: Vec<Vec<Row>>,
    claimed_now: HashSet<Uuid>,
    /// The claims of requests claimed before this batch.
    claims: HashMap<Uuid, Row>,
    bills: HashMap<i64, Held>,
}

/// Phase one: who may pay, the claims, the locks, then the clock, read once the locks are held so
/// that a payment that waited is not dated back: one round trip, its statements pipelined (and one
/// more for the claims of requests claimed before, rarely any).
async fn lock(tx: &deadpool_postgres::Client, keys: &Keys) -> Result<Locked, HandlerError> {
    // Statements are prepared once per connection.
    let (epoch, check, claim, lock_bills, lock_apartment, clock) = tokio::try_join!(
        tx.prepare_cached(SESSION_EPOCH),
        tx.prepare_cached(ACCESS),
        tx.prepare_cached(CLAIM),
        tx.prepare_cached(LOCK_BILLS),
        tx.prepare_cached(LOCK_APARTMENT),
        tx.prepare_cached(CLOCK),
    )?;
    let fingerprint_refs: Vec<&[u8]> = keys.fingerprints.iter().map(|f| f.as_slice()).collect();
    let claim_params: Params<3> = [&keys.request_ids, &keys.users, &fingerprint_refs];
    let bill_params: Params<1> = [&keys.all_bills];
    let (_, epoch_rows, access_rows, claimed_now, bill_rows, _, now) = tokio::try_join!(
        tx.batch_execute("BEGIN"),
        each(tx, &epoch, keys.unchecked.iter().map(|u| [u as _]).collect()),
        each(
            tx,
            &check,
            keys.apartments
                .iter()
                .zip(&keys.users)
                .map(|(a, u)| [a as _, u as _])
                .collect()
        ),
        tx.query(&claim, &claim_params),
        tx.query(&lock_bills, &bill_params),
        each(
            tx,
            &lock_apartment,
            keys.sorted_apartments.iter().map(|a| [a as _]).collect()
        ),
        tx.query_one(&clock, &[]),
    )?;
    let epochs: HashMap<i64, i32> = keys
        .unchecked
        .iter()
        .zip(&epoch_rows)
        .filter_map(|(user, rows)| Some((*user, rows.first()?.get(0))))
        .collect();
    let claimed_now: HashSet<Uuid> = claimed_now.iter().map(|r| r.get("request_id")).collect();
    let earlier: Vec<Uuid> = keys
        .request_ids
        .iter()
        .filter(|r| !claimed_now.contains(r))
        .copied()
        .collect();
    let mut claims: HashMap<Uuid, Row> = HashMap::new();
    if !earlier.is_empty() {
        let claimed = tx.prepare_cached(CLAIMED).await?;
        let rows = each(tx, &claimed, earlier.iter().map(|r| [r as _]).collect()).await?;
        for (request_id, rows) in earlier.into_iter().zip(rows) {
            if let Some(row) = rows.into_iter().next() {
                claims.insert(request_id, row);
            }
        }
    }
    let bills: HashMap<i64, Held> = bill_rows
        .iter()
        .map(|r| {
            let currency = Currency::parse(r.get("currency")).map_err(HandlerError::internal)?;
            Ok((
                r.get("id"),
                Held {
                    apartment: r.get("apartment_id"),
                    status: r.get("status"),
                    reserved_by: r.get("reserved_by"),
                    money: Money::new(r.get("amount"), currency),
                    provider: r.get("provider"),
                    utility: r.get("utility"),
                },
            ))
        })
        .collect::<Result<_, HandlerError>>()?;
    Ok(Locked {
        paid_at: now.get(0),
        epochs,
        access_rows,
        claimed_now,
        claims,
        bills,
    })
}

/// What the batch decided before writing anything: each payment's outcome where it is known
/// (a refusal, a replay), the payments accepted with their receipts, and the claims to release.
struct Decided {
    results: Vec<Option<HandlerResult>>,
    accepted: Vec<(usize, Receipt)>,
    released: Vec<Uuid>,
    /// Refusals kept for repeats ([`idempotency::kept_refusal`]): the request and its reply.
    kept: Vec<(Uuid, Value)>,
}

/// Phase two: each payment's outcome, in the order they came, as if each ran alone: a bill paid (or
/// reserved, with a processor: `card`) by an earlier payment of the batch is so for the later ones.
fn decide(batch: &[&Payment<'_>], keys: &Keys, locked: &mut Locked, card: bool) -> Decided {
    let mut results: Vec<Option<HandlerResult>> = Vec::with_capacity(batch.len());
    let mut accepted: Vec<(usize, Receipt)> = Vec::new();
    let mut released: Vec<Uuid> = Vec::new();
    let mut kept: Vec<(Uuid, Value)> = Vec::new();
    for (i, payment) in batch.iter().enumerate() {
        let request_id = payment.call.request_id.0;
        let ours = locked.claimed_now.contains(&request_id);
        let access = admitted(payment, &locked.epochs, locked.access_rows[i].first());
        let outcome = match access {
            Err(e) => Err(e),
            // Claimed before: the same request replays its reply, another is `conflict`.
            Ok(_) if !ours => match locked.claims.get(&request_id) {
                Some(row) => idempotency::judge(
                    row,
                    payment.session.user_id,
                    Kind::Payments,
                    &keys.fingerprints[i],
                )
                .map(Some),
                None => Err(HandlerError::internal(anyhow::anyhow!(
                    "request {request_id} was neither claimed now nor before"
                ))),
            },
            // A bill reserved by a card payment under way: refused, and the refusal kept, since
            // by a redelivery the bill may be paid or free.
            Ok(_) if reserved(payment.request, &locked.bills).is_some() => {
                let (bill, other) = reserved(payment.request, &locked.bills).expect("checked");
                let message = format!(
                    "bill {bill} is being paid by payment {other}; wait for its outcome (it is released if the card is refused), then pay with a new request"
                );
                kept.push((
                    request_id,
                    idempotency::kept_refusal(ErrorCode::Conflict, &message),
                ));
                Err(HandlerError::rejected(ErrorCode::Conflict, message))
            }
            Ok(access) => {
                let payment_id = Uuid::new_v4();
                let reserve = card.then_some(payment_id);
                price(payment.request, access.currency, &mut locked.bills, reserve).map(|total| {
                    accepted.push((
                        i,
                        Receipt {
                            payment_id,
                            apartment_id: payment.request.apartment,
                            bills_id: payment.request.bills_id.clone(),
                            total: total.amount(),
                            currency: total.currency(),
                            status: if card { "pending" } else { "succeeded" }.to_owned(),
                            paid_at: (!card).then_some(locked.paid_at),
                            client_secret: None,
                            failure_code: None,
                            failure_message: None,
                            external: None,
                        },
                    ));
                    None
                })
            }
        };
        match outcome {
            Ok(replayed) => results.push(replayed.map(Ok)),
            Err(e) => {
                if ours && kept.last().is_none_or(|(kept, _)| *kept != request_id) {
                    released.push(request_id);
                }
                results.push(Some(Err(e)));
            }
        }
    }
    Decided {
        results,
        accepted,
        released,
        kept,
    }
}

/// What the second round trip wrote: the accepted payments' replies and the receipts' mails.
struct Written {
    data: Vec<Value>,
    mails: Vec<i64>,
}

/// Phase three: the payments, the bills settled (or, with a processor: `card`, reserved), the
/// versions bumped, the replies kept for repeats, the refused requests' claims released, the
/// receipts' notifications recorded (once settled), and the commit, in one round trip.
async fn write(
    tx: &deadpool_postgres::Client,
    keys: &Keys,
    bills: &HashMap<i64, Held>,
    decided: &Decided,
    card: bool,
    now: DateTime<Utc>,
) -> Result<Written, HandlerError> {
    let (accepted, released, kept) = (&decided.accepted, &decided.released, &decided.kept);
    let (insert, settle_bills, bump, record, release, receipt) = tokio::try_join!(
        tx.prepare_cached(INSERT_PAYMENTS),
        tx.prepare_cached(if card { RESERVE } else { SETTLE }),
        tx.prepare_cached(BUMP),
        tx.prepare_cached(RECORD),
        tx.prepare_cached(RELEASE),
        tx.prepare_cached(RECEIPTS),
    )?;
    let mut data = Vec::with_capacity(accepted.len());
    for (_, receipt) in accepted {
        data.push(Request::reply(receipt)?);
    }
    let payment_ids: Vec<Uuid> = accepted.iter().map(|(_, r)| r.payment_id).collect();
    let payers: Vec<i64> = accepted.iter().map(|(i, _)| keys.users[*i]).collect();
    let paid_apartments: Vec<i64> = accepted.iter().map(|(_, r)| r.apartment_id.0).collect();
    let paid_requests: Vec<Uuid> = accepted.iter().map(|(i, _)| keys.request_ids[*i]).collect();
    let totals: Vec<Decimal> = accepted.iter().map(|(_, r)| r.total).collect();
    let currencies: Vec<&str> = accepted.iter().map(|(_, r)| r.currency.as_str()).collect();
    let times: Vec<DateTime<Utc>> = accepted
        .iter()
        .map(|(_, r)| r.paid_at.unwrap_or(now))
        .collect();
    let processor = if card { "stripe" } else { "ledger" };
    let bill_lists: Vec<String> = accepted
        .iter()
        .map(|(_, r)| {
            let ids: Vec<String> = r.bills_id.iter().map(|b| b.0.to_string()).collect();
            format!("{{{}}}", ids.join(","))
        })
        .collect();
    let (settled_ids, settled_by): (Vec<i64>, Vec<Uuid>) = accepted
        .iter()
        .flat_map(|(_, r)| r.bills_id.iter().map(|b| (b.0, r.payment_id)))
        .unzip();
    let mut bumped = paid_apartments.clone();
    bumped.sort_unstable();
    bumped.dedup();
    let insert_params: Params<9> = [
        &payment_ids,
        &paid_apartments,
        &payers,
        &paid_requests,
        &totals,
        &currencies,
        &times,
        &processor,
        &bill_lists,
    ];
    let settle_params: Params<2> = [&settled_ids, &settled_by];
    let release_params: Params<1> = [&released];
    // What each receipt lists of its bills, as the receipt's mail and inbox entry show them. A
    // card payment's receipt waits for the money (`processor::book`).
    let receipted = if card { &[][..] } else { accepted };
    let receipt_bills: Vec<Value> = receipted
        .iter()
        .map(|(_, r)| {
            let mut ids: Vec<i64> = r.bills_id.iter().map(|b| b.0).collect();
            ids.sort_unstable();
            Value::Array(
                ids.into_iter()
                    .map(|id| {
                        let held = &bills[&id];
                        serde_json::json!({
                            "id": id,
                            "provider": held.provider,
                            "utility": held.utility,
                            "amount": held.money.amount().to_string(),
                        })
                    })
                    .collect(),
            )
        })
        .collect();
    let n = receipted.len();
    let (r_payers, r_payments, r_apartments) = (&payers[..n], &payment_ids[..n], &paid_apartments[..n]);
    let (r_totals, r_currencies, r_times) = (&totals[..n], &currencies[..n], &times[..n]);
    let receipt_params: Params<7> = [
        &r_payers,
        &r_payments,
        &r_apartments,
        &r_totals,
        &r_currencies,
        &r_times,
        &receipt_bills,
    ];
    let (inserted, settled, _, _, _, receipts, _) = tokio::try_join!(
        tx.execute(&insert, &insert_params),
        tx.execute(&settle_bills, &settle_params),
        each(tx, &bump, bumped.iter().map(|a| [a as _]).collect()),
        each(
            tx,
            &record,
            paid_requests
                .iter()
                .zip(&data)
                .map(|(r, d)| [r as _, d as _])
                .chain(kept.iter().map(|(r, d)| [r as _, d as _]))
                .collect()
        ),
        tx.execute(&release, &release_params),
        tx.query(&receipt, &receipt_params),
        tx.batch_execute("COMMIT"),
    )?;
    // Every bill was locked by this transaction and found unpaid, so each was settled; a
    // count that says otherwise is a bug, told loudly (the commit went with the writes).
    let bills_settled = settled_ids.len();
    if inserted != accepted.len() as u64 || settled != bills_settled as u64 {
        tracing::error!(
            payments = accepted.len(),
            inserted,
            bills = bills_settled,
            settled,
            "a batch wrote other counts of payments or bills than it settled"
        );
    }
    let mails = receipts
        .iter()
        .filter_map(|row| row.get::<_, Option<i64>>(0))
        .collect();
    Ok(Written { data, mails })
}

/// Whether the payment's caller (whose token and role were checked before the batch) may pay
/// for its apartment: the session still open (unless checked already), the apartment's
/// existence and ownership.
fn admitted(
    payment: &Payment<'_>,
    epochs: &HashMap<i64, i32>,
    access_row: Option<&Row>,
) -> Result<Access, HandlerError> {
    let session = &payment.session;
    if !payment.epoch_checked {
        still_open(session, epochs.get(&session.user_id.0).copied())?;
    }
    access(payment.request.apartment, session.role, access_row.cloned())
}

/// The payment's total in the apartment's `currency`, if every bill it names is an unpaid bill of
/// its apartment; marks them paid in `bills` (what the batch holds locked) for the payments after
/// it. A bill in another currency than its apartment's is a fault of the books: refused, never
/// added.
fn price(
    request: &Request,
    currency: Currency,
    bills: &mut HashMap<i64, Held>,
    reserve: Option<Uuid>,
) -> Result<Money, HandlerError> {
    let apartment = request.apartment;
    let mut total = Money::zero(currency);
    let mut paid = Vec::new();
    for bill in &request.bills_id {
        let Some(held) = bills.get(&bill.0) else {
            return Err(HandlerError::rejected(
                ErrorCode::NotFound,
                format!("bill {bill} does not exist"),
            ));
        };
        if held.apartment != Some(apartment.0) {
            return Err(HandlerError::rejected(
                ErrorCode::NotFound,
                format!("bill {bill} is not a bill of apartment {apartment}"),
            ));
        }
        match held.status.as_str() {
            "paid" => paid.push(bill.to_string()),
            "void" => return Err(voided(*bill)),
            _ => {}
        }
        total = total.checked_add(held.money).map_err(HandlerError::internal)?;
    }
    if !paid.is_empty() {
        return Err(HandlerError::rejected(
            ErrorCode::AlreadyPaid,
            format!(
                "already paid: bill {}; nothing was charged",
                paid.join(", ")
            ),
        ));
    }
    for bill in &request.bills_id {
        if let Some(held) = bills.get_mut(&bill.0) {
            match reserve {
                Some(payment) => held.reserved_by = Some(payment),
                None => held.status = "paid".into(),
            }
        }
    }
    Ok(total)
}

/// The first bill of `request` that a card payment under way holds, and that payment.
fn reserved(request: &Request, bills: &HashMap<i64, Held>) -> Option<(BillId, Uuid)> {
    request
        .bills_id
        .iter()
        .find_map(|b| Some((*b, bills.get(&b.0)?.reserved_by?)))
}

/// The request's canonical form, hashed: the apartment and the set of bills. Not the card: a
/// client that sends its request again may have made the card again (a new token for the same
/// card), and the repeat gets the first one's payment, charged with the first one's card.
fn fingerprint(request: &Request) -> [u8; 32] {
    let mut sorted: Vec<i64> = request.bills_id.iter().map(|b| b.0).collect();
    sorted.sort_unstable();
    let canonical = format!("payments\n{}\n{sorted:?}", request.apartment);
    Sha256::digest(canonical.as_bytes()).into()
}
