//! The checks after a chaos run, with every fault healed and the backlog drained: money is neither
//! created nor lost, and every request is accounted for. Each check that fails is a
//! [`Violation`] naming the request ids (or payments, or bills) it is about.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use deadpool_postgres::Pool;
use rust_decimal::Decimal;
use serde::Serialize;
use uuid::Uuid;

use crate::journal::{Read, Sent};
use crate::mix::Op;

/// What the run did, as the checks count it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Verdict {
    pub sent: usize,
    /// Requests with at least one reply on their own queue.
    pub answered: usize,
    /// Requests never answered, found in the dead-letter queue.
    pub dead_lettered: usize,
    /// Requests neither answered nor dead-lettered.
    pub lost: usize,
    /// Requests the SQS emulator refused to take from the client (never on the queue).
    pub not_handed: usize,
    /// Requests answered more than once (a redelivery answered again); not an error.
    pub answered_again: usize,
    /// Bills that more than one payment took money for.
    pub paid_twice: usize,
    pub payments: usize,
    pub receipts: usize,
    /// Payments made elsewhere the operator recorded (receipts).
    pub external: usize,
    /// Refunds the operator asked for that succeeded, and those refused.
    pub refunds: usize,
    pub refunds_refused: usize,
    /// What the succeeded refunds gave back.
    pub refunded: Decimal,
    /// Payments made for requests whose client never heard back (lost or dead-lettered).
    pub paid_unanswered: usize,
    pub deadlocks: i64,
    pub violations: Vec<Violation>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Violation {
    pub what: String,
    /// The request ids, payments or bills concerned (at most a few dozen are kept).
    pub ids: Vec<String>,
}

impl Verdict {
    pub(crate) fn violated(
        &mut self,
        what: impl Into<String>,
        ids: impl IntoIterator<Item = impl ToString>,
    ) {
        let mut ids: Vec<String> = ids.into_iter().map(|i| i.to_string()).collect();
        let count = ids.len();
        ids.truncate(40);
        if count > ids.len() {
            ids.push(format!("... {} more", count - ids.len()));
        }
        self.violations.push(Violation {
            what: what.into(),
            ids,
        });
    }

    /// The closing line.
    pub fn line(&self) -> String {
        format!(
            "chaos: sent {} answered {} dead_lettered {} lost {} paid_twice {}",
            self.sent, self.answered, self.dead_lettered, self.lost, self.paid_twice
        )
    }
}

/// A payment as the books hold it.
struct Booked {
    id: Uuid,
    request: Uuid,
    apartment: i64,
    total: Decimal,
    /// The bills it was for, sorted.
    bills: Vec<i64>,
    /// Whether its money was taken (a card payment may have failed or been cancelled).
    settled: bool,
    /// The bills it settled, sorted.
    paid: Vec<i64>,
    /// What those bills add up to now.
    bills_sum: Decimal,
}

/// What the dead-letter queue held.
pub struct DeadLetters {
    pub requests: HashSet<Uuid>,
    /// Dead letters whose body named no request id.
    pub unreadable: usize,
}

/// Runs every check. `apartments` are the run's households, `deadlocks` how many the database
/// detected during the run, `died` the worker processes that exited by themselves.
pub async fn check(
    db: &Pool,
    sent: &HashMap<Uuid, Sent>,
    read: &[Read],
    dead: &DeadLetters,
    apartments: &[i64],
    deadlocks: i64,
    died: &[String],
) -> anyhow::Result<Verdict> {
    let mut verdict = Verdict {
        sent: sent.len(),
        deadlocks,
        ..Verdict::default()
    };

    // Replies, on the queue each request named.
    let mut answers: HashMap<Uuid, Vec<&Read>> = HashMap::new();
    let (mut elsewhere, mut unknown) = (Vec::new(), 0usize);
    for reply in read {
        match reply.request_id.and_then(|id| sent.get(&id)) {
            Some(request) if request.queue == reply.queue => {
                answers.entry(request.request_id).or_default().push(reply)
            }
            Some(request) => elsewhere.push(request.request_id),
            None => unknown += 1,
        }
    }
    if !elsewhere.is_empty() {
        verdict.violated(
            "replies went to a queue other than the request's",
            &elsewhere,
        );
    }
    if unknown > 0 {
        verdict.violated(
            format!("{unknown} replies answered no request the run sent"),
            Vec::<String>::new(),
        );
    }

    // Every request answered or dead-lettered.
    let mut lost = Vec::new();
    for (id, request) in sent {
        match answers.get(id) {
            Some(replies) => {
                verdict.answered += 1;
                if replies.len() > 1 {
                    verdict.answered_again += 1;
                }
            }
            None if dead.requests.contains(id) => verdict.dead_lettered += 1,
            None if !request.handed => verdict.not_handed += 1,
            None => lost.push(*id),
        }
    }
    verdict.lost = lost.len();
    if !lost.is_empty() {
        verdict.violated("requests neither answered nor dead-lettered", &lost);
    }
    if dead.unreadable > 0 {
        verdict.violated(
            format!("{} dead letters name no request", dead.unreadable),
            Vec::<String>::new(),
        );
    }

    // One request, one answer: a repeat of a payment gets the same receipt or the same refusal.
    let mut receipts: HashMap<Uuid, (Uuid, Decimal)> = HashMap::new();
    let mut refused: HashSet<Uuid> = HashSet::new();
    let mut differing: Vec<String> = Vec::new();
    for (id, replies) in &answers {
        if !matches!(sent[id].op, Op::Payments | Op::PaymentsExternal) {
            continue;
        }
        // Whether it paid, and which payment: the same every time. A refused request's claim is
        // given back, so a repeat is judged afresh and its refusal may say something else (a
        // bill reserved by a card payment then, paid by it now); it must still be a refusal.
        let outcomes: BTreeSet<(bool, Option<Uuid>)> =
            replies.iter().map(|r| (r.ok, r.payment_id)).collect();
        if outcomes.len() > 1 {
            let codes: BTreeSet<Option<&str>> = replies.iter().map(|r| r.code.as_deref()).collect();
            differing.push(format!("{id} {outcomes:?} {codes:?}"));
        }
        for reply in replies {
            match (reply.ok, reply.payment_id, reply.total) {
                (true, Some(payment), Some(total)) => {
                    receipts.insert(*id, (payment, total));
                }
                _ => {
                    refused.insert(*id);
                }
            }
        }
    }
    if !differing.is_empty() {
        verdict.violated(
            "payment requests answered differently when repeated (paid once, refused another time, or two payments)",
            &differing,
        );
    }
    verdict.receipts = receipts.len();
    verdict.external = receipts
        .keys()
        .filter(|id| sent[*id].op == Op::PaymentsExternal)
        .count();

    // The books.
    let client = db.get().await?;
    let rows = client
        .query(
            "SELECT p.id, p.request_id, p.apartment_id, p.total,
                    coalesce(array_agg(b.id ORDER BY b.id) FILTER (WHERE b.id IS NOT NULL), '{}'),
                    coalesce(sum(b.amount), 0),
                    (SELECT coalesce(array_agg(x ORDER BY x), '{}') FROM unnest(p.bills) AS x),
                    p.status = 'succeeded'
             FROM payments p LEFT JOIN bills b ON b.payment_id = p.id
             WHERE p.apartment_id = ANY($1)
             GROUP BY p.id",
            &[&apartments],
        )
        .await?;
    let booked: Vec<Booked> = rows
        .iter()
        .map(|r| Booked {
            id: r.get(0),
            request: r.get(1),
            apartment: r.get(2),
            total: r.get(3),
            paid: r.get(4),
            bills_sum: r.get(5),
            bills: r.get(6),
            settled: r.get(7),
        })
        .collect();
    verdict.payments = booked.len();
    let by_request: HashMap<Uuid, &Booked> = booked.iter().map(|b| (b.request, b)).collect();

    // Every receipt is one payment, with the same id, bills and total.
    let mismatched: Vec<Uuid> = receipts
        .iter()
        .filter(|(id, (payment, total))| {
            let request = &sent[*id];
            let mut bills = request.bills.clone();
            bills.sort_unstable();
            !by_request.get(*id).is_some_and(|b| {
                b.id == *payment
                    && b.total == *total
                    && b.apartment == request.apartment
                    && b.bills == bills
            })
        })
        .map(|(id, _)| *id)
        .collect();
    if !mismatched.is_empty() {
        verdict.violated(
            "receipts not in the books as one payment with the same id, bills and total",
            &mismatched,
        );
    }
    // A refusal changed nothing.
    let paid_though_refused: Vec<Uuid> = refused
        .iter()
        .filter(|id| !receipts.contains_key(id) && by_request.contains_key(id))
        .copied()
        .collect();
    if !paid_though_refused.is_empty() {
        verdict.violated(
            "payment requests refused in their reply but paid in the books",
            &paid_though_refused,
        );
    }
    // Nothing paid that nobody asked for.
    let unasked: Vec<Uuid> = booked
        .iter()
        .filter(|b| !sent.contains_key(&b.request))
        .map(|b| b.id)
        .collect();
    if !unasked.is_empty() {
        verdict.violated("payments of no request the run sent", &unasked);
    }
    verdict.paid_unanswered = booked
        .iter()
        .filter(|b| sent.contains_key(&b.request) && !answers.contains_key(&b.request))
        .count();

    // No bill paid twice: a payment whose bills another payment took has bills that no longer
    // add up to its total, and two receipts may name one bill.
    let mut twice: BTreeSet<i64> = BTreeSet::new();
    let short: Vec<&Booked> = booked
        .iter()
        .filter(|b| b.settled && (b.bills_sum != b.total || b.paid != b.bills))
        .collect();
    let mut claimed: BTreeMap<i64, BTreeSet<Uuid>> = BTreeMap::new();
    for (id, (payment, _)) in &receipts {
        // A card payment that failed or was cancelled took no money: its bills are free again.
        if !by_request.get(id).is_some_and(|b| b.settled) {
            continue;
        }
        for bill in &sent[id].bills {
            claimed.entry(*bill).or_default().insert(*payment);
        }
    }
    twice.extend(claimed.iter().filter(|(_, p)| p.len() > 1).map(|(b, _)| *b));
    for payment in &short {
        for (bill, payments) in &claimed {
            if payments.contains(&payment.id) && !payment.paid.contains(bill) {
                twice.insert(*bill);
            }
        }
    }
    verdict.paid_twice = twice.len();
    if !short.is_empty() {
        verdict.violated(
            "payments whose bills do not add up to their total (money taken for a bill paid by another)",
            short.iter().map(|b| b.id),
        );
    }
    if !twice.is_empty() {
        verdict.violated("bills paid twice", &twice);
    }

    // The sum of payments equals the sum of paid bills.
    let sums = client
        .query_one(
            "SELECT (SELECT coalesce(sum(total), 0) FROM payments WHERE apartment_id = ANY($1) AND status = 'succeeded'),
                    (SELECT coalesce(sum(amount), 0) FROM bills WHERE apartment_id = ANY($1) AND status = 'paid')",
            &[&apartments],
        )
        .await?;
    let (paid, settled): (Decimal, Decimal) = (sums.get(0), sums.get(1));
    if paid != settled {
        verdict.violated(
            format!("payments add up to {paid} but the paid bills to {settled}"),
            Vec::<String>::new(),
        );
    }

    // The audit trail: one entry per payment made and one per bill settled, no more.
    let payment_ids: Vec<Uuid> = booked.iter().map(|b| b.id).collect();
    let off: Vec<String> = client
        .query(
            "SELECT p.id::text FROM unnest($1::uuid[]) AS p(id)
             WHERE (SELECT count(*) FROM audit_events a
                    WHERE a.entity = 'payment' AND a.entity_id = p.id::text AND a.action = 'created') <> 1",
            &[&payment_ids],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if !off.is_empty() {
        verdict.violated("payments without exactly one audit entry", &off);
    }
    let off: Vec<String> = client
        .query(
            "SELECT b.id::text FROM bills b
             WHERE b.apartment_id = ANY($1)
               AND (SELECT count(*) FROM audit_events a
                    WHERE a.entity = 'bill' AND a.entity_id = b.id::text AND a.action = 'status_changed')
                   <> CASE b.status WHEN 'paid' THEN 1 ELSE 0 END",
            &[&apartments],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if !off.is_empty() {
        verdict.violated(
            "bills whose audit trail does not show exactly their one settlement",
            &off,
        );
    }

    refunds(&client, sent, &answers, apartments, &mut verdict).await?;

    // Bills are locked in one order, so payments never deadlock.
    if deadlocks > 0 {
        verdict.violated(
            format!("the database broke {deadlocks} deadlocks (payments lock bills in one order, logins their counters)"),
            Vec::<String>::new(),
        );
    }
    if !died.is_empty() {
        verdict.violated("worker processes exited by themselves", died);
    }
    Ok(verdict)
}

/// The operator's refunds: one request, one refund (the same one when answered again); a refused
/// request refunded nothing; every refund settled by the end, none pending; each payment gave
/// back exactly its succeeded refunds, never all of it (the run's refunds stay partial), and each
/// refund is in the audit trail once.
async fn refunds(
    client: &deadpool_postgres::Object,
    sent: &HashMap<Uuid, Sent>,
    answers: &HashMap<Uuid, Vec<&Read>>,
    apartments: &[i64],
    verdict: &mut Verdict,
) -> anyhow::Result<()> {
    let mut granted: HashMap<Uuid, Uuid> = HashMap::new();
    let mut refused: HashSet<Uuid> = HashSet::new();
    let mut differing = Vec::new();
    for (id, replies) in answers {
        if sent[id].op != Op::Refund {
            continue;
        }
        let outcomes: BTreeSet<(bool, Option<Uuid>)> =
            replies.iter().map(|r| (r.ok, r.refund_id)).collect();
        if outcomes.len() > 1 {
            differing.push(format!("{id} {outcomes:?}"));
        }
        for reply in replies {
            match (reply.ok, reply.refund_id) {
                (true, Some(refund)) => {
                    granted.insert(*id, refund);
                }
                _ => {
                    refused.insert(*id);
                }
            }
        }
    }
    if !differing.is_empty() {
        verdict.violated(
            "refund requests answered differently when repeated",
            &differing,
        );
    }
    let rows = client
        .query(
            "SELECT r.request_id, r.id, r.status, r.amount FROM refunds r JOIN payments p ON p.id = r.payment_id
             WHERE p.apartment_id = ANY($1)",
            &[&apartments],
        )
        .await?;
    let mut by_request: HashMap<Uuid, Vec<(Uuid, String, Decimal)>> = HashMap::new();
    for row in &rows {
        by_request
            .entry(row.get(0))
            .or_default()
            .push((row.get(1), row.get(2), row.get(3)));
    }
    let unasked: Vec<Uuid> = by_request
        .keys()
        .filter(|r| sent.get(*r).is_none_or(|s| s.op != Op::Refund))
        .copied()
        .collect();
    if !unasked.is_empty() {
        verdict.violated("refunds of no refund request the run sent", &unasked);
    }
    let twice: Vec<Uuid> = by_request
        .iter()
        .filter(|(_, refunds)| refunds.len() > 1)
        .map(|(r, _)| *r)
        .collect();
    if !twice.is_empty() {
        verdict.violated("refund requests with more than one refund", &twice);
    }
    let mismatched: Vec<Uuid> = granted
        .iter()
        .filter(|(request, refund)| {
            !by_request
                .get(*request)
                .is_some_and(|r| r.len() == 1 && r[0].0 == **refund && r[0].1 == "succeeded")
        })
        .map(|(request, _)| *request)
        .collect();
    if !mismatched.is_empty() {
        verdict.violated(
            "refunds granted in their reply but not one succeeded refund in the books",
            &mismatched,
        );
    }
    let refunded_though_refused: Vec<Uuid> = refused
        .iter()
        .filter(|r| !granted.contains_key(*r) && by_request.contains_key(*r))
        .copied()
        .collect();
    if !refunded_though_refused.is_empty() {
        verdict.violated(
            "refund requests refused in their reply but refunded in the books",
            &refunded_though_refused,
        );
    }
    let pending: Vec<Uuid> = rows
        .iter()
        .filter(|r| r.get::<_, &str>(2) == "pending")
        .map(|r| r.get(1))
        .collect();
    if !pending.is_empty() {
        verdict.violated("refunds still pending after the jobs", &pending);
    }
    verdict.refunds = rows
        .iter()
        .filter(|r| r.get::<_, &str>(2) == "succeeded")
        .count();
    verdict.refunds_refused = refused.iter().filter(|r| !granted.contains_key(*r)).count();
    verdict.refunded = rows
        .iter()
        .filter(|r| r.get::<_, &str>(2) == "succeeded")
        .map(|r| r.get::<_, Decimal>(3))
        .sum();
    let off: Vec<String> = client
        .query(
            "SELECT p.id::text FROM payments p
             WHERE p.apartment_id = ANY($1)
               AND (p.refunded <> (SELECT coalesce(sum(amount), 0) FROM refunds r
                                   WHERE r.payment_id = p.id AND r.status = 'succeeded')
                    OR p.refunded >= p.total)",
            &[&apartments],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if !off.is_empty() {
        verdict.violated(
            "payments whose refunded total is not their succeeded refunds, or all of it",
            &off,
        );
    }
    let off: Vec<String> = client
        .query(
            "SELECT r.id::text FROM refunds r JOIN payments p ON p.id = r.payment_id
             WHERE p.apartment_id = ANY($1)
               AND (SELECT count(*) FROM audit_events a
                    WHERE a.entity = 'refund' AND a.entity_id = r.id::text AND a.action = 'created') <> 1",
            &[&apartments],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if !off.is_empty() {
        verdict.violated("refunds without exactly one audit entry", &off);
    }
    Ok(())
}
