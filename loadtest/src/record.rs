//! What a run measured: per operation, an HDR histogram of the time from sending a request to
//! holding its reply, the errors by code, the timeouts, and the same second by second.
//!
//! Requests sent during the warm-up are answered and drawn on the timeline, but left out of the
//! figures.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::mix::{OPS, Op, slot};

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// An `ok` reply.
    Ok,
    /// An error reply (its code), or a request the transport refused (`http_503`, ...).
    Error(String),
    /// No reply within the timeout.
    Timeout,
}

/// Latencies are kept in microseconds, from 1 µs to 10 minutes, to 3 significant digits.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

struct OpRecord {
    latency: Histogram<u64>,
    ok: u64,
    errors: BTreeMap<String, u64>,
    timeouts: u64,
}

impl OpRecord {
    fn new() -> Self {
        Self {
            latency: histogram(),
            ok: 0,
            errors: BTreeMap::new(),
            timeouts: 0,
        }
    }

    fn add(&mut self, latency: Duration, ending: &Ending) {
        match ending {
            Ending::Ok => {
                self.ok += 1;
                self.latency.saturating_record(micros(latency));
            }
            Ending::Error(code) => {
                *self.errors.entry(code.clone()).or_default() += 1;
                // Error replies are replies: their round trip counts too.
                self.latency.saturating_record(micros(latency));
            }
            Ending::Timeout => self.timeouts += 1,
        }
    }
}

fn micros(d: Duration) -> u64 {
    d.as_micros().clamp(1, u128::from(u64::MAX)) as u64
}

/// One second of the run, by the second in which requests ended.
struct SecondRecord {
    done: [u64; OPS.len()],
    errors: u64,
    timeouts: u64,
    latency: Histogram<u64>,
}

pub struct Recorder {
    started: Instant,
    warmup: Duration,
    ops: [OpRecord; OPS.len()],
    seconds: Vec<SecondRecord>,
    /// When the first measured request was sent and the last measured one ended.
    measured_from: Option<Instant>,
    measured_to: Option<Instant>,
    late_sends: u64,
}

impl Recorder {
    pub fn new(started: Instant, warmup: Duration) -> Self {
        Self {
            started,
            warmup,
            ops: std::array::from_fn(|_| OpRecord::new()),
            seconds: Vec::new(),
            measured_from: None,
            measured_to: None,
            late_sends: 0,
        }
    }

    /// Whether a request sent at `sent` counts in the figures.
    pub fn measured(&self, sent: Instant) -> bool {
        sent.duration_since(self.started) >= self.warmup
    }

    /// A request the generator sent more than 10 ms after its planned time: the harness,
    /// not the system under test, was behind.
    pub fn late_send(&mut self) {
        self.late_sends += 1;
    }

    pub fn end(&mut self, op: Op, sent: Instant, ended: Instant, ending: Ending) {
        let latency = ended.duration_since(sent);
        let second = ended.duration_since(self.started).as_secs() as usize;
        while self.seconds.len() <= second {
            self.seconds.push(SecondRecord {
                done: [0; OPS.len()],
                errors: 0,
                timeouts: 0,
                latency: histogram(),
            });
        }
        let record = &mut self.seconds[second];
        match &ending {
            Ending::Timeout => record.timeouts += 1,
            Ending::Error(_) => {
                record.done[slot(op)] += 1;
                record.errors += 1;
                record.latency.saturating_record(micros(latency));
            }
            Ending::Ok => {
                record.done[slot(op)] += 1;
                record.latency.saturating_record(micros(latency));
            }
        }
        if self.measured(sent) {
            self.measured_from = Some(self.measured_from.map_or(sent, |from| from.min(sent)));
            self.measured_to = Some(self.measured_to.map_or(ended, |to| to.max(ended)));
            self.ops[slot(op)].add(latency, &ending);
        }
    }

    /// The figures, for the summary table, the JSON file and the report.
    pub fn figures(&self) -> Figures {
        let window = match (self.measured_from, self.measured_to) {
            (Some(from), Some(to)) => to.duration_since(from).as_secs_f64(),
            _ => 0.0,
        };
        let per_second = |n: u64| if window > 0.0 { n as f64 / window } else { 0.0 };
        let mut all = histogram();
        let mut total = OpFigures::default();
        let mut ops = BTreeMap::new();
        for op in OPS {
            let record = &self.ops[slot(op)];
            let errors: u64 = record.errors.values().sum();
            let sent = record.ok + errors + record.timeouts;
            if sent == 0 {
                continue;
            }
            all.add(&record.latency).expect("same bounds");
            let figures = OpFigures::from_record(record, per_second(record.ok + errors));
            total.requests += sent;
            total.ok += figures.ok;
            total.timeouts += figures.timeouts;
            for (code, n) in &figures.errors {
                *total.errors.entry(code.clone()).or_default() += n;
            }
            ops.insert(op, figures);
        }
        total.throughput = per_second(total.ok + total.errors.values().sum::<u64>());
        total.set_latency(&all);
        let distribution = OPS
            .into_iter()
            .filter(|op| ops.contains_key(op))
            .map(|op| Distribution {
                op,
                points: PERCENTILES
                    .iter()
                    .map(|p| {
                        (
                            *p,
                            ms(self.ops[slot(op)].latency.value_at_quantile(p / 100.0)),
                        )
                    })
                    .collect(),
            })
            .collect();
        let timeline = self
            .seconds
            .iter()
            .enumerate()
            .map(|(second, s)| Second {
                second: second as u64,
                warmup: Duration::from_secs(second as u64) < self.warmup,
                done: OPS
                    .into_iter()
                    .filter(|op| s.done[slot(*op)] > 0)
                    .map(|op| (op, s.done[slot(op)]))
                    .collect(),
                errors: s.errors,
                timeouts: s.timeouts,
                p50_ms: (!s.latency.is_empty()).then(|| ms(s.latency.value_at_quantile(0.5))),
                p99_ms: (!s.latency.is_empty()).then(|| ms(s.latency.value_at_quantile(0.99))),
            })
            .collect();
        Figures {
            measured_seconds: window,
            late_sends: self.late_sends,
            total,
            ops,
            distribution,
            timeline,
        }
    }
}

const PERCENTILES: [f64; 14] = [
    0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.999, 100.0,
];

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    /// From the first measured request sent to the last measured one ended.
    pub measured_seconds: f64,
    /// Requests the generator sent more than 10 ms late (the harness could not keep the rate).
    pub late_sends: u64,
    pub total: OpFigures,
    pub ops: BTreeMap<Op, OpFigures>,
    pub distribution: Vec<Distribution>,
    pub timeline: Vec<Second>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct OpFigures {
    pub requests: u64,
    pub ok: u64,
    pub errors: BTreeMap<String, u64>,
    pub timeouts: u64,
    /// Replies (ok or error) per second over the measured window.
    pub throughput: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl OpFigures {
    fn from_record(record: &OpRecord, throughput: f64) -> Self {
        let mut figures = Self {
            requests: record.ok + record.errors.values().sum::<u64>() + record.timeouts,
            ok: record.ok,
            errors: record.errors.clone(),
            timeouts: record.timeouts,
            throughput,
            ..Self::default()
        };
        figures.set_latency(&record.latency);
        figures
    }

    fn set_latency(&mut self, latency: &Histogram<u64>) {
        if latency.is_empty() {
            return;
        }
        self.mean_ms = latency.mean() / 1000.0;
        self.p50_ms = ms(latency.value_at_quantile(0.50));
        self.p90_ms = ms(latency.value_at_quantile(0.90));
        self.p95_ms = ms(latency.value_at_quantile(0.95));
        self.p99_ms = ms(latency.value_at_quantile(0.99));
        self.max_ms = ms(latency.max());
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Requests answered, ok or not: all but the timeouts.
    pub fn replies(&self) -> u64 {
        self.ok + self.error_count()
    }
}

/// Latency by percentile, for the distribution plot.
#[derive(Debug, Clone, Serialize)]
pub struct Distribution {
    pub op: Op,
    /// (percentile, milliseconds)
    pub points: Vec<(f64, f64)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Second {
    pub second: u64,
    pub warmup: bool,
    /// Replies that arrived in this second, by operation.
    pub done: BTreeMap<Op, u64>,
    pub errors: u64,
    pub timeouts: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warm_up_requests_are_on_the_timeline_but_not_in_the_figures() {
        let start = Instant::now();
        let mut recorder = Recorder::new(start, Duration::from_secs(2));
        let at = |ms: u64| start + Duration::from_millis(ms);
        recorder.end(Op::Utils, at(100), at(150), Ending::Ok);
        recorder.end(Op::Utils, at(2_100), at(2_110), Ending::Ok);
        recorder.end(Op::Utils, at(2_200), at(2_230), Ending::Ok);
        recorder.end(
            Op::Payments,
            at(2_300),
            at(2_340),
            Ending::Error("already_paid".into()),
        );
        recorder.end(Op::Payments, at(2_400), at(12_400), Ending::Timeout);
        let figures = recorder.figures();

        let utils = &figures.ops[&Op::Utils];
        assert_eq!(utils.requests, 2);
        assert_eq!(utils.ok, 2);
        assert!((utils.max_ms - 30.0).abs() < 0.1, "{}", utils.max_ms);
        let payments = &figures.ops[&Op::Payments];
        assert_eq!(payments.errors["already_paid"], 1);
        assert_eq!(payments.timeouts, 1);
        assert_eq!(figures.total.requests, 4);
        // 3 replies between 2.1 s and 12.4 s.
        assert!((figures.measured_seconds - 10.3).abs() < 1e-6);
        assert!((figures.total.throughput - 3.0 / 10.3).abs() < 1e-6);

        assert!(figures.timeline[0].warmup);
        assert_eq!(figures.timeline[0].done[&Op::Utils], 1);
        assert!(!figures.timeline[2].warmup);
        assert_eq!(figures.timeline[2].done[&Op::Utils], 2);
        assert_eq!(figures.timeline[12].timeouts, 1);
    }
}
