//! How long the Lambda worker takes per batch, and how much CPU and memory it uses: the figures
//! `terraform/README.md`'s cost and scaling sections start from. Run by `scripts/lambda-duration`,
//! which sets up the databases, fauxqs and the load; read that script first.
//!
//! It stands in for what AWS runs around the function:
//! - the SQS event source mapping: receives up to `--batch-size` messages from the request queue,
//!   waiting up to `--window` seconds to fill a batch, hands them to the function as an SQS event,
//!   and deletes the messages the function did not report as failed;
//! - the execution environments: `--environments` `bootstrap` processes, each behind its own
//!   [`runtime_api`](qbill_loadtest::runtime_api) stand-in and taking one batch at a time.
//!
//! While the load command given after `--` runs, every invocation is timed (from the function
//! taking the event to its posting the result) and its CPU time read from `/proc`; the figures
//! end with `key value` lines, and every invocation is written to `--out` as JSON.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName, QueueAttributeName};
use qbill_loadtest::runtime_api::Function;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::process::Command;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::chaos::processes::status_kib;

#[derive(clap::Args)]
pub struct LambdaDurationArgs {
    /// The Lambda's `bootstrap` binary (built natively).
    #[arg(long)]
    bootstrap: PathBuf,
    /// Execution environments: bootstrap processes, each taking one batch at a time.
    #[arg(long, default_value_t = 2)]
    environments: usize,
    /// Messages a batch at most, as the event source mapping's batch size.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=10_000))]
    batch_size: u16,
    /// Seconds the event source mapping waits to fill a batch (its batching window).
    #[arg(long, default_value_t = 1.0)]
    window: f64,
    /// What the function is told it has; it sizes nothing here.
    #[arg(long, default_value_t = 256)]
    memory_mb: u32,
    /// The request queue the load goes to.
    #[arg(long, env = "QBILL_REQUEST_QUEUE", default_value = "qbill-requests")]
    queue: String,
    /// Where every invocation is written, as JSON.
    #[arg(long, default_value = "target/bench/lambda-duration.json")]
    out: PathBuf,
    /// The load: a command run to its end while the environments serve (after `--`).
    #[arg(last = true, required = true)]
    load: Vec<String>,
}

/// One invocation, as written to `--out`.
#[derive(Debug, Clone, Serialize)]
struct Record {
    environment: usize,
    messages: usize,
    failed: usize,
    routes: Vec<String>,
    /// `response` or `error`.
    kind: &'static str,
    ms: f64,
    cpu_ms: f64,
}

/// The SQS side of the event source mapping.
#[derive(Clone)]
struct Source {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    queue_arn: String,
}

/// Runs the load against the environments and prints the figures; returns the load command's
/// exit status.
pub async fn run(args: LambdaDurationArgs) -> anyhow::Result<i32> {
    if args.environments == 0 {
        bail!("--environments must be at least 1");
    }
    let window =
        Duration::try_from_secs_f64(args.window).context("--window must be 0 or more seconds")?;
    let client = qbill_sqs::client().await;
    let queue_url = qbill_sqs::queue_url(&client, &args.queue).await?;
    let queue_arn = client
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .ok()
        .and_then(|out| out.attributes?.remove(&QueueAttributeName::QueueArn))
        .unwrap_or_else(|| format!("arn:aws:sqs:us-east-1:000000000000:{}", args.queue));
    let source = Source {
        client,
        queue_url,
        queue_arn,
    };

    let mut functions = Vec::new();
    for _ in 0..args.environments {
        let mut command = Command::new(&args.bootstrap);
        command
            .env(
                "QBILL_LOG",
                std::env::var("QBILL_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null());
        functions.push(Function::start(command, args.memory_mb).await?);
    }
    // The init phase: secrets, pools, clients.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut pids = Vec::new();
    for (i, function) in functions.iter_mut().enumerate() {
        if let Some(status) = function.process().try_wait()? {
            bail!("bootstrap {i} exited during init ({status})");
        }
        pids.push(function.pid().context("a bootstrap without a pid")?);
    }
    let fresh_kib = pids
        .iter()
        .map(|pid| status_kib(*pid, "VmRSS").context("no VmRSS"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let cpu_start = pids
        .iter()
        .map(|pid| cpu_seconds(*pid))
        .collect::<anyhow::Result<Vec<_>>>()?;

    let stop = CancellationToken::new();
    let environments: Vec<_> = functions
        .into_iter()
        .enumerate()
        .map(|(i, function)| {
            let (source, stop) = (source.clone(), stop.clone());
            let batch_size = usize::from(args.batch_size);
            tokio::spawn(serve(i, function, source, batch_size, window, stop))
        })
        .collect();
    let (program, load_args) = args.load.split_first().context("no load command")?;
    let loaded = Command::new(program)
        .args(load_args)
        .status()
        .await
        .with_context(|| format!("running the load, {program}"))?;
    // What is left on the queue.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.cancel();
    let mut log = Vec::new();
    let mut finished = Vec::new();
    for environment in environments {
        let (function, records) = environment.await?;
        log.extend(records);
        finished.push(function);
    }
    let mut cpu_total = 0.0;
    for (pid, start) in pids.iter().zip(&cpu_start) {
        cpu_total += cpu_seconds(*pid)? - start;
    }
    let peak_kib = pids
        .iter()
        .map(|pid| status_kib(*pid, "VmHWM").context("no VmHWM"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for function in finished {
        function.kill().await?;
    }

    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, serde_json::to_string(&log)?)
        .with_context(|| format!("writing {}", args.out.display()))?;
    let invocations: Vec<&Record> = log.iter().filter(|r| r.kind == "response").collect();
    let messages: usize = invocations.iter().map(|r| r.messages).sum();
    if messages == 0 {
        bail!("no message was handled");
    }
    let ms: Vec<f64> = invocations.iter().map(|r| r.ms).collect();
    let mean = |values: &[f64]| values.iter().sum::<f64>() / values.len() as f64;
    let login = |r: &&&Record| r.routes.iter().any(|route| route == "auth");
    let with_login: Vec<f64> = invocations.iter().filter(login).map(|r| r.ms).collect();
    let without_login: Vec<f64> = invocations
        .iter()
        .filter(|r| !login(r))
        .map(|r| r.ms)
        .collect();
    let mean_batch = messages as f64 / invocations.len() as f64;
    let gb_seconds = ms.iter().sum::<f64>() / 1000.0 * f64::from(args.memory_mb) / 1024.0;
    println!(
        "invocations {} (errors {}), messages {messages}, mean batch {mean_batch:.2}, failed items {}",
        invocations.len(),
        log.len() - invocations.len(),
        invocations.iter().map(|r| r.failed).sum::<usize>()
    );
    println!(
        "invocation ms: mean {:.1} p50 {:.1} p90 {:.1} p99 {:.1} max {:.1}",
        mean(&ms),
        percentile(&ms, 50.0),
        percentile(&ms, 90.0),
        percentile(&ms, 99.0),
        percentile(&ms, 100.0)
    );
    for (name, values) in [
        ("with a login", &with_login),
        ("without a login", &without_login),
    ] {
        if !values.is_empty() {
            println!(
                "  batches {name}: {}, p50 {:.1} ms, mean {:.1} ms",
                values.len(),
                percentile(values, 50.0),
                mean(values)
            );
        }
    }
    let mib = |kib: &[u64]| {
        kib.iter()
            .map(|k| format!("{:.1}", *k as f64 / 1024.0))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "fresh RSS MiB [{}], peak RSS MiB [{}]",
        mib(&fresh_kib),
        mib(&peak_kib)
    );
    let status = loaded.code().unwrap_or(1);
    println!("load command exit status {status}");
    println!("lambda_invocation_ms_mean {:.2}", mean(&ms));
    println!("lambda_invocation_ms_p50 {:.2}", percentile(&ms, 50.0));
    println!("lambda_invocation_ms_p99 {:.2}", percentile(&ms, 99.0));
    println!("lambda_batch_mean {mean_batch:.2}");
    println!(
        "lambda_ms_per_message {:.2}",
        ms.iter().sum::<f64>() / messages as f64
    );
    println!(
        "lambda_cpu_ms_per_message {:.2}",
        cpu_total * 1000.0 / messages as f64
    );
    println!(
        "lambda_gb_seconds_per_million {:.0}",
        gb_seconds / messages as f64 * 1e6
    );
    println!(
        "lambda_peak_rss_mib {:.1}",
        peak_kib.iter().max().copied().unwrap_or(0) as f64 / 1024.0
    );
    Ok(status)
}

/// One environment's side of the event source mapping until `stop`: receive a batch, invoke,
/// delete what did not fail. Returns the function, still running, and its invocations.
async fn serve(
    environment: usize,
    mut function: Function,
    source: Source,
    batch_size: usize,
    window: Duration,
    stop: CancellationToken,
) -> (Function, Vec<Record>) {
    let mut log = Vec::new();
    let pid = function.pid().unwrap_or(0);
    while !stop.is_cancelled() {
        let mut batch = match source.receive(batch_size, 1).await {
            Ok(batch) if !batch.is_empty() => batch,
            Ok(_) => continue,
            Err(error) => {
                tracing::warn!(error = %format!("{error:#}"), "receiving a batch");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let window_ends = Instant::now() + window;
        while batch.len() < batch_size && Instant::now() < window_ends {
            let wait = window_ends
                .saturating_duration_since(Instant::now())
                .as_secs()
                .min(1) as i32;
            let more = source
                .receive(batch_size - batch.len(), wait)
                .await
                .unwrap_or_default();
            if more.is_empty() && wait == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            batch.extend(more);
        }
        let routes = batch
            .iter()
            .map(|m| {
                m.message_attributes
                    .as_ref()
                    .and_then(|a| a.get(qbill_core::envelope::attribute::ROUTE))
                    .and_then(|v| v.string_value.clone())
                    .unwrap_or_else(|| "?".into())
            })
            .collect();
        let cpu_before = cpu_seconds(pid).unwrap_or(0.0);
        let invoked = function
            .invoke(source.event(&batch), Duration::from_secs(120))
            .await;
        let cpu_after = cpu_seconds(pid).unwrap_or(0.0);
        let all: HashSet<&str> = batch.iter().filter_map(|m| m.message_id()).collect();
        let (kind, failed, ms) = match &invoked {
            Ok(invocation) => {
                let failed = match &invocation.result {
                    Ok(response) => match response["batchItemFailures"].as_array() {
                        Some(failures) => failures
                            .iter()
                            .filter_map(|f| f["itemIdentifier"].as_str())
                            .collect(),
                        None => all.clone(),
                    },
                    Err(_) => all.clone(),
                };
                let kind = if invocation.result.is_ok() {
                    "response"
                } else {
                    "error"
                };
                (kind, failed, invocation.duration.as_secs_f64() * 1000.0)
            }
            Err(error) => {
                eprintln!("environment {environment}: {error:#}");
                ("error", all.clone(), 0.0)
            }
        };
        let done: Vec<String> = batch
            .iter()
            .filter(|m| !m.message_id().is_some_and(|id| failed.contains(id)))
            .filter_map(|m| m.receipt_handle.clone())
            .collect();
        for chunk in done.chunks(10) {
            let _ = qbill_sqs::delete_batch(&source.client, &source.queue_url, chunk.to_vec())
                .send()
                .await;
        }
        log.push(Record {
            environment,
            messages: batch.len(),
            failed: failed.len(),
            routes,
            kind,
            ms,
            cpu_ms: (cpu_after - cpu_before) * 1000.0,
        });
        if invoked.is_err() {
            // The function is gone or stuck: this environment is done.
            break;
        }
    }
    (function, log)
}

impl Source {
    async fn receive(&self, most: usize, wait_seconds: i32) -> anyhow::Result<Vec<Message>> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(most.min(10) as i32)
            .wait_time_seconds(wait_seconds)
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .context("receiving from the request queue")?;
        Ok(out.messages.unwrap_or_default())
    }

    /// The SQS event the event source mapping hands the function.
    fn event(&self, messages: &[Message]) -> Value {
        let records: Vec<Value> = messages
            .iter()
            .map(|m| {
                let attributes: serde_json::Map<String, Value> = m
                    .message_attributes
                    .iter()
                    .flatten()
                    .map(|(name, value)| {
                        let value = json!({
                            "stringValue": value.string_value(),
                            "dataType": value.data_type(),
                        });
                        (name.clone(), value)
                    })
                    .collect();
                let mut system: serde_json::Map<String, Value> = m
                    .attributes
                    .iter()
                    .flatten()
                    .map(|(name, value)| (name.as_str().to_owned(), json!(value)))
                    .collect();
                system
                    .entry("ApproximateReceiveCount")
                    .or_insert_with(|| json!("1"));
                json!({
                    "messageId": m.message_id(),
                    "receiptHandle": m.receipt_handle(),
                    "body": m.body(),
                    "attributes": system,
                    "messageAttributes": attributes,
                    "md5OfBody": m.md5_of_body().unwrap_or_default(),
                    "eventSource": "aws:sqs",
                    "eventSourceARN": self.queue_arn,
                    "awsRegion": "us-east-1",
                })
            })
            .collect();
        json!({ "Records": records })
    }
}

/// User and system CPU time of a process so far, in seconds.
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading the CPU time of process {pid}"))?;
    // After the command name (in parentheses, and it may hold spaces), utime and stime are the
    // 12th and 13th fields (14th and 15th of the whole line).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| -> anyhow::Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("/proc/{pid}/stat has no field {}", i + 3))
    };
    let per_second = rustix::param::clock_ticks_per_second() as f64;
    Ok((ticks(11)? + ticks(12)?) as f64 / per_second)
}

/// The value at percentile `p` (0 to 100) of `values`, the nearest rank.
fn percentile(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return 0.0;
    }
    let k = (p / 100.0 * (sorted.len() - 1) as f64).round() as usize;
    sorted[k.min(sorted.len() - 1)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_percentile_is_the_nearest_rank() {
        let values = [5.0, 1.0, 4.0, 2.0, 3.0];
        assert_eq!(percentile(&values, 0.0), 1.0);
        assert_eq!(percentile(&values, 50.0), 3.0);
        assert_eq!(percentile(&values, 100.0), 5.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }

    #[test]
    fn this_process_has_a_cpu_time() {
        assert!(cpu_seconds(std::process::id()).unwrap() >= 0.0);
    }
}
