//! A provider's monthly run: 10,000 bills in 100 requests of 100, through the engine (parse,
//! authorise, the transaction, the reply; no queue, whose emulator here is slower than the
//! database), one request at a time and then four at once; then the overdue job over them.
//!
//!     scripts/local-stack up --services-only && eval "$(scripts/local-stack env test)"
//!     cargo bench -p qbill-tests --bench ingest -- [requests per run, default 100]
//!
//! A benchmark, not a test: it asserts only that every request was answered `ok` and every bill
//! stored.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use qbill_core::engine::Outcome;
use qbill_core::envelope::{AUTHORIZATION_MARKER, InboundMessage, attribute};
use qbill_core::token::Holder;
use qbill_core::types::{ProviderId, QueueName, Role, UserId};
use qbill_tests::{TestDb, count, engine, tokens};
use serde_json::json;
use uuid::Uuid;

const BILLS_PER_REQUEST: usize = 100;

#[tokio::main]
async fn main() {
    let requests: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(100);
    println!(
        "{requests} requests of {BILLS_PER_REQUEST} bills ({} bills) per run",
        requests * BILLS_PER_REQUEST
    );
    println!(
        "{:>11} {:>9} {:>9} {:>11} {:>11}",
        "concurrency", "seconds", "bills/s", "p50 req ms", "max req ms"
    );
    for concurrency in [1usize, 4] {
        let db = TestDb::fresh().await;
        let engine = Arc::new(engine(&db, None));
        let queue = QueueName::parse(&Uuid::new_v4().to_string()).unwrap();
        let holder = Holder {
            user_id: UserId(4),
            username: "northwind".into(),
            role: Role::Provider,
            provider: Some(ProviderId(1)),
            epoch: 0,
        };
        let token = tokens().issue(&holder, queue).unwrap().0;
        let messages: Vec<InboundMessage> = (0..requests)
            .map(|r| ingest(r, queue, &token, concurrency))
            .collect();
        let started = Instant::now();
        let mut latencies = Vec::with_capacity(requests);
        for chunk in messages.chunks(concurrency) {
            let handled = chunk.iter().map(|m| {
                let engine = engine.clone();
                async move {
                    let asked = Instant::now();
                    let outcome = engine.handle(m).await.expect("not transient");
                    let Outcome::Reply { reply, .. } = outcome else {
                        panic!("dropped")
                    };
                    assert!(reply.error.is_none(), "{:?}", reply.error);
                    asked.elapsed()
                }
            });
            latencies.extend(futures::future::join_all(handled).await);
        }
        let elapsed = started.elapsed();
        let stored = count(
            &db.pool,
            "SELECT count(*) FROM bills WHERE external_id LIKE 'bench-%'",
            &[],
        )
        .await as usize;
        assert_eq!(stored, requests * BILLS_PER_REQUEST);
        latencies.sort_unstable();
        println!(
            "{concurrency:>11} {:>9.2} {:>9.0} {:>11.1} {:>11.1}",
            elapsed.as_secs_f64(),
            stored as f64 / elapsed.as_secs_f64(),
            ms(latencies[latencies.len() / 2]),
            ms(*latencies.last().unwrap()),
        );
        if concurrency == 4 {
            let started = Instant::now();
            let report = qbill_core::jobs::overdue::run(&db.pool).await.unwrap();
            println!(
                "overdue job: {} bills marked, {} fees charged in {:.2} s",
                report.marked,
                report.fees,
                started.elapsed().as_secs_f64()
            );
        }
    }
}

/// Request `r` of the run: 100 bills of 100 accounts (a fifth of them new), due long ago, so the
/// overdue job has them all to mark.
fn ingest(r: usize, queue: QueueName, token: &str, run: usize) -> InboundMessage {
    let bills: Vec<serde_json::Value> = (0..BILLS_PER_REQUEST)
        .map(|i| {
            json!({
                "external_id": format!("bench-{run}-{r}-{i}"),
                "account_number": format!("ACC-{}", (r * BILLS_PER_REQUEST + i) % 2000),
                "address": format!("{i} Bench Street"),
                "utility": if i % 2 == 0 { "gas" } else { "electricity" },
                "period_start": "2026-01-01", "period_end": "2026-01-31", "due_date": "2026-02-20",
                "amount": format!("{}.{:02}", 10 + i, r % 100), "currency": "EUR",
                "lines": [
                    { "description": "Energy", "quantity": "100", "unit_price": "0.1", "amount": "10.00" },
                    { "description": "Standing charge", "quantity": "1", "unit_price": "1",
                      "amount": format!("{i}.{:02}", r % 100) },
                ],
            })
        })
        .collect();
    InboundMessage {
        message_id: Uuid::new_v4().to_string(),
        body:
            json!({ "queue_name": queue.to_string(), "request_id": Uuid::new_v4(), "bills": bills })
                .to_string(),
        attributes: HashMap::from([
            (attribute::ROUTE.into(), "bills_ingest".into()),
            (attribute::PROVIDER_ID.into(), "1".into()),
            (
                attribute::AUTHORIZATION.into(),
                format!("{AUTHORIZATION_MARKER}Bearer {token}"),
            ),
        ]),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
