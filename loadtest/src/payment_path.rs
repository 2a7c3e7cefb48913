//! The database benchmark's subject: the engine's payment path with the queue left out. Tasks
//! hand gateway-shaped payment messages straight to `Engine::handle` (parse, authorise, the
//! transaction, cache invalidation) and build each reply's JSON, as fast as they can.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use qbill_core::Engine;
use qbill_core::engine::Outcome;
use qbill_core::envelope::InboundMessage;
use qbill_core::reply::Status;
use qbill_core::token::Holder;
use qbill_core::types::{QueueName, UserId};
use uuid::Uuid;

use crate::load::User;
use crate::transport::Outgoing;

pub struct Figures {
    pub payments: u64,
    pub seconds: f64,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// One bill per payment, `clients` at a time, for `seconds` after a one-second warm-up.
/// `users` come from the seed generator; each task pays the bills of its own users.
pub async fn run(
    engine: Arc<Engine>,
    users: Vec<User>,
    clients: usize,
    seconds: f64,
) -> anyhow::Result<Figures> {
    let queue = QueueName::parse(&Uuid::new_v4().to_string())?;
    let mut shares: Vec<Vec<InboundMessageSource>> = (0..clients).map(|_| Vec::new()).collect();
    for (i, user) in users.into_iter().enumerate() {
        let holder = Holder::household(UserId(user.user_id), &user.username);
        let (token, _) = engine.services.tokens.issue(&holder, queue)?;
        for bill in user.unpaid {
            shares[i % clients].push(InboundMessageSource {
                apartment: user.apartment,
                token: token.clone(),
                bill,
            });
        }
    }
    let warmup = Duration::from_secs(1);
    let started = Instant::now();
    let deadline = started + warmup + Duration::from_secs_f64(seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for share in shares {
        let engine = engine.clone();
        tasks.spawn(async move {
            let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            let mut count = 0u64;
            for source in share {
                let now = Instant::now();
                if now >= deadline {
                    return anyhow::Ok((count, latency));
                }
                let message = source.message(queue);
                let Outcome::Reply { reply, .. } = engine
                    .handle(&message)
                    .await
                    .map_err(|e| anyhow::anyhow!("a payment failed transiently: {:#}", e.0))?
                else {
                    anyhow::bail!("a payment was dropped");
                };
                let json = reply.to_json();
                anyhow::ensure!(reply.status == Status::Ok, "a payment was refused: {json}");
                if now >= started + warmup {
                    count += 1;
                    latency.saturating_record(now.elapsed().as_micros() as u64);
                }
            }
            anyhow::bail!("ran out of bills before the time was up; seed more")
        });
    }
    let mut payments = 0;
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    while let Some(joined) = tasks.join_next().await {
        let (count, histogram) = joined??;
        payments += count;
        latency.add(&histogram)?;
    }
    let seconds = (Instant::now().min(deadline) - (started + warmup)).as_secs_f64();
    Ok(Figures {
        payments,
        seconds,
        per_second: payments as f64 / seconds,
        p50_ms: latency.value_at_quantile(0.5) as f64 / 1000.0,
        p99_ms: latency.value_at_quantile(0.99) as f64 / 1000.0,
    })
}

struct InboundMessageSource {
    apartment: i64,
    token: String,
    bill: i64,
}

impl InboundMessageSource {
    /// The message as the gateway would put it on the queue.
    fn message(&self, queue: QueueName) -> InboundMessage {
        let request = Outgoing {
            route: "payments",
            apartment: Some(self.apartment),
            token: Some(&self.token),
            body: format!(
                r#"{{"queue_name":"{queue}","request_id":"{}","bills_id":[{}]}}"#,
                Uuid::new_v4(),
                self.bill
            ),
        };
        InboundMessage {
            message_id: Uuid::new_v4().to_string(),
            attributes: request
                .attributes()
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value))
                .collect(),
            body: request.body,
        }
    }
}
