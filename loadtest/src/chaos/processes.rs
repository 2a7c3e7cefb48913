//! The processes the chaos run kills, pauses and brings back: the `qbill work` pools under test
//! and a Redis of the run's own (the shared one must not be killed under anyone else).
//!
//! Signals go straight to the process ids; a worker's log keeps every incarnation, one after
//! another, so a crash after a restart can be read next to the kill that preceded it.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use rustix::process::{Pid, Signal, kill_process};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

/// How long a new incarnation must stay up to count as started: a pool that cannot reach its
/// queue or database exits within it.
const START_GRACE: Duration = Duration::from_secs(1);
/// How often the peak memory of the running incarnation is read.
const SAMPLE_EVERY: Duration = Duration::from_millis(200);
/// How long a SIGTERM'd pool may drain before it is killed.
const DRAIN_LIMIT: Duration = Duration::from_secs(60);
/// Lines of the log shown when an incarnation does not start.
const TAIL_LINES: usize = 20;

/// What every incarnation of a worker is started with.
struct Launch {
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log: PathBuf,
}

/// The peak memory over all incarnations. VmHWM is the high-water mark of one process and goes
/// with it, so the running one is sampled often and once more right before it is killed.
struct Memory {
    /// The running incarnation; 0 once it has been reaped, so that a reused pid is never read.
    pid: AtomicU32,
    peak_kib: AtomicU64,
}

impl Memory {
    fn sample(&self) {
        let pid = self.pid.load(Ordering::Relaxed);
        if let Some(kib) = (pid != 0).then(|| status_kib(pid, "VmHWM")).flatten() {
            self.peak_kib.fetch_max(kib, Ordering::Relaxed);
        }
    }
}

/// A worker pool (`qbill work`, or any program standing in for it) in a process of its own,
/// which can be killed and started again, paused and resumed. Killed when dropped.
pub struct WorkerProcess {
    launch: Launch,
    /// Held while the process is signalled or replaced, so that a signal never reaches a pid
    /// that has been reaped (and perhaps reused).
    child: Mutex<Child>,
    incarnations: AtomicUsize,
    memory: Arc<Memory>,
    sampler: JoinHandle<()>,
}

/// `qbill work --workers N` from `binary`, with `env` on top of this process's environment.
pub async fn qbill_work(
    binary: &Path,
    workers: usize,
    env: Vec<(String, String)>,
    log: &Path,
) -> anyhow::Result<WorkerProcess> {
    let args = [
        "work".to_owned(),
        "--workers".to_owned(),
        workers.to_string(),
    ];
    WorkerProcess::start(binary, &args, env, log).await
}

impl WorkerProcess {
    /// Starts `program` with `args` and `env` on top of this process's environment; stdout is
    /// dropped and stderr appended to `log`. Fails, with the log's tail, if it exits within a
    /// second.
    pub async fn start(
        program: &Path,
        args: &[String],
        env: Vec<(String, String)>,
        log: &Path,
    ) -> anyhow::Result<Self> {
        let launch = Launch {
            program: program.to_owned(),
            args: args.to_vec(),
            env,
            log: log.to_owned(),
        };
        let memory = Arc::new(Memory {
            pid: AtomicU32::new(0),
            peak_kib: AtomicU64::new(0),
        });
        let child = launch.incarnation(1, &memory).await?;
        let sampler = tokio::spawn({
            let memory = memory.clone();
            async move {
                let mut every = tokio::time::interval(SAMPLE_EVERY);
                loop {
                    every.tick().await;
                    memory.sample();
                }
            }
        });
        Ok(Self {
            launch,
            child: Mutex::new(child),
            incarnations: AtomicUsize::new(1),
            memory,
            sampler,
        })
    }

    /// The process id of the current incarnation; 0 once it has been terminated, or while a
    /// restart that failed has left none running.
    pub fn pid(&self) -> u32 {
        self.memory.pid.load(Ordering::Relaxed)
    }

    /// Incarnations started so far, the first included.
    pub fn incarnations(&self) -> usize {
        self.incarnations.load(Ordering::Relaxed)
    }

    /// The highest VmHWM of any incarnation so far, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        self.memory.sample();
        self.memory.peak_kib.load(Ordering::Relaxed)
    }

    /// A crash: SIGKILL, no drain. After `down`, a new incarnation starts with the same
    /// settings; if it does not, the error says why and a later call may try again.
    pub async fn kill_and_restart(&self, down: Duration) -> anyhow::Result<()> {
        let mut child = self.child.lock().await;
        self.memory.sample();
        self.memory.pid.store(0, Ordering::Relaxed);
        child.kill().await.context("killing the worker")?;
        let n = self.incarnations.load(Ordering::Relaxed);
        self.launch.note(&format!("incarnation {n} killed")).await;
        tokio::time::sleep(down).await;
        *child = self.launch.incarnation(n + 1, &self.memory).await?;
        self.incarnations.store(n + 1, Ordering::Relaxed);
        Ok(())
    }

    /// SIGSTOP: the process holds its messages without working on them or giving them back.
    pub async fn pause(&self) -> anyhow::Result<()> {
        self.signal(Signal::STOP).await
    }

    /// SIGCONT after [`WorkerProcess::pause`].
    pub async fn resume(&self) -> anyhow::Result<()> {
        self.signal(Signal::CONT).await
    }

    /// SIGTERM (the pool drains, then exits), then SIGKILL if it has not exited within a minute.
    pub async fn terminate(&self) -> anyhow::Result<ExitStatus> {
        let mut child = self.child.lock().await;
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        self.memory.sample();
        send(&child, Signal::TERM)?;
        // A paused process would keep the SIGTERM pending until it is continued.
        send(&child, Signal::CONT)?;
        let status = match tokio::time::timeout(DRAIN_LIMIT, child.wait()).await {
            Ok(status) => status?,
            Err(_) => {
                self.memory.sample();
                child.kill().await?;
                child.wait().await?
            }
        };
        self.memory.pid.store(0, Ordering::Relaxed);
        let n = self.incarnations();
        self.launch
            .note(&format!("incarnation {n} terminated: {status}"))
            .await;
        Ok(status)
    }

    /// How the current incarnation ended, if it has: one that exits by itself is a finding.
    pub async fn exit_status(&self) -> anyhow::Result<Option<ExitStatus>> {
        Ok(self.child.lock().await.try_wait()?)
    }

    async fn signal(&self, signal: Signal) -> anyhow::Result<()> {
        send(&*self.child.lock().await, signal)
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.sampler.abort();
        // The child itself is killed on drop; a paused one dies of SIGKILL all the same.
    }
}

impl Launch {
    async fn incarnation(&self, n: usize, memory: &Memory) -> anyhow::Result<Child> {
        if let Some(dir) = self.log.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .with_context(|| format!("creating {}", dir.display()))?;
        }
        let mut log = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .await
            .with_context(|| format!("opening {}", self.log.display()))?;
        let from = log.metadata().await?.len();
        log.write_all(
            format!(
                "==== incarnation {n} of {} {}, started {}\n",
                self.program.display(),
                self.args.join(" "),
                chrono::Utc::now().to_rfc3339()
            )
            .as_bytes(),
        )
        .await?;
        log.flush().await?;
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.into_std().await)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", self.program.display()))?;
        memory
            .pid
            .store(child.id().unwrap_or_default(), Ordering::Relaxed);
        tokio::time::sleep(START_GRACE).await;
        if let Some(status) = child.try_wait()? {
            memory.pid.store(0, Ordering::Relaxed);
            let tail = tail(&self.log, from).await.unwrap_or_default();
            bail!(
                "{} exited at once ({status}); the end of {}:\n{tail}",
                self.program.display(),
                self.log.display()
            );
        }
        Ok(child)
    }

    /// A line of the harness's own in the log, between the worker's.
    async fn note(&self, line: &str) {
        let written = async {
            let mut log = tokio::fs::OpenOptions::new()
                .append(true)
                .open(&self.log)
                .await?;
            let at = chrono::Utc::now().to_rfc3339();
            log.write_all(format!("==== {line} at {at}\n").as_bytes())
                .await?;
            log.flush().await
        };
        // The log is for reading afterwards; failing to write it must not fail the run.
        if let Err(e) = written.await {
            tracing::warn!(error = %e, log = %self.log.display(), "cannot write to a worker's log");
        }
    }
}

/// The last lines of `log` from byte `from` on: what one incarnation wrote.
async fn tail(log: &Path, from: u64) -> anyhow::Result<String> {
    let mut file = tokio::fs::File::open(log).await?;
    file.seek(std::io::SeekFrom::Start(from)).await?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).await?;
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    Ok(lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n"))
}

fn send(child: &Child, signal: Signal) -> anyhow::Result<()> {
    // `id` is None once the child has been reaped: there is nothing left to signal.
    let pid = child
        .id()
        .and_then(|id| Pid::from_raw(i32::try_from(id).ok()?))
        .context("the process has exited")?;
    kill_process(pid, signal).with_context(|| format!("sending {signal:?} to {pid:?}"))
}

/// A memory figure of a live process from /proc (`VmRSS`, `VmHWM`: the peak resident set), in
/// KiB; None once it has exited.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory of the test's own for logs and markers, removed when the test ends.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new() -> Self {
            let dir = std::env::temp_dir().join(format!("qbill-chaos-{}", uuid::Uuid::new_v4()));
            Self(dir)
        }

        fn path(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// The state letter of /proc/PID/stat: R, S, T (stopped), Z...
    fn state_of(pid: u32) -> char {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let after_name = &stat[stat.rfind(')').unwrap() + 2..];
        after_name.chars().next().unwrap()
    }

    async fn sleeper(log: &Path) -> WorkerProcess {
        WorkerProcess::start(Path::new("sleep"), &["30".to_owned()], vec![], log)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_killed_worker_comes_back_as_a_new_process_with_its_log_kept() {
        let scratch = Scratch::new();
        let log = scratch.path("worker.log");
        let worker = sleeper(&log).await;
        let first = worker.pid();
        assert_eq!(worker.incarnations(), 1);

        worker
            .kill_and_restart(Duration::from_millis(100))
            .await
            .unwrap();
        assert_ne!(worker.pid(), first);
        assert_eq!(worker.incarnations(), 2);
        assert!(!Path::new(&format!("/proc/{first}")).exists());
        assert_eq!(worker.exit_status().await.unwrap(), None);

        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains("==== incarnation 1 of sleep 30"), "{text}");
        assert!(text.contains("==== incarnation 1 killed"), "{text}");
        assert!(text.contains("==== incarnation 2 of sleep 30"), "{text}");
        assert!(!worker.terminate().await.unwrap().success());
    }

    #[tokio::test]
    async fn a_paused_worker_stops_until_resumed_and_can_still_be_terminated() {
        let scratch = Scratch::new();
        let worker = sleeper(&scratch.path("worker.log")).await;
        worker.pause().await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(state_of(worker.pid()), 'T');
        worker.resume().await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(state_of(worker.pid()), 'S');

        worker.pause().await.unwrap();
        // Terminated while paused: the SIGTERM is not left pending.
        let status = tokio::time::timeout(Duration::from_secs(5), worker.terminate())
            .await
            .unwrap()
            .unwrap();
        assert!(!status.success());
    }

    #[tokio::test]
    async fn the_peak_memory_outlives_the_incarnation_it_was_seen_in() {
        // The first incarnation holds 64 MiB, the next almost nothing.
        let scratch = Scratch::new();
        let marker = scratch.path("started-once");
        let script = format!(
            "if [ -e {m} ]; then exec sleep 30; fi; touch {m}; \
             exec perl -e '$x = \"a\" x (64 << 20); sleep 30'",
            m = marker.display()
        );
        let log = marker.with_file_name("worker.log");
        let worker =
            WorkerProcess::start(Path::new("sh"), &["-c".to_owned(), script], vec![], &log)
                .await
                .unwrap();
        let big = 64 * 1024;
        for _ in 0..50 {
            if worker.peak_rss_kib() >= big {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(worker.peak_rss_kib() >= big);

        worker.kill_and_restart(Duration::ZERO).await.unwrap();
        assert!(status_kib(worker.pid(), "VmHWM").unwrap() < big);
        assert!(worker.peak_rss_kib() >= big);
    }

    #[tokio::test]
    async fn a_worker_that_exits_at_once_fails_to_start_with_its_log() {
        let args = [
            "-c".to_owned(),
            "echo no database here >&2; exit 3".to_owned(),
        ];
        let scratch = Scratch::new();
        let error = WorkerProcess::start(Path::new("sh"), &args, vec![], &scratch.path("w.log"))
            .await
            .err()
            .unwrap();
        let message = format!("{error:#}");
        assert!(message.contains("no database here"), "{message}");
    }

    #[tokio::test]
    async fn a_worker_gets_the_environment_it_is_given() {
        let scratch = Scratch::new();
        let log = scratch.path("worker.log");
        let args = [
            "-c".to_owned(),
            "echo \"set to $CHAOS_PROBE\" >&2; sleep 30".to_owned(),
        ];
        let env = vec![("CHAOS_PROBE".to_owned(), "yes".to_owned())];
        let worker = WorkerProcess::start(Path::new("sh"), &args, env, &log)
            .await
            .unwrap();
        assert!(
            std::fs::read_to_string(&log)
                .unwrap()
                .contains("set to yes")
        );
        worker.terminate().await.unwrap();
    }
}
