//! The payments processor's side of a chaos run: the households at the processor (confirming,
//! declining or abandoning the card payments the load leaves pending, as browsers would with
//! Stripe.js), a faulty webhook carrier (the processor's events, signed as it signs them, put on
//! the run's request queue duplicated, delayed, reordered, and some dropped), and the checks that
//! the processor's books and qbill's agree once reconciliation and expiry have run.
//!
//! The workers reach the processor through a proxy the run cuts and slows (`schedule`); the
//! households and the carrier reach it directly.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::verdict::Verdict;

/// The processor as the run reaches it.
#[derive(Clone)]
pub struct Processor {
    pub base: String,
    pub key: String,
    /// The run's own webhook signing secret.
    pub secret: String,
    http: reqwest::Client,
}

/// What the households and the carrier did.
#[derive(Debug, Default, Serialize)]
pub struct Carried {
    pub confirmed: u64,
    pub declined: u64,
    pub abandoned: u64,
    pub events: u64,
    pub dropped: u64,
    pub duplicated: u64,
    pub delayed: u64,
}

#[derive(Default)]
struct Counts {
    confirmed: AtomicU64,
    declined: AtomicU64,
    abandoned: AtomicU64,
    events: AtomicU64,
    dropped: AtomicU64,
    duplicated: AtomicU64,
    delayed: AtomicU64,
}

impl Processor {
    pub fn new(base: &str, key: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            key: key.to_owned(),
            secret: format!("whsec_chaos_{}", Uuid::new_v4().simple()),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .expect("a client"),
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        form: &[(&str, &str)],
    ) -> anyhow::Result<Value> {
        let response = self
            .http
            .request(method, format!("{}{path}", self.base))
            .basic_auth(&self.key, Some(""))
            .form(form)
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            Ok(body)
        } else {
            anyhow::bail!("{path}: HTTP {status} {body}")
        }
    }

    /// Every object of a list endpoint (`/v1/payment_intents`, `/v1/events`), page after page;
    /// `query` narrows it (`&created[gte]=…`).
    async fn list(&self, path: &str, query: &str) -> anyhow::Result<Vec<Value>> {
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut url = format!("{path}?limit=100{query}");
            if let Some(after) = &after {
                url.push_str(&format!("&starting_after={after}"));
            }
            let page = self.call(reqwest::Method::GET, &url, &[]).await?;
            let data = page["data"].as_array().cloned().unwrap_or_default();
            after = data
                .last()
                .and_then(|o| o["id"].as_str())
                .map(str::to_owned);
            all.extend(data);
            if !page["has_more"].as_bool().unwrap_or(false) || after.is_none() {
                return Ok(all);
            }
        }
    }

    /// Confirms intent `id` with a card of this number, as Stripe.js would; a refusal is the
    /// point for a declined card.
    async fn confirm(&self, id: &str, number: &str) -> anyhow::Result<()> {
        let method = self
            .call(
                reqwest::Method::POST,
                "/v1/payment_methods",
                &[
                    ("type", "card"),
                    ("card[number]", number),
                    ("card[exp_month]", "12"),
                    ("card[exp_year]", "2034"),
                    ("card[cvc]", "123"),
                ],
            )
            .await?;
        let path = format!("/v1/payment_intents/{id}");
        self.call(
            reqwest::Method::POST,
            &path,
            &[("payment_method", method["id"].as_str().unwrap_or_default())],
        )
        .await?;
        let _ = self
            .call(reqwest::Method::POST, &format!("{path}/confirm"), &[])
            .await;
        Ok(())
    }
}

/// Runs the households and the carrier until `stop`; returns what they did, every delayed
/// event delivered.
pub async fn run(
    processor: Processor,
    db: Pool,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    apartments: Vec<i64>,
    seed: u64,
    stop: Arc<AtomicBool>,
) -> Carried {
    let counts = Arc::new(Counts::default());
    let households = tokio::spawn(households(
        processor.clone(),
        db,
        apartments.clone(),
        seed,
        stop.clone(),
        counts.clone(),
    ));
    let carrier = tokio::spawn(carrier(
        processor,
        sqs,
        queue_url,
        apartments,
        seed.wrapping_add(1),
        stop,
        counts.clone(),
    ));
    let _ = households.await;
    let _ = carrier.await;
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    Carried {
        confirmed: get(&counts.confirmed),
        declined: get(&counts.declined),
        abandoned: get(&counts.abandoned),
        events: get(&counts.events),
        dropped: get(&counts.dropped),
        duplicated: get(&counts.duplicated),
        delayed: get(&counts.delayed),
    }
}

/// The browsers: each pending card payment of the run with an intent is confirmed with a good
/// card (60 %), with a declined one (15 %), or left (25 %: the expiry job's).
async fn households(
    processor: Processor,
    db: Pool,
    apartments: Vec<i64>,
    seed: u64,
    stop: Arc<AtomicBool>,
    counts: Arc<Counts>,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut handled: HashSet<Uuid> = HashSet::new();
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let Ok(client) = db.get().await else { continue };
        let Ok(rows) = client
            .query(
                "SELECT id, intent_id FROM payments
                 WHERE apartment_id = ANY($1) AND status = 'pending' AND intent_id IS NOT NULL",
                &[&apartments],
            )
            .await
        else {
            continue;
        };
        drop(client);
        for row in rows {
            let (id, intent): (Uuid, String) = (row.get(0), row.get(1));
            if !handled.insert(id) {
                continue;
            }
            match rng.random_range(0..100) {
                0..60 => {
                    if processor.confirm(&intent, "4242424242424242").await.is_ok() {
                        counts.confirmed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                60..75 => {
                    if processor.confirm(&intent, "4000000000000341").await.is_ok() {
                        counts.declined.fetch_add(1, Ordering::Relaxed);
                    }
                }
                _ => {
                    counts.abandoned.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// The processor's webhooks, through a faulty network: each event of the run's payments is
/// dropped (15 %), sent twice (20 %), held back 1 to 6 s (25 %, so that later events overtake
/// it), or sent at once.
async fn carrier(
    processor: Processor,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    apartments: Vec<i64>,
    seed: u64,
    stop: Arc<AtomicBool>,
    counts: Arc<Counts>,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let ours: HashSet<String> = apartments.iter().map(|a| a.to_string()).collect();
    let mut seen: HashSet<String> = HashSet::new();
    let mut held: BTreeMap<Instant, Vec<String>> = BTreeMap::new();
    // Events from a little before the newest seen on: each poll reads what is new, not the run's
    // every event again.
    let mut newest = chrono::Utc::now().timestamp() - 5;
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        let since = format!("&created[gte]={}", newest - 2);
        if let Ok(events) = processor.list("/v1/events", &since).await {
            for event in events {
                newest = newest.max(event["created"].as_i64().unwrap_or(newest));
                let id = event["id"].as_str().unwrap_or_default().to_owned();
                let apartment = event["data"]["object"]["metadata"]["apartment_id"]
                    .as_str()
                    .unwrap_or_default();
                if !ours.contains(apartment) || !seen.insert(id) {
                    continue;
                }
                counts.events.fetch_add(1, Ordering::Relaxed);
                let body = event.to_string();
                match rng.random_range(0..100) {
                    0..15 => {
                        counts.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    15..35 => {
                        counts.duplicated.fetch_add(1, Ordering::Relaxed);
                        deliver(&sqs, &queue_url, &processor.secret, &body).await;
                        deliver(&sqs, &queue_url, &processor.secret, &body).await;
                    }
                    35..60 => {
                        counts.delayed.fetch_add(1, Ordering::Relaxed);
                        let at =
                            Instant::now() + Duration::from_millis(rng.random_range(1_000..6_000));
                        held.entry(at).or_default().push(body);
                    }
                    _ => deliver(&sqs, &queue_url, &processor.secret, &body).await,
                }
            }
        }
        // What is due, or everything once the run stops.
        let now = Instant::now();
        let due: Vec<Instant> = held
            .keys()
            .filter(|at| stopping || **at <= now)
            .copied()
            .collect();
        for at in due {
            for body in held.remove(&at).unwrap_or_default() {
                deliver(&sqs, &queue_url, &processor.secret, &body).await;
            }
        }
        if stopping {
            return;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Puts one webhook on the request queue as the gateway would: the body as signed, the
/// signature header as an attribute.
async fn deliver(sqs: &aws_sdk_sqs::Client, queue_url: &str, secret: &str, body: &str) {
    use aws_sdk_sqs::types::MessageAttributeValue;
    let attribute = |value: String| {
        MessageAttributeValue::builder()
            .data_type("String")
            .string_value(value)
            .build()
            .expect("an attribute")
    };
    let header =
        qbill_core::processor::signature::sign(body, secret, chrono::Utc::now().timestamp());
    let _ = sqs
        .send_message()
        .queue_url(queue_url)
        .message_body(body)
        .message_attributes(
            qbill_core::envelope::attribute::ROUTE,
            attribute(qbill_core::processor::webhook::ROUTE.to_owned()),
        )
        .message_attributes(
            qbill_core::processor::webhook::SIGNATURE,
            attribute(format!(
                "{}{header}",
                qbill_core::processor::webhook::SIGNATURE_MARKER
            )),
        )
        .send()
        .await;
}

/// The processor's books against qbill's, once reconciliation and expiry ran: every succeeded
/// intent is exactly one settled payment of the same amount and every settled card payment one
/// succeeded intent; no payment still waits and no bill is still reserved; the processor's
/// captured total equals the ledger's.
pub async fn check(
    processor: &Processor,
    db: &Pool,
    apartments: &[i64],
    verdict: &mut Verdict,
) -> anyhow::Result<(i64, i64, i64)> {
    let client = db.get().await?;
    let rows = client
        .query(
            "SELECT id, status, intent_id, total, currency FROM payments
             WHERE apartment_id = ANY($1) AND processor = 'stripe'",
            &[&apartments],
        )
        .await?;
    struct Paid {
        status: String,
        intent: Option<String>,
        cents: i64,
    }
    let books: HashMap<Uuid, Paid> = rows
        .iter()
        .map(|r| {
            let total: Decimal = r.get("total");
            (
                r.get("id"),
                Paid {
                    status: r.get("status"),
                    intent: r.get("intent_id"),
                    cents: i64::try_from(total * Decimal::from(100)).unwrap_or(-1),
                },
            )
        })
        .collect();
    // The processor's intents of this run's payments (the processor outlives runs, whose
    // databases, made afresh, number their apartments alike).
    let intents: Vec<Value> = processor
        .list("/v1/payment_intents", "")
        .await?
        .into_iter()
        .filter(|i| {
            i["metadata"]["payment_id"]
                .as_str()
                .and_then(|p| Uuid::parse_str(p).ok())
                .is_some_and(|p| books.contains_key(&p))
        })
        .collect();
    let mut captured = 0i64;
    let mut mismatched = Vec::new();
    let mut settled_intents: HashMap<Uuid, usize> = HashMap::new();
    for intent in intents.iter().filter(|i| i["status"] == "succeeded") {
        let amount = intent["amount"].as_i64().unwrap_or(-1);
        captured += amount;
        let id = intent["id"].as_str().unwrap_or_default();
        let payment = intent["metadata"]["payment_id"]
            .as_str()
            .and_then(|p| Uuid::parse_str(p).ok());
        match payment.and_then(|p| books.get(&p).map(|b| (p, b))) {
            Some((p, b))
                if b.status == "succeeded"
                    && b.intent.as_deref() == Some(id)
                    && b.cents == amount =>
            {
                *settled_intents.entry(p).or_default() += 1;
            }
            _ => mismatched.push(id.to_owned()),
        }
    }
    if !mismatched.is_empty() {
        verdict.violations.push(super::verdict::Violation {
            what: "succeeded intents that are not one settled payment of the same amount".into(),
            ids: mismatched,
        });
    }
    let settled: Vec<(&Uuid, &Paid)> = books
        .iter()
        .filter(|(_, b)| b.status == "succeeded")
        .collect();
    let ledger: i64 = settled.iter().map(|(_, b)| b.cents).sum();
    let unbacked: Vec<String> = settled
        .iter()
        .filter(|(p, _)| settled_intents.get(*p) != Some(&1))
        .map(|(p, _)| p.to_string())
        .collect();
    if !unbacked.is_empty() {
        verdict.violations.push(super::verdict::Violation {
            what: "settled payments without exactly one succeeded intent".into(),
            ids: unbacked,
        });
    }
    let waiting: Vec<String> = books
        .iter()
        .filter(|(_, b)| {
            matches!(
                b.status.as_str(),
                "pending" | "requires_action" | "processing"
            )
        })
        .map(|(p, _)| p.to_string())
        .collect();
    if !waiting.is_empty() {
        verdict.violations.push(super::verdict::Violation {
            what: "card payments still waiting after the expiry job".into(),
            ids: waiting,
        });
    }
    let reserved: Vec<String> = client
        .query(
            "SELECT id::text FROM bills WHERE apartment_id = ANY($1) AND reserved_by IS NOT NULL",
            &[&apartments],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if !reserved.is_empty() {
        verdict.violations.push(super::verdict::Violation {
            what: "bills still reserved after the expiry job".into(),
            ids: reserved,
        });
    }
    if captured != ledger {
        verdict.violations.push(super::verdict::Violation {
            what: format!("the processor captured {captured} cents, the books settled {ledger}"),
            ids: Vec::new(),
        });
    }
    // What the processor gave back for the run's intents is what the books' refunds gave back.
    let run_intents: std::collections::HashSet<&str> =
        intents.iter().filter_map(|i| i["id"].as_str()).collect();
    let given: i64 = processor
        .list("/v1/refunds", "")
        .await?
        .iter()
        .filter(|r| {
            r["status"] == "succeeded"
                && r["payment_intent"]
                    .as_str()
                    .is_some_and(|i| run_intents.contains(i))
        })
        .map(|r| r["amount"].as_i64().unwrap_or(-1))
        .sum();
    let refunded: Decimal = client
        .query_one(
            "SELECT coalesce(sum(r.amount), 0) FROM refunds r JOIN payments p ON p.id = r.payment_id
             WHERE p.apartment_id = ANY($1) AND r.status = 'succeeded'",
            &[&apartments],
        )
        .await?
        .get(0);
    let refunded = i64::try_from(refunded * Decimal::from(100)).unwrap_or(-1);
    if given != refunded {
        verdict.violations.push(super::verdict::Violation {
            what: format!("the processor refunded {given} cents, the books {refunded}"),
            ids: Vec::new(),
        });
    }
    Ok((captured, ledger, given))
}
