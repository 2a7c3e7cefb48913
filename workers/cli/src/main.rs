//! The operator binary. See `qbill --help`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use qbill::client::{GatewayClient, Params};
use qbill::{exit, password};
use qbill_core::config::{DatabaseConfig, EngineConfig};
use qbill_core::routes::{
    apartments_link, auth, bill, bill_void, bills_ingest, document, email_undo, logout, me,
    me_delete, me_password, me_phone_verify, me_profile, notifications, password_reset,
    password_reset_confirm, payments_external, policy, provider, refresh, refund, signup, user,
    verify_email,
};
use qbill_core::settings::EngineSettings;
use qbill_core::types::{ApartmentId, ProviderId, Role};
use qbill_core::{Engine, seed, store};

use qbill_sqs::{SqsConfig, SqsSettings, WorkerPool};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// mimalloc: the worker allocates and frees a reply's worth of small buffers per message, and
/// spends less time in the allocator with it than with the system's (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "qbill",
    version,
    about = "Utility billing over queues: workers, database and a client",
    after_help = "Exit codes: 0 done, 1 failed, 2 bad usage, 3 the engine replied with an error \
                  (client), 4 a check found a problem (status --check, payments discrepancies, \
                  migrate --dry-run)."
)]
struct Cli {
    /// What is logged, as tracing's filter directives (`info`, `qbill_core=debug,info`).
    #[arg(long, env = "QBILL_LOG", default_value = "info", global = true)]
    log: String,
    /// How logs are written to standard error.
    #[arg(long, env = "QBILL_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"], global = true)]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

/// What a worker pool runs with: `qbill work` takes it, `qbill config` shows it.
#[derive(clap::Args)]
struct WorkSettings {
    /// Concurrent pollers, each handling the messages of its batch together; the database pool
    /// (QBILL_DATABASE_POOL_SIZE, at least workers + 1) bounds the transactions under way.
    #[arg(long, env = "QBILL_WORKERS", default_value_t = 4)]
    workers: usize,
    /// Serve the workers' metrics as Prometheus text at http://ADDR/metrics.
    #[arg(long, env = "QBILL_METRICS_ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,
    #[command(flatten)]
    engine: EngineSettings,
    #[command(flatten)]
    queues: SqsSettings,
}

#[derive(Subcommand)]
enum Command {
    /// Runs a pool of workers on the shared request queue until SIGTERM or SIGINT, then drains.
    /// Every setting is a flag or its environment variable; `qbill config` shows what they are.
    Work {
        /// Apply pending migrations before starting.
        #[arg(long)]
        migrate: bool,
        #[command(flatten)]
        settings: Box<WorkSettings>,
    },
    /// Prints the configuration `qbill work` would run with: each setting, its value and where it
    /// came from (flag, environment, default); secrets only as set or unset.
    Config {
        /// As a JSON array.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        settings: Box<WorkSettings>,
    },
    /// The request queue's depth, in-flight count and oldest message age, the dead-letter queue,
    /// the reply queues alive and the workers' throughput, in one screen.
    Status(StatusArgs),
    /// Applies the numbered migrations of `sql/` that the database lacks.
    Migrate {
        /// Lists what would be applied and applies nothing; exits 4 if anything is pending.
        #[arg(long)]
        dry_run: bool,
        #[command(subcommand)]
        command: Option<MigrateCommand>,
    },
    /// Writes the contract from the routes: the gateway's paths and request models, the gateway
    /// check's lists, the web app's route map and the docs' table of routes.
    Contract {
        /// Writes nothing; fails, naming each file and line, if any of them drifted.
        #[arg(long)]
        check: bool,
    },
    /// Loads seed data.
    #[command(subcommand)]
    Seed(SeedCommand),
    /// Sends one request through the gateway and prints its reply.
    Client(ClientArgs),
    /// The dead-letter queue: what landed there, and sending it back.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Deletes the reply queues that are empty and got no reply for QBILL_REPLY_IDLE_SECONDS
    /// (pools also do this every QBILL_SWEEP_INTERVAL_SECONDS).
    SweepReplies,
    /// Operator tasks on the database.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Runs a background job once (pools run them every interval, AWS on a schedule).
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// The notification outbox.
    #[command(subcommand)]
    Notifications(NotificationsCommand),
    /// Card payments and the processor.
    #[command(subcommand)]
    Payments(PaymentsCommand),
}

#[derive(Subcommand)]
enum MigrateCommand {
    /// Every migration with whether and when it was applied, and those pending.
    Info,
}

#[derive(Subcommand)]
enum PaymentsCommand {
    /// Reconciles the processor's intents of the window with the books (settling what a lost
    /// webhook left pending) and lists every other difference as JSON lines; exits 4 if any.
    Discrepancies {
        /// How far back to look, in hours.
        #[arg(long, default_value_t = 72)]
        since_hours: i64,
    },
}

#[derive(Parser)]
struct StatusArgs {
    #[command(flatten)]
    queues: DlqQueues,
    /// The reply queues' prefix.
    #[arg(long, env = "QBILL_REPLY_QUEUE_PREFIX", default_value = "qbill-reply-")]
    reply_queue_prefix: String,
    /// A worker's metrics endpoint (`qbill work --metrics-addr`), e.g.
    /// http://127.0.0.1:9464/metrics; repeat it for each worker process.
    #[arg(long = "metrics")]
    metrics: Vec<String>,
    /// Refresh every `--interval` until interrupted.
    #[arg(long)]
    watch: bool,
    /// Seconds the workers' rates are measured over, and between refreshes.
    #[arg(long, default_value_t = 2)]
    interval: u64,
    /// Prints the snapshot (and with --check, the checks) as JSON.
    #[arg(long, conflicts_with = "watch")]
    json: bool,
    /// Exits 4 when the dead-letter queue holds messages, a metrics endpoint does not answer, or
    /// the oldest request a worker holds is older than --max-age-seconds (for monitors and
    /// scripts; a line per check says which).
    #[arg(long, conflicts_with = "watch")]
    check: bool,
    /// The oldest request's age --check allows.
    #[arg(long, default_value_t = 60)]
    max_age_seconds: u64,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Creates a user (the password is asked for at a terminal, read from standard input
    /// otherwise, never an argument); a user of that name and role that exists already is left as
    /// it is.
    CreateUser {
        #[arg(long, value_parser = ["household", "provider", "operator"])]
        role: String,
        /// The provider a provider's user acts for.
        #[arg(long)]
        provider_id: Option<i64>,
        #[arg(long)]
        username: String,
    },
    /// Unlinks a provider's account from its household's apartment and, with --to-apartment,
    /// links it to that one (households cannot: an account linked already refuses every code).
    /// The bills it had stay with the apartment they are in; its code is voided, and the
    /// provider's next ingest naming it carries a new one. Prints what it did as a JSON line;
    /// run again, it changes nothing.
    MoveAccount {
        #[arg(long)]
        provider_id: i64,
        #[arg(long)]
        account_number: String,
        /// The apartment its bills go to from now on; without it, the account is nobody's.
        #[arg(long)]
        to_apartment: Option<i64>,
    },
}

#[derive(Subcommand)]
enum JobsCommand {
    /// Marks open bills past their due date plus grace overdue and charges late fees, once.
    Overdue,
    /// Tells households of the open bills due within 3 days (bill.due_soon), once per bill.
    DueSoon,
    /// Sends the outbox's due mails (retrying failed ones whose backoff ran out), once.
    Notify,
    /// Asks the processor about card payments waiting longer than `--after-minutes`: settles
    /// those it captured, cancels the rest and releases their bills.
    ExpirePayments {
        #[arg(long, default_value_t = 30)]
        after_minutes: i64,
    },
    /// Compares the processor's intents of the last `--since-hours` with the books: settles what a
    /// lost webhook left pending, reports every other difference.
    Reconcile {
        #[arg(long, default_value_t = 72)]
        since_hours: i64,
    },
    /// Closes each UTC day that is over (since the last closed one) into every provider's
    /// settlements, once; a closed day never changes.
    Settle {
        /// The last day to close (YYYY-MM-DD); yesterday if not given.
        #[arg(long)]
        until: Option<chrono::NaiveDate>,
    },
    /// Delivers the providers' webhooks that are due (at least once, with backoff over 3 days),
    /// puts new events on the event bus (`QBILL_EVENT_BUS`), and forgets events after 30 days.
    Events,
}

#[derive(Subcommand)]
enum NotificationsCommand {
    /// Lists the mails given up on after repeated failures, newest first, as JSON lines.
    Failed {
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
}

#[derive(Subcommand)]
enum DlqCommand {
    /// Lists dead letters (route, request id, apartment, receives; never the body) as JSON lines.
    List {
        #[command(flatten)]
        queues: DlqQueues,
        #[arg(long, default_value_t = 100)]
        max: usize,
    },
    /// Moves every dead letter back to the request queue, unchanged.
    Redrive {
        #[command(flatten)]
        queues: DlqQueues,
    },
}

#[derive(Parser)]
struct DlqQueues {
    /// The request queue (name or URL).
    #[arg(long, env = "QBILL_REQUEST_QUEUE", default_value = "qbill-requests")]
    request_queue: String,
    /// The dead-letter queue (name or URL); by default the request queue's name plus `-dlq`.
    #[arg(long)]
    dead_letter_queue: Option<String>,
}

impl DlqQueues {
    async fn urls(&self, client: &aws_sdk_sqs::Client) -> anyhow::Result<(String, String)> {
        let request = qbill_sqs::queue_url(client, &self.request_queue).await?;
        let dead = match &self.dead_letter_queue {
            Some(queue) => queue.clone(),
            None => format!(
                "{}-dlq",
                self.request_queue
                    .rsplit('/')
                    .next()
                    .unwrap_or(&self.request_queue)
            ),
        };
        Ok((request, qbill_sqs::queue_url(client, &dead).await?))
    }
}

#[derive(Subcommand)]
enum SeedCommand {
    /// The demo set of the README (users demo and demo2); what exists is kept.
    Demo {
        /// First undo every payment made on the demo apartments since seeding.
        #[arg(long)]
        reset: bool,
    },
    /// Generates load-test users `{prefix}-000001`.. with password `{prefix}-password`.
    Users {
        #[arg(long, default_value = "load")]
        prefix: String,
        #[arg(long, default_value_t = 100)]
        count: u32,
        /// Monthly periods of unpaid bills (four utilities each).
        #[arg(long, default_value_t = 3)]
        periods: u32,
    },
}

#[derive(Parser)]
struct ClientArgs {
    /// The deployed stage's base URL.
    #[arg(long, env = "QBILL_GATEWAY_URL")]
    gateway: String,
    /// Your reply queue (a UUID); keep it for the whole session, the token is bound to it.
    #[arg(long, env = "QBILL_QUEUE")]
    queue: Option<Uuid>,
    /// The token from `auth`.
    #[arg(long, env = "QBILL_TOKEN")]
    token: Option<String>,
    /// The request id; reuse one to repeat a request safely.
    #[arg(long)]
    request_id: Option<Uuid>,
    /// How long to wait for the reply.
    #[arg(long, default_value_t = 30)]
    timeout_seconds: u64,
    #[command(subcommand)]
    request: ClientRequest,
}

#[derive(Subcommand)]
enum ClientRequest {
    /// Logs in; prints the reply and the export lines for the session. The password is
    /// QBILL_PASSWORD when set, else asked for at a terminal, else the first line of standard
    /// input (never an argument: it would show in `ps`).
    Auth {
        #[arg(long)]
        username: String,
        /// Print only the export lines on stdout (the reply goes to stderr), for
        /// `eval "$(qbill client auth ... --exports)"`.
        #[arg(long)]
        exports: bool,
    },
    /// The apartment's unpaid bills (a page of them: the reply's next_cursor asks for the next).
    Utils {
        apartment: i64,
        /// The `next_cursor` of the page before.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// The apartment's settled bills, optionally as a delta of the window you hold (a page of
    /// them: ask for the next with the reply's next_cursor and the same window).
    Histories {
        apartment: i64,
        #[arg(long, requires = "date_up")]
        date_down: Option<String>,
        #[arg(long, requires = "date_down")]
        date_up: Option<String>,
        /// The `next_cursor` of the page before.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Pays bills of the apartment, all or none.
    Pay {
        apartment: i64,
        #[arg(required = true)]
        bills: Vec<i64>,
        /// Pays with this test card: the CLI makes the card with the processor's API
        /// (`QBILL_STRIPE_API_BASE`, `QBILL_STRIPE_PUBLISHABLE_KEY`), as Stripe.js would.
        #[arg(long, value_name = "NUMBER")]
        card: Option<String>,
    },
    /// Records a payment made outside qbill that settles bills of the apartment, all or none
    /// (operators, or the provider of the bills): a bank transfer, cash, a cheque.
    PayExternal {
        apartment: i64,
        #[arg(required = true)]
        bills: Vec<i64>,
        #[arg(long, value_parser = ["bank_transfer", "cash", "cheque", "other"])]
        method: String,
        /// The payer's reference: the transfer's, the cheque's number, the cash receipt's.
        #[arg(long)]
        reference: String,
        /// The day the money came (YYYY-MM-DD); today (UTC) if not given.
        #[arg(long)]
        received_on: Option<chrono::NaiveDate>,
    },
    /// Gives back all or part of a settled card payment (operators).
    Refund {
        payment: Uuid,
        /// How much, like 12.50; all that is left if not given.
        #[arg(long)]
        amount: Option<String>,
        /// Why, for the household's mail and the audit trail.
        #[arg(long)]
        reason: String,
    },
    /// One bill of the apartment, with its lines and events.
    Bill { apartment: i64, bill: i64 },
    /// Links a provider's account to one of your apartments (or to a new one) with the
    /// activation code printed on its bill.
    ApartmentsLink {
        #[arg(long)]
        provider_id: i64,
        #[arg(long)]
        account_number: String,
        #[arg(long)]
        activation_code: String,
        /// One of your apartments; without it, a new apartment at the account's address.
        #[arg(long)]
        apartment_id: Option<i64>,
    },
    /// Sends a provider's bills: a JSON file (or - for standard input) holding `{"bills": [...]}`.
    BillsIngest { provider: i64, file: String },
    /// Voids a provider's open or overdue bill.
    BillVoid {
        provider: i64,
        bill: i64,
        #[arg(long)]
        reason: String,
    },
    /// Sets a provider's grace days and late fee (none without --late-fee-kind).
    Policy {
        provider: i64,
        #[arg(long)]
        grace_days: i32,
        #[arg(long, value_parser = ["fixed", "percent"], requires = "late_fee_value")]
        late_fee_kind: Option<String>,
        #[arg(long, requires = "late_fee_kind")]
        late_fee_value: Option<String>,
        #[arg(long, requires = "late_fee_kind")]
        late_fee_cap: Option<String>,
    },
    /// Adds a provider and its first user (operators; the password is read from standard input).
    Provider {
        #[arg(long)]
        name: String,
        #[arg(long)]
        currency: String,
        #[arg(long)]
        username: String,
    },
    /// Adds a user (operators; the password is read from standard input).
    User {
        #[arg(long)]
        username: String,
        #[arg(long, value_parser = ["household", "provider", "operator"])]
        role: String,
        #[arg(long)]
        provider_id: Option<i64>,
    },
    /// Opens a household account (the password is read from standard input); a verification
    /// link is mailed to the address.
    Signup {
        #[arg(long)]
        username: String,
        #[arg(long)]
        email: String,
    },
    /// Verifies an address with the token of its mailed link.
    VerifyEmail { token: String },
    /// Puts back the address a change replaced, with the token of the link mailed to it (every
    /// session ends).
    EmailUndo { token: String },
    /// Asks for a password reset mail (the same reply whether or not an account has the address).
    PasswordReset {
        #[arg(long)]
        email: String,
    },
    /// Sets a new password (read from standard input) with the token of the reset mail.
    PasswordResetConfirm { token: String },
    /// Trades a refresh token for a new pair; prints the export lines for the session.
    Refresh { refresh_token: String },
    /// Ends the session of a refresh token.
    Logout { refresh_token: String },
    /// Your account: who you are, your apartments, your notification preferences.
    Me,
    /// Changes your address, display name, phone number or notification preferences; a new
    /// address takes your current password, read from standard input; a new number is texted a
    /// code for `me-phone-verify`.
    MeProfile {
        #[arg(long)]
        email: Option<String>,
        #[arg(long, conflicts_with = "clear_display_name")]
        display_name: Option<String>,
        #[arg(long)]
        clear_display_name: bool,
        /// In international form, such as +447700900123.
        #[arg(long, conflicts_with = "remove_phone")]
        phone: Option<String>,
        #[arg(long)]
        remove_phone: bool,
        /// JSON such as `{"bill.created": {"email": false, "sms": true}}`.
        #[arg(long)]
        preferences: Option<String>,
    },
    /// Verifies your phone number with the six-digit code texted to it.
    MePhoneVerify { code: String },
    /// Changes your password: the current one, then the new one, on two lines of standard input.
    MePassword,
    /// Erases your personal data (your password is read from standard input).
    MeDelete,
    /// Your inbox, from after `--since-id` (the `next_since_id` of the reply before).
    Notifications {
        #[arg(long)]
        since_id: Option<i64>,
    },
    /// A receipt (--payment-id), a bill (--bill-id) or a statement (--from, --to: past days) of
    /// the apartment as a PDF or CSV file; prints a link valid 15 minutes, and with --out saves
    /// the file, checked against its sha256.
    Document {
        apartment: i64,
        #[arg(long, value_parser = ["receipt", "bill", "statement"])]
        kind: String,
        #[arg(long, value_parser = ["pdf", "csv"], default_value = "pdf")]
        format: String,
        #[arg(long)]
        payment_id: Option<Uuid>,
        #[arg(long)]
        bill_id: Option<i64>,
        /// The statement's first day (YYYY-MM-DD).
        #[arg(long, requires = "to")]
        from: Option<String>,
        /// The statement's last day, before today (UTC).
        #[arg(long, requires = "from")]
        to: Option<String>,
        /// Where to save the file.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
}

fn main() -> ExitCode {
    // A setting's variable exported empty counts as unset (its default), as it always has.
    for name in qbill_core::settings::blank_variables() {
        // SAFETY: no other thread exists yet; the runtime is built below.
        unsafe { std::env::remove_var(name) };
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(exit::FAILED);
        }
    };
    match runtime.block_on(run()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit::FAILED)
        }
    }
}

async fn run() -> anyhow::Result<ExitCode> {
    let mut definition = Cli::command();
    definition.build();
    let matches = definition.clone().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    init_tracing(&cli.log, &cli.log_format)?;
    match cli.command {
        Command::Work { migrate, settings } => work(*settings, migrate).await?,
        Command::Config { json, .. } => {
            let (name, sub) = matches.subcommand().expect("a subcommand");
            let command = definition
                .find_subcommand(name)
                .expect("the subcommand's definition");
            let settings = qbill::config::effective(command, sub);
            if json {
                println!("{}", serde_json::to_string_pretty(&settings)?);
            } else {
                print!("{}", qbill::config::render(&settings));
            }
        }
        Command::Status(args) => return status(args).await,
        Command::Contract { check } => qbill::contract::run(&qbill::contract::find_root()?, check)?,
        Command::Migrate { dry_run, command } => return migrate_command(dry_run, command).await,
        Command::Seed(command) => seed_command(command).await?,
        Command::Client(args) => return client(args).await,
        Command::Dlq(command) => dead_letters(command).await?,
        Command::Admin(command) => admin(command).await?,
        Command::Jobs(command) => jobs(command).await?,
        Command::Notifications(command) => notifications(command).await?,
        Command::Payments(PaymentsCommand::Discrepancies { since_hours }) => {
            let engine = Engine::from_config(&EngineConfig::from_env()?).await?;
            let since = chrono::Utc::now() - chrono::Duration::hours(since_hours);
            let report = qbill_core::jobs::reconcile::run(&engine.services, since).await?;
            for discrepancy in &report.discrepancies {
                println!("{}", serde_json::to_string(discrepancy)?);
            }
            return Ok(exit::check(!report.discrepancies.is_empty()));
        }
        Command::SweepReplies => {
            let config = SqsConfig::from_env()?;
            let settings =
                qbill_sqs::sweeper::Settings::new(Duration::from_secs(config.reply_idle_seconds));
            let stamps = qbill_core::cache::Cache::from_env().await?;
            let (report, left) = qbill_sqs::sweeper::sweep(
                &qbill_sqs::client().await,
                &stamps,
                settings,
                qbill_sqs::sweeper::shards(&config.reply_queue_prefix),
                None,
            )
            .await;
            println!(
                "examined {} reply queue(s), deleted {}, {} error(s)",
                report.examined, report.deleted, report.errors
            );
            anyhow::ensure!(
                left.is_empty(),
                "{} part(s) of the sweep could not be listed; run it again",
                left.len()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn admin(command: AdminCommand) -> anyhow::Result<()> {
    migrate_first().await?;
    let pool = store::connect(&DatabaseConfig::from_env()?.for_migrations()?, 2).await?;
    let done = match command {
        AdminCommand::CreateUser {
            role,
            provider_id,
            username,
        } => {
            let role = Role::parse(&role)?;
            let created = qbill_core::admin::create_user(
                &pool,
                &username,
                password::read_new(&format!("Password for {username}: "))?.into(),
                role,
                provider_id.map(ProviderId),
            )
            .await?;
            serde_json::to_string(&created)?
        }
        AdminCommand::MoveAccount {
            provider_id,
            account_number,
            to_apartment,
        } => {
            let to = to_apartment
                .map(|id| ApartmentId::from_body("--to-apartment", id))
                .transpose()?;
            let moved = qbill_core::admin::move_account(
                &pool,
                ProviderId::from_body("--provider-id", provider_id)?,
                &account_number,
                to,
            )
            .await?;
            serde_json::to_string(&moved)?
        }
    };
    println!("{done}");
    Ok(())
}

async fn jobs(command: JobsCommand) -> anyhow::Result<()> {
    let pool = store::connect_application(&DatabaseConfig::from_env()?, 2).await?;
    match command {
        JobsCommand::Overdue => {
            let report = qbill_core::jobs::overdue::run(&pool).await?;
            println!("{}", serde_json::to_string(&report)?);
        }
        JobsCommand::DueSoon => {
            let report = qbill_core::jobs::due_soon::run(&pool).await?;
            println!("{}", serde_json::to_string(&report)?);
        }
        JobsCommand::Notify => {
            // Mails need the signing key (their links) and the sender: the engine's services.
            let engine = Engine::from_config(&EngineConfig::from_env()?).await?;
            let report = qbill_core::jobs::notify::run(&engine.services).await?;
            println!("{}", serde_json::to_string(&report)?);
        }
        JobsCommand::ExpirePayments { after_minutes } => {
            let engine = Engine::from_config(&EngineConfig::from_env()?).await?;
            let after = chrono::Duration::minutes(after_minutes);
            let report = qbill_core::jobs::expire_payments::run(&engine.services, after).await?;
            println!("{}", serde_json::to_string(&report)?);
        }
        JobsCommand::Reconcile { since_hours } => {
            let engine = Engine::from_config(&EngineConfig::from_env()?).await?;
            let since = chrono::Utc::now() - chrono::Duration::hours(since_hours);
            let report = qbill_core::jobs::reconcile::run(&engine.services, since).await?;
            println!("{}", serde_json::to_string(&report)?);
        }
        JobsCommand::Settle { until } => {
            let engine = Engine::from_config(&EngineConfig::from_env()?).await?;
            let report = qbill_core::jobs::settle::run(&engine.services, until).await?;
            println!("{}", serde_json::to_string(&report)?);
        }
        JobsCommand::Events => {
            let engine = Engine::from_config(&EngineConfig::from_env()?).await?;
            let report = qbill_core::jobs::events::run(&engine.services).await?;
            println!("{}", serde_json::to_string(&report)?);
        }
    }
    Ok(())
}

async fn notifications(command: NotificationsCommand) -> anyhow::Result<()> {
    let NotificationsCommand::Failed { limit } = command;
    let pool = store::connect_application(&DatabaseConfig::from_env()?, 2).await?;
    for failed in qbill_core::jobs::notify::failed(&pool, limit).await? {
        println!("{}", serde_json::to_string(&failed)?);
    }
    Ok(())
}

fn init_tracing(log: &str, format: &str) -> anyhow::Result<()> {
    let mut filter = tracing_subscriber::EnvFilter::try_new(log)
        .with_context(|| format!("QBILL_LOG={log:?} is not a tracing filter"))?;
    for noisy in qbill_core::config::CRATES_HELD_AT_INFO {
        filter = filter.add_directive(format!("{noisy}=info").parse().expect("a valid directive"));
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
    Ok(())
}

async fn work(settings: WorkSettings, migrate: bool) -> anyhow::Result<()> {
    let workers = settings.workers;
    anyhow::ensure!(workers > 0, "--workers must be at least 1");
    if let Some(addr) = settings.metrics_addr {
        serve_metrics(addr)?;
    }
    let mut config = EngineConfig::from_settings(&settings.engine)?;
    // Every poller may hold one connection; a few more serve the cache-miss reads of auth.
    config.database_pool_size = config.database_pool_size.max(workers + 1);
    let sqs_config = SqsConfig::from_settings(&settings.queues)?;
    if migrate {
        store::migrate_deployment(&config.database)
            .await
            .context("migrating")?;
    }
    let engine = Arc::new(Engine::from_config(&config).await?);
    let pool = WorkerPool::new(engine, qbill_sqs::client().await, sqs_config).await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(forward_signals(shutdown.clone()));
    pool.run(workers, shutdown).await;
    Ok(())
}

/// Installs the Prometheus exporter, answering at http://`addr`/metrics: latencies as histograms
/// with buckets from 1 ms to 10 s, batch sizes by message count.
fn serve_metrics(addr: std::net::SocketAddr) -> anyhow::Result<()> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets(&[
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ])?
        .set_buckets_for_metric(
            Matcher::Full(qbill_core::metrics::RECEIVE_BATCH_SIZE.to_owned()),
            &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0],
        )?
        .install()
        .with_context(|| format!("serving metrics on {addr}"))?;
    qbill_core::metrics::describe();
    tracing::info!(%addr, "metrics at /metrics");
    Ok(())
}

/// `qbill status`: one screen, or one every interval with --watch; with --check, exit 4 on a
/// problem.
async fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let client = qbill_sqs::client().await;
    let (request_url, dead_letter_url) = args.queues.urls(&client).await?;
    let mut sampler = qbill::status::Sampler::new(
        client,
        args.queues.request_queue.clone(),
        request_url,
        dead_letter_url,
        args.reply_queue_prefix,
        args.metrics,
    );
    let interval = Duration::from_secs(args.interval.max(1));
    if !args.watch {
        let snapshot = sampler.sample(interval).await?;
        let checks = args.check.then(|| {
            snapshot.checks(qbill::status::Limits {
                max_age: Duration::from_secs(args.max_age_seconds),
            })
        });
        let failed = checks.iter().flatten().any(|c| !c.ok);
        if args.json {
            let mut out = serde_json::to_value(&snapshot)?;
            if let Some(checks) = &checks {
                out["checks"] = serde_json::to_value(checks)?;
                out["ok"] = (!failed).into();
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
        } else {
            print!("{}", snapshot.render());
            for check in checks.iter().flatten() {
                let mark = if check.ok { "✓" } else { "✗" };
                println!("{mark} {}: {}", check.name, check.detail);
            }
        }
        return Ok(exit::check(failed));
    }
    loop {
        let screen = sampler.screen(interval).await?;
        // Clear the terminal and draw from the top.
        print!("\x1b[2J\x1b[H{screen}");
        use std::io::Write as _;
        std::io::stdout().flush()?;
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        }
    }
}

/// SIGTERM and SIGINT both start the drain.
async fn forward_signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot listen for signals");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: draining"),
        _ = int.recv() => tracing::info!("SIGINT: draining"),
    }
    shutdown.cancel();
}

/// `qbill migrate`: applies what is pending; `--dry-run` and `info` only look.
async fn migrate_command(
    dry_run: bool,
    command: Option<MigrateCommand>,
) -> anyhow::Result<ExitCode> {
    let database = DatabaseConfig::from_env()?;
    if dry_run || command.is_some() {
        let pool = store::connect(&database.for_migrations()?, 1).await?;
        let migrations = store::migrations(&pool).await?;
        let pending: Vec<_> = migrations
            .iter()
            .filter(|m| m.applied_on.is_none())
            .collect();
        if matches!(command, Some(MigrateCommand::Info)) {
            for m in &migrations {
                let applied = m
                    .applied_on
                    .as_deref()
                    .map_or_else(|| "pending".to_owned(), |on| format!("applied {on}"));
                println!("V{:<4} {:<40} {applied}", m.version, m.name);
            }
        }
        println!(
            "{} migration(s), {} applied, {} pending{}",
            migrations.len(),
            migrations.len() - pending.len(),
            pending.len(),
            if dry_run && !pending.is_empty() {
                format!(
                    ": {} would be applied",
                    pending
                        .iter()
                        .map(|m| m.label())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            } else {
                String::new()
            }
        );
        return Ok(exit::check(dry_run && !pending.is_empty()));
    }
    let applied = store::migrate_deployment(&database).await?;
    let names = if applied.is_empty() {
        String::new()
    } else {
        format!(": {}", applied.join(", "))
    };
    println!("applied {} migration(s){names}", applied.len());
    Ok(ExitCode::SUCCESS)
}

/// Applies pending migrations before an operator command, saying so on standard error when it
/// applied any.
async fn migrate_first() -> anyhow::Result<()> {
    let applied = store::migrate_deployment(&DatabaseConfig::from_env()?).await?;
    if !applied.is_empty() {
        eprintln!(
            "migrated the database first: applied {}",
            applied.join(", ")
        );
    }
    Ok(())
}

async fn seed_command(command: SeedCommand) -> anyhow::Result<()> {
    migrate_first().await?;
    let pool = store::connect(&DatabaseConfig::from_env()?.for_migrations()?, 2).await?;
    match command {
        SeedCommand::Demo { reset } => {
            seed::demo(&pool, reset).await?;
            println!(
                "demo data loaded: users demo / demo-password (apartments 1, 2) and demo2 / demo2-password (apartment 3); operator ops / ops-password; Northwind's user northwind / northwind-password; account NW-20417, activation code NWND-DEMO-2026"
            );
        }
        SeedCommand::Users {
            prefix,
            count,
            periods,
        } => {
            let users = seed::users(&pool, &prefix, count, periods).await?;
            for user in &users {
                println!("{}\t{}\t{}", user.username, user.user_id, user.apartment_id);
            }
            eprintln!(
                "{} users of prefix {prefix:?}; password {prefix}-password",
                users.len()
            );
        }
    }
    Ok(())
}

async fn dead_letters(command: DlqCommand) -> anyhow::Result<()> {
    use qbill_sqs::dead_letters;
    let sqs = qbill_sqs::client().await;
    match command {
        DlqCommand::List { queues, max } => {
            let (_, dead) = queues.urls(&sqs).await?;
            let letters = dead_letters::list(&sqs, &dead, max).await?;
            for letter in &letters {
                println!("{}", serde_json::to_string(letter)?);
            }
            eprintln!("{} dead letter(s) in {dead}", letters.len());
        }
        DlqCommand::Redrive { queues } => {
            let (request, dead) = queues.urls(&sqs).await?;
            // A line when something changed, not one per poll of a long move task.
            let mut shown: Option<dead_letters::Progress> = None;
            let redriven = dead_letters::redrive(&sqs, &dead, &request, |progress| {
                if shown.as_ref() != Some(progress) {
                    eprintln!("redrive: {progress}");
                    shown = Some(progress.clone());
                }
            })
            .await?;
            let (way, end) = (&redriven.way, &redriven.end);
            if end.status != dead_letters::Status::Completed {
                anyhow::bail!(
                    "the redrive from {dead} to {request} {way} ended {}: {} message(s) moved",
                    end.status,
                    end.moved
                );
            }
            println!(
                "moved {} message(s) from {dead} back to {request} {way}",
                end.moved
            );
        }
    }
    Ok(())
}

async fn client(args: ClientArgs) -> anyhow::Result<ExitCode> {
    let queue = args.queue.unwrap_or_else(Uuid::new_v4);
    let mut client = GatewayClient::new(&args.gateway, queue);
    client.set_token(args.token);
    let request_id = args.request_id.unwrap_or_else(Uuid::new_v4);
    let timeout = Duration::from_secs(args.timeout_seconds);
    let reply = match &args.request {
        ClientRequest::Auth { username, .. } => {
            let password = match std::env::var("QBILL_PASSWORD") {
                Ok(password) if !password.is_empty() => password,
                _ => password::read(&format!("Password for {username}: "))?,
            };
            let body = auth::Body {
                username: username.clone(),
                password,
            };
            client
                .send::<auth::Request>(&[], &body, request_id, timeout)
                .await?
        }
        ClientRequest::Utils { apartment, cursor } => {
            client
                .utils_page(*apartment, cursor.as_deref(), request_id, timeout)
                .await?
        }
        ClientRequest::Histories {
            apartment,
            date_down,
            date_up,
            cursor,
        } => {
            let window = date_down.as_deref().zip(date_up.as_deref());
            client
                .histories_page(*apartment, window, cursor.as_deref(), request_id, timeout)
                .await?
        }
        ClientRequest::Pay {
            apartment,
            bills,
            card,
        } => {
            let method = match card {
                Some(number) => Some(
                    qbill_core::processor::stripe::Stripe::card(
                        &std::env::var("QBILL_STRIPE_API_BASE")
                            .unwrap_or_else(|_| "https://api.stripe.com".into()),
                        &std::env::var("QBILL_STRIPE_PUBLISHABLE_KEY")
                            .context("--card needs QBILL_STRIPE_PUBLISHABLE_KEY")?,
                        number,
                        12,
                        2034,
                        "123",
                    )
                    .await?,
                ),
                None => None,
            };
            client
                .pay(*apartment, bills, method, request_id, timeout)
                .await?
        }
        ClientRequest::PayExternal {
            apartment,
            bills,
            method,
            reference,
            received_on,
        } => {
            let params: Params = &[("apartment_id", apartment)];
            let body = payments_external::Body {
                bills_id: bills.clone(),
                method: serde_json::from_value(serde_json::Value::String(method.clone()))?,
                reference: reference.clone(),
                received_on: received_on.unwrap_or_else(|| chrono::Utc::now().date_naive()),
            };
            client
                .send::<payments_external::Request>(params, &body, request_id, timeout)
                .await?
        }
        ClientRequest::Refund {
            payment,
            amount,
            reason,
        } => {
            let params: Params = &[("payment_id", payment)];
            let body = refund::Body {
                amount: amount.clone(),
                reason: reason.clone(),
            };
            client
                .send::<refund::Request>(params, &body, request_id, timeout)
                .await?
        }
        ClientRequest::Bill { apartment, bill } => {
            let params: Params = &[("apartment_id", apartment), ("bill_id", bill)];
            client
                .send::<bill::Request>(params, &bill::Body {}, request_id, timeout)
                .await?
        }
        ClientRequest::ApartmentsLink {
            provider_id,
            account_number,
            activation_code,
            apartment_id,
        } => {
            let body = apartments_link::Body {
                provider_id: *provider_id,
                account_number: account_number.clone(),
                activation_code: activation_code.clone(),
                apartment_id: *apartment_id,
            };
            client
                .send::<apartments_link::Request>(&[], &body, request_id, timeout)
                .await?
        }
        ClientRequest::BillsIngest { provider, file } => {
            let raw = if file == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?
            };
            let body: bills_ingest::Body = serde_json::from_str(&raw).with_context(|| {
                format!("{file} is not a body of bills (`{{\"bills\": [...]}}`)")
            })?;
            client
                .send::<bills_ingest::Request>(
                    &[("provider_id", provider)],
                    &body,
                    request_id,
                    timeout,
                )
                .await?
        }
        ClientRequest::BillVoid {
            provider,
            bill,
            reason,
        } => {
            let params: Params = &[("provider_id", provider), ("bill_id", bill)];
            let body = bill_void::Body {
                reason: reason.clone(),
            };
            client
                .send::<bill_void::Request>(params, &body, request_id, timeout)
                .await?
        }
        ClientRequest::Policy {
            provider,
            grace_days,
            late_fee_kind,
            late_fee_value,
            late_fee_cap,
        } => {
            let late_fee = match late_fee_kind {
                Some(kind) => Some(policy::FeeBody {
                    kind: match kind.as_str() {
                        "fixed" => policy::FeeKind::Fixed,
                        "percent" => policy::FeeKind::Percent,
                        other => anyhow::bail!("--late-fee-kind is fixed or percent, not {other}"),
                    },
                    value: late_fee_value
                        .clone()
                        .context("--late-fee-value goes with --late-fee-kind")?,
                    cap: late_fee_cap.clone(),
                }),
                None => None,
            };
            let body = policy::Body {
                grace_days: *grace_days,
                late_fee,
            };
            client
                .send::<policy::Request>(&[("provider_id", provider)], &body, request_id, timeout)
                .await?
        }
        ClientRequest::Provider {
            name,
            currency,
            username,
        } => {
            let body = provider::Body {
                name: name.clone(),
                currency: currency.clone(),
                username: username.clone(),
                password: password::read_new(&format!("Password for {username}: "))?,
            };
            client
                .send::<provider::Request>(&[], &body, request_id, timeout)
                .await?
        }
        ClientRequest::User {
            username,
            role,
            provider_id,
        } => {
            let body = user::Body {
                username: username.clone(),
                password: password::read_new(&format!("Password for {username}: "))?,
                role: role.clone(),
                provider_id: *provider_id,
            };
            client
                .send::<user::Request>(&[], &body, request_id, timeout)
                .await?
        }
        ClientRequest::Signup { username, email } => {
            let body = signup::Body {
                username: username.clone(),
                email: email.clone(),
                password: password::read_new(&format!("Password for {username}: "))?,
            };
            client
                .send::<signup::Request>(&[], &body, request_id, timeout)
                .await?
        }
        ClientRequest::VerifyEmail { token } => {
            let body = verify_email::Body {
                token: token.clone(),
            };
            client
                .send::<verify_email::Request>(&[], &body, request_id, timeout)
                .await?
        }
        ClientRequest::EmailUndo { token } => {
            let body = email_undo::Body {
                token: token.clone(),
            };
            client
                .send::<email_undo::Request>(&[], &body, request_id, timeout)
                .await?
        }
        ClientRequest::PasswordReset { email } => {
            let body = password_reset::Body {
                email: email.clone(),
            };
            client
                .send::<password_reset::Request>(&[], &body, request_id, timeout)
                .await?
        }
        ClientRequest::PasswordResetConfirm { token } => {
            let body = password_reset_confirm::Body {
                token: token.clone(),
                new_password: password::read_new("New password: ")?,
            };
            client
                .send::<password_reset_confirm::Request>(&[], &body, request_id, timeout)
                .await?
        }
        ClientRequest::Refresh { refresh_token } => {
            let body = refresh::Body {
                refresh_token: refresh_token.clone(),
            };
            client
                .send::<refresh::Request>(&[], &body, request_id, timeout)
                .await?
        }
        ClientRequest::Logout { refresh_token } => {
            let body = logout::Body {
                refresh_token: refresh_token.clone(),
            };
            client
                .send::<logout::Request>(&[], &body, request_id, timeout)
                .await?
        }
        ClientRequest::Me => {
            client
                .send::<me::Request>(&[], &me::Body {}, request_id, timeout)
                .await?
        }
        ClientRequest::MeProfile {
            email,
            display_name,
            clear_display_name,
            phone,
            remove_phone,
            preferences,
        } => {
            let password = match email {
                Some(_) => Some(password::read("Current password: ")?),
                None => None,
            };
            let display_name = match display_name {
                Some(name) => Some(serde_json::Value::String(name.clone())),
                None if *clear_display_name => Some(serde_json::Value::Null),
                None => None,
            };
            let notification_preferences = match preferences {
                Some(raw) => {
                    Some(serde_json::from_str(raw).context("--preferences is not a JSON object")?)
                }
                None => None,
            };
            let phone = match phone {
                Some(number) => Some(serde_json::Value::String(number.clone())),
                None if *remove_phone => Some(serde_json::Value::Null),
                None => None,
            };
            let body = me_profile::Body {
                email: email.clone(),
                password,
                display_name,
                phone,
                notification_preferences,
            };
            client
                .send::<me_profile::Request>(&[], &body, request_id, timeout)
                .await?
        }
        ClientRequest::MePhoneVerify { code } => {
            let body = me_phone_verify::Body { code: code.clone() };
            client
                .send::<me_phone_verify::Request>(&[], &body, request_id, timeout)
                .await?
        }
        ClientRequest::MePassword => {
            let body = me_password::Body {
                password: password::read("Current password: ")?,
                new_password: password::read_new("New password: ")?,
            };
            client
                .send::<me_password::Request>(&[], &body, request_id, timeout)
                .await?
        }
        ClientRequest::MeDelete => {
            let body = me_delete::Body {
                password: password::read("Password, to erase your account: ")?,
            };
            client
                .send::<me_delete::Request>(&[], &body, request_id, timeout)
                .await?
        }
        ClientRequest::Notifications { since_id } => {
            let body = notifications::Body {
                since_id: since_id.map(serde_json::Value::from),
            };
            client
                .send::<notifications::Request>(&[], &body, request_id, timeout)
                .await?
        }
        ClientRequest::Document {
            apartment,
            kind,
            format,
            payment_id,
            bill_id,
            from,
            to,
            ..
        } => {
            let (from, to) = match (from, to) {
                (Some(from), Some(to)) => (Some(from.clone()), Some(to.clone())),
                _ => (None, None),
            };
            let body = document::Body {
                kind: kind.clone(),
                format: format.clone(),
                payment_id: payment_id.map(|p| p.to_string()),
                bill_id: *bill_id,
                from,
                to,
            };
            client
                .send::<document::Request>(
                    &[("apartment_id", apartment)],
                    &body,
                    request_id,
                    timeout,
                )
                .await?
        }
    };
    if let (ClientRequest::Document { out: Some(out), .. }, "ok") =
        (&args.request, reply["status"].as_str().unwrap_or_default())
    {
        let saved = download(&reply["data"], out).await?;
        eprintln!("saved {saved} bytes to {} (sha256 checked)", out.display());
    }
    let pretty = serde_json::to_string_pretty(&reply)?;
    let exports = match (&args.request, reply["data"]["token"].as_str()) {
        (ClientRequest::Auth { .. } | ClientRequest::Refresh { .. }, Some(token)) => Some(format!(
            "export QBILL_QUEUE={queue}\nexport QBILL_TOKEN={token}"
        )),
        _ => None,
    };
    match (&args.request, exports) {
        (ClientRequest::Auth { exports: true, .. }, exports) => {
            eprintln!("{pretty}");
            println!("{}", exports.unwrap_or_default());
        }
        (_, Some(exports)) => {
            println!("{pretty}");
            eprintln!("\n# to use this session:\n{exports}");
        }
        (_, None) => println!("{pretty}"),
    }
    Ok(if reply["status"] == "ok" {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(exit::ERROR_REPLY)
    })
}

/// Downloads the file a `document` reply links to into `out`, refusing one whose bytes are not
/// the ones the reply names; returns its size.
async fn download(document: &serde_json::Value, out: &std::path::Path) -> anyhow::Result<usize> {
    use sha2::{Digest, Sha256};
    let url = document["url"].as_str().context("the reply has no url")?;
    let response = reqwest::get(url)
        .await
        .context("downloading the document")?;
    let status = response.status();
    if !status.is_success() {
        anyhow::bail!("the document's link answered {status} (links last 15 minutes: ask again)");
    }
    let bytes = response.bytes().await?;
    let sha256 = qbill_core::types::hex(&Sha256::digest(&bytes));
    if Some(sha256.as_str()) != document["sha256"].as_str() {
        anyhow::bail!("the downloaded file's sha256 is {sha256}, not the document's");
    }
    std::fs::write(out, &bytes).with_context(|| format!("writing {}", out.display()))?;
    Ok(bytes.len())
}
