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

pub mod inject;
pub mod processes;
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
    /// Faults to inject; from six on, at least one of each kind. Default: one per 15 s, at
    /// least six.
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
    let faults = args
        .faults
        .unwrap_or_else(|| ((args.duration / 15.0) as usize).max(6));
    let visibility = Duration::from_secs(u64::from(args.visibility));
    let schedule = schedule::schedule(seed, duration, faults, WORKERS, visibility);
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

    // What the workers depend on, each behind something the run can break.
    let postgres = Proxy::start(&postgres_address(&database)?).await?;
    let sqs_proxy =
        Proxy::start(endpoint.trim_start_matches("http://").trim_end_matches('/')).await?;
    let redis = RedisServer::start().await?;
    let env = vec![
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
    ];
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

    // The backlog drains (repeats of answered requests too), then the last replies are read.
    let drained = queues::drain(&sqs, &queues.url, Duration::from_secs_f64(args.drain)).await?;
    for queue in &outcome.queues {
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
    let dead = queues::dead_letters(&sqs, &queues.dead_letter_url).await?;
    let deadlocks = deadlocks(&db).await? - deadlocks_before;
    let (sent, read) = journal.take();
    let mut verdict =
        verdict::check(&db, &sent, &read, &dead, &apartments, deadlocks, &died).await?;
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
