//! When the chaos run breaks what, drawn from one seed: the run prints the seed, and the same
//! seed with the same settings replays the same faults at the same moments.
//!
//! Faults fall between 5 s after the start (the load is under way) and 10 s before the end, and
//! are all healed 5 s before it, so that the run ends on a whole system and what is still wrong
//! then was done by a fault, not by one still going on.

use std::fmt;
use std::time::Duration;

use anyhow::Context;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};

/// The environment variable that replays a run: its seed, as the run printed it.
pub const SEED_VAR: &str = "QBILL_CHAOS_SEED";

/// No fault starts before this, from the start of the run.
const FIRST: Duration = Duration::from_secs(5);
/// No fault starts later than this before the end of the run.
const LAST_START_BEFORE_END: Duration = Duration::from_secs(10);
/// Every fault is over this long before the end of the run.
const HEALED_BEFORE_END: Duration = Duration::from_secs(5);
/// The least time between two faults that must not overlap: a restarted worker needs about a
/// second to be up again, and two cuts this close would be one long cut.
const GAP: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// SIGKILL a worker process; it is started again after a while.
    KillWorker,
    /// SIGSTOP a worker process past the visibility timeout, then SIGCONT.
    PauseWorker,
    /// Every connection to Postgres is reset, and new ones refused, for a while.
    CutPostgres,
    /// SIGKILL the Redis server; it comes back, empty, after a while.
    KillRedis,
    /// Every connection of the workers to SQS is reset, and new ones refused, for a while.
    CutSqs,
    /// The workers' traffic to SQS waits a different time per connection, so that calls made
    /// later overtake calls made earlier.
    DelayReplies,
    /// Every connection of the workers to the payments processor is reset, and new ones refused,
    /// for a while.
    CutProcessor,
    /// The workers' calls to the payments processor wait a different time per connection.
    SlowProcessor,
}

impl FaultKind {
    pub const ALL: [FaultKind; 8] = [
        FaultKind::KillWorker,
        FaultKind::PauseWorker,
        FaultKind::CutPostgres,
        FaultKind::KillRedis,
        FaultKind::CutSqs,
        FaultKind::DelayReplies,
        FaultKind::CutProcessor,
        FaultKind::SlowProcessor,
    ];

    /// The kinds of a run without a payments processor (the ledger mode).
    pub const WITHOUT_PROCESSOR: [FaultKind; 6] = [
        FaultKind::KillWorker,
        FaultKind::PauseWorker,
        FaultKind::CutPostgres,
        FaultKind::KillRedis,
        FaultKind::CutSqs,
        FaultKind::DelayReplies,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::KillWorker => "kill_worker",
            FaultKind::PauseWorker => "pause_worker",
            FaultKind::CutPostgres => "cut_postgres",
            FaultKind::KillRedis => "kill_redis",
            FaultKind::CutSqs => "cut_sqs",
            FaultKind::DelayReplies => "delay_replies",
            FaultKind::CutProcessor => "cut_processor",
            FaultKind::SlowProcessor => "slow_processor",
        }
    }

    /// Whether the fault hits one worker process (named by [`Fault::worker`]).
    pub fn on_worker(self) -> bool {
        matches!(self, FaultKind::KillWorker | FaultKind::PauseWorker)
    }

    /// What the fault acts on; two faults on one thing must not overlap, as the second would
    /// undo the first (a `restore` of the SQS proxy ends a cut and a delay alike; a killed
    /// worker cannot be paused).
    fn target(self, worker: usize) -> Target {
        match self {
            FaultKind::KillWorker | FaultKind::PauseWorker => Target::Worker(worker),
            FaultKind::CutPostgres => Target::Postgres,
            FaultKind::KillRedis => Target::Redis,
            FaultKind::CutSqs | FaultKind::DelayReplies => Target::Sqs,
            FaultKind::CutProcessor | FaultKind::SlowProcessor => Target::Processor,
        }
    }

    /// How long a fault of this kind lasts: until the worker or Redis is started again, the
    /// worker resumed, the proxy restored.
    fn draw_lasts(self, rng: &mut StdRng, visibility: Duration) -> Duration {
        let between = |rng: &mut StdRng, low: u64, high: u64| {
            Duration::from_millis(rng.random_range(low..=high))
        };
        match self {
            FaultKind::KillWorker => between(rng, 500, 2_000),
            // Past the visibility timeout: the paused worker's messages go to the other one.
            FaultKind::PauseWorker => visibility + between(rng, 1_000, 4_000),
            FaultKind::CutPostgres | FaultKind::CutSqs => between(rng, 2_000, 6_000),
            FaultKind::KillRedis => between(rng, 1_000, 5_000),
            FaultKind::DelayReplies | FaultKind::SlowProcessor => between(rng, 3_000, 8_000),
            FaultKind::CutProcessor => between(rng, 2_000, 6_000),
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Worker(usize),
    Postgres,
    Redis,
    Sqs,
    Processor,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// From the start of the run.
    pub at: Duration,
    pub kind: FaultKind,
    /// Which worker process, for the kinds [`FaultKind::on_worker`]; 0 for the others.
    pub worker: usize,
    pub lasts: Duration,
}

impl Fault {
    /// When it is healed, from the start of the run.
    pub fn ends(&self) -> Duration {
        self.at + self.lasts
    }

    /// Whether the two must not overlap, and do (with a [`GAP`] between them at least).
    fn clashes(&self, other: &Fault) -> bool {
        let related = self.kind == other.kind
            || self.kind.target(self.worker) == other.kind.target(other.worker);
        related && self.at < other.ends() + GAP && other.at < self.ends() + GAP
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t={:.1}s {}", self.at.as_secs_f64(), self.kind)?;
        if self.kind.on_worker() {
            write!(f, " worker={}", self.worker)?;
        }
        write!(f, " for {:.1}s", self.lasts.as_secs_f64())
    }
}

/// `faults` faults of `kinds` over a run of `run`, sorted by start, the same for the same
/// arguments. With as many as there are kinds or more, every kind is among them. `workers` is the number of worker processes (at least
/// one is assumed); `visibility` the request queue's visibility timeout, which a pause outlasts.
///
/// Faults of one kind, or on one thing, never overlap: one that would is moved later, or to the
/// first free moment of the run, or to another worker. A run too short to hold them all gets fewer, never one that
/// runs past the healing time (a run under 15 s gets none), and the ones dropped are extras,
/// never the first of a kind. A fault longer than the whole window is cut short to fit it.
pub fn schedule(
    seed: u64,
    run: Duration,
    faults: usize,
    workers: usize,
    visibility: Duration,
    kinds: &[FaultKind],
) -> Vec<Fault> {
    let mut rng = StdRng::seed_from_u64(seed);
    let last_start = run.saturating_sub(LAST_START_BEFORE_END);
    let healed_by = run.saturating_sub(HEALED_BEFORE_END);
    if faults == 0 || last_start < FIRST {
        return Vec::new();
    }
    // One of each kind in a random order, then random kinds: one of each is placed first.
    let all = kinds;
    let mut kinds = all.to_vec();
    kinds.shuffle(&mut rng);
    kinds.truncate(faults);
    while kinds.len() < faults {
        kinds.push(all[rng.random_range(0..all.len())]);
    }
    let wanted: Vec<Fault> = kinds
        .into_iter()
        .map(|kind| {
            let lasts = kind.draw_lasts(&mut rng, visibility).min(healed_by - FIRST);
            let latest = last_start.min(healed_by - lasts);
            let at = rng.random_range(FIRST..=latest);
            let worker = if kind.on_worker() {
                rng.random_range(0..workers.max(1))
            } else {
                0
            };
            Fault {
                at,
                kind,
                worker,
                lasts,
            }
        })
        .collect();
    // The one of each kind first, and within each part the longest first: a long pause is the
    // hardest to fit between the faults already placed.
    let (mut firsts, mut extras) = (wanted, Vec::new());
    extras.extend(firsts.drain(all.len().min(faults)..));
    firsts.sort_by_key(|f| std::cmp::Reverse(f.lasts));
    extras.sort_by_key(|f| std::cmp::Reverse(f.lasts));
    let mut placed: Vec<Fault> = Vec::with_capacity(faults);
    for fault in firsts.into_iter().chain(extras) {
        if let Some(fault) = place(&placed, fault, workers, last_start, healed_by) {
            placed.push(fault);
        }
    }
    placed.sort_by_key(|f| f.at);
    placed
}

/// Where `fault` goes among `placed`: from where it was drawn on, else from the start of the
/// window; on its own worker, else on another.
fn place(
    placed: &[Fault],
    fault: Fault,
    workers: usize,
    last_start: Duration,
    healed_by: Duration,
) -> Option<Fault> {
    let workers = if fault.kind.on_worker() {
        workers.max(1)
    } else {
        1
    };
    (0..workers)
        .map(|i| Fault {
            worker: (fault.worker + i) % workers,
            ..fault
        })
        .find_map(|fault| {
            free_from(placed, fault, fault.at, last_start, healed_by)
                .or_else(|| free_from(placed, fault, FIRST, last_start, healed_by))
                .map(|at| Fault { at, ..fault })
        })
}

/// The first start from `from` on at which `fault` clashes with none of `placed` and is over by
/// `healed_by`.
fn free_from(
    placed: &[Fault],
    fault: Fault,
    from: Duration,
    last_start: Duration,
    healed_by: Duration,
) -> Option<Duration> {
    let mut at = from;
    loop {
        if at > last_start || at + fault.lasts > healed_by {
            return None;
        }
        let here = Fault { at, ..fault };
        // Every start before the end of the latest clash (and its gap) clashes with it too.
        match placed
            .iter()
            .filter(|other| other.clashes(&here))
            .map(|other| other.ends() + GAP)
            .max()
        {
            Some(after) => at = after,
            None => return Some(at),
        }
    }
}

/// The seed in [`SEED_VAR`] if it is set (to replay a run), else a fresh one. A seed that does
/// not parse is an error rather than a fresh seed, which would silently replay nothing.
pub fn seed_from_env_or_random() -> anyhow::Result<u64> {
    match std::env::var(SEED_VAR) {
        Ok(seed) => seed
            .trim()
            .parse()
            .with_context(|| format!("{SEED_VAR}={seed:?} is not a seed (a u64)")),
        Err(_) => Ok(rand::random()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    struct Run {
        seed: u64,
        run: Duration,
        faults: usize,
        visibility: Duration,
        plan: Vec<Fault>,
    }

    /// The CI run's settings and a long run's, with a short and a long visibility timeout, over
    /// many seeds.
    fn runs() -> impl Iterator<Item = Run> {
        let settings = [(60, 8, 5), (60, 8, 30), (600, 40, 5), (600, 40, 30)];
        settings.into_iter().flat_map(|(run, faults, visibility)| {
            (0..300).map(move |seed| {
                let (run, visibility) = (run * SECOND, visibility * SECOND);
                let plan = schedule(seed, run, faults, 2, visibility, &FaultKind::ALL);
                Run {
                    seed,
                    run,
                    faults,
                    visibility,
                    plan,
                }
            })
        })
    }

    #[test]
    fn the_same_seed_gives_the_same_schedule_and_another_seed_another() {
        let one = schedule(7, 600 * SECOND, 40, 2, 5 * SECOND, &FaultKind::ALL);
        assert_eq!(
            one,
            schedule(7, 600 * SECOND, 40, 2, 5 * SECOND, &FaultKind::ALL)
        );
        assert_ne!(
            one,
            schedule(8, 600 * SECOND, 40, 2, 5 * SECOND, &FaultKind::ALL)
        );
    }

    #[test]
    fn a_one_minute_run_holds_eight_faults_and_a_ten_minute_run_forty() {
        for Run {
            seed, faults, plan, ..
        } in runs()
        {
            assert_eq!(plan.len(), faults, "seed {seed}");
            assert!(plan.windows(2).all(|w| w[0].at <= w[1].at), "seed {seed}");
        }
    }

    #[test]
    fn with_as_many_faults_as_kinds_every_kind_appears() {
        for Run { seed, plan, .. } in runs() {
            for kind in FaultKind::ALL {
                assert!(
                    plan.iter().any(|f| f.kind == kind),
                    "seed {seed}: no {kind}"
                );
            }
        }
    }

    #[test]
    fn faults_of_one_kind_or_on_one_thing_never_overlap() {
        use FaultKind::{CutSqs, DelayReplies};
        for Run { seed, plan, .. } in runs() {
            for (i, a) in plan.iter().enumerate() {
                for b in &plan[i + 1..] {
                    let same_kind = a.kind == b.kind;
                    let one_worker =
                        a.kind.on_worker() && b.kind.on_worker() && a.worker == b.worker;
                    let sqs_proxy = [CutSqs, DelayReplies].contains(&a.kind)
                        && [CutSqs, DelayReplies].contains(&b.kind);
                    if same_kind || one_worker || sqs_proxy {
                        assert!(b.at >= a.ends() + GAP, "seed {seed}: {a} and {b}");
                    }
                }
            }
        }
    }

    #[test]
    fn every_fault_falls_in_the_window_and_is_healed_five_seconds_before_the_end() {
        for Run {
            seed, run, plan, ..
        } in runs()
        {
            for fault in &plan {
                assert!(fault.at >= 5 * SECOND, "seed {seed}: {fault}");
                assert!(fault.at <= run - 10 * SECOND, "seed {seed}: {fault}");
                assert!(fault.ends() <= run - 5 * SECOND, "seed {seed}: {fault}");
                assert!(fault.worker < 2, "seed {seed}: {fault}");
            }
        }
    }

    #[test]
    fn a_pause_outlasts_the_visibility_timeout() {
        for Run {
            seed,
            visibility,
            plan,
            ..
        } in runs()
        {
            for pause in plan.iter().filter(|f| f.kind == FaultKind::PauseWorker) {
                assert!(pause.lasts > visibility, "seed {seed}: {pause}");
            }
        }
    }

    #[test]
    fn too_few_faults_or_too_short_a_run_give_what_fits() {
        let all = &FaultKind::ALL;
        let three = schedule(1, 60 * SECOND, 3, 2, 5 * SECOND, all);
        assert_eq!(three.len(), 3);
        assert!(schedule(1, 14 * SECOND, 6, 2, 5 * SECOND, all).is_empty());
        assert!(schedule(1, 60 * SECOND, 0, 2, 5 * SECOND, all).is_empty());
        // Without a processor, no fault is on it.
        let ledger = schedule(
            1,
            60 * SECOND,
            12,
            2,
            5 * SECOND,
            &FaultKind::WITHOUT_PROCESSOR,
        );
        assert!(
            ledger
                .iter()
                .all(|f| !matches!(f.kind, FaultKind::CutProcessor | FaultKind::SlowProcessor))
        );
        // A pause longer than the window is shortened to fit it.
        let long = schedule(1, 20 * SECOND, 6, 1, 60 * SECOND, all);
        assert!(long.iter().all(|f| f.ends() <= 15 * SECOND));
    }

    #[test]
    fn a_fault_prints_as_the_run_log_shows_it() {
        let pause = Fault {
            at: Duration::from_millis(12_340),
            kind: FaultKind::PauseWorker,
            worker: 1,
            lasts: 7 * SECOND,
        };
        assert_eq!(pause.to_string(), "t=12.3s pause_worker worker=1 for 7.0s");
        let cut = Fault {
            kind: FaultKind::CutPostgres,
            worker: 0,
            ..pause
        };
        assert_eq!(cut.to_string(), "t=12.3s cut_postgres for 7.0s");
    }
}
