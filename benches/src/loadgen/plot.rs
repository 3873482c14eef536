//! Plots drawn from result files: latency (p50 and p99) against offered load, one line per server,
//! as SVG (no font stack needed: text is left to the viewer).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::anyhow;
use plotters::prelude::*;

use super::report::Report;

/// One point of a latency curve.
#[derive(Debug, Clone, Copy)]
struct Point {
    offered: f64,
    p50: f64,
    p99: f64,
}

/// Colours that stay distinguishable for the handful of servers compared.
const COLOURS: [RGBColor; 6] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
];

/// Draws p50 (left) and p99 (right) delivery latency against offered load for every server with
/// reports of `scenario` in `reports`, into the SVG file `out`.
///
/// # Errors
/// When there is nothing to draw or the file cannot be written.
pub fn latency_against_load(
    reports: &[Report],
    scenario: &str,
    title: &str,
    out: &Path,
) -> anyhow::Result<()> {
    let mut series: BTreeMap<&str, Vec<Point>> = BTreeMap::new();
    for report in reports.iter().filter(|r| r.scenario == scenario) {
        let points = series.entry(report.server.as_str()).or_default();
        for round in &report.rounds {
            if round.latency.count > 0 {
                points.push(Point {
                    offered: round.offered_per_s,
                    p50: round.latency.p50_ms,
                    p99: round.latency.p99_ms,
                });
            }
        }
    }
    series.retain(|_, points| !points.is_empty());
    if series.is_empty() {
        return Err(anyhow!("no {scenario} rounds with latency samples to plot"));
    }
    for points in series.values_mut() {
        points.sort_by(|a, b| a.offered.total_cmp(&b.offered));
    }
    let all = series.values().flatten();
    let (x_min, x_max) =
        all.clone().fold((f64::MAX, f64::MIN), |(lo, hi), p| (lo.min(p.offered), hi.max(p.offered)));
    let (y_min, y_max) = all.fold((f64::MAX, f64::MIN), |(lo, hi), p| (lo.min(p.p50), hi.max(p.p99)));
    let x_range = (x_min * 0.8)..(x_max * 1.25);
    let y_range = (y_min.max(0.01) * 0.5)..(y_max * 2.0);

    let root = SVGBackend::new(out, (1100, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let root = root.titled(title, ("sans-serif", 20)).map_err(|e| anyhow!("{e}"))?;
    let panels = root.split_evenly((1, 2));
    for (panel, (name, pick)) in
        panels.iter().zip([("p50", (|p: &Point| p.p50) as fn(&Point) -> f64), ("p99", |p: &Point| p.p99)])
    {
        let mut chart = ChartBuilder::on(panel)
            .caption(format!("{name} delivery latency"), ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(x_range.clone().log_scale(), y_range.clone().log_scale())
            .map_err(|e| anyhow!("{e}"))?;
        chart
            .configure_mesh()
            .x_labels(6)
            .y_labels(8)
            .x_desc("offered load (updates/s)")
            .y_desc("latency (ms)")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y}"))
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
        for (i, (server, points)) in series.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            let line: Vec<(f64, f64)> =
                points.iter().map(|p| (p.offered, pick(p).max(y_range.start))).collect();
            chart
                .draw_series(LineSeries::new(line.clone(), colour.stroke_width(2)))
                .map_err(|e| anyhow!("{e}"))?
                .label(*server)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2)));
            chart
                .draw_series(line.into_iter().map(|xy| Circle::new(xy, 3, colour.filled())))
                .map_err(|e| anyhow!("{e}"))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
    }
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}
