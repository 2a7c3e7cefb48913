//! # qbill-loadtest
//!
//! How many requests per second a deployment takes, at what latency, and what more workers buy.
//!
//! # Layout
//! - [`mix`]: the operations (`auth`, `utils`, `histories`, `payments`) and their weights.
//! - [`transport`]: through the gateway's HTTP contract, or straight on SQS.
//! - [`load`]: simulated clients with their own reply queues; open or closed loop.
//! - [`record`]: HDR histograms per operation and per second.
//! - [`books`]: the users (from the seed generator), and the receipts checked against the books.
//! - [`report`]: the summary table, JSON, and HTML with SVG plots.
//! - [`threshold`]: the pass or fail criteria of a run (`--threshold 'payments.p99<500ms'`).
//! - [`scale`]: the same load against `qbill work` pools of 1, 2, 4, 8 workers.
//! - [`echo`], [`payment_path`] and [`settle_path`]: the subjects of `scripts/bench`; [`memory`], of
//!   `scripts/bench memory`; [`lambda_duration`], of `scripts/lambda-duration`. The last two run
//!   the Lambda `bootstrap` through the library's stand-in of the Lambda Runtime API
//!   ([`qbill_loadtest::runtime_api`], shared with the Lambda tests).
//! - [`chaos`]: the chaos bank run (`scripts/chaos`), over [`journal`], the record of every
//!   request and reply.

mod books;
mod chaos;
mod echo;
mod journal;
mod lambda_duration;
mod load;
mod memory;
mod mix;
mod payment_path;
mod record;
mod report;
mod scale;
mod settle_path;
mod threshold;
mod transport;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use qbill_core::config::EngineConfig;
use qbill_core::{Engine, store};
use qbill_sqs::SqsConfig;
use tokio_util::sync::CancellationToken;

use crate::load::Plan;
use crate::mix::{Mix, Op};
use crate::threshold::{BREACHED, Threshold};
use crate::transport::Transport;

#[derive(Parser)]
#[command(
    name = "qbill-loadtest",
    version,
    about = "Load tests and benchmarks of qbill",
    // The scripts pass defaults first; an option given again wins.
    args_override_self = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs simulated clients against a deployment and writes a report.
    #[command(after_help = RUN_HELP)]
    Run {
        #[command(flatten)]
        load: LoadArgs,
        /// Where report.json, report.html and the plots go.
        #[arg(long, default_value = "target/loadtest/run")]
        out: PathBuf,
        /// An upper limit the run must stay under, as k6's; repeat it for more. Written
        /// `[OPERATION.]METRIC<LIMIT` (or `<=`): OPERATION is auth, utils, histories or payments
        /// (without one, all of them together); METRIC is p50, p90, p95, p99, max or mean (a
        /// reply's latency, LIMIT in ms or s) or errors or timeouts (a share of the requests,
        /// LIMIT in %). E.g. 'payments.p99<500ms', 'errors<1%'.
        #[arg(long = "threshold", value_name = "THRESHOLD")]
        thresholds: Vec<Threshold>,
        /// The highest share of the requests that may time out, in percent: the same as
        /// --threshold 'timeouts<=PERCENT%'.
        #[arg(long, value_name = "PERCENT", value_parser = parse_percent)]
        max_timeout_rate: Option<f64>,
    },
    /// Runs the same load against `qbill work` pools of each size in turn, and plots the result.
    /// Stop any other pool on the same request queue first.
    Scale {
        #[command(flatten)]
        load: LoadArgs,
        /// Worker counts, in order.
        #[arg(long, value_delimiter = ',', default_value = "1,2,4,8")]
        workers: Vec<usize>,
        /// The `qbill` binary; by default the one beside this binary.
        #[arg(long)]
        qbill: Option<PathBuf>,
        #[arg(long, default_value = "target/loadtest/scale")]
        out: PathBuf,
    },
    /// The queue benchmark's reference: receive, reply, delete, no work. Runs until SIGINT/SIGTERM.
    Echo {
        #[arg(long, default_value_t = 4)]
        workers: usize,
    },
    /// The chaos bank run: load on SQS against two `qbill work` processes while faults from a
    /// seeded schedule break them, then checks that no money was made or lost and every request
    /// is accounted for. Exits non-zero if a check fails. Needs DATABASE_URL (migrated), the
    /// SQS emulator in AWS_ENDPOINT_URL and QBILL_JWT_SECRET; `scripts/chaos` sets them up.
    Chaos(chaos::ChaosArgs),
    /// The memory benchmark: logins all at once against a `qbill work` process and, given its
    /// binary, the Lambda `bootstrap`; prints the resident memory of each, fresh and at its peak.
    /// Needs DATABASE_URL (migrated), the SQS emulator in AWS_ENDPOINT_URL and QBILL_JWT_SECRET.
    Memory {
        #[arg(long, default_value_t = 200)]
        logins: u32,
        /// Pollers of the `qbill work` process.
        #[arg(long, default_value_t = 4)]
        workers: usize,
        /// The `qbill` binary; by default the one beside this binary.
        #[arg(long)]
        qbill: Option<PathBuf>,
        /// The Lambda's `bootstrap` binary, to measure it too.
        #[arg(long)]
        bootstrap: Option<PathBuf>,
        /// Where the worker's log goes.
        #[arg(long, default_value = "target/bench")]
        out: PathBuf,
    },
    /// The Lambda worker's duration, CPU time and memory per batch: `bootstrap` processes behind
    /// stand-ins of the Lambda Runtime API, fed by a stand-in of the SQS event source mapping
    /// while the load command after `--` runs. Exits with the load command's status.
    /// `scripts/lambda-duration` sets it up.
    LambdaDuration(lambda_duration::LambdaDurationArgs),
    /// Creates a request queue on the SQS endpoint (for benchmarks on a bare emulator).
    CreateQueue { name: String },
    /// The database benchmark's subject: payments straight into the engine in batches, as a
    /// poller hands it a receive, no queue. Prints `payment_path_tps <x>` last.
    PaymentPath {
        /// Concurrent batches (and database connections).
        #[arg(long, default_value_t = 8)]
        clients: usize,
        /// Payments handed to the engine at once, as a poller hands it a receive (at most 10).
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=10))]
        batch: u16,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Unpaid bills to seed; the run fails if it runs out.
        #[arg(long, default_value_t = 240_000)]
        bills: u32,
        /// Pay by card instead, through a processor stand-in that answers at once, then settle
        /// every payment by its webhook, in batches as for the payments. Prints
        /// `card_payment_path_tps <x>` and `settle_path_tps <y>` last.
        #[arg(long)]
        card: bool,
    },
}

/// The exit status of a run in which no request was answered.
const UNANSWERED: u8 = 98;

const RUN_HELP: &str = "\
Exit status:
  0   the run ended, its books balance, every threshold held
  1   the run could not be made, or the books do not match the receipts
  98  nothing answered: every measured request (or every login) timed out, thresholds or not
  99  a threshold was breached (each is printed with a ✓ or ✗ and what was measured)";

fn parse_percent(text: &str) -> anyhow::Result<f64> {
    let value: f64 = text
        .trim()
        .trim_end_matches('%')
        .parse()
        .with_context(|| format!("{text:?} is not a number"))?;
    Threshold::max_timeout_rate(value)?;
    Ok(value)
}

#[derive(Args, Clone)]
struct LoadArgs {
    /// The gateway's base URL (a deployed stage, or the local stack's).
    #[arg(long, env = "QBILL_GATEWAY_URL")]
    gateway: Option<String>,
    /// Talk to SQS directly (`AWS_ENDPOINT_URL` for an emulator), with messages shaped as the
    /// gateway shapes them: measures the workers without the gateway. Wins over --gateway.
    #[arg(long)]
    sqs: bool,
    /// The target is `qbill-loadtest echo`, not the engine: no users, no logins, no books.
    #[arg(long)]
    echo: bool,
    /// The request queue, in --sqs mode.
    #[arg(long, env = "QBILL_REQUEST_QUEUE", default_value = "qbill-requests")]
    request_queue: String,
    #[arg(long, env = "QBILL_REPLY_QUEUE_PREFIX", default_value = "qbill-reply-")]
    reply_prefix: String,
    /// Simulated clients, each with its own reply queue.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Target requests per second across all clients (open loop). Without it, closed loop.
    #[arg(long)]
    rate: Option<f64>,
    /// Closed loop: requests each client keeps outstanding.
    #[arg(long, default_value_t = 1)]
    in_flight: usize,
    /// Seconds over which the rate (or the clients) ramp up to the target.
    #[arg(long, default_value_t = 2.0)]
    ramp_up: f64,
    /// Seconds from the start whose requests are left out of the figures.
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    /// Seconds measured after the warm-up.
    #[arg(long)]
    duration: Option<f64>,
    /// Measured requests to send (with --duration, whichever comes first).
    #[arg(long)]
    requests: Option<u64>,
    /// Seconds without a reply after which a request counts as timed out.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// Seconds each poll of a reply queue may wait (long polling, 0 to 20). LocalStack's gateway
    /// holds a thread per waiting poll: keep this low against it.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u8).range(0..=20))]
    poll_wait: u8,
    /// Operation weights.
    #[arg(long, default_value = "auth=1,utils=4,histories=2,payments=3")]
    mix: Mix,
    /// Households to create (default: enough for the run's payments, at least one per client).
    /// With more than clients, each client acts for several in turn; with fewer, they share.
    #[arg(long)]
    users: Option<u32>,
    /// Username prefix of the created users (default: a fresh one per run).
    #[arg(long)]
    prefix: Option<String>,
    /// Months of unpaid bills per household (4 bills a month).
    #[arg(long)]
    periods: Option<u32>,
}

impl LoadArgs {
    fn plan(&self) -> anyhow::Result<Plan> {
        if self.duration.is_none() && self.requests.is_none() {
            bail!("say how long to run: --duration SECONDS or --requests N");
        }
        if self.clients == 0 || self.in_flight == 0 {
            bail!("--clients and --in-flight must be at least 1");
        }
        if self.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
            bail!("--rate must be above 0");
        }
        let seconds = |s: f64, name: &str| {
            Duration::try_from_secs_f64(s)
                .with_context(|| format!("--{name} must be 0 or more seconds"))
        };
        Ok(Plan {
            clients: self.clients,
            rate: self.rate,
            in_flight: self.in_flight,
            ramp_up: seconds(self.ramp_up, "ramp-up")?,
            warmup: seconds(self.warmup, "warmup")?,
            duration: self.duration.map(|d| seconds(d, "duration")).transpose()?,
            requests: self.requests,
            timeout: seconds(self.timeout, "timeout")?,
            poll_wait: self.poll_wait,
            mix: self.mix.clone(),
            log_in: !self.echo,
            contention: false,
        })
    }

    async fn transport(&self) -> anyhow::Result<Transport> {
        match (&self.gateway, self.sqs) {
            (_, true) => Transport::sqs(&self.request_queue, &self.reply_prefix).await,
            (Some(url), false) => Transport::gateway(url),
            (None, false) => bail!("give --gateway URL (or QBILL_GATEWAY_URL), or --sqs"),
        }
    }

    /// Creates the run's users, with bills enough for `runs` runs of the plan.
    async fn users(
        &self,
        db: &deadpool_postgres::Pool,
        plan: &Plan,
        runs: usize,
    ) -> anyhow::Result<Vec<load::User>> {
        if self.echo {
            // The echo answers anything: made-up users with made-up bills will do.
            return Ok((0..plan.clients as i64)
                .map(|i| load::User {
                    user_id: i,
                    username: format!("echo-{i}"),
                    password: "echo".into(),
                    apartment: i,
                    unpaid: (0..100_000).map(|b| i * 100_000 + b).collect(),
                })
                .collect());
        }
        // Payments take 1.25 bills on average; a margin of a half on top. A household has a
        // year of bills at most, so that debts and histories stay the size real ones are; more
        // bills mean more households, which the clients take on in turn.
        let bills = plan.expected_requests() as f64
            * plan.mix.share(Op::Payments)
            * 1.25
            * 1.5
            * runs as f64;
        let periods = self.periods.unwrap_or(12).max(1);
        let count = self.users.unwrap_or_else(|| {
            ((bills / f64::from(periods) / 4.0).ceil() as u32).clamp(plan.clients as u32, 100_000)
        });
        let prefix = self
            .prefix
            .clone()
            .unwrap_or_else(|| format!("lt-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]));
        eprintln!("creating {count} users {prefix}-* with {periods} months of bills each");
        books::users(db, &prefix, count, periods).await
    }
}

fn database() -> anyhow::Result<deadpool_postgres::Pool> {
    store::pool(&owner_url()?, 4)
}

/// The database login the harness creates its users and checks the books with: the owner's
/// (`QBILL_MIGRATION_DATABASE_URL`) when the environment names one, else `DATABASE_URL`'s. The
/// workers it starts connect with `DATABASE_URL`, the application's login.
pub fn owner_url() -> anyhow::Result<secrecy::SecretString> {
    std::env::var("QBILL_MIGRATION_DATABASE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .or_else(|| std::env::var("DATABASE_URL").ok())
        .map(Into::into)
        .context("DATABASE_URL must name the database (to create users and check the books)")
}

/// The engine runs in this process for the payment and settle paths: the same allocator as the
/// worker's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("QBILL_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Run {
            load,
            out,
            mut thresholds,
            max_timeout_rate,
        } => {
            if let Some(percent) = max_timeout_rate {
                thresholds.push(Threshold::max_timeout_rate(percent)?);
            }
            let plan = load.plan()?;
            let timeout = plan.timeout;
            // A mark of an earlier run's clock goes first: it would start a watcher too early.
            let _ = std::fs::remove_file(out.join("clock-started"));
            let db = database()?;
            let transport = Arc::new(load.transport().await?);
            let users = load.users(&db, &plan, 1).await?;
            let apartments: Vec<i64> = users.iter().map(|u| u.apartment).collect();
            eprintln!("{} clients against {}", plan.clients, transport.describe());
            // `clock-started` in the output folder marks the end of the setup (the users made,
            // every household logged in): what watches the run (scripts/bench's CPU time) starts
            // from there.
            let marker = out.join("clock-started");
            let (started, clock) = tokio::sync::oneshot::channel();
            tokio::spawn(async move {
                if clock.await.is_ok() {
                    let _ = std::fs::create_dir_all(marker.parent().expect("a folder"));
                    let _ = std::fs::write(&marker, "");
                }
            });
            let hooks = load::Hooks {
                started: Some(started),
                journal: None,
            };
            let outcome = match load::run_with(transport.clone(), plan.clone(), &users, hooks).await
            {
                Ok(outcome) => outcome,
                Err(error) if error.is::<load::Unanswered>() => {
                    transport.cleanup().await;
                    eprintln!("Error: {error:#}");
                    return Ok(ExitCode::from(UNANSWERED));
                }
                Err(error) => return Err(error),
            };
            transport.cleanup().await;
            println!("{}", report::table(&outcome.figures));
            let books = if load.echo {
                None
            } else {
                let books = books::check(&db, &outcome.receipts, &apartments).await?;
                println!("{}", report::books_line(&books));
                Some(books)
            };
            let balanced = books.as_ref().is_none_or(books::Books::balanced);
            let verdicts: Vec<_> = thresholds
                .iter()
                .map(|t| t.check(&outcome.figures))
                .collect();
            for verdict in &verdicts {
                println!("{verdict}");
            }
            let (measured, unanswered) = {
                let total = &outcome.figures.total;
                (total.requests, total.replies() == 0)
            };
            report::write_run(
                &out,
                &report::RunReport {
                    target: transport.describe(),
                    plan,
                    users: users.len(),
                    figures: outcome.figures,
                    payments_without_bills: outcome.payments_without_bills,
                    stray_replies: outcome.stray_replies,
                    books,
                    thresholds: verdicts.clone(),
                },
            )?;
            println!("report: {}", out.join("report.html").display());
            if !balanced {
                bail!("the books do not match the receipts");
            }
            if unanswered {
                eprintln!(
                    "Error: {}",
                    load::Unanswered {
                        what: "requests",
                        sent: measured,
                        timeout,
                    }
                );
                return Ok(ExitCode::from(UNANSWERED));
            }
            let breached = verdicts.iter().filter(|v| !v.passed).count();
            if breached > 0 {
                eprintln!("{breached} of {} thresholds breached", verdicts.len());
                return Ok(ExitCode::from(BREACHED));
            }
        }
        Command::Scale {
            load,
            workers,
            qbill,
            out,
        } => {
            let plan = load.plan()?;
            let db = database()?;
            let qbill = match qbill {
                Some(path) => path,
                None => scale::qbill_binary()?,
            };
            let transport = Arc::new(load.transport().await?);
            let users = load.users(&db, &plan, workers.len()).await?;
            let apartments: Vec<i64> = users.iter().map(|u| u.apartment).collect();
            let (steps, receipts) =
                scale::run(transport.clone(), &plan, &users, &workers, &qbill, &db).await?;
            transport.cleanup().await;
            let books = books::check(&db, &receipts, &apartments).await?;
            println!("{}", report::scale_table(&steps));
            println!("{}", report::books_line(&books));
            let balanced = books.balanced();
            report::write_scale(
                &out,
                &report::ScaleReport {
                    target: transport.describe(),
                    plan,
                    steps,
                    books: Some(books),
                },
            )?;
            println!("report: {}", out.join("scale.html").display());
            if !balanced {
                bail!("the books do not match the receipts");
            }
        }
        Command::LambdaDuration(args) => {
            let status = lambda_duration::run(args).await?;
            return Ok(ExitCode::from(u8::try_from(status).unwrap_or(1)));
        }
        Command::Chaos(args) => {
            if !chaos::run(args).await? {
                bail!("a chaos check failed; the report names the requests");
            }
        }
        Command::Memory {
            logins,
            workers,
            qbill,
            bootstrap,
            out,
        } => {
            let qbill = match qbill {
                Some(path) => path,
                None => scale::qbill_binary()?,
            };
            let db = database()?;
            let prefix = format!("mem-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
            let users = books::users(&db, &prefix, logins, 1).await?;
            let queue = format!("qbill-memory-{}", &prefix[4..]);
            qbill_sqs::client()
                .await
                .create_queue()
                .queue_name(&queue)
                .send()
                .await
                .with_context(|| format!("creating {queue}"))?;
            std::fs::create_dir_all(&out)?;
            let pool = memory::pool(
                &qbill,
                workers,
                &queue,
                &users,
                &out.join("memory-worker.log"),
            )
            .await?;
            println!(
                "memory: qbill work --workers {workers}, {logins} logins at once: fresh {:.0} MiB, peak {:.0} MiB",
                pool.fresh_mib, pool.peak_mib
            );
            if let Some(bootstrap) = bootstrap {
                let lambda = memory::lambda(&bootstrap, &users).await?;
                println!(
                    "memory: Lambda bootstrap, {logins} logins in batches of 10: fresh {:.0} MiB, peak {:.0} MiB",
                    lambda.fresh_mib, lambda.peak_mib
                );
                println!("lambda_peak_rss_mib {:.0}", lambda.peak_mib);
            }
            println!("worker_peak_rss_mib {:.0}", pool.peak_mib);
        }
        Command::Echo { workers } => {
            let stop = CancellationToken::new();
            tokio::spawn({
                let stop = stop.clone();
                async move {
                    shutdown_signal().await;
                    stop.cancel();
                }
            });
            let echoed = echo::serve(SqsConfig::from_env()?, workers, stop).await?;
            eprintln!("echoed {echoed} messages");
        }
        Command::CreateQueue { name } => {
            let client = qbill_sqs::client().await;
            let url = client
                .create_queue()
                .queue_name(&name)
                .attributes(
                    aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
                    "30",
                )
                .send()
                .await
                .with_context(|| format!("creating {name}"))?
                .queue_url
                .unwrap_or_default();
            println!("{url}");
        }
        Command::PaymentPath {
            clients,
            batch,
            seconds,
            bills,
            card,
        } => {
            let mut config = EngineConfig::from_env()?;
            config.database_pool_size = clients;
            let db = database()?;
            let count = (clients as u32 * 8).max(1);
            let prefix = format!("pp-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
            let periods = bills.div_ceil(count * 4).max(1);
            let users = books::users(&db, &prefix, count, periods).await?;
            let batch = usize::from(batch);
            let show = |what: &str, f: &payment_path::Figures| {
                println!(
                    "{what}: {} in {:.2} s by {clients} clients in batches of {batch}: {:.0}/s, p50 {:.2} ms, p99 {:.2} ms (a batch's time)",
                    f.payments, f.seconds, f.per_second, f.p50_ms, f.p99_ms
                )
            };
            if card {
                let figures = settle_path::run(config, &db, users, clients, batch, seconds).await?;
                show("card payments (pending, intent created)", &figures.card);
                show("settle path (their webhooks)", &figures.settle);
                println!("card_payment_path_tps {:.1}", figures.card.per_second);
                println!("settle_path_tps {:.1}", figures.settle.per_second);
            } else {
                let engine = Arc::new(Engine::from_config(&config).await?);
                let figures = payment_path::run(engine, users, clients, batch, seconds).await?;
                show("payment path (ledger)", &figures);
                println!("payment_path_tps {:.1}", figures.per_second);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
