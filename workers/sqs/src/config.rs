//! Where the worker reads requests and writes replies.

use anyhow::bail;

#[derive(Debug, Clone)]
pub struct SqsConfig {
    /// The shared request queue the gateway writes to (a name, or a full queue URL).
    pub request_queue: String,
    /// Every reply queue is this prefix plus the client's UUID; IAM scopes access by it.
    pub reply_queue_prefix: String,
    /// How long a reply waits for its client. Kept below the 12-hour invisibility a read gives
    /// a reply, so a reply that was read is gone before it could be seen again.
    pub reply_retention_seconds: u32,
    /// Long-poll wait of each receive, 0 to 20 seconds; also the longest a drain waits for an
    /// idle receive to return.
    pub poll_wait_seconds: i32,
    /// Messages per receive, 1 to 10.
    pub batch_size: i32,
    /// `arn:<partition>:sqs:<region>:<account>:` plus the reply prefix: with it, each reply queue
    /// is created with a policy refusing calls made without TLS.
    pub reply_queue_arn_prefix: Option<String>,
    /// A reply queue that is empty and got no reply for this long is deleted by the sweeper.
    pub reply_idle_seconds: u64,
    /// How often each pool sweeps the reply queues; 0 turns the sweeper off.
    pub sweep_interval_seconds: u64,
    /// How often each pool runs the overdue job (`qbill_core::jobs::overdue`); 0 turns it off.
    pub overdue_interval_seconds: u64,
    /// How often each pool runs the due-soon job (`qbill_core::jobs::due_soon`); 0 turns it off.
    pub due_soon_interval_seconds: u64,
    /// How often each pool drains the notification outbox (`qbill_core::jobs::notify`); 0 turns
    /// it off. Mails go out right after their commit anyway; this retries the ones that failed
    /// and sends those the jobs recorded.
    pub notify_interval_seconds: u64,
    /// How often each pool runs the card payments' expiry job
    /// (`qbill_core::jobs::expire_payments`); 0 turns it off.
    pub expire_payments_interval_seconds: u64,
    /// How often each pool reconciles the processor's intents with the books
    /// (`qbill_core::jobs::reconcile`, over its window); 0 turns it off.
    pub reconcile_interval_seconds: u64,
    /// How often each pool closes the days that are over into the providers' settlements
    /// (`qbill_core::jobs::settle`); 0 turns it off.
    pub settle_interval_seconds: u64,
    /// How often each pool runs the events job (`qbill_core::jobs::events`: providers' webhooks,
    /// the event bus, events past their 30 days); 0 turns it off.
    pub events_interval_seconds: u64,
}

/// The settings of `SqsConfig` as given: flags or environment variables (see
/// `qbill_core::settings`).
#[derive(clap::Args, Debug, Clone)]
#[command(next_help_heading = "Queues")]
pub struct SqsSettings {
    /// The shared request queue the gateway writes to (a name, or a full queue URL).
    #[arg(long, env = "QBILL_REQUEST_QUEUE", default_value = "qbill-requests")]
    pub request_queue: String,
    /// Every reply queue is this prefix plus the client's UUID (at most 40 of a-z, 0-9, - and _).
    #[arg(long, env = "QBILL_REPLY_QUEUE_PREFIX", default_value = "qbill-reply-")]
    pub reply_queue_prefix: String,
    /// How long a reply waits for its client (60 to 43000).
    #[arg(long, env = "QBILL_REPLY_RETENTION_SECONDS", default_value_t = 3600)]
    pub reply_retention_seconds: u32,
    /// Long-poll wait of each receive (0 to 20).
    #[arg(long, env = "QBILL_POLL_WAIT_SECONDS", default_value_t = 10)]
    pub poll_wait_seconds: i32,
    /// Messages per receive (1 to 10).
    #[arg(long, env = "QBILL_BATCH_SIZE", default_value_t = 10)]
    pub batch_size: i32,
    /// `arn:<partition>:sqs:<region>:<account>:` plus the reply prefix: reply queues then refuse
    /// calls made without TLS.
    #[arg(long, env = "QBILL_REPLY_QUEUE_ARN_PREFIX")]
    pub reply_queue_arn_prefix: Option<String>,
    /// A reply queue empty and without a reply for this long is deleted by the sweeper.
    #[arg(long, env = "QBILL_REPLY_IDLE_SECONDS", default_value_t = 86_400)]
    pub reply_idle_seconds: u64,
    /// How often each pool sweeps the reply queues (0: never).
    #[arg(long, env = "QBILL_SWEEP_INTERVAL_SECONDS", default_value_t = 600)]
    pub sweep_interval_seconds: u64,
    /// How often each pool runs the overdue job (0: never).
    #[arg(long, env = "QBILL_OVERDUE_INTERVAL_SECONDS", default_value_t = 3600)]
    pub overdue_interval_seconds: u64,
    /// How often each pool runs the due-soon job (0: never).
    #[arg(long, env = "QBILL_DUE_SOON_INTERVAL_SECONDS", default_value_t = 3600)]
    pub due_soon_interval_seconds: u64,
    /// How often each pool drains the notification outbox (0: never).
    #[arg(long, env = "QBILL_NOTIFY_INTERVAL_SECONDS", default_value_t = 10)]
    pub notify_interval_seconds: u64,
    /// How often each pool runs the card payments' expiry job (0: never).
    #[arg(
        long,
        env = "QBILL_EXPIRE_PAYMENTS_INTERVAL_SECONDS",
        default_value_t = 300
    )]
    pub expire_payments_interval_seconds: u64,
    /// How often each pool reconciles the processor's intents with the books (0: never).
    #[arg(long, env = "QBILL_RECONCILE_INTERVAL_SECONDS", default_value_t = 3600)]
    pub reconcile_interval_seconds: u64,
    /// How often each pool closes the days that are over into settlements (0: never).
    #[arg(long, env = "QBILL_SETTLE_INTERVAL_SECONDS", default_value_t = 3600)]
    pub settle_interval_seconds: u64,
    /// How often each pool runs the events job: webhooks, the event bus (0: never).
    #[arg(long, env = "QBILL_EVENTS_INTERVAL_SECONDS", default_value_t = 5)]
    pub events_interval_seconds: u64,
}

impl SqsConfig {
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_settings(&qbill_core::settings::from_env()?)
    }

    pub fn from_settings(s: &SqsSettings) -> anyhow::Result<Self> {
        let config = Self {
            request_queue: s.request_queue.clone(),
            reply_queue_prefix: s.reply_queue_prefix.clone(),
            reply_retention_seconds: s.reply_retention_seconds,
            poll_wait_seconds: s.poll_wait_seconds,
            batch_size: s.batch_size,
            reply_queue_arn_prefix: qbill_core::settings::given(&s.reply_queue_arn_prefix),
            reply_idle_seconds: s.reply_idle_seconds,
            sweep_interval_seconds: s.sweep_interval_seconds,
            overdue_interval_seconds: s.overdue_interval_seconds,
            due_soon_interval_seconds: s.due_soon_interval_seconds,
            notify_interval_seconds: s.notify_interval_seconds,
            expire_payments_interval_seconds: s.expire_payments_interval_seconds,
            reconcile_interval_seconds: s.reconcile_interval_seconds,
            settle_interval_seconds: s.settle_interval_seconds,
            events_interval_seconds: s.events_interval_seconds,
        };
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if !(0..=20).contains(&self.poll_wait_seconds) {
            bail!("QBILL_POLL_WAIT_SECONDS must be 0 to 20");
        }
        if !(1..=10).contains(&self.batch_size) {
            bail!("QBILL_BATCH_SIZE must be 1 to 10");
        }
        if !(60..=43_000).contains(&self.reply_retention_seconds) {
            bail!(
                "QBILL_REPLY_RETENTION_SECONDS must be 60 to 43000 (below the 12-hour read invisibility)"
            );
        }
        if self.reply_idle_seconds < u64::from(self.reply_retention_seconds) {
            bail!("QBILL_REPLY_IDLE_SECONDS must be at least QBILL_REPLY_RETENTION_SECONDS");
        }
        let prefix_ok = self.reply_queue_prefix.len() <= 40
            && self
                .reply_queue_prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !prefix_ok {
            bail!("QBILL_REPLY_QUEUE_PREFIX must be at most 40 letters, digits, '-' or '_'");
        }
        Ok(())
    }
}
