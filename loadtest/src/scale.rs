//! The scaling run: the same load against worker pools of different sizes, one after another,
//! each a real `qbill work --workers N` process on the request queue the load goes to.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use deadpool_postgres::Pool;
use tokio::process::{Child, Command};

use crate::load::{self, Plan, Receipt, User};
use crate::report::ScaleStep;
use crate::transport::Transport;

/// A worker pool in its own process, stopped with SIGTERM (it drains, then exits).
pub struct WorkerProcess {
    child: Child,
}

impl WorkerProcess {
    pub async fn start(qbill: &Path, workers: usize) -> anyhow::Result<Self> {
        let mut child = Command::new(qbill)
            .args(["work", "--workers", &workers.to_string()])
            .env("QBILL_DATABASE_POOL_SIZE", workers.max(1).to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", qbill.display()))?;
        // Its pollers are on the queue once it has connected; a pool that cannot start exits.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        if let Some(status) = child.try_wait()? {
            bail!("`qbill work` exited at once ({status}); run it by hand to see why");
        }
        Ok(Self { child })
    }

    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        match tokio::time::timeout(Duration::from_secs(60), self.child.wait()).await {
            Ok(status) => {
                status?;
            }
            Err(_) => self.child.kill().await?,
        }
        Ok(())
    }
}

/// Where `qbill` is: beside this binary (both are built into the same target directory).
pub fn qbill_binary() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe()?;
    let beside = me.with_file_name("qbill");
    if beside.exists() {
        return Ok(beside);
    }
    bail!(
        "no qbill binary beside {}; build it with `cargo build --release -p qbill`",
        me.display()
    )
}

async fn commits(db: &Pool) -> anyhow::Result<i64> {
    Ok(db
        .get()
        .await?
        .query_one(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
            &[],
        )
        .await?
        .get(0))
}

/// Runs `plan` once per worker count; returns the steps and every receipt.
pub async fn run(
    transport: Arc<Transport>,
    plan: &Plan,
    users: &[User],
    counts: &[usize],
    qbill: &Path,
    db: &Pool,
) -> anyhow::Result<(Vec<ScaleStep>, Vec<Receipt>)> {
    let mut steps = Vec::new();
    let mut receipts = Vec::new();
    let mut users = users.to_vec();
    for &workers in counts {
        eprintln!("--- {workers} worker(s)");
        let pool = WorkerProcess::start(qbill, workers).await?;
        let before = (Instant::now(), commits(db).await?);
        let outcome = load::run(transport.clone(), plan.clone(), &users).await;
        // pg_stat_database is flushed about once a second.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let after = (Instant::now(), commits(db).await?);
        pool.stop().await?;
        let outcome = outcome?;
        eprint!("{}", crate::report::table(&outcome.figures));
        // The next step pays bills no earlier step paid, with or without a receipt in hand.
        crate::books::refresh_unpaid(db, &mut users).await?;
        receipts.extend(outcome.receipts);
        steps.push(ScaleStep {
            workers,
            db_commits_per_second: (after.1 - before.1) as f64
                / (after.0 - before.0 - Duration::from_millis(1100)).as_secs_f64(),
            figures: outcome.figures,
        });
    }
    Ok((steps, receipts))
}
