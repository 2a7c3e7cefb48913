//! Helpers shared by the test binaries: every test gets real services, isolated.
//!
//! - a fresh Postgres database per test (or per binary), migrated and seeded with the demo set;
//! - a cache key prefix per test on the shared Redis;
//! - random queue names on the emulated SQS;
//! - the gateway of the `test` profile of `scripts/local-stack`, whose settings come from
//!   `scripts/local-stack env test` (exported by `scripts/test`).

pub mod receiver;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use qbill_core::cache::Cache;
use qbill_core::config::JwtConfig;
use qbill_core::envelope::{AUTHORIZATION_MARKER, InboundMessage, attribute};
use qbill_core::token::{Holder, Tokens};
use qbill_core::types::{QueueName, UserId};
use qbill_core::{Engine, seed, store};
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

/// Prefix of every database a test creates; `scripts/test` drops leftovers before a run.
pub const TEST_DATABASE_PREFIX: &str = "qbill_t_";

/// The signing key tests use unless the stack's environment names one.
pub fn jwt_secret() -> SecretString {
    std::env::var("QBILL_JWT_SECRET")
        .unwrap_or_else(|_| "test-secret-of-at-least-thirty-two-bytes".into())
        .into()
}

pub fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run the tests with scripts/test"))
}

/// A database of its own, migrated and seeded with the demo set by its owner, and served to the
/// engine through the application's login (a member of `qbill_application`, as on AWS), so that
/// a missing grant fails a test here.
pub struct TestDb {
    pub name: String,
    /// The application's login: what engines and `qbill work` processes connect with.
    pub url: SecretString,
    /// The owner's login: migrations, seeds, and a test's own setup and checks.
    pub admin_url: SecretString,
    /// A pool of the owner's login, for a test's own setup and checks.
    pub pool: Pool,
    /// A pool of the application's login, which refuses any other (for engines).
    pub app_pool: Pool,
}

/// The server part (`postgres://user:password@host:port`) of a database URL.
fn server(url: &str) -> &str {
    url.rsplit_once('/')
        .map(|(server, _)| server)
        .unwrap_or_else(|| panic!("{url:?} must end in /database"))
}

/// The owner's URL of the database `name`: `QBILL_MIGRATION_DATABASE_URL`'s login.
pub fn admin_url_of(name: &str) -> SecretString {
    format!("{}/{name}", server(&env("QBILL_MIGRATION_DATABASE_URL"))).into()
}

/// The application's URL of the database `name`: `DATABASE_URL`'s login.
pub fn app_url_of(name: &str) -> SecretString {
    format!("{}/{name}", server(&env("DATABASE_URL"))).into()
}

impl TestDb {
    pub async fn fresh() -> Self {
        let name = format!("{TEST_DATABASE_PREFIX}{}", Uuid::new_v4().simple());
        Self::create(&name).await
    }

    /// Creates the database `name` (which must not exist), migrates and seeds it as its owner, and
    /// makes `DATABASE_URL`'s login an application login on it.
    pub async fn create(name: &str) -> Self {
        let owner = env("QBILL_MIGRATION_DATABASE_URL");
        let (admin, connection) = tokio_postgres::connect(
            &format!("{}/postgres", server(&owner)),
            tokio_postgres::NoTls,
        )
        .await
        .expect("postgres is up");
        tokio::spawn(connection);
        admin
            .execute(&format!("CREATE DATABASE {name}"), &[])
            .await
            .expect("create the test database");
        let (admin_url, url) = (admin_url_of(name), app_url_of(name));
        let pool = store::pool(&admin_url, 16).expect("a pool");
        store::migrate(&pool).await.expect("migrations apply");
        let login: tokio_postgres::Config = url.expose_secret().parse().expect("a database URL");
        let password = login
            .get_password()
            .map(|p| SecretString::from(String::from_utf8_lossy(p).into_owned()));
        qbill_core::managed::ensure_login(
            &pool.get().await.expect("a connection"),
            login.get_user().expect("DATABASE_URL names a user"),
            password.as_ref(),
        )
        .await
        .expect("the application's login");
        seed::demo(&pool, false).await.expect("demo seed");
        let app_pool = store::application_pool(&url, 16).expect("a pool");
        Self {
            name: name.to_owned(),
            url,
            admin_url,
            pool,
            app_pool,
        }
    }

    pub async fn count(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> i64 {
        count(&self.pool, sql, params).await
    }
}

/// An engine over `db` (its application login), caching in the shared Redis under a prefix of
/// its own (or not at all).
pub fn engine(db: &TestDb, redis_url: Option<&str>) -> Engine {
    engine_on(&db.app_pool, redis_url)
}

/// An engine over the connection pool `store` (a proxied or unreachable one, say): make it with
/// [`store::application_pool`] over an application login.
pub fn engine_on(store: &Pool, redis_url: Option<&str>) -> Engine {
    let cache = match redis_url {
        Some(url) => Cache::new(
            Some(&url.to_owned().into()),
            &format!("qbill-test-{}", Uuid::new_v4().simple()),
            Duration::from_secs(60),
            Duration::from_millis(300),
        )
        .expect("a cache"),
        None => Cache::disabled(),
    };
    let mut engine = Engine::new(
        store.clone(),
        cache,
        tokens(),
        qbill_core::password::Passwords::default_slots(),
    );
    engine.services = engine.services.with_documents(documents_config());
    engine
}

/// Documents in the test profile's bucket (`scripts/local-stack env test`).
pub fn documents_config() -> qbill_core::config::DocumentsConfig {
    qbill_core::config::DocumentsConfig {
        bucket: Some(env("QBILL_DOCUMENTS_BUCKET")),
        ..Default::default()
    }
}

/// A document's file, downloaded from the link of its reply (`data` of a `document` reply),
/// checked against the reply's `sha256` and `bytes`.
pub async fn download_document(data: &serde_json::Value) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let url = data["url"].as_str().expect("a document has a url");
    let response = reqwest::get(url).await.expect("S3 answers");
    assert_eq!(response.status(), 200, "the link works: {url}");
    let bytes = response.bytes().await.expect("the file").to_vec();
    let sha256 = qbill_core::types::hex(&Sha256::digest(&bytes));
    assert_eq!(data["sha256"], sha256.as_str(), "the file is the one named");
    assert_eq!(data["bytes"], bytes.len(), "the file has the size named");
    bytes
}

/// The text of every page of a PDF, as a PDF library reads it.
pub fn pdf_text(pdf: &[u8]) -> String {
    let document = lopdf::Document::load_mem(pdf).expect("a PDF");
    let pages: Vec<u32> = document.get_pages().keys().copied().collect();
    document.extract_text(&pages).expect("its text")
}

/// The rows of a CSV file with a header, as maps from column to value.
pub fn csv_rows(csv: &[u8]) -> Vec<std::collections::BTreeMap<String, String>> {
    let mut reader = csv::Reader::from_reader(csv);
    let header = reader.headers().expect("a header row").clone();
    reader
        .records()
        .map(|record| {
            let record = record.expect("an RFC 4180 record");
            header
                .iter()
                .zip(record.iter())
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        })
        .collect()
}

pub fn tokens() -> Tokens {
    Tokens::new(JwtConfig::new(jwt_secret()).expect("a valid secret"))
}

/// A token for a user, bound to `queue`, as `auth` would issue it.
pub fn token_for(user: i64, username: &str, queue: QueueName) -> String {
    tokens()
        .issue(&Holder::household(UserId(user), username), queue)
        .expect("a token")
        .0
}

/// A message shaped the way the gateway's templates shape it.
pub fn message(
    route: &str,
    apartment: Option<i64>,
    token: Option<&str>,
    body: serde_json::Value,
) -> InboundMessage {
    let mut attributes = HashMap::from([
        (attribute::ROUTE.to_owned(), route.to_owned()),
        (
            attribute::GATEWAY_REQUEST_ID.to_owned(),
            Uuid::new_v4().to_string(),
        ),
    ]);
    if let Some(apartment) = apartment {
        attributes.insert(attribute::APARTMENT_ID.into(), apartment.to_string());
        let header = token.map(|t| format!("Bearer {t}")).unwrap_or_default();
        attributes.insert(
            attribute::AUTHORIZATION.into(),
            format!("{AUTHORIZATION_MARKER}{header}"),
        );
    }
    InboundMessage {
        message_id: Uuid::new_v4().to_string(),
        body: body.to_string(),
        attributes,
    }
}

/// An SQS client for the emulator named by the environment.
pub async fn sqs() -> aws_sdk_sqs::Client {
    qbill_sqs::client().await
}

/// A request queue of its own whose redrive policy names a dead-letter queue of its own, as the
/// profiles' queues are set up (a move task takes only a queue that is some queue's DLQ):
/// (request queue URL, dead-letter queue URL).
pub async fn queue_with_dead_letters(sqs: &aws_sdk_sqs::Client, what: &str) -> (String, String) {
    let name = format!("qbill-test-{what}-{}", uuid::Uuid::new_v4().simple());
    let dlq = sqs
        .create_queue()
        .queue_name(format!("{name}-dlq"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let dlq_arn = sqs
        .get_queue_attributes()
        .queue_url(&dlq)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    let queue = sqs
        .create_queue()
        .queue_name(&name)
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            "1",
        )
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy,
            format!(r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"2"}}"#),
        )
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    (queue, dlq)
}

/// Creates a request queue of its own, with a short visibility timeout.
pub async fn private_queue(sqs: &aws_sdk_sqs::Client, visibility_seconds: u32) -> String {
    use aws_sdk_sqs::types::QueueAttributeName;
    sqs.create_queue()
        .queue_name(format!("qbill-test-{}", Uuid::new_v4().simple()))
        .attributes(
            QueueAttributeName::VisibilityTimeout,
            visibility_seconds.to_string(),
        )
        .send()
        .await
        .expect("create a queue")
        .queue_url
        .expect("a queue url")
}

/// Receives replies on `queue_url` until `requests` distinct request ids have one (a repeat
/// answered twice counts once) or `timeout` passes; returns every reply read, repeats included.
pub async fn drain_until_answered(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    requests: usize,
    timeout: Duration,
) -> Vec<serde_json::Value> {
    let mut replies = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    let answered = |replies: &Vec<serde_json::Value>| {
        replies
            .iter()
            .filter_map(|r| r["request_id"].as_str())
            .collect::<std::collections::HashSet<_>>()
            .len()
    };
    while answered(&replies) < requests && tokio::time::Instant::now() < deadline {
        replies.extend(drain_replies(sqs, queue_url, 1, Duration::from_secs(2)).await);
    }
    replies
}

/// Receives everything that arrives on `queue_url` until `want` messages are in hand or
/// `timeout` passes; deletes what it reads.
pub async fn drain_replies(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    want: usize,
    timeout: Duration,
) -> Vec<serde_json::Value> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut replies = Vec::new();
    while replies.len() < want && tokio::time::Instant::now() < deadline {
        let out = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await;
        let Ok(out) = out else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        for m in out.messages.unwrap_or_default() {
            replies
                .push(serde_json::from_str(m.body().unwrap_or("null")).expect("replies are JSON"));
            let _ = sqs
                .delete_message()
                .queue_url(queue_url)
                .receipt_handle(m.receipt_handle().unwrap_or_default())
                .send()
                .await;
        }
    }
    replies
}

/// A worker pool serving the `test` profile's gateway from a thread of its own, over a fresh
/// database seeded with the demo set. It runs until the test binary exits.
pub struct Served {
    /// The application's login to the pool's database.
    pub db_url: SecretString,
    /// The owner's login to it, for a test's own setup and checks.
    pub admin_url: SecretString,
    pub gateway: String,
}

pub fn serve(redis_url: Option<String>, workers: usize) -> Served {
    let (ready, started) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().expect("a runtime");
        runtime.block_on(async move {
            let db = TestDb::fresh().await;
            let mut engine = engine(&db, redis_url.as_deref());
            // Cards through the local processor, whose webhooks come through the gateway.
            engine.services = engine.services.with_processor(processor());
            // Webhooks to the tests' receivers on 127.0.0.1, as the local profile allows.
            engine.services.outbound = qbill_core::events::outbound::Outbound::new(true);
            let engine = Arc::new(engine);
            let config = sqs_config(&env("QBILL_REQUEST_QUEUE"));
            let pool = qbill_sqs::WorkerPool::new(engine, sqs().await, config)
                .await
                .expect("the test request queue exists");
            ready
                .send((db.url.clone(), db.admin_url.clone()))
                .expect("the test is waiting");
            pool.run(workers, tokio_util::sync::CancellationToken::new())
                .await;
        });
    });
    let (db_url, admin_url) = started.recv().expect("the pool started");
    Served {
        db_url,
        admin_url,
        gateway: env("QBILL_GATEWAY_URL"),
    }
}

/// The local processor of the test profile (`scripts/local-stack env test`): localstripe, with
/// the webhook secret it signs the test gateway's webhooks with.
pub fn processor() -> qbill_core::processor::Processor {
    qbill_core::processor::Processor::new(
        qbill_core::processor::stripe::Stripe::new(
            &env("QBILL_STRIPE_API_BASE"),
            env("QBILL_STRIPE_SECRET_KEY").into(),
        )
        .expect("a processor client"),
        vec![env("QBILL_STRIPE_WEBHOOK_SECRET").into()],
    )
}

/// A card that pays (Stripe's test card 4242…), made as the CLI makes one: its id is what a
/// payment's `payment_method` takes.
pub async fn test_card() -> String {
    card("4242424242424242").await
}

/// A card of this test number, made with the publishable key.
pub async fn card(number: &str) -> String {
    qbill_core::processor::stripe::Stripe::card(
        &env("QBILL_STRIPE_API_BASE"),
        &env("QBILL_STRIPE_PUBLISHABLE_KEY"),
        number,
        12,
        2034,
        "123",
    )
    .await
    .expect("the local processor makes a card")
}

/// A small pool of connections to `url`, for a test's own queries.
pub fn db_pool(url: &SecretString) -> Pool {
    store::pool(url, 2).expect("a pool")
}

pub async fn count(
    pool: &Pool,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> i64 {
    let client = pool.get().await.expect("a connection");
    client
        .query_one(sql, params)
        .await
        .expect("count query")
        .get(0)
}

/// Puts `message` on the request queue `queue_url` as the gateway would: its body, and its
/// attributes as string message attributes.
pub async fn enqueue(sqs: &aws_sdk_sqs::Client, queue_url: &str, message: &InboundMessage) {
    let attributes = message
        .attributes
        .iter()
        .map(|(name, value)| {
            let value = aws_sdk_sqs::types::MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .expect("an attribute");
            (name.clone(), value)
        })
        .collect();
    sqs.send_message()
        .queue_url(queue_url)
        .message_body(&message.body)
        .set_message_attributes(Some(attributes))
        .send()
        .await
        .expect("enqueue");
}

/// Puts one payment request per unpaid bill of `users` on `queue_url`, shaped as the gateway
/// shapes them, all answering to `reply_to`. Returns the request ids.
pub async fn enqueue_payments(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    db: &Pool,
    users: &[seed::GeneratedUser],
    reply_to: QueueName,
) -> Vec<Uuid> {
    use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
    let client = db.get().await.expect("a connection");
    let mut messages = Vec::new();
    for user in users {
        let token = token_for(user.user_id, &user.username, reply_to);
        let bills = client
            .query(
                "SELECT id FROM bills WHERE apartment_id = $1 AND status = 'open' ORDER BY id",
                &[&user.apartment_id],
            )
            .await
            .expect("bills");
        for bill in bills {
            let request_id = Uuid::new_v4();
            let body = serde_json::json!({ "queue_name": reply_to.to_string(), "request_id": request_id, "bills_id": [bill.get::<_, i64>(0)] });
            messages.push((
                request_id,
                message("payments", Some(user.apartment_id), Some(&token), body),
            ));
        }
    }
    for chunk in messages.chunks(10) {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(i, (_, m))| {
                let mut entry = SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(&m.body);
                for (name, value) in &m.attributes {
                    let value = MessageAttributeValue::builder()
                        .data_type("String")
                        .string_value(value)
                        .build()
                        .expect("an attribute");
                    entry = entry.message_attributes(name, value);
                }
                entry.build().expect("an entry")
            })
            .collect();
        let out = sqs
            .send_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .expect("enqueue");
        assert!(out.failed.is_empty(), "enqueue failed: {:?}", out.failed);
    }
    messages.into_iter().map(|(id, _)| id).collect()
}

/// The reply queue of `queue`, created here so a test can read it directly.
pub async fn reply_queue_url(sqs: &aws_sdk_sqs::Client, queue: QueueName) -> String {
    sqs.create_queue()
        .queue_name(queue.sqs_name(&env("QBILL_REPLY_QUEUE_PREFIX")))
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::MessageRetentionPeriod,
            "3600",
        )
        .send()
        .await
        .expect("create the reply queue")
        .queue_url
        .expect("a url")
}

/// The `qbill` binary of this workspace's debug build (`cargo build -p qbill`).
pub fn qbill_binary() -> std::path::PathBuf {
    workspace_binary("qbill")
}

/// A binary of this workspace's debug build (`cargo build --workspace`, as `scripts/test` does).
pub fn workspace_binary(name: &str) -> std::path::PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let binary = target.join("debug").join(name);
    assert!(
        binary.exists(),
        "{} is missing: run `cargo build --workspace` (scripts/test does)",
        binary.display()
    );
    binary
}

/// The SQS settings tests run pools with: quick polls, full batches.
pub fn sqs_config(request_queue: &str) -> qbill_sqs::SqsConfig {
    qbill_sqs::SqsConfig {
        request_queue: request_queue.to_owned(),
        reply_queue_prefix: env("QBILL_REPLY_QUEUE_PREFIX"),
        reply_retention_seconds: 3600,
        poll_wait_seconds: 1,
        batch_size: 10,
        reply_queue_arn_prefix: std::env::var("QBILL_REPLY_QUEUE_ARN_PREFIX").ok(),
        reply_idle_seconds: 86_400,
        sweep_interval_seconds: 0,
        overdue_interval_seconds: 0,
        due_soon_interval_seconds: 0,
        notify_interval_seconds: 0,
        expire_payments_interval_seconds: 0,
        reconcile_interval_seconds: 0,
        settle_interval_seconds: 0,
        events_interval_seconds: 0,
    }
}

/// The `bill_id`s of a list of bills in a reply.
pub fn bill_ids(bills: &serde_json::Value) -> Vec<i64> {
    bills
        .as_array()
        .unwrap_or_else(|| panic!("a list of bills: {bills}"))
        .iter()
        .map(|b| b["bill_id"].as_i64().expect("a bill id"))
        .collect()
}

/// A Redis server of a test's own, on a free port, so it can be paused or killed without
/// touching anyone else's. Killed when dropped.
pub struct PrivateRedis {
    child: std::process::Child,
    pub port: u16,
}

impl PrivateRedis {
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// With extra `redis-server` arguments, such as `--requirepass`.
    pub async fn start_with(extra: &[&str]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("a free port")
            .local_addr()
            .expect("an address")
            .port();
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(extra)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        let redis = Self { child, port };
        for _ in 0..50 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return redis;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server did not start on port {port}");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Sends a signal (`-STOP`, `-CONT`, `-KILL`) to the server.
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal} failed");
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status();
        self.stop();
    }
}

/// A TCP proxy in front of a real service that a test can cut (every open connection is closed
/// and new ones are dropped at once) and restore: a dependency going away and coming back.
pub struct Outage {
    pub addr: std::net::SocketAddr,
    up: Arc<std::sync::atomic::AtomicBool>,
    cut: tokio::sync::broadcast::Sender<()>,
}

impl Outage {
    pub async fn proxy(target: &str) -> Self {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let addr = listener.local_addr().expect("an address");
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (cut, _) = tokio::sync::broadcast::channel(16);
        let (target, accepting, cuts) = (target.to_owned(), up.clone(), cut.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !accepting.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees the connection close
                }
                let mut cut = cuts.subscribe();
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.recv() => {}
                    }
                });
            }
        });
        Self { addr, up, cut }
    }

    pub fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        let _ = self.cut.send(());
    }

    pub fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The mails LocalStack's SES sent to `address` (`GET /_aws/ses`), oldest first: each with
/// `Subject`, `Body.text_part`, `Body.html_part`, `Source`.
pub async fn mails_to(address: &str) -> Vec<serde_json::Value> {
    let url = format!("{}/_aws/ses", env("AWS_ENDPOINT_URL"));
    let all: serde_json::Value = reqwest::get(&url)
        .await
        .expect("LocalStack answers")
        .json()
        .await
        .expect("JSON");
    all["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| {
            m["Destination"]["ToAddresses"]
                .as_array()
                .is_some_and(|to| to.iter().any(|t| t.as_str() == Some(address)))
        })
        .cloned()
        .collect()
}

/// A phone number no other test uses (E.164, in the UK's range for drama).
pub fn fresh_phone() -> String {
    format!("+4477009{:05}", rand_digits() % 100_000)
}

fn rand_digits() -> u32 {
    u32::from_be_bytes(Uuid::new_v4().as_bytes()[..4].try_into().unwrap())
}

/// The texts LocalStack's SNS was given for `phone`, oldest first.
pub async fn texts_to(phone: &str) -> Vec<String> {
    let url = format!("{}/_aws/sns/sms-messages", env("AWS_ENDPOINT_URL"));
    let all: serde_json::Value = reqwest::get(&url)
        .await
        .expect("LocalStack answers")
        .json()
        .await
        .expect("JSON");
    all["sms_messages"][phone]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["Message"].as_str().map(str::to_owned))
        .collect()
}

/// The six-digit code in the last text to `phone`.
pub async fn texted_code(phone: &str) -> String {
    let texts = texts_to(phone).await;
    let last = texts.last().unwrap_or_else(|| panic!("no text to {phone}"));
    last.split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .unwrap_or_else(|| panic!("no code in {last:?}"))
        .to_owned()
}

/// Waits until `address` has at least `count` mails (at most 30 s); returns them all.
pub async fn wait_for_mails(address: &str, count: usize) -> Vec<serde_json::Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mails = mails_to(address).await;
        if mails.len() >= count || std::time::Instant::now() > deadline {
            return mails;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The token of the link in a mail's text (`...?token=<token>`).
pub fn link_token(mail: &serde_json::Value) -> String {
    let text = mail["Body"]["text_part"].as_str().expect("a text part");
    let start = text.find("token=").expect("a link with a token") + "token=".len();
    text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

/// Creates `count` empty queues named `{prefix}{a fresh UUID}`, as reply queues are, 16 at a time.
pub async fn create_reply_queues(sqs: &aws_sdk_sqs::Client, prefix: &str, count: usize) {
    use futures::StreamExt;
    futures::stream::iter(0..count)
        .map(|_| async move {
            sqs.create_queue()
                .queue_name(format!("{prefix}{}", Uuid::new_v4()))
                .send()
                .await
                .expect("create a reply queue");
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
}

/// The reply-queue stamps as the workers keep them, in the test profile's Redis under `prefix`.
pub fn reply_stamps(prefix: &str) -> Cache {
    Cache::new(
        Some(&env("REDIS_URL").into()),
        prefix,
        Duration::from_secs(60),
        Duration::from_millis(500),
    )
    .expect("a cache")
}

/// The environment a `qbill` process needs for one database: `DATABASE_URL` (the application's
/// login) and `QBILL_MIGRATION_DATABASE_URL` (its owner's, for migrations, seeds and operator
/// commands), so that a child never inherits the stack's own for the other.
pub fn database_env(url: &SecretString, admin_url: &SecretString) -> [(&'static str, String); 2] {
    [
        ("DATABASE_URL", url.expose_secret().to_owned()),
        (
            "QBILL_MIGRATION_DATABASE_URL",
            admin_url.expose_secret().to_owned(),
        ),
    ]
}
