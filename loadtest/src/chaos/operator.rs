//! The operator of a chaos run: while the households pay, it refunds parts of settled card
//! payments (sometimes two refunds of one payment at once, which together would give back more
//! than is left: one must be refused) and records payments made elsewhere for open bills (which
//! race the households paying the same bills), through the same queue and faults. Its requests
//! are journaled with the households', so that the checks account for them.
//!
//! Refunds stay partial: each asks at most 60% of what is left of a payment with at least 1.00
//! left, so no payment is ever refunded whole and every bill a payment settled stays paid (the
//! whole refund, which makes bills due again, is the refund tests' own). Without a processor (the
//! ledger mode) it records payments made elsewhere only.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use qbill_core::types::QueueName;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use crate::journal::{Journal, Read, Sent};
use crate::mix::Op;
use crate::transport::{Outgoing, Transport};

/// What the operator asked.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Operated {
    pub refunds: u64,
    /// Of those, sent two at once for one payment.
    pub raced: u64,
    pub external: u64,
}

/// The operator's reply queue.
pub fn queue() -> QueueName {
    QueueName::parse(&Uuid::new_v4().to_string()).expect("a UUID names a queue")
}

/// The run's operator: how it reaches the engine and the books, and what it may ask.
pub struct Operator {
    pub transport: Arc<Transport>,
    pub journal: Arc<Journal>,
    pub db: Pool,
    /// The run's households.
    pub apartments: Vec<i64>,
    /// Its reply queue.
    pub queue: QueueName,
    /// Its username and password.
    pub login: (String, String),
    pub seed: u64,
    /// Whether there is a processor to refund through.
    pub refunds: bool,
}

/// Logs in as the run's operator and asks until `stop`; its replies are read into the journal as
/// they come (and, after the run, to the end of its queue).
pub async fn run(operator: Operator, stop: Arc<AtomicBool>) -> anyhow::Result<Operated> {
    let Operator {
        transport,
        journal,
        db,
        apartments,
        queue,
        login,
        seed,
        refunds,
    } = operator;
    let mut done = Operated::default();
    transport.prepare(queue).await?;
    let Some(token) = log_in(&transport, &journal, queue, &login, &stop).await? else {
        return Ok(done);
    };
    let mut rng = StdRng::seed_from_u64(seed ^ 0x6f70_6572_6174_6f72);
    let mut last_poll = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(rng.random_range(400..1200))).await;
        if last_poll.elapsed() > Duration::from_secs(2) {
            for reply in transport.poll(queue, 0).await.unwrap_or_default() {
                journal.read(Read::of(queue, &reply));
            }
            last_poll = Instant::now();
        }
        let client = db.get().await?;
        if refunds && rng.random_bool(0.6) {
            let row = client
                .query_opt(
                    "SELECT id, apartment_id, total - refunded
                         - (SELECT coalesce(sum(amount), 0) FROM refunds r WHERE r.payment_id = p.id AND r.status = 'pending')
                     FROM payments p
                     WHERE apartment_id = ANY($1) AND status = 'succeeded' AND processor = 'stripe'
                       AND total - refunded >= 1.00
                     ORDER BY random() LIMIT 1",
                    &[&apartments],
                )
                .await?;
            let Some(row) = row else { continue };
            let (payment, apartment, left): (Uuid, i64, Decimal) =
                (row.get(0), row.get(1), row.get(2));
            if left < Decimal::ONE {
                continue;
            }
            // At most 60% of what is left, to the cent below: never the whole.
            let most = (left * Decimal::new(6, 1)).trunc_with_scale(2);
            let racing = rng.random_bool(0.3);
            let amounts: Vec<Decimal> = if racing {
                vec![most, most]
            } else {
                let cents = rng.random_range(
                    1..=(most * Decimal::from(100))
                        .trunc()
                        .try_into()
                        .unwrap_or(1i64),
                );
                vec![Decimal::new(cents, 2)]
            };
            let sends = amounts.iter().map(|amount| {
                let body = json!({ "reason": "chaos", "amount": format!("{amount:.2}") });
                send(
                    &transport,
                    &journal,
                    queue,
                    &token,
                    Op::Refund,
                    apartment,
                    Some(payment),
                    Vec::new(),
                    body,
                )
            });
            futures::future::join_all(sends).await;
            done.refunds += amounts.len() as u64;
            done.raced += u64::from(racing);
        } else {
            let row = client
                .query_opt(
                    "SELECT id, apartment_id FROM bills
                     WHERE apartment_id = ANY($1) AND status IN ('open', 'overdue') AND reserved_by IS NULL
                     ORDER BY random() LIMIT 1",
                    &[&apartments],
                )
                .await?;
            let Some(row) = row else { continue };
            let (bill, apartment): (i64, i64) = (row.get(0), row.get(1));
            let body = json!({ "bills_id": [bill], "method": "cash", "reference": format!("chaos desk {bill}"),
                               "received_on": chrono::Utc::now().date_naive().to_string() });
            send(
                &transport,
                &journal,
                queue,
                &token,
                Op::PaymentsExternal,
                apartment,
                None,
                vec![bill],
                body,
            )
            .await;
            done.external += 1;
        }
    }
    Ok(done)
}

/// Logs in as the run's operator, asking again until a token comes (the faults may lose a login).
async fn log_in(
    transport: &Transport,
    journal: &Journal,
    queue: QueueName,
    (username, password): &(String, String),
    stop: &AtomicBool,
) -> anyhow::Result<Option<String>> {
    while !stop.load(Ordering::Relaxed) {
        let request_id = Uuid::new_v4();
        let body = json!({ "queue_name": queue, "request_id": request_id, "username": username, "password": password });
        let handed = transport
            .send(Outgoing {
                route: Op::Auth.as_str(),
                apartment: None,
                payment: None,
                token: None,
                body: body.to_string(),
            })
            .await;
        journal.sent(Sent {
            request_id,
            queue,
            op: Op::Auth,
            apartment: 0,
            bills: Vec::new(),
            handed: handed.is_ok(),
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            for reply in transport.poll(queue, 2).await.unwrap_or_default() {
                journal.read(Read::of(queue, &reply));
                if reply.request_id == Some(request_id)
                    && let Some(token) = reply.data.and_then(|d| d.token)
                {
                    return Ok(Some(token));
                }
            }
        }
    }
    Ok(None)
}

#[allow(clippy::too_many_arguments)]
async fn send(
    transport: &Transport,
    journal: &Journal,
    queue: QueueName,
    token: &str,
    op: Op,
    apartment: i64,
    payment: Option<Uuid>,
    bills: Vec<i64>,
    fields: serde_json::Value,
) {
    let request_id = Uuid::new_v4();
    let mut body = json!({ "queue_name": queue, "request_id": request_id });
    body.as_object_mut()
        .expect("an object")
        .extend(fields.as_object().expect("an object").clone());
    let handed = transport
        .send(Outgoing {
            route: op.as_str(),
            apartment: (op == Op::PaymentsExternal).then_some(apartment),
            payment,
            token: Some(token),
            body: body.to_string(),
        })
        .await;
    journal.sent(Sent {
        request_id,
        queue,
        op,
        apartment,
        bills,
        handed: handed.is_ok(),
    });
}
