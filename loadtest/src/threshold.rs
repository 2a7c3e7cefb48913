//! Pass or fail, as k6 has it: a run is given upper limits on its figures
//! (`--threshold 'payments.p99<500ms'`, `--threshold 'errors<1%'`, `--max-timeout-rate 1`), prints
//! a ✓ or ✗ line for each with what it measured, and exits with [`BREACHED`] if any was crossed.
//!
//! The grammar, one threshold per option:
//!
//! ```text
//! THRESHOLD  = [OPERATION "."] METRIC ("<" | "<=") LIMIT
//! OPERATION  = auth | utils | histories | payments      without one: every operation together
//! METRIC     = p50 | p90 | p95 | p99 | max | mean        a reply's latency; LIMIT in ms or s
//!            | errors | timeouts                         a share of the requests; LIMIT in %
//! ```
//!
//! A latency counts every reply, ok or error (as the report does); `errors` are error replies and
//! requests the transport refused; both rates are over the measured requests, timed out or not.
//! A threshold on something the run did not measure (no replies, no such operation) is breached:
//! a figure that is not there cannot be under a limit.

use std::fmt;
use std::str::FromStr;

use anyhow::{Context, bail};
use serde::Serialize;

use crate::mix::{OPS, Op, parse_op};
use crate::record::{Figures, OpFigures};

/// The exit status of a run that breached a threshold.
pub const BREACHED: u8 = 99;

/// One upper limit on a figure of the run.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// The operation whose figures it reads; `None` for every operation together.
    op: Option<Op>,
    metric: Metric,
    /// `<` rather than `<=`.
    strict: bool,
    /// Milliseconds for a latency, percent for a rate.
    limit: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Metric {
    P50,
    P90,
    P95,
    P99,
    Max,
    Mean,
    Errors,
    Timeouts,
}

const METRICS: [(&str, Metric); 8] = [
    ("p50", Metric::P50),
    ("p90", Metric::P90),
    ("p95", Metric::P95),
    ("p99", Metric::P99),
    ("max", Metric::Max),
    ("mean", Metric::Mean),
    ("errors", Metric::Errors),
    ("timeouts", Metric::Timeouts),
];

impl Metric {
    fn name(self) -> &'static str {
        METRICS
            .iter()
            .find(|(_, m)| *m == self)
            .map(|(name, _)| *name)
            .expect("every metric is named")
    }

    fn is_rate(self) -> bool {
        matches!(self, Self::Errors | Self::Timeouts)
    }

    /// What `figures` measured of it: milliseconds or percent; `None` if there is nothing to read.
    fn read(self, figures: &OpFigures) -> Option<f64> {
        if self.is_rate() {
            let count = match self {
                Self::Errors => figures.error_count(),
                _ => figures.timeouts,
            };
            return (figures.requests > 0).then(|| count as f64 * 100.0 / figures.requests as f64);
        }
        if figures.replies() == 0 {
            return None;
        }
        Some(match self {
            Self::P50 => figures.p50_ms,
            Self::P90 => figures.p90_ms,
            Self::P95 => figures.p95_ms,
            Self::P99 => figures.p99_ms,
            Self::Max => figures.max_ms,
            _ => figures.mean_ms,
        })
    }
}

impl Threshold {
    /// `--max-timeout-rate PERCENT`: `timeouts<=PERCENT%`.
    pub fn max_timeout_rate(percent: f64) -> anyhow::Result<Self> {
        Ok(Self {
            op: None,
            metric: Metric::Timeouts,
            strict: false,
            limit: percentage(percent)?,
        })
    }

    /// Reads the figure it limits from `figures` and says whether it is under the limit.
    pub fn check(&self, figures: &Figures) -> Verdict {
        let scope = match self.op {
            Some(op) => figures.ops.get(&op),
            None => Some(&figures.total),
        };
        let measured = scope.and_then(|f| self.metric.read(f));
        let passed = measured.is_some_and(|value| {
            if self.strict {
                value < self.limit
            } else {
                value <= self.limit
            }
        });
        Verdict {
            threshold: self.to_string(),
            measured,
            unit: if self.metric.is_rate() { "%" } else { "ms" },
            passed,
            missing: if scope.is_some() && !self.metric.is_rate() {
                "no replies measured"
            } else {
                "no requests measured"
            },
        }
    }
}

fn percentage(value: f64) -> anyhow::Result<f64> {
    if !(0.0..=100.0).contains(&value) {
        bail!("{value}% is not a percentage between 0 and 100");
    }
    Ok(value)
}

/// A number of the limit: finite, not negative.
fn number(text: &str, whole: &str) -> anyhow::Result<f64> {
    let value: f64 = text
        .trim()
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite() && *v >= 0.0)
        .with_context(|| format!("{whole:?}: {text:?} is not a number of 0 or more"))?;
    Ok(value)
}

impl FromStr for Threshold {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Self> {
        const EXAMPLE: &str = "write METRIC<LIMIT, e.g. payments.p99<500ms or errors<1%";
        let whole = text.trim();
        if whole.contains('>') {
            bail!("{whole:?}: a threshold is an upper limit, `<` or `<=`");
        }
        let Some((name, limit)) = whole.split_once('<') else {
            bail!("{whole:?} has no `<`: {EXAMPLE}");
        };
        let (strict, limit) = match limit.strip_prefix('=') {
            Some(rest) => (false, rest.trim()),
            None => (true, limit.trim()),
        };
        let name = name.trim();
        if name.is_empty() || limit.is_empty() {
            bail!("{whole:?}: {EXAMPLE}");
        }
        let (op, metric) = match name.split_once('.') {
            Some((op, metric)) => {
                let op = parse_op(op.trim()).with_context(|| {
                    format!(
                        "{whole:?}: {op:?} is not an operation ({}; none for all of them)",
                        OPS.map(|op| op.as_str()).join(", ")
                    )
                })?;
                (Some(op), metric.trim())
            }
            None => (None, name),
        };
        let metric = METRICS
            .iter()
            .find(|(n, _)| *n == metric)
            .map(|(_, m)| *m)
            .with_context(|| {
                format!(
                    "{whole:?}: {metric:?} is not a metric ({})",
                    METRICS.map(|(n, _)| n).join(", ")
                )
            })?;
        let limit = if metric.is_rate() {
            let percent = limit.strip_suffix('%').with_context(|| {
                format!(
                    "{whole:?}: {} is a share of the requests, in % (e.g. 1%)",
                    metric.name()
                )
            })?;
            percentage(number(percent, whole)?).with_context(|| format!("{whole:?}"))?
        } else if let Some(ms) = limit.strip_suffix("ms") {
            number(ms, whole)?
        } else if let Some(s) = limit.strip_suffix('s') {
            number(s, whole)? * 1000.0
        } else {
            bail!(
                "{whole:?}: {} is a latency, in ms or s (e.g. 500ms or 1.5s)",
                metric.name()
            );
        };
        Ok(Self {
            op,
            metric,
            strict,
            limit,
        })
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(op) = self.op {
            write!(f, "{op}.")?;
        }
        let compare = if self.strict { "<" } else { "<=" };
        let unit = if self.metric.is_rate() { "%" } else { "ms" };
        write!(f, "{}{compare}{}{unit}", self.metric.name(), self.limit)
    }
}

/// A threshold checked against a run, as printed and as written to `report.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub threshold: String,
    /// Milliseconds or percent (`unit`); `None` if the run did not measure it.
    pub measured: Option<f64>,
    pub unit: &'static str,
    pub passed: bool,
    #[serde(skip)]
    missing: &'static str,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mark = if self.passed { '✓' } else { '✗' };
        match self.measured {
            Some(value) => write!(f, "{mark} {}: {value:.2} {}", self.threshold, self.unit),
            None => write!(f, "{mark} {}: {}", self.threshold, self.missing),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn parse(text: &str) -> Threshold {
        text.parse()
            .unwrap_or_else(|e| panic!("{text:?} should parse: {e:#}"))
    }

    fn refusal(text: &str) -> String {
        format!(
            "{:#}",
            text.parse::<Threshold>()
                .expect_err(&format!("{text:?} should be refused"))
        )
    }

    #[test]
    fn a_threshold_names_an_operation_a_metric_a_comparison_and_a_limit() {
        let t = parse("payments.p99<500ms");
        assert_eq!(t.op, Some(Op::Payments));
        assert_eq!(t.metric, Metric::P99);
        assert!(t.strict);
        assert_eq!(t.limit, 500.0);

        let t = parse(" errors <= 1.5% ");
        assert_eq!(
            (t.op, t.metric, t.strict, t.limit),
            (None, Metric::Errors, false, 1.5)
        );
        assert_eq!(parse("utils.max<2s").limit, 2000.0);
        assert_eq!(parse("p95<0.25s").limit, 250.0);
        assert_eq!(parse("auth.timeouts<0%").metric, Metric::Timeouts);
        assert_eq!(parse("mean<=10ms").metric, Metric::Mean);
    }

    #[test]
    fn a_threshold_prints_as_it_is_written_in_milliseconds() {
        assert_eq!(
            parse("payments.p99 < 0.5s").to_string(),
            "payments.p99<500ms"
        );
        assert_eq!(parse("errors<=1%").to_string(), "errors<=1%");
        assert_eq!(
            Threshold::max_timeout_rate(2.5).unwrap().to_string(),
            "timeouts<=2.5%"
        );
    }

    #[test]
    fn a_bad_threshold_is_refused_with_what_is_wrong_in_it() {
        assert!(refusal("payments.p99").contains("no `<`"));
        assert!(refusal("p99>500ms").contains("upper limit"));
        assert!(refusal("payment.p99<500ms").contains("\"payment\" is not an operation"));
        assert!(refusal("payments.p98<500ms").contains("\"p98\" is not a metric"));
        assert!(refusal("p99<500").contains("in ms or s"));
        assert!(refusal("errors<1").contains("in %"));
        assert!(refusal("errors<1ms").contains("in %"));
        assert!(refusal("errors<120%").contains("between 0 and 100"));
        assert!(refusal("p99<-3ms").contains("not a number"));
        assert!(refusal("p99<fastms").contains("not a number"));
        assert!(refusal("<500ms").contains("e.g."));
        assert!(refusal("p99<").contains("e.g."));
        assert!(Threshold::max_timeout_rate(101.0).is_err());
    }

    fn figures(requests: u64, ok: u64, errors: u64, p99_ms: f64) -> OpFigures {
        OpFigures {
            requests,
            ok,
            errors: BTreeMap::from([("already_paid".to_owned(), errors)]),
            timeouts: requests - ok - errors,
            p99_ms,
            ..OpFigures::default()
        }
    }

    fn run(total: OpFigures, ops: Vec<(Op, OpFigures)>) -> Figures {
        Figures {
            measured_seconds: 1.0,
            late_sends: 0,
            total,
            ops: ops.into_iter().collect(),
            distribution: Vec::new(),
            timeline: Vec::new(),
        }
    }

    #[test]
    fn a_threshold_passes_under_its_limit_and_fails_at_or_over_it() {
        let payments = figures(100, 97, 1, 480.0);
        let run = run(payments.clone(), vec![(Op::Payments, payments)]);
        let verdict = parse("payments.p99<500ms").check(&run);
        assert!(verdict.passed);
        assert_eq!(verdict.to_string(), "✓ payments.p99<500ms: 480.00 ms");
        assert!(!parse("p99<480ms").check(&run).passed);
        assert!(parse("p99<=480ms").check(&run).passed);
        let errors = parse("errors<1%").check(&run);
        assert!(!errors.passed, "1 in 100 is not under 1%");
        assert_eq!(errors.to_string(), "✗ errors<1%: 1.00 %");
        assert!(parse("timeouts<3%").check(&run).passed);
        assert!(!Threshold::max_timeout_rate(1.0).unwrap().check(&run).passed);
    }

    #[test]
    fn a_figure_the_run_did_not_measure_breaches_its_threshold() {
        let timed_out = figures(10, 0, 0, 0.0);
        let run = run(timed_out.clone(), vec![(Op::Utils, timed_out)]);
        let verdict = parse("p99<500ms").check(&run);
        assert!(!verdict.passed, "no replies is not a fast p99");
        assert_eq!(verdict.to_string(), "✗ p99<500ms: no replies measured");
        let verdict = parse("payments.errors<1%").check(&run);
        assert!(!verdict.passed);
        assert_eq!(
            verdict.to_string(),
            "✗ payments.errors<1%: no requests measured"
        );
        assert!(
            parse("errors<1%").check(&run).passed,
            "timeouts are not errors"
        );
    }
}
