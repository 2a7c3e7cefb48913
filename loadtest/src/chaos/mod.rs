//! The chaos bank run: the load harness at a fixed rate, straight on SQS, against two real
//! `qbill work` processes, while faults drawn from a printed seed break what they depend on; then,
//! with every fault healed and the backlog drained, checks that money was neither created nor
//! lost and that every request is accounted for.
//!
//! The workers reach Postgres and SQS through proxies the run can cut or slow down, and use a
//! Redis server of the run's own; the clients reach SQS directly. Clients share households two by
//! two and pay from the oldest bills in any order, so that payments collide.
//!
//! - [`schedule`]: which fault when, for how long, from the seed.
//! - [`proxy`], [`processes`], [`redis`]: what the faults act on.
//! - [`inject`]: carries the schedule out; [`queues`]: the run's queues, drained and read.
//! - [`verdict`]: the checks.
//! - [`report`]: the faults table, the closing line, `chaos.html` with its timeline.

pub mod hooks;
pub mod inject;
pub mod operator;
pub mod processes;
pub mod processor;
pub mod proxy;
pub mod queues;
pub mod redis;
pub mod report;
pub mod schedule;
pub mod verdict;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use deadpool_postgres::Pool;
use qbill_core::store;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::oneshot;
use uuid::Uuid;

use self::inject::Targets;
use self::processes::qbill_work;
use self::proxy::Proxy;
use self::redis::RedisServer;
use self::report::ChaosReport;
use crate::journal::Journal;
use crate::load::{self, Hooks, Plan};
use crate::mix::{Mix, Op};
use crate::transport::Transport;

/// Worker processes of the run.
const WORKERS: usize = 2;

#[derive(Args, Clone)]
pub struct ChaosArgs {
    /// Seconds of load; the faults fall within it, all healed five seconds before it ends.
    #[arg(long, default_value_t = 60.0)]
    pub duration: f64,
    /// Requests per second across all clients.
    #[arg(long, default_value_t = 40.0)]
    pub rate: f64,
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Faults to inject; from as many as there are kinds on (eight with a processor, six
    /// without), at least one of each kind. Default: one per 15 s, at least that many.
    #[arg(long)]
    pub faults: Option<usize>,
    /// The seed of the fault schedule (printed; the same seed, duration and faults give the same
    /// schedule). Default: QBILL_CHAOS_SEED, else a random one.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Pollers in each worker process.
    #[arg(long, default_value_t = 4)]
    pub pollers: usize,
    /// The request queue's visibility timeout, in seconds; a paused worker outlasts it.
    #[arg(long, default_value_t = 5)]
    pub visibility: u32,
    /// Receives after which a message goes to the dead-letter queue.
    #[arg(long, default_value_t = 5)]
    pub max_receives: u32,
    /// Seconds to wait, after the load, for the last replies and the backlog.
    #[arg(long, default_value_t = 120.0)]
    pub drain: f64,
    #[arg(long, default_value = "auth=1,utils=3,histories=2,payments=4")]
    pub mix: Mix,
    /// Months of bills per household.
    #[arg(long, default_value_t = 12)]
    pub periods: u32,
    /// The `qbill` binary; by default the one beside this binary.
    #[arg(long)]
    pub qbill: Option<PathBuf>,
    /// Pay without a processor (the ledger mode) even when the environment names one.
    #[arg(long)]
    pub ledger: bool,
    /// Where chaos.json, chaos.svg, chaos.html and the workers' logs go.
    #[arg(long, default_value = "target/chaos")]
    pub out: PathBuf,
}

/// Runs it; `Ok(false)` when a check failed.
pub async fn run(args: ChaosArgs) -> anyhow::Result<bool> {
    let seed = match args.seed {
        Some(seed) => seed,
        None => schedule::seed_from_env_or_random()?,
    };
    let duration = Duration::try_from_secs_f64(args.duration).context("--duration")?;
    let visibility = Duration::from_secs(u64::from(args.visibility));
    // Cards through the local processor when the environment names one (scripts/chaos does),
    // else the ledger mode.
    let card = match (
        std::env::var("QBILL_STRIPE_API_BASE"),
        std::env::var("QBILL_STRIPE_SECRET_KEY"),
    ) {
        (Ok(base), Ok(key)) if !args.ledger => Some(processor::Processor::new(&base, &key)),
        _ => None,
    };
    let kinds: &[schedule::FaultKind] = match card {
        Some(_) => &schedule::FaultKind::ALL,
        None => &schedule::FaultKind::WITHOUT_PROCESSOR,
    };
    let faults = args
        .faults
        .unwrap_or_else(|| ((args.duration / 15.0) as usize).max(kinds.len()));
    let schedule = schedule::schedule(seed, duration, faults, WORKERS, visibility, kinds);
    println!(
        "chaos: seed {seed}: {} faults over {:.0} s (replay with --seed {seed})",
        schedule.len(),
        args.duration
    );
    std::fs::create_dir_all(&args.out)?;

    // The workers connect with the application's login; the run makes its households and checks
    // the books with the owner's (QBILL_MIGRATION_DATABASE_URL, when the environment names one).
    let database: SecretString = std::env::var("DATABASE_URL")
        .context("DATABASE_URL must name the run's database (migrated)")?
        .into();
    let db = store::pool(&crate::owner_url()?, 4)?;
    let deadlocks_before = deadlocks(&db).await?;
    let sqs = qbill_sqs::client().await;
    let endpoint = std::env::var("AWS_ENDPOINT_URL")
        .context("AWS_ENDPOINT_URL must point at the SQS emulator (scripts/fauxqs env)")?;
    let run_id = &Uuid::new_v4().simple().to_string()[..8];
    let queues = queues::create(&sqs, run_id, &args).await?;
    let queue = &queues.name;
    let reply_prefix = "qbill-chaos-reply-";

    // Households: enough bills for the run's payments, two clients each.
    let plan = Plan {
        clients: args.clients,
        rate: Some(args.rate),
        in_flight: 1,
        ramp_up: Duration::from_secs(2),
        warmup: Duration::ZERO,
        duration: Some(duration),
        requests: None,
        timeout: Duration::try_from_secs_f64(args.drain).context("--drain")?,
        poll_wait: 2,
        mix: args.mix.clone(),
        log_in: true,
        contention: true,
    };
    let payments = args.rate * args.duration * args.mix.share(Op::Payments);
    let households = ((payments * 2.0 * 1.5) / f64::from(args.periods.max(1) * 4)).ceil() as u32;
    let households = households.max(args.clients.div_ceil(2) as u32);
    let prefix = format!("chaos-{run_id}");
    let users = crate::books::users(&db, &prefix, households, args.periods.max(1)).await?;
    let apartments: Vec<i64> = users.iter().map(|u| u.apartment).collect();
    println!(
        "chaos: {} households of {} months, {} clients, {} req/s for {:.0} s, queue {queue}",
        users.len(),
        args.periods,
        args.clients,
        args.rate,
        args.duration
    );

    // The providers' webhooks, on a receiver here that refuses some while the faults run.
    let webhook_receiver = hooks::Receiver::start(&db, &apartments, seed).await?;

    // What the workers depend on, each behind something the run can break.
    let postgres = Proxy::start(&postgres_address(&database)?).await?;
    let sqs_proxy =
        Proxy::start(endpoint.trim_start_matches("http://").trim_end_matches('/')).await?;
    let redis = RedisServer::start().await?;
    let processor_proxy = match &card {
        Some(card) => Some(
            Proxy::start(
                card.base
                    .trim_start_matches("http://")
                    .trim_end_matches('/'),
            )
            .await?,
        ),
        None => None,
    };
    let mut env = vec![
        (
            "DATABASE_URL".to_owned(),
            through(&database, postgres.addr())?,
        ),
        (
            "AWS_ENDPOINT_URL".to_owned(),
            format!("http://{}", sqs_proxy.addr()),
        ),
        ("REDIS_URL".to_owned(), redis.url()),
        ("QBILL_REQUEST_QUEUE".to_owned(), queue.to_owned()),
        (
            "QBILL_REPLY_QUEUE_PREFIX".to_owned(),
            reply_prefix.to_owned(),
        ),
        ("QBILL_POLL_WAIT_SECONDS".to_owned(), "2".to_owned()),
        ("QBILL_SWEEP_INTERVAL_SECONDS".to_owned(), "0".to_owned()),
        (
            "QBILL_CACHE_PREFIX".to_owned(),
            format!("qbill-chaos-{run_id}"),
        ),
        (
            "QBILL_LOG".to_owned(),
            "warn,qbill_core::metrics=info".to_owned(),
        ),
        (
            "QBILL_EXPIRE_PAYMENTS_INTERVAL_SECONDS".to_owned(),
            "0".to_owned(),
        ),
        (
            "QBILL_RECONCILE_INTERVAL_SECONDS".to_owned(),
            "0".to_owned(),
        ),
        ("QBILL_SETTLE_INTERVAL_SECONDS".to_owned(), "0".to_owned()),
        // The webhooks go from the workers' own timer, through every fault.
        ("QBILL_EVENTS_INTERVAL_SECONDS".to_owned(), "2".to_owned()),
        ("QBILL_WEBHOOKS_ALLOW_LOCAL".to_owned(), "true".to_owned()),
    ];
    // The jobs at the end reach the database and the processor directly.
    let mut direct = vec![("REDIS_URL".to_owned(), redis.url())];
    match (&card, &processor_proxy) {
        (Some(card), Some(proxy)) => {
            for (list, base) in [
                (&mut env, format!("http://{}", proxy.addr())),
                (&mut direct, card.base.clone()),
            ] {
                list.extend([
                    ("QBILL_PAYMENTS".to_owned(), "stripe".to_owned()),
                    ("QBILL_STRIPE_API_BASE".to_owned(), base),
                    ("QBILL_STRIPE_SECRET_KEY".to_owned(), card.key.clone()),
                    (
                        "QBILL_STRIPE_WEBHOOK_SECRET".to_owned(),
                        card.secret.clone(),
                    ),
                ]);
            }
        }
        _ => env.push(("QBILL_PAYMENTS".to_owned(), "ledger".to_owned())),
    }
    let qbill = match &args.qbill {
        Some(path) => path.clone(),
        None => crate::scale::qbill_binary()?,
    };
    let mut workers = Vec::new();
    for n in 0..WORKERS {
        let log = args.out.join(format!("worker-{n}.log"));
        let _ = std::fs::remove_file(&log);
        workers.push(Arc::new(
            qbill_work(&qbill, args.pollers, env.clone(), &log).await?,
        ));
    }
    let targets = Arc::new(Targets {
        workers,
        postgres,
        sqs: sqs_proxy,
        redis,
        processor: processor_proxy,
    });

    // The load, and the faults from the moment its clock starts.
    let transport = Arc::new(Transport::sqs(&queues.url, reply_prefix).await?);
    let journal = Arc::new(Journal::default());
    let (started_tx, started_rx) = oneshot::channel();
    let injector = tokio::spawn({
        let targets = targets.clone();
        async move {
            match started_rx.await {
                Ok(started) => inject::run(targets, schedule, started, seed).await,
                Err(_) => Vec::new(),
            }
        }
    });
    // The households at the processor and the webhooks' faulty way back, while the load runs.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let carrier = card.clone().map(|card| {
        tokio::spawn(processor::run(
            card,
            db.clone(),
            sqs.clone(),
            queues.url.clone(),
            apartments.clone(),
            seed,
            stop.clone(),
        ))
    });
    // The operator: refunds and payments made elsewhere, racing the households.
    let operator_queue = operator::queue();
    let operator_login = (format!("{prefix}-ops"), format!("{prefix}-ops-password"));
    qbill_core::admin::create_user(
        &db,
        &operator_login.0,
        operator_login.1.clone().into(),
        qbill_core::types::Role::Operator,
        None,
    )
    .await
    .context("creating the run's operator")?;
    let operator = tokio::spawn(operator::run(
        operator::Operator {
            transport: transport.clone(),
            journal: journal.clone(),
            db: db.clone(),
            apartments: apartments.clone(),
            queue: operator_queue,
            login: operator_login,
            seed,
            refunds: card.is_some(),
        },
        stop.clone(),
    ));
    let outcome = load::run_with(
        transport.clone(),
        plan,
        &users,
        Hooks {
            started: Some(started_tx),
            journal: Some(journal.clone()),
        },
    )
    .await;
    let applied = injector.await.context("the fault injector")?;
    let outcome = outcome?;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let operated = operator.await.context("the operator")??;
    let carried = match carrier {
        Some(carrier) => Some(carrier.await.context("the webhook carrier")?),
        None => None,
    };

    // The backlog drains (repeats of answered requests too), then the last replies are read.
    let drained = queues::drain(&sqs, &queues.url, Duration::from_secs_f64(args.drain)).await?;
    for queue in outcome.queues.iter().chain([&operator_queue]) {
        queues::read_to_the_end(&sqs, &transport, *queue, reply_prefix, &journal).await?;
    }
    let mut died: Vec<String> = applied.iter().filter_map(|a| a.crashed.clone()).collect();
    let mut peak_rss_mib = Vec::new();
    for (n, worker) in targets.workers.iter().enumerate() {
        match worker.exit_status().await? {
            Some(status) => died.push(format!("worker {n}: {status}")),
            None => {
                let status = worker.terminate().await?;
                if !status.success() {
                    died.push(format!("worker {n} did not drain on SIGTERM: {status}"));
                }
            }
        }
        peak_rss_mib.push(worker.peak_rss_kib() as f64 / 1024.0);
    }
    // What no webhook said, the jobs ask the processor: lost webhooks healed, abandoned payments
    // expired.
    let mut jobs = Vec::new();
    if card.is_some() {
        for job in [
            vec!["jobs", "reconcile", "--since-hours", "1"],
            vec!["jobs", "expire-payments", "--after-minutes", "0"],
        ] {
            let out = tokio::process::Command::new(&qbill)
                .args(&job)
                .env("DATABASE_URL", database.expose_secret())
                .envs(direct.iter().cloned())
                .env("QBILL_LOG", "warn")
                .output()
                .await?;
            let report = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if !out.status.success() {
                bail!(
                    "qbill {} failed: {}",
                    job.join(" "),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            jobs.push(format!("{}: {report}", job[1]));
        }
    }
    // What the faults kept from the webhooks goes now, to a receiver that answers everything.
    webhook_receiver
        .flush(&db, &qbill, database.expose_secret(), &direct)
        .await?;
    let dead = queues::dead_letters(&sqs, &queues.dead_letter_url).await?;
    let deadlocks = deadlocks(&db).await? - deadlocks_before;
    let (sent, read) = journal.take();
    let mut verdict =
        verdict::check(&db, &sent, &read, &dead, &apartments, deadlocks, &died).await?;
    let webhooks = webhook_receiver
        .check(&db, &apartments, &mut verdict)
        .await?;
    let mut processor_line = None;
    if let (Some(card), Some(carried)) = (&card, &carried) {
        let (captured, ledger, refunded) =
            processor::check(card, &db, &apartments, &mut verdict).await?;
        processor_line = Some(format!(
            "chaos: processor: confirmed {} declined {} abandoned {}; webhooks {} (dropped {}, duplicated {}, delayed {}); {}; captured {captured} cents, settled {ledger}, refunded {refunded}",
            carried.confirmed,
            carried.declined,
            carried.abandoned,
            carried.events,
            carried.dropped,
            carried.duplicated,
            carried.delayed,
            jobs.join("; "),
        ));
    }
    if !drained {
        verdict.violations.push(verdict::Violation {
            what: format!(
                "the request queue still held messages {:.0} s after the load",
                args.drain
            ),
            ids: Vec::new(),
        });
    }
    transport.cleanup().await;
    for url in [&queues.url, &queues.dead_letter_url] {
        let _ = sqs.delete_queue().queue_url(url).send().await;
    }

    println!("{}", crate::report::table(&outcome.figures));
    println!("{}", report::faults_table(&applied));
    let memory: Vec<String> = peak_rss_mib
        .iter()
        .enumerate()
        .map(|(n, mib)| format!("worker {n} {mib:.0} MiB"))
        .collect();
    println!("chaos: peak resident memory: {}", memory.join(", "));
    let (pg, sq) = (targets.postgres.counts(), targets.sqs.counts());
    println!(
        "chaos: connections through the proxies: Postgres {} ({} cut), SQS {} ({} cut)",
        pg.accepted, pg.cut, sq.accepted, sq.cut
    );
    println!(
        "chaos: webhooks: {} endpoints, {} deliveries received ({} refused by the receiver), {} events; of settled payments {} expected, {} missing",
        webhooks.endpoints,
        webhooks.received,
        webhooks.refused,
        webhooks.events,
        webhooks.expected,
        webhooks.missing
    );
    if let Some(line) = &processor_line {
        println!("{line}");
    }
    println!(
        "chaos: operator: refunds asked {} ({} sent two at once), succeeded {} giving back {}, refused {}; payments made elsewhere asked {}, recorded {}",
        operated.refunds,
        operated.raced,
        verdict.refunds,
        verdict.refunded,
        verdict.refunds_refused,
        operated.external,
        verdict.external
    );
    println!("{}", report::verdict_text(&verdict));
    let held = verdict.violations.is_empty();
    report::write(
        &args.out,
        &ChaosReport {
            seed,
            duration_seconds: args.duration,
            rate: args.rate,
            clients: args.clients,
            workers: WORKERS,
            pollers: args.pollers,
            visibility_seconds: args.visibility,
            faults: applied,
            peak_rss_mib,
            figures: outcome.figures,
            verdict,
        },
    )?;
    println!("report: {}", args.out.join("chaos.html").display());
    Ok(held)
}

/// Deadlocks the database has detected since its statistics were reset.
async fn deadlocks(db: &Pool) -> anyhow::Result<i64> {
    // The statistics are flushed about once a second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    Ok(db
        .get()
        .await?
        .query_one(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()",
            &[],
        )
        .await?
        .get(0))
}

/// `host:port` of the database server.
fn postgres_address(database: &SecretString) -> anyhow::Result<String> {
    let config: tokio_postgres::Config = database.expose_secret().parse()?;
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        _ => bail!("DATABASE_URL must name a TCP host"),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    Ok(format!("{host}:{port}"))
}

/// The same database, through `proxy`, as a key=value connection string.
fn through(database: &SecretString, proxy: std::net::SocketAddr) -> anyhow::Result<String> {
    let config: tokio_postgres::Config = database.expose_secret().parse()?;
    let quote = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
    let mut parts = vec![
        format!("host={}", proxy.ip()),
        format!("port={}", proxy.port()),
    ];
    if let Some(user) = config.get_user() {
        parts.push(format!("user={}", quote(user)));
    }
    if let Some(password) = config.get_password() {
        parts.push(format!(
            "password={}",
            quote(&String::from_utf8_lossy(password))
        ));
    }
    if let Some(name) = config.get_dbname() {
        parts.push(format!("dbname={}", quote(name)));
    }
    Ok(parts.join(" "))
}
