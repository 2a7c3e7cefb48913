//! The database benchmark's subject: the engine's payment path with the queue left out. Tasks
//! hand gateway-shaped payment messages straight to `Engine::handle_batch`, up to ten at once as
//! a poller hands it a receive (parse, authorise, the transaction, cache invalidation, each
//! reply's JSON), as fast as they can.

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

/// One bill per payment, `batch` payments to a batch, `clients` batches at a time, for `seconds`
/// after a one-second warm-up. `users` come from the seed generator; each task pays the bills of
/// its own users. The latency is a batch's.
pub async fn run(
    engine: Arc<Engine>,
    users: Vec<User>,
    clients: usize,
    batch: usize,
    seconds: f64,
) -> anyhow::Result<Figures> {
    let queue = QueueName::parse(&Uuid::new_v4().to_string())?;
    // Each task's users, their bills taken in turn, so that a batch holds the payments of
    // different households as a receive would.
    let mut users_of: Vec<Vec<Vec<InboundMessageSource>>> =
        (0..clients).map(|_| Vec::new()).collect();
    for (i, user) in users.into_iter().enumerate() {
        let holder = Holder::household(UserId(user.user_id), &user.username);
        let (token, _) = engine.services.tokens.issue(&holder, queue)?;
        users_of[i % clients].push(
            user.unpaid
                .into_iter()
                .rev()
                .map(|bill| InboundMessageSource {
                    apartment: user.apartment,
                    token: token.clone(),
                    bill,
                })
                .collect(),
        );
    }
    let shares: Vec<Vec<InboundMessageSource>> = users_of
        .into_iter()
        .map(|mut users| {
            let mut share = Vec::new();
            while users.iter().any(|bills| !bills.is_empty()) {
                share.extend(users.iter_mut().filter_map(Vec::pop));
            }
            share
        })
        .collect();
    let warmup = Duration::from_secs(1);
    let started = Instant::now();
    let deadline = started + warmup + Duration::from_secs_f64(seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for share in shares {
        let engine = engine.clone();
        tasks.spawn(async move {
            let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            let mut count = 0u64;
            for sources in share.chunks(batch) {
                let now = Instant::now();
                if now >= deadline {
                    return anyhow::Ok((count, latency));
                }
                let messages: Vec<InboundMessage> =
                    sources.iter().map(|s| s.message(queue)).collect();
                for outcome in engine.handle_batch(&messages).await {
                    let Outcome::Reply { reply, .. } = outcome
                        .map_err(|e| anyhow::anyhow!("a payment failed transiently: {:#}", e.0))?
                    else {
                        anyhow::bail!("a payment was dropped");
                    };
                    let json = reply.to_json();
                    anyhow::ensure!(reply.status == Status::Ok, "a payment was refused: {json}");
                }
                if now >= started + warmup {
                    count += sources.len() as u64;
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
            payment: None,
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
