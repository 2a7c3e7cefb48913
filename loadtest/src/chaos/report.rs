//! What a chaos run leaves for people: the faults by kind, the checks, the workers' memory, and a
//! timeline of the replies each second with every fault drawn over it (`chaos.html`,
//! `chaos.svg`, `chaos.json`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;
use serde::Serialize;

use super::inject::Applied;
use super::schedule::FaultKind;
use super::verdict::Verdict;
use crate::record::Figures;
use crate::report::{self, COLOURS, Plot, escape, frame, legend, line, page, plot, top};

#[derive(Debug, Serialize)]
pub struct ChaosReport {
    pub seed: u64,
    pub duration_seconds: f64,
    pub rate: f64,
    pub clients: usize,
    pub workers: usize,
    pub pollers: usize,
    pub visibility_seconds: u32,
    pub faults: Vec<Applied>,
    /// The highest resident memory of each worker process over all its incarnations, in MiB.
    pub peak_rss_mib: Vec<f64>,
    pub figures: Figures,
    pub verdict: Verdict,
}

/// The faults by kind: how many, for how long in all, and any that did not go as planned.
pub fn faults_table(faults: &[Applied]) -> String {
    let mut by_kind: BTreeMap<FaultKind, (usize, f64)> = BTreeMap::new();
    for fault in faults {
        let entry = by_kind.entry(fault.kind).or_default();
        entry.0 += 1;
        entry.1 += fault.to - fault.from;
    }
    let mut out = String::new();
    let _ = writeln!(out, "{:<14} {:>6} {:>9}", "fault", "count", "seconds");
    for kind in FaultKind::ALL {
        let (count, seconds) = by_kind.get(&kind).copied().unwrap_or_default();
        let _ = writeln!(out, "{:<14} {count:>6} {seconds:>9.1}", kind.as_str());
    }
    let _ = writeln!(
        out,
        "{:<14} {:>6} {:>9.1}",
        "all",
        faults.len(),
        faults.iter().map(|f| f.to - f.from).sum::<f64>()
    );
    for fault in faults.iter().filter(|f| f.note.is_some()) {
        let _ = writeln!(
            out,
            "  t={:.1}s {}: {}",
            fault.from,
            fault.kind,
            fault.note.as_deref().unwrap_or_default()
        );
    }
    out
}

/// The checks, one line each, and the closing line.
pub fn verdict_text(verdict: &Verdict) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "payments {} (receipts in hand {}, paid for a client that never heard back {}), answered more than once {}, deadlocks {}",
        verdict.payments,
        verdict.receipts,
        verdict.paid_unanswered,
        verdict.answered_again,
        verdict.deadlocks
    );
    if verdict.not_handed > 0 {
        let _ = writeln!(
            out,
            "{} requests were refused by the SQS emulator on the client's side and never queued",
            verdict.not_handed
        );
    }
    if verdict.violations.is_empty() {
        let _ = writeln!(out, "every check holds");
    }
    for violation in &verdict.violations {
        let _ = writeln!(out, "VIOLATION: {}", violation.what);
        if !violation.ids.is_empty() {
            let _ = writeln!(out, "  {}", violation.ids.join(" "));
        }
    }
    let _ = write!(out, "{}", verdict.line());
    out
}

fn fault_colour(kind: FaultKind) -> RGBAColor {
    let rgb = match kind {
        FaultKind::KillWorker => RGBColor(214, 39, 40),
        FaultKind::PauseWorker => RGBColor(255, 127, 14),
        FaultKind::CutPostgres => RGBColor(148, 103, 189),
        FaultKind::KillRedis => RGBColor(140, 86, 75),
        FaultKind::CutSqs => RGBColor(31, 119, 180),
        FaultKind::DelayReplies => RGBColor(44, 160, 44),
        FaultKind::CutProcessor => RGBColor(227, 119, 194),
        FaultKind::SlowProcessor => RGBColor(188, 189, 34),
    };
    rgb.mix(0.25)
}

/// Replies each second (and errors), with the faults as shaded bands, one row per kind.
fn timeline(figures: &Figures, faults: &[Applied]) -> Plot {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1000, 520)).into_drawing_area();
        let seconds = figures
            .timeline
            .len()
            .max(
                faults
                    .iter()
                    .map(|f| f.to.ceil() as usize)
                    .max()
                    .unwrap_or(0),
            )
            .max(1) as f64;
        let per_second = |s: &crate::record::Second| s.done.values().sum::<u64>() as f64;
        let top = top(figures.timeline.iter().map(per_second));
        // Headroom above the data and the fault bands, for the legend.
        let mut chart = frame(
            &root,
            "Replies each second, with the faults injected",
            0.0..seconds,
            0.0..top * 1.8,
        )?;
        chart
            .configure_mesh()
            .x_desc("seconds since the load started")
            .y_desc("replies per second")
            .draw()?;
        let band = top / FaultKind::ALL.len() as f64;
        for (row, kind) in FaultKind::ALL.into_iter().enumerate() {
            let spans: Vec<_> = faults.iter().filter(|f| f.kind == kind).collect();
            let (low, high) = (band * row as f64, band * (row + 1) as f64);
            chart
                .draw_series(spans.iter().map(|f| {
                    Rectangle::new([(f.from, low), (f.to, high)], fault_colour(kind).filled())
                }))?
                .label(kind.as_str())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 16, y + 5)], fault_colour(kind).filled())
                });
        }
        let at = |pick: &dyn Fn(&crate::record::Second) -> f64| {
            figures
                .timeline
                .iter()
                .map(|s| (s.second as f64 + 0.5, pick(s)))
                .collect()
        };
        line(&mut chart, "replies", at(&per_second), COLOURS[0], false)?;
        line(
            &mut chart,
            "error replies",
            at(&|s| s.errors as f64),
            COLOURS[3],
            false,
        )?;
        legend(&mut chart, SeriesLabelPosition::UpperMiddle)?;
        root.present()?;
    }
    Ok(svg)
}

/// Writes `chaos.json`, `chaos.svg` and `chaos.html` into `dir`.
pub fn write(dir: &Path, chaos: &ChaosReport) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    report::write_json(&dir.join("chaos.json"), chaos)?;
    let svg = plot(timeline(&chaos.figures, &chaos.faults))?;
    std::fs::write(dir.join("chaos.svg"), &svg)?;
    let memory: Vec<String> = chaos
        .peak_rss_mib
        .iter()
        .enumerate()
        .map(|(i, mib)| format!("worker {i}: {mib:.0} MiB"))
        .collect();
    let body = format!(
        "<p>Seed {seed} (replay: <code>scripts/chaos --seed {seed}</code>). {duration:.0} s at {rate} requests/s \
         from {clients} clients, against {workers} <code>qbill work</code> processes of {pollers} pollers; \
         visibility timeout {visibility} s.</p>\n{svg}\n<h2>Faults</h2>\n<pre>{faults}</pre>\n\
         <h2>Checks</h2>\n<pre>{verdict}</pre>\n<h2>Requests</h2>\n<pre>{table}</pre>\n\
         <p>Peak resident memory: {memory}.</p>\n",
        seed = chaos.seed,
        duration = chaos.duration_seconds,
        rate = chaos.rate,
        clients = chaos.clients,
        workers = chaos.workers,
        pollers = chaos.pollers,
        visibility = chaos.visibility_seconds,
        faults = escape(&faults_table(&chaos.faults)),
        verdict = escape(&verdict_text(&chaos.verdict)),
        table = escape(&report::table(&chaos.figures)),
        memory = memory.join(", "),
    );
    std::fs::write(dir.join("chaos.html"), page("qbill chaos bank run", &body))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::mix::Op;
    use crate::record::{OpFigures, Second};

    #[test]
    fn the_timeline_draws_every_fault_and_the_table_counts_them() {
        let seconds = (0..60)
            .map(|second| Second {
                second,
                warmup: false,
                done: BTreeMap::from([(Op::Utils, 30)]),
                errors: 2,
                timeouts: 0,
                p50_ms: None,
                p99_ms: None,
            })
            .collect();
        let figures = Figures {
            measured_seconds: 60.0,
            late_sends: 0,
            total: OpFigures::default(),
            ops: BTreeMap::new(),
            distribution: Vec::new(),
            timeline: seconds,
        };
        let faults: Vec<Applied> = FaultKind::ALL
            .into_iter()
            .enumerate()
            .map(|(i, kind)| Applied {
                kind,
                worker: kind.on_worker().then_some(1),
                from: 5.0 + 8.0 * i as f64,
                to: 9.0 + 8.0 * i as f64,
                note: None,
                crashed: None,
            })
            .collect();
        let svg = plot(timeline(&figures, &faults)).unwrap();
        for kind in FaultKind::ALL {
            assert!(svg.contains(kind.as_str()), "{kind} is in the legend");
        }
        let written = std::env::temp_dir().join("qbill-chaos-timeline.svg");
        std::fs::write(&written, &svg).unwrap();
        println!("timeline: {}", written.display());
        let table = faults_table(&faults);
        assert!(table.contains("pause_worker        1       4.0"), "{table}");
        assert!(table.contains("all                 8      32.0"), "{table}");
    }
}
