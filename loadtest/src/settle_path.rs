//! The card path's benchmark, beside the ledger's ([`crate::payment_path`]): what a payment by
//! card costs the engine, the processor's own latency aside.
//!
//! A card payment is two pieces of work for the engine. The `payments` request records the
//! payment `pending`, reserves its bills, and after the commit creates the intent and applies the
//! processor's answer; later the processor's `payment_intent.succeeded` webhook settles it (the
//! bills paid, the receipt, the cache). Here the processor is a stand-in on this machine that
//! answers at once (so what is measured is the engine's work and a loopback round trip, not a
//! processor's latency), and the webhooks are signed with the engine's own secret and handed to
//! it in batches of up to ten, as a poller hands it a receive from the shared queue.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{Form, State};
use axum::routing::post;
use axum::{Json, Router};
use hdrhistogram::Histogram;
use qbill_core::Engine;
use qbill_core::config::{EngineConfig, PaymentsConfig, StripeConfig, StripeKeys};
use qbill_core::engine::Outcome;
use qbill_core::envelope::{InboundMessage, attribute};
use qbill_core::processor::{signature, webhook};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::load::User;
use crate::payment_path;

/// The stand-in processor's webhook signing secret.
const WEBHOOK_SECRET: &str = "whsec_settle_path_bench";

pub struct Figures {
    /// The `payments` requests, by card (each creating its intent at the stand-in).
    pub card: payment_path::Figures,
    /// The webhooks that settled them.
    pub settle: payment_path::Figures,
}

/// Intents the stand-in made: what their `succeeded` events carry.
type Made = Arc<Mutex<Vec<Value>>>;

/// Card payments for `seconds` (as [`payment_path::run`] pays, through the stand-in), then
/// every one of them settled by its webhook, `batch` webhooks to a batch, `clients` batches at
/// a time. Checks that each payment ends `succeeded`.
pub async fn run(
    mut config: EngineConfig,
    db: &deadpool_postgres::Pool,
    users: Vec<User>,
    clients: usize,
    batch: usize,
    seconds: f64,
) -> anyhow::Result<Figures> {
    let made = Made::default();
    let processor = stand_in(made.clone()).await?;
    config.payments = PaymentsConfig::Stripe(StripeConfig {
        api_base: format!("http://{processor}"),
        keys: StripeKeys::Given {
            secret_key: "sk_test_settle_path_bench".to_owned().into(),
            webhook_secrets: vec![WEBHOOK_SECRET.to_owned().into()],
        },
    });
    let engine = Arc::new(Engine::from_config(&config).await?);
    let card = payment_path::run(engine.clone(), users, clients, batch, seconds).await?;

    let intents = std::mem::take(&mut *made.lock().expect("the stand-in's intents"));
    let ids: Vec<String> = intents
        .iter()
        .map(|i| i["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    let webhooks: Vec<InboundMessage> = intents.into_iter().map(succeeded).collect();
    // What the card payments wrote is flushed first (where the harness's login may, as a
    // superuser): the settle path is measured from the state the ledger's starts from.
    if let Err(e) = db.get().await?.batch_execute("CHECKPOINT").await {
        eprintln!("no checkpoint before the settle path ({e}); measuring anyway");
    }
    let settle = settle(engine, webhooks, clients, batch).await?;

    let settled: i64 = db
        .get()
        .await?
        .query_one(
            "SELECT count(*) FROM payments WHERE intent_id = ANY($1) AND status = 'succeeded'",
            &[&ids],
        )
        .await?
        .get(0);
    anyhow::ensure!(
        settled as usize == ids.len(),
        "{} card payments were made but {settled} of them settled",
        ids.len()
    );
    Ok(Figures { card, settle })
}

/// Hands the webhooks to the engine, `batch` at a time from `clients` tasks; every one must be
/// applied (dropped without a reply, not left for a retry).
async fn settle(
    engine: Arc<Engine>,
    webhooks: Vec<InboundMessage>,
    clients: usize,
    batch: usize,
) -> anyhow::Result<payment_path::Figures> {
    let total = webhooks.len();
    let mut shares: Vec<Vec<InboundMessage>> = (0..clients).map(|_| Vec::new()).collect();
    for (i, webhook) in webhooks.into_iter().enumerate() {
        shares[i % clients].push(webhook);
    }
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for share in shares {
        let engine = engine.clone();
        tasks.spawn(async move {
            let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            for messages in share.chunks(batch) {
                let now = Instant::now();
                for outcome in engine.handle_batch(messages).await {
                    match outcome {
                        Ok(Outcome::Drop) => {}
                        Ok(_) => anyhow::bail!("a webhook was answered"),
                        Err(e) => anyhow::bail!("a webhook was left for a retry: {:#}", e.0),
                    }
                }
                latency.saturating_record(now.elapsed().as_micros() as u64);
            }
            anyhow::Ok(latency)
        });
    }
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    while let Some(joined) = tasks.join_next().await {
        latency.add(&joined??)?;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(payment_path::Figures {
        payments: total as u64,
        seconds,
        per_second: total as f64 / seconds,
        p50_ms: latency.value_at_quantile(0.5) as f64 / 1000.0,
        p99_ms: latency.value_at_quantile(0.99) as f64 / 1000.0,
    })
}

/// The processor's `payment_intent.succeeded` webhook for `intent`, as the gateway puts it on
/// the queue: the raw body, and its signature in an attribute.
fn succeeded(mut intent: Value) -> InboundMessage {
    intent["status"] = json!("succeeded");
    intent["client_secret"] = Value::Null;
    let body = json!({
        "id": format!("evt_{}", Uuid::new_v4().simple()),
        "object": "event",
        "type": "payment_intent.succeeded",
        "created": chrono::Utc::now().timestamp(),
        "data": { "object": intent },
    })
    .to_string();
    let header = signature::sign(&body, WEBHOOK_SECRET, chrono::Utc::now().timestamp());
    InboundMessage {
        message_id: Uuid::new_v4().to_string(),
        attributes: [
            (attribute::ROUTE.to_owned(), webhook::ROUTE.to_owned()),
            (
                webhook::SIGNATURE.to_owned(),
                format!("{}{header}", webhook::SIGNATURE_MARKER),
            ),
        ]
        .into_iter()
        .collect(),
        body,
    }
}

/// A processor that creates each intent at once, waiting for its card (as Stripe does when no
/// PaymentMethod is given), and remembers it. Serves until the process ends.
async fn stand_in(made: Made) -> anyhow::Result<SocketAddr> {
    async fn create(
        State(made): State<Made>,
        Form(form): Form<Vec<(String, String)>>,
    ) -> Json<Value> {
        let field = |name: &str| {
            form.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let id = format!("pi_{}", Uuid::new_v4().simple());
        let intent = json!({
            "id": id,
            "object": "payment_intent",
            "status": "requires_payment_method",
            "amount": field("amount").parse::<i64>().unwrap_or_default(),
            "currency": field("currency"),
            "client_secret": format!("{id}_secret_bench"),
            "metadata": {
                "payment_id": field("metadata[payment_id]"),
                "apartment_id": field("metadata[apartment_id]"),
            },
            "created": chrono::Utc::now().timestamp(),
        });
        made.lock()
            .expect("the stand-in's intents")
            .push(intent.clone());
        Json(intent)
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let app = Router::new()
        .route("/v1/payment_intents", post(create))
        .with_state(made);
    // Bound already: the first payment's connection waits for it in the backlog.
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(address)
}
