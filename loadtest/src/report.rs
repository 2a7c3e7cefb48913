//! What a run leaves for people: a summary table on the terminal, a JSON file with every figure,
//! and an HTML page with SVG plots (latency over time, latency distribution, throughput per
//! second; for a scaling run, throughput and latency against the worker count).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use serde::Serialize;

use crate::books::Books;
use crate::mix::{OPS, Op, slot};
use crate::record::{Figures, OpFigures};

/// One run, as written to `report.json`.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub target: String,
    pub plan: crate::load::Plan,
    pub users: usize,
    pub figures: Figures,
    pub payments_without_bills: u64,
    pub stray_replies: u64,
    pub books: Option<Books>,
    /// Each `--threshold`, checked.
    pub thresholds: Vec<crate::threshold::Verdict>,
}

/// One step of a scaling run.
#[derive(Debug, Clone, Serialize)]
pub struct ScaleStep {
    pub workers: usize,
    pub figures: Figures,
    /// Transactions committed per second by the database during the step.
    pub db_commits_per_second: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScaleReport {
    pub target: String,
    pub plan: crate::load::Plan,
    pub steps: Vec<ScaleStep>,
    pub books: Option<Books>,
}

/// The summary table.
pub fn table(figures: &Figures) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<10} {:>8} {:>8} {:>7} {:>8} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8}  errors",
        "operation",
        "requests",
        "ok",
        "timeout",
        "per sec",
        "mean ms",
        "p50 ms",
        "p90 ms",
        "p95 ms",
        "p99 ms",
        "max ms"
    );
    let row = |out: &mut String, name: &str, f: &OpFigures| {
        let errors = if f.errors.is_empty() {
            "-".to_owned()
        } else {
            f.errors
                .iter()
                .map(|(code, n)| format!("{code}={n}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let _ = writeln!(
            out,
            "{name:<10} {:>8} {:>8} {:>7} {:>8.1} {:>9.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2}  {errors}",
            f.requests,
            f.ok,
            f.timeouts,
            f.throughput,
            f.mean_ms,
            f.p50_ms,
            f.p90_ms,
            f.p95_ms,
            f.p99_ms,
            f.max_ms
        );
    };
    for (op, f) in &figures.ops {
        row(&mut out, op.as_str(), f);
    }
    row(&mut out, "all", &figures.total);
    let _ = writeln!(
        out,
        "measured {:.1} s after the warm-up; {} requests sent more than 10 ms late by the harness",
        figures.measured_seconds, figures.late_sends
    );
    out
}

pub fn books_line(books: &Books) -> String {
    format!(
        "books: {} receipts, {} found once, {} missing, {} duplicated, {} mismatched; {} paid without a receipt in hand (timed out) — {}",
        books.receipts,
        books.found_once,
        books.missing,
        books.duplicated,
        books.mismatched,
        books.paid_without_receipt,
        if books.balanced() {
            "balanced"
        } else {
            "NOT BALANCED"
        }
    )
}

pub fn write_json(path: &Path, value: &impl Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

pub(crate) const COLOURS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
];

fn colour(op: Op) -> RGBColor {
    COLOURS[slot(op)]
}

pub(crate) type Plot = Result<String, Box<dyn std::error::Error>>;
pub(crate) type Chart<'a, 'b> =
    ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// A chart over `area` with its caption; the caller draws the mesh (axes, grid).
pub(crate) fn frame<'a, 'b>(
    area: &'a DrawingArea<SVGBackend<'b>, Shift>,
    caption: &str,
    x: std::ops::Range<f64>,
    y: std::ops::Range<f64>,
) -> Result<Chart<'a, 'b>, Box<dyn std::error::Error>> {
    area.fill(&WHITE)?;
    Ok(ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(55)
        .build_cartesian_2d(x, y)?)
}

/// One line with its legend entry; `dots` marks each point too.
pub(crate) fn line<'a, 'b: 'a>(
    chart: &mut Chart<'a, 'b>,
    name: &str,
    points: Vec<(f64, f64)>,
    colour: RGBColor,
    dots: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    if dots {
        chart.draw_series(points.iter().map(|p| Circle::new(*p, 4, colour.filled())))?;
    }
    chart
        .draw_series(LineSeries::new(points, colour.stroke_width(2)))?
        .label(name)
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], colour.stroke_width(2)));
    Ok(())
}

pub(crate) fn legend<'a, 'b: 'a>(
    chart: &mut Chart<'a, 'b>,
    position: SeriesLabelPosition,
) -> Result<(), Box<dyn std::error::Error>> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// The highest of `values`, with a tenth of headroom (at least 1).
pub(crate) fn top(values: impl Iterator<Item = f64>) -> f64 {
    values.fold(1.0f64, f64::max) * 1.1
}

/// p50 and p99 of the replies that arrived in each second; the warm-up is shaded.
fn latency_over_time(figures: &Figures) -> Plot {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 360)).into_drawing_area();
        let seconds = figures.timeline.len().max(1) as f64;
        let top = top(figures.timeline.iter().filter_map(|s| s.p99_ms));
        let mut chart = frame(
            &root,
            "Latency over time (replies arriving each second)",
            0.0..seconds,
            0.0..top,
        )?;
        chart
            .configure_mesh()
            .x_desc("seconds since the start")
            .y_desc("ms")
            .draw()?;
        let warmup = figures.timeline.iter().filter(|s| s.warmup).count() as f64;
        if warmup > 0.0 {
            chart.draw_series(std::iter::once(Rectangle::new(
                [(0.0, 0.0), (warmup, top)],
                RGBColor(230, 230, 230).filled(),
            )))?;
        }
        let at = |pick: fn(&crate::record::Second) -> Option<f64>| {
            figures
                .timeline
                .iter()
                .filter_map(|s| pick(s).map(|v| (s.second as f64 + 0.5, v)))
                .collect()
        };
        line(&mut chart, "p50", at(|s| s.p50_ms), COLOURS[0], false)?;
        line(&mut chart, "p99", at(|s| s.p99_ms), COLOURS[3], false)?;
        legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        root.present()?;
    }
    Ok(svg)
}

/// Latency by percentile, per operation, over the measured requests.
fn latency_distribution(figures: &Figures) -> Plot {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 360)).into_drawing_area();
        let points = figures.distribution.first().map_or(1, |d| d.points.len());
        let labels: Vec<String> = figures
            .distribution
            .first()
            .map(|d| d.points.iter().map(|(p, _)| format!("p{p}")).collect())
            .unwrap_or_default();
        let top = top(figures
            .distribution
            .iter()
            .flat_map(|d| d.points.iter().map(|(_, ms)| *ms)));
        let mut chart = frame(
            &root,
            "Latency distribution (measured requests)",
            0.0..(points - 1).max(1) as f64,
            0.0..top,
        )?;
        chart
            .configure_mesh()
            .x_labels(points)
            .x_label_formatter(&|x| labels.get(x.round() as usize).cloned().unwrap_or_default())
            .x_desc("percentile")
            .y_desc("ms")
            .draw()?;
        for d in &figures.distribution {
            let points = d
                .points
                .iter()
                .enumerate()
                .map(|(i, (_, ms))| (i as f64, *ms));
            line(
                &mut chart,
                d.op.as_str(),
                points.collect(),
                colour(d.op),
                false,
            )?;
        }
        legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
        root.present()?;
    }
    Ok(svg)
}

/// Replies per second, all together and per operation.
fn throughput_per_second(figures: &Figures) -> Plot {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 360)).into_drawing_area();
        let seconds = figures.timeline.len().max(1) as f64;
        let all = |s: &crate::record::Second| s.done.values().sum::<u64>() as f64;
        let top = top(figures.timeline.iter().map(all));
        let mut chart = frame(
            &root,
            "Throughput (replies per second)",
            0.0..seconds,
            0.0..top,
        )?;
        chart
            .configure_mesh()
            .x_desc("seconds since the start")
            .y_desc("replies/s")
            .draw()?;
        let per_second = |count: &dyn Fn(&crate::record::Second) -> f64| {
            figures
                .timeline
                .iter()
                .map(|s| (s.second as f64 + 0.5, count(s)))
                .collect()
        };
        line(
            &mut chart,
            "all",
            per_second(&all),
            RGBColor(90, 90, 90),
            false,
        )?;
        for op in OPS.into_iter().filter(|op| figures.ops.contains_key(op)) {
            let count = |s: &crate::record::Second| s.done.get(&op).copied().unwrap_or(0) as f64;
            line(
                &mut chart,
                op.as_str(),
                per_second(&count),
                colour(op),
                false,
            )?;
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        root.present()?;
    }
    Ok(svg)
}

/// Throughput and latency against the number of workers.
fn scaling(steps: &[ScaleStep]) -> Plot {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 720)).into_drawing_area();
        let (upper, lower) = root.split_vertically(360);
        let workers = steps.iter().map(|s| s.workers).max().unwrap_or(1) as f64 + 1.0;
        let against = |pick: fn(&ScaleStep) -> f64| -> Vec<(f64, f64)> {
            steps.iter().map(|s| (s.workers as f64, pick(s))).collect()
        };

        let top_rate = top(steps
            .iter()
            .map(|s| s.figures.total.throughput.max(s.db_commits_per_second)));
        let mut chart = frame(
            &upper,
            "Throughput against workers",
            0.0..workers,
            0.0..top_rate,
        )?;
        chart
            .configure_mesh()
            .x_desc("workers")
            .y_desc("per second")
            .draw()?;
        line(
            &mut chart,
            "replies/s",
            against(|s| s.figures.total.throughput),
            COLOURS[0],
            true,
        )?;
        let commits = against(|s| s.db_commits_per_second);
        line(&mut chart, "database commits/s", commits, COLOURS[1], true)?;
        legend(&mut chart, SeriesLabelPosition::UpperLeft)?;

        let top_ms = top(steps.iter().map(|s| s.figures.total.p99_ms));
        let mut chart = frame(
            &lower,
            "Latency against workers (all operations)",
            0.0..workers,
            0.0..top_ms,
        )?;
        chart
            .configure_mesh()
            .x_desc("workers")
            .y_desc("ms")
            .draw()?;
        line(
            &mut chart,
            "p50",
            against(|s| s.figures.total.p50_ms),
            COLOURS[0],
            true,
        )?;
        line(
            &mut chart,
            "p90",
            against(|s| s.figures.total.p90_ms),
            COLOURS[2],
            true,
        )?;
        line(
            &mut chart,
            "p99",
            against(|s| s.figures.total.p99_ms),
            COLOURS[3],
            true,
        )?;
        legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        root.present()?;
    }
    Ok(svg)
}

pub(crate) fn plot(result: Plot) -> anyhow::Result<String> {
    result.map_err(|e| anyhow::anyhow!("drawing a plot: {e}"))
}

pub(crate) fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

pub(crate) fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\n\
         <style>body{{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}}\
         pre{{background:#f6f6f6;padding:1em;overflow-x:auto}}svg{{display:block;margin:1em 0}}</style>\n\
         </head><body>\n<h1>{title}</h1>\n{body}\n</body></html>\n"
    )
}

/// Writes `report.json`, `report.html` and the three SVG plots into `dir`.
pub fn write_run(dir: &Path, report: &RunReport) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    write_json(&dir.join("report.json"), report)?;
    let plots = [
        (
            "latency-over-time.svg",
            plot(latency_over_time(&report.figures))?,
        ),
        (
            "latency-distribution.svg",
            plot(latency_distribution(&report.figures))?,
        ),
        (
            "throughput.svg",
            plot(throughput_per_second(&report.figures))?,
        ),
    ];
    let mut body = format!(
        "<p>Target: {}. {} clients over {} users; mix {}; {}.</p>\n<pre>{}</pre>\n",
        escape(&report.target),
        report.plan.clients,
        report.users,
        report.plan.mix,
        match report.plan.rate {
            Some(rate) => format!("open loop at {rate} requests/s"),
            None => format!(
                "closed loop, {} in flight per client",
                report.plan.in_flight
            ),
        },
        escape(&table(&report.figures)),
    );
    if let Some(books) = &report.books {
        let _ = writeln!(body, "<p>{}</p>", escape(&books_line(books)));
    }
    for (name, svg) in &plots {
        std::fs::write(dir.join(name), svg)?;
        body.push_str(svg);
    }
    std::fs::write(dir.join("report.html"), page("qbill load test", &body))?;
    Ok(())
}

/// Writes `scale.json`, `scale.html` and `scale.svg` into `dir`.
pub fn write_scale(dir: &Path, report: &ScaleReport) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    write_json(&dir.join("scale.json"), report)?;
    let svg = plot(scaling(&report.steps))?;
    std::fs::write(dir.join("scale.svg"), &svg)?;
    let mut body = format!(
        "<p>Target: {}. {} clients; mix {}.</p>\n<pre>{}</pre>\n",
        escape(&report.target),
        report.plan.clients,
        report.plan.mix,
        escape(&scale_table(&report.steps)),
    );
    if let Some(books) = &report.books {
        let _ = writeln!(body, "<p>{}</p>", escape(&books_line(books)));
    }
    body.push_str(&svg);
    for step in &report.steps {
        let _ = writeln!(
            body,
            "<h2>{} workers</h2>\n<pre>{}</pre>",
            step.workers,
            escape(&table(&step.figures))
        );
        body.push_str(&plot(throughput_per_second(&step.figures))?);
    }
    std::fs::write(dir.join("scale.html"), page("qbill scaling run", &body))?;
    Ok(())
}

pub fn scale_table(steps: &[ScaleStep]) -> String {
    let mut out = format!(
        "{:>7} {:>10} {:>12} {:>8} {:>8} {:>8} {:>8} {:>8}\n",
        "workers", "replies/s", "db commits/s", "p50 ms", "p90 ms", "p99 ms", "errors", "timeouts"
    );
    for s in steps {
        let t = &s.figures.total;
        let _ = writeln!(
            out,
            "{:>7} {:>10.1} {:>12.1} {:>8.2} {:>8.2} {:>8.2} {:>8} {:>8}",
            s.workers,
            t.throughput,
            s.db_commits_per_second,
            t.p50_ms,
            t.p90_ms,
            t.p99_ms,
            t.error_count(),
            t.timeouts
        );
    }
    out
}
