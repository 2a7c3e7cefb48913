//! Who a simulated client acts for, and how households behave: clients get their households,
//! alone or (with contention) two by two, and a household pays its oldest bills first, now and
//! then from both devices at once, resending a payment it got no answer to.

use std::sync::Arc;
use std::time::Duration;

use rand::RngExt;
use serde_json::json;
use uuid::Uuid;

use super::{Client, Run, User};
use crate::mix::Op;
use crate::transport::Outgoing;

/// Gives each client its households: with more users than clients, client `i` takes users `i`,
/// `i + clients`, ...; with fewer, clients share a user and split its bills so that no two pay
/// the same bill.
pub(super) fn assign(users: &[User], clients: usize) -> Vec<Vec<User>> {
    if users.len() >= clients {
        return (0..clients)
            .map(|i| users.iter().skip(i).step_by(clients).cloned().collect())
            .collect();
    }
    let n = users.len();
    (0..clients)
        .map(|i| {
            let mut user = users[i % n].clone();
            let sharers = clients / n + usize::from(i % n < clients % n);
            user.unpaid = user
                .unpaid
                .iter()
                .skip(i / n)
                .step_by(sharers)
                .copied()
                .collect();
            vec![user]
        })
        .collect()
}

/// Gives clients households two by two: the clients of a pair act for the same households, in the
/// same order, each with the whole of every household's unpaid bills.
pub(super) fn share(users: &[User], clients: usize) -> Vec<Vec<User>> {
    let pairs = pairs(users.len(), clients);
    (0..clients)
        .map(|i| {
            users
                .iter()
                .skip(i % pairs)
                .step_by(pairs)
                .cloned()
                .collect()
        })
        .collect()
}

/// How many groups [`share`] makes: client `i` shares with client `i + pairs` (or `i - pairs`).
pub(super) fn pairs(users: usize, clients: usize) -> usize {
    clients.div_ceil(2).min(users).max(1)
}

/// With contention, the share of payments whose household's other device pays the same bills
/// (in another order) at the same moment.
pub(super) const TWINS: f64 = 0.2;

/// One to three of the four oldest unpaid bills (the lowest ids), taken from `unpaid`, in a
/// random order: what a household pays first, so that two devices of it pick the same bills.
pub(super) fn oldest_in_any_order(unpaid: &mut Vec<i64>) -> Vec<i64> {
    use rand::seq::SliceRandom;
    unpaid.sort_unstable();
    let mut rng = rand::rng();
    let oldest = unpaid.len().min(4);
    let take = rng.random_range(1..=3).min(oldest);
    let mut picked: Vec<usize> = rand::seq::index::sample(&mut rng, oldest, take).into_vec();
    picked.sort_unstable_by(|a, b| b.cmp(a));
    let mut bills: Vec<i64> = picked.into_iter().map(|i| unpaid.remove(i)).collect();
    bills.shuffle(&mut rng);
    bills
}

/// With contention, a payment unanswered after this long is sent again with the same request id:
/// what the contract tells a client that lost its reply to do.
pub(super) const RESEND_AFTER: Duration = Duration::from_secs(3);

/// Sends again, once, the client's payments unanswered for [`RESEND_AFTER`], under the same
/// request id, while the client still acts for their household (its token is for that user).
pub(super) async fn resend_unanswered_payments(run: &Arc<Run>, client: &Arc<Client>) {
    let (current, token) = {
        let session = client.session.lock().await;
        (session.current, session.token.clone())
    };
    let resends: Vec<(Uuid, i64, Vec<i64>)> = {
        let mut pending = client.pending.lock().await;
        pending
            .iter_mut()
            .filter(|(_, p)| {
                p.op == Op::Payments
                    && !p.retried
                    && p.user == current
                    && p.sent.elapsed() >= RESEND_AFTER
            })
            .map(|(id, p)| {
                p.retried = true;
                (*id, p.apartment, p.bills.clone())
            })
            .collect()
    };
    for (request_id, apartment, bills) in resends {
        let body =
            json!({ "queue_name": client.queue, "request_id": request_id, "bills_id": bills });
        let run = run.clone();
        let token = token.clone();
        tokio::spawn(async move {
            let _ = run
                .transport
                .send(Outgoing {
                    route: Op::Payments.as_str(),
                    payment: None,
                    apartment: Some(apartment),
                    token: token.as_deref(),
                    body: body.to_string(),
                })
                .await;
        });
    }
}
