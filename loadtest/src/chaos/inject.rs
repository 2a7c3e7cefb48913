//! The fault injector: carries out the schedule against the run's worker processes, proxies and
//! Redis, each fault at its moment and healed when it has lasted, and notes what it did.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::task::JoinSet;

use super::processes::WorkerProcess;
use super::proxy::Proxy;
use super::redis::RedisServer;
use super::schedule::{Fault, FaultKind};

/// What a fault broke.
pub struct Targets {
    pub workers: Vec<Arc<WorkerProcess>>,
    /// In front of Postgres, for the workers.
    pub postgres: Proxy,
    /// In front of SQS, for the workers (the clients reach SQS directly).
    pub sqs: Proxy,
    pub redis: RedisServer,
    /// In front of the payments processor, for the workers (none in the ledger mode).
    pub processor: Option<Proxy>,
}

/// A fault as it was carried out.
#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    pub kind: FaultKind,
    /// The worker process, for the faults on one.
    pub worker: Option<usize>,
    /// Seconds from the start of the load, as it happened.
    pub from: f64,
    pub to: f64,
    /// How it went, when not as planned (a restart that had to be tried again).
    pub note: Option<String>,
    /// The worker had exited by itself before the fault came: a finding, not the fault's doing.
    pub crashed: Option<String>,
}

/// How long a killed worker keeps trying to start again: it cannot while SQS is cut.
const RESTART_FOR: Duration = Duration::from_secs(60);
/// Replies (and every other call of the workers to SQS) wait this long each, per connection: long
/// enough that a receive, a reply and a delete together outlast the visibility timeout now and
/// then, and the message is handled again.
const DELAY: (Duration, Duration) = (Duration::from_millis(300), Duration::from_millis(3000));

/// Carries out `schedule` from `started`; returns once every fault is healed.
pub async fn run(
    targets: Arc<Targets>,
    schedule: Vec<Fault>,
    started: Instant,
    seed: u64,
) -> Vec<Applied> {
    let mut faults = JoinSet::new();
    for (n, fault) in schedule.into_iter().enumerate() {
        let targets = targets.clone();
        faults.spawn(async move {
            tokio::time::sleep_until((started + fault.at).into()).await;
            let from = started.elapsed().as_secs_f64();
            // A worker found dead was not killed by the run: say so before the fault hides it.
            let crashed = match fault.kind.on_worker() {
                true => match targets.workers[fault.worker].exit_status().await {
                    Ok(Some(status)) => Some(format!(
                        "worker {} had exited by itself ({status}) by t={from:.1}s",
                        fault.worker
                    )),
                    _ => None,
                },
                false => None,
            };
            match fault.kind.on_worker() {
                true => eprintln!(
                    "chaos: {fault} (pid {})",
                    targets.workers[fault.worker].pid()
                ),
                false => eprintln!("chaos: {fault}"),
            }
            let note = apply(&targets, &fault, seed.wrapping_add(n as u64)).await;
            if let Some(note) = &note {
                eprintln!("chaos: {} {note}", fault.kind);
            }
            Applied {
                kind: fault.kind,
                worker: fault.kind.on_worker().then_some(fault.worker),
                from,
                to: started.elapsed().as_secs_f64(),
                note,
                crashed,
            }
        });
    }
    let mut applied = Vec::new();
    while let Some(done) = faults.join_next().await {
        match done {
            Ok(one) => applied.push(one),
            Err(e) => eprintln!("chaos: a fault task failed: {e}"),
        }
    }
    applied.sort_by(|a, b| a.from.total_cmp(&b.from));
    applied
}

/// Breaks, waits `fault.lasts`, heals. Returns a note when something did not go as planned.
async fn apply(targets: &Targets, fault: &Fault, seed: u64) -> Option<String> {
    match fault.kind {
        FaultKind::KillWorker => {
            let worker = &targets.workers[fault.worker];
            let deadline = Instant::now() + RESTART_FOR;
            let mut tries = 1;
            let mut outcome = worker.kill_and_restart(fault.lasts).await;
            while let Err(e) = &outcome {
                if Instant::now() >= deadline {
                    return Some(format!("did not come back: {e:#}"));
                }
                tries += 1;
                outcome = worker.kill_and_restart(Duration::from_secs(1)).await;
            }
            (tries > 1).then(|| format!("restarted at try {tries} (SQS was unreachable)"))
        }
        FaultKind::PauseWorker => {
            let worker = &targets.workers[fault.worker];
            if let Err(e) = worker.pause().await {
                return Some(format!("could not pause: {e:#}"));
            }
            tokio::time::sleep(fault.lasts).await;
            worker
                .resume()
                .await
                .err()
                .map(|e| format!("could not resume: {e:#}"))
        }
        FaultKind::CutPostgres => {
            targets.postgres.cut();
            tokio::time::sleep(fault.lasts).await;
            targets.postgres.restore();
            None
        }
        FaultKind::CutSqs => {
            targets.sqs.cut();
            tokio::time::sleep(fault.lasts).await;
            targets.sqs.restore();
            None
        }
        FaultKind::DelayReplies => {
            targets.sqs.delay(DELAY.0, DELAY.1, seed);
            tokio::time::sleep(fault.lasts).await;
            targets.sqs.restore();
            None
        }
        FaultKind::CutProcessor | FaultKind::SlowProcessor => {
            let Some(processor) = &targets.processor else {
                return Some("no payments processor in this run".to_owned());
            };
            if fault.kind == FaultKind::CutProcessor {
                processor.cut();
            } else {
                processor.delay(DELAY.0, DELAY.1, seed);
            }
            tokio::time::sleep(fault.lasts).await;
            processor.restore();
            None
        }
        FaultKind::KillRedis => {
            if let Err(e) = targets.redis.kill().await {
                return Some(format!("could not kill Redis: {e:#}"));
            }
            tokio::time::sleep(fault.lasts).await;
            targets
                .redis
                .restart()
                .await
                .err()
                .map(|e| format!("Redis did not come back: {e:#}"))
        }
    }
}
