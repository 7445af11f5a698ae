//! A run's report as one self-contained HTML page: a summary, the checker's verdict, and inline
//! SVG plots of throughput and latency over time with the faults marked.
//!
//! ```text
//!  Report ─► summary table ─► verdict (OK | violations) ─► throughput plot ─► latency plot
//!         ─► faults table ─► settle problems        (no scripts, styles inline, no network)
//! ```
//!
//! The plotting helpers ([`line_chart`], [`page`], [`escape`]) are public so that other
//! reports (`elchain sim scale`) draw the same way.

use std::fmt::Write as _;

use crate::run::Report;
use crate::series::Sample;

/// Violations listed in the page; the rest are counted (the JSON report has them all).
const MAX_VIOLATIONS: usize = 500;

/// Colours of the plotted series, in order.
const PALETTE: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];

/// `s` with `&`, `<`, `>`, `"` and `'` replaced by entities: safe as HTML or SVG text and in a
/// quoted attribute.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// One line of a chart.
#[derive(Clone, Debug)]
pub struct Line {
    /// Legend text.
    pub label: String,
    /// Stroke colour (CSS).
    pub color: String,
    /// Dashed (a reference line rather than a measurement).
    pub dashed: bool,
    /// Draw a dot, with its value, at every point (for a few points).
    pub dots: bool,
    /// Points in order of x; a `None` value breaks the line (no data there).
    pub points: Vec<(f64, Option<f64>)>,
}

/// A vertical marker across a chart, e.g. a fault.
#[derive(Clone, Debug)]
pub struct Marker {
    /// Where, in x units.
    pub x: f64,
    /// Short text drawn along the marker.
    pub label: String,
    /// Longer text shown on hover.
    pub detail: String,
    /// Drawn faded (e.g. a fault that could not be applied).
    pub faded: bool,
}

/// A line chart with linear axes from 0.
#[derive(Clone, Debug, Default)]
pub struct Chart {
    /// Title above the plot.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// The lines.
    pub lines: Vec<Line>,
    /// Vertical markers.
    pub markers: Vec<Marker>,
    /// Label the x axis at exactly these values (e.g. the chain counts measured); empty: round
    /// steps from 0.
    pub x_ticks: Vec<f64>,
}

/// A round step for about `ticks` ticks from 0 to `max`.
fn nice_step(max: f64, ticks: f64) -> f64 {
    let raw = (max / ticks).max(f64::MIN_POSITIVE);
    let magnitude = 10f64.powf(raw.log10().floor());
    let r = raw / magnitude;
    // The tolerance keeps 0.2 / 0.1 = 2.000…04 a 2.
    let n = if r <= 1.0 + 1e-9 {
        1.0
    } else if r <= 2.0 + 1e-9 {
        2.0
    } else if r <= 5.0 + 1e-9 {
        5.0
    } else {
        10.0
    };
    n * magnitude
}

/// An axis from 0 to a round number at least `max`, and its tick step.
fn axis(max: f64) -> (f64, f64) {
    let max = if max.is_finite() && max > 0.0 { max } else { 1.0 };
    let step = nice_step(max, 5.0);
    ((max / step - 1e-9).ceil() * step, step)
}

/// A number as a tick label: as many decimals as the step needs.
fn tick_label(v: f64, step: f64) -> String {
    let decimals = (-step.log10().floor()).clamp(0.0, 6.0) as usize;
    format!("{v:.decimals$}")
}

/// `chart` as an inline SVG element (no scripts, no external references).
pub fn line_chart(chart: &Chart) -> String {
    let (w, h) = (760.0, 300.0);
    let (left, right, top, bottom) = (70.0, 30.0, 52.0, 46.0);
    let xs = chart.lines.iter().flat_map(|l| l.points.iter().map(|p| p.0)).chain(chart.markers.iter().map(|m| m.x));
    let ys = chart.lines.iter().flat_map(|l| l.points.iter().filter_map(|p| p.1));
    let x_data = xs.chain(chart.x_ticks.iter().copied()).fold(0.0, f64::max);
    let (x_max, x_step) = if chart.x_ticks.is_empty() {
        axis(x_data)
    } else {
        // Room to the right of the last labelled value for its dot and figure.
        ((x_data * 1.08).max(x_data + 0.5), 0.0)
    };
    let (y_max, y_step) = axis(ys.fold(0.0, f64::max) * 1.05);
    let x = |v: f64| left + v / x_max * (w - left - right);
    let y = |v: f64| h - bottom - v / y_max * (h - top - bottom);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" \
         font-family=\"sans-serif\" font-size=\"12\" role=\"img\">\n\
         <title>{title}</title>\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{cx}\" y=\"18\" text-anchor=\"middle\" font-weight=\"bold\">{title}</text>\n",
        title = escape(&chart.title),
        cx = w / 2.0
    );
    // Grid, ticks and axis labels.
    let mut v = 0.0;
    while v <= y_max + y_step / 2.0 {
        let _ = writeln!(
            svg,
            "<line x1=\"{left}\" y1=\"{py:.1}\" x2=\"{x2}\" y2=\"{py:.1}\" stroke=\"#e5e5e5\"/>\
             <text x=\"{tx}\" y=\"{ty:.1}\" text-anchor=\"end\">{label}</text>",
            py = y(v),
            x2 = w - right,
            tx = left - 6.0,
            ty = y(v) + 4.0,
            label = tick_label(v, y_step)
        );
        v += y_step;
    }
    let x_ticks: Vec<(f64, String)> = if chart.x_ticks.is_empty() {
        (0..)
            .map(|i| f64::from(i) * x_step)
            .take_while(|v| *v <= x_max + x_step / 2.0)
            .map(|v| (v, tick_label(v, x_step)))
            .collect()
    } else {
        chart.x_ticks.iter().map(|&v| (v, format!("{v}"))).collect()
    };
    for (v, label) in x_ticks {
        let _ = writeln!(
            svg,
            "<text x=\"{px:.1}\" y=\"{ty}\" text-anchor=\"middle\">{label}</text>",
            px = x(v),
            ty = h - bottom + 16.0,
            label = escape(&label)
        );
    }
    let _ = writeln!(
        svg,
        "<line x1=\"{left}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"black\"/>\
         <line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{b}\" stroke=\"black\"/>\n\
         <text x=\"{cx}\" y=\"{xl}\" text-anchor=\"middle\">{x_label}</text>\n\
         <text transform=\"translate(16 {cy}) rotate(-90)\" text-anchor=\"middle\">{y_label}</text>",
        b = h - bottom,
        r = w - right,
        cx = (left + w - right) / 2.0,
        xl = h - 8.0,
        cy = (top + h - bottom) / 2.0,
        x_label = escape(&chart.x_label),
        y_label = escape(&chart.y_label)
    );
    for m in &chart.markers {
        let px = x(m.x);
        let (color, opacity) = if m.faded { ("#999999", "0.6") } else { ("#ff7f0e", "1") };
        let _ = writeln!(
            svg,
            "<g class=\"fault-marker\" opacity=\"{opacity}\"><title>{detail}</title>\
             <line x1=\"{px:.1}\" y1=\"{top}\" x2=\"{px:.1}\" y2=\"{b}\" stroke=\"{color}\" stroke-width=\"1.5\" \
             stroke-dasharray=\"4 3\"/>\
             <text transform=\"translate({tx:.1} {ty}) rotate(90)\" font-size=\"10\" fill=\"{color}\">{label}</text></g>",
            detail = escape(&m.detail),
            b = h - bottom,
            tx = px + 3.0,
            ty = top + 2.0,
            label = escape(&m.label)
        );
    }
    for l in &chart.lines {
        let color = escape(&l.color);
        let dash = if l.dashed { " stroke-dasharray=\"6 4\"" } else { "" };
        // Each run of points without a gap is one polyline; a lone point is a dot.
        for run in l.points.split(|p| p.1.is_none()).filter(|r| !r.is_empty()) {
            let coords: Vec<String> =
                run.iter().filter_map(|&(px, py)| py.map(|py| format!("{:.1},{:.1}", x(px), y(py)))).collect();
            if coords.len() == 1 && !l.dots {
                let (px, py) = (run[0].0, run[0].1.unwrap_or(0.0));
                let _ = writeln!(svg, "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2\" fill=\"{color}\"/>", x(px), y(py));
            } else {
                let _ = writeln!(
                    svg,
                    "<polyline points=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"{dash}/>",
                    coords.join(" ")
                );
            }
        }
        if l.dots {
            for &(px, py) in &l.points {
                if let Some(py) = py {
                    let _ = writeln!(
                        svg,
                        "<circle cx=\"{cx:.1}\" cy=\"{cy:.1}\" r=\"4\" fill=\"{color}\"/>\
                         <text x=\"{cx:.1}\" y=\"{ty:.1}\" text-anchor=\"middle\">{py:.0}</text>",
                        cx = x(px),
                        cy = y(py),
                        ty = y(py) - 8.0
                    );
                }
            }
        }
    }
    // The legend: one row under the title, clear of the data.
    let mut lx = left;
    for l in &chart.lines {
        let ly = 36.0;
        let dash = if l.dashed { " stroke-dasharray=\"6 4\"" } else { "" };
        let _ = writeln!(
            svg,
            "<line x1=\"{lx}\" y1=\"{ly}\" x2=\"{x2}\" y2=\"{ly}\" stroke=\"{color}\" stroke-width=\"2\"{dash}/>\
             <text x=\"{tx}\" y=\"{ty}\">{label}</text>",
            x2 = lx + 20.0,
            color = escape(&l.color),
            tx = lx + 26.0,
            ty = ly + 4.0,
            label = escape(&l.label)
        );
        lx += 46.0 + 7.0 * l.label.chars().count() as f64;
    }
    svg + "</svg>\n"
}

/// A whole HTML page with the report's inline style; `body` is HTML (already escaped).
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>\n\
         body {{ font-family: sans-serif; margin: 2em auto; max-width: 60em; color: #222; }}\n\
         table {{ border-collapse: collapse; margin: 1em 0; }}\n\
         th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }}\n\
         th {{ background: #f4f4f4; }}\n td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}\n\
         .ok {{ color: #1a7f37; font-weight: bold; }}\n .bad {{ color: #c62828; font-weight: bold; }}\n\
         .note {{ color: #666; }}\n svg {{ display: block; margin: 1em 0; max-width: 100%; height: auto; }}\n\
         </style>\n</head>\n<body>\n{}</body>\n</html>\n",
        escape(title),
        body
    )
}

/// A two-column table row: a heading and a value that is already HTML.
fn row(out: &mut String, heading: &str, value_html: &str) {
    let _ = writeln!(out, "<tr><th>{}</th><td>{value_html}</td></tr>", escape(heading));
}

/// How a fault is labelled on the plots: its action and the node(s) or chain it hit.
fn fault_label(f: &crate::run::AppliedFault) -> String {
    let mut label = f.action.to_string();
    match f.nodes.as_slice() {
        [] => {}
        [n] => label += &format!(" n{n}"),
        ns => label += &format!(" n{}", ns.iter().map(u64::to_string).collect::<Vec<_>>().join(",")),
    }
    if let Some(c) = f.chain {
        label += &format!(" (chain {c})");
    }
    label
}

/// The throughput and latency charts of a series, with the faults marked.
fn charts(r: &Report) -> (Chart, Chart) {
    let markers: Vec<Marker> = r
        .faults
        .iter()
        .map(|f| Marker {
            x: f.applied_s,
            label: fault_label(f),
            detail: format!(
                "{:.1} s (scheduled {:.1} s): {}{}",
                f.applied_s,
                f.at_s,
                f.note,
                if f.applied { "" } else { " (not applied)" }
            ),
            faded: !f.applied,
        })
        .collect();
    // A sample covers [t, t + 1): plot it at the middle of its second.
    let mid = |s: &Sample| s.t_s as f64 + 0.5;
    let throughput = Chart {
        title: "Committed transactions per second".into(),
        x_label: "seconds since the load started".into(),
        y_label: "tx/s".into(),
        lines: vec![Line {
            label: "committed tx/s".into(),
            color: PALETTE[0].into(),
            dashed: false,
            dots: false,
            points: r.series.iter().map(|s| (mid(s), Some(s.committed as f64))).collect(),
        }],
        markers: markers.clone(),
        x_ticks: Vec::new(),
    };
    // Seconds in which no batch committed have no latency: a gap, not a zero.
    let latency = |label: &str, color: &str, f: fn(&Sample) -> f64| Line {
        label: label.into(),
        color: color.into(),
        dashed: false,
        dots: false,
        points: r.series.iter().map(|s| (mid(s), (s.committed > 0).then(|| f(s)))).collect(),
    };
    let latency = Chart {
        title: "Batch latency of the batches answered in each second".into(),
        x_label: "seconds since the load started".into(),
        y_label: "ms".into(),
        lines: vec![latency("p50", PALETTE[0], |s| s.p50_ms), latency("p99", PALETTE[1], |s| s.p99_ms)],
        markers,
        x_ticks: Vec::new(),
    };
    (throughput, latency)
}

/// `report` as a self-contained HTML page.
pub fn html(report: &Report) -> String {
    let r = report;
    let mut body = format!("<h1>Scenario {}</h1>\n", escape(&r.scenario));
    if !r.description.is_empty() {
        let _ = writeln!(body, "<p>{}</p>", escape(&r.description));
    }

    body += "<h2>Verdict</h2>\n";
    if r.verdict.ok {
        body += "<p class=\"ok\">History OK: nothing acknowledged was lost, duplicated or changed, the replicas \
                 are identical and every store's audit passes.</p>\n";
    } else {
        let n = r.verdict.violations.len();
        let _ = writeln!(body, "<p class=\"bad\">{n} VIOLATION(S)</p>\n<ul>");
        for v in r.verdict.violations.iter().take(MAX_VIOLATIONS) {
            let _ = writeln!(body, "<li>{}</li>", escape(&v.to_string()));
        }
        body += "</ul>\n";
        if n > MAX_VIOLATIONS {
            let _ = writeln!(body, "<p class=\"note\">… and {} more (all in the JSON report).</p>", n - MAX_VIOLATIONS);
        }
    }

    body += "<h2>Summary</h2>\n<table>\n";
    row(&mut body, "scenario", &escape(&r.scenario));
    row(&mut body, "description", &escape(&r.description));
    row(&mut body, "cluster", &format!("{} chain(s) × {} replica(s)", r.chains, r.replicas));
    let mode = match r.mode {
        crate::run::Mode::Processes => format!("real node processes over QUIC; workload seed {}", r.seed),
        crate::run::Mode::Deterministic => {
            format!("deterministic (one process, simulated network and clock; times are simulated); seed {}", r.seed)
        }
        crate::run::Mode::Remote => format!("deployed cluster through its routers, checked by proofs; seed {}", r.seed),
    };
    row(&mut body, "mode", &escape(&mode));
    if let Some(d) = &r.digest {
        row(&mut body, "final state digest", &format!("<code>{}</code>", escape(d)));
    }
    row(
        &mut body,
        "rate",
        &escape(&format!(
            "{} for {} s (load lasted {:.1} s){}",
            r.rate,
            r.duration_s,
            r.load_seconds,
            if r.warmup_s > 0.0 {
                format!("; the first {} s a warm-up, not measured", r.warmup_s)
            } else {
                String::new()
            }
        )),
    );
    row(&mut body, "offered / committed", &format!("{:.0} / {:.0} tx/s", r.offered_tps, r.committed_tps));
    row(&mut body, "batch latency p50 / p99", &format!("{:.1} / {:.1} ms", r.p50_ms, r.p99_ms));
    row(
        &mut body,
        "transactions",
        &format!(
            "{} submitted: {} committed ({} valid), {} refused at admission, {} unanswered; {} late batch(es)",
            r.submitted, r.committed, r.valid, r.refused, r.unanswered, r.late_batches
        ),
    );
    // Heights are in the order of the checked chains (a deployment's ids need not be 1 ..= n).
    let licence_chains: Vec<u32> = r.verdict.chains.iter().map(|c| c.chain).filter(|c| *c != 0).collect();
    let chain_id = |i: usize| licence_chains.get(i).copied().unwrap_or(i as u32 + 1);
    let heights: Vec<String> =
        r.heights.iter().enumerate().map(|(i, h)| format!("chain {}: {h}", chain_id(i))).collect();
    row(&mut body, "heights after settling", &escape(&heights.join(", ")));
    if let Some(cpu) = r.node_cpu_s {
        let per_tx = if r.committed > 0 {
            format!(", {:.0} µs per committed tx", cpu / r.committed as f64 * 1e6)
        } else {
            String::new()
        };
        row(&mut body, "node CPU", &format!("{cpu:.1} s{per_tx}"));
    }
    body += "</table>\n";

    body += "<h2>Over time</h2>\n";
    if r.faults.is_empty() {
        body += "<p class=\"note\">No faults in this scenario.</p>\n";
    } else {
        body += "<p class=\"note\">Dashed orange lines mark the faults when they were applied (grey: could not \
                 be applied); hover for details.</p>\n";
    }
    let (throughput, latency) = charts(r);
    body += &line_chart(&throughput);
    body += &line_chart(&latency);

    body += "<h2>Faults</h2>\n";
    if r.faults.is_empty() {
        body += "<p>None.</p>\n";
    } else {
        body += "<table>\n<tr><th>applied (s)</th><th>scheduled (s)</th><th>action</th><th>nodes</th>\
                 <th>what happened</th></tr>\n";
        for f in &r.faults {
            let nodes: Vec<String> = f.nodes.iter().map(u64::to_string).collect();
            let _ = writeln!(
                body,
                "<tr><td class=\"num\">{:.1}</td><td class=\"num\">{:.1}</td><td>{}</td><td>{}</td><td>{}{}</td></tr>",
                f.applied_s,
                f.at_s,
                escape(&f.action.to_string()),
                escape(&nodes.join(", ")),
                escape(&f.note),
                if f.applied { "" } else { " <span class=\"bad\">(not applied)</span>" }
            );
        }
        body += "</table>\n";
    }

    body += "<h2>Settling</h2>\n";
    if r.settle_problems.is_empty() {
        body += "<p>The replicas agreed and every node stopped cleanly.</p>\n";
    } else {
        body += "<ul>\n";
        for p in &r.settle_problems {
            let _ = writeln!(body, "<li class=\"bad\">{}</li>", escape(p));
        }
        body += "</ul>\n";
    }
    page(&format!("elchain sim: {}", r.scenario), &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::{Verdict, Violation};
    use crate::run::AppliedFault;
    use crate::scenario::{Action, Rate};

    fn report() -> Report {
        Report {
            scenario: "leader-failover".into(),
            description: "Kill the leader <script>alert(1)</script> & see".into(),
            mode: crate::run::Mode::Processes,
            seed: 1,
            digest: None,
            chains: 1,
            replicas: 3,
            rate: Rate::PerSecond(500.0),
            duration_s: 4.0,
            load_seconds: 4.2,
            warmup_s: 0.0,
            offered_tps: 500.0,
            committed_tps: 480.0,
            measured_committed: 1950,
            p50_ms: 20.0,
            p99_ms: 900.0,
            submitted: 2000,
            committed: 1950,
            valid: 1900,
            refused: 0,
            unanswered: 50,
            late_batches: 1,
            faults: vec![
                AppliedFault {
                    at_s: 1.0,
                    applied_s: 1.05,
                    action: Action::KillLeader,
                    nodes: vec![2],
                    chain: Some(1),
                    applied: true,
                    note: "killed node 2, the leader of chain 1".into(),
                },
                AppliedFault {
                    at_s: 3.0,
                    applied_s: 3.0,
                    action: Action::Restart,
                    nodes: vec![2],
                    chain: None,
                    applied: true,
                    note: "restarted node(s) [2]".into(),
                },
            ],
            settle_problems: vec!["node 3 did not stop <cleanly>".into()],
            heights: vec![42],
            verdict: Verdict { ok: true, ..Verdict::default() },
            series: crate::series::per_second(
                &[
                    crate::series::Answered { at_s: 0.5, ms: 20.0, committed: 500, errors: 0 },
                    crate::series::Answered { at_s: 2.5, ms: 900.0, committed: 450, errors: 50 },
                ],
                4.0,
            ),
            node_cpu_s: Some(1.5),
            txs: Vec::new(),
        }
    }

    #[test]
    fn the_page_has_both_plots_with_one_marker_per_fault_on_each() {
        let r = report();
        let html = html(&r);
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert_eq!(html.matches("<svg").count(), 2);
        assert_eq!(html.matches("class=\"fault-marker\"").count(), 2 * r.faults.len());
        assert!(html.contains("kill_leader n2 (chain 1)"), "the marker names the action and node");
        assert!(html.contains("restart n2"));
        // Self-contained: nothing fetched or run when it is viewed.
        assert!(!html.contains("<script") && !html.contains("src=") && !html.contains("href="));
    }

    #[test]
    fn the_verdict_is_ok_in_green_or_lists_the_violations() {
        let mut r = report();
        assert!(html(&r).contains("<p class=\"ok\">History OK"));
        r.verdict = Verdict {
            ok: false,
            violations: vec![Violation::Lost { chain: 1, tx: "ab<cd".into(), height: 7, index: 3 }],
            ..Verdict::default()
        };
        let page = html(&r);
        assert!(page.contains("1 VIOLATION(S)"));
        assert!(page.contains("<li>chain 1: acknowledged tx ab&lt;cd is not at 7/3: LOST</li>"));
        assert!(!page.contains("History OK"));
    }

    #[test]
    fn text_from_the_scenario_is_escaped() {
        let page = html(&report());
        assert!(!page.contains("<script>alert(1)</script>"));
        assert!(page.contains("Kill the leader &lt;script&gt;alert(1)&lt;/script&gt; &amp; see"));
        assert!(page.contains("did not stop &lt;cleanly&gt;"));
        assert_eq!(escape("a\"b'c"), "a&quot;b&#39;c");
    }

    #[test]
    fn axes_end_on_round_numbers_above_the_data() {
        assert_eq!(axis(0.0), (1.0, 0.2));
        assert_eq!(axis(870.0), (1000.0, 200.0));
        assert_eq!(axis(12.0), (15.0, 5.0));
        assert_eq!(tick_label(0.4, 0.2), "0.4");
        assert_eq!(tick_label(600.0, 200.0), "600");
    }
}
