//! The scale curve: the same closed-loop load on 1, 2, 4 … chains, each point on a fresh local
//! cluster, and a capacity plan projected from what the points cost.
//!
//! ```text
//!  Spec { chains: [1, 2, 4], replicas, duration, … }
//!    ─► per chain count N: Scenario { [cluster] chains = N, replicas = R; [load] rate = "max" }
//!       ─► run::run (fresh cluster, no faults, history checked) ─► Point { tx/s, p99, CPU s/tx }
//!    ─► Capacity (projection): target tx/s × worst CPU s/tx = cores ─► machines at the headroom
//!    ─► ScaleReport (JSON) and html() (SVG curve, tables)
//! ```
//!
//! CPU is the node processes' user + system time from the start of the load until they are
//! stopped (see [`Report::node_cpu_s`]); the load generator and the relays, which run in the
//! calling process, are not counted.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

use crate::cluster::ClusterDir;
use crate::report::{escape, line_chart, page, Chart, Line};
use crate::run::{self, Progress, Report, RunError};
use crate::scenario::{Scenario, ScenarioError};

/// The throughputs the capacity plan is projected for, tx/s.
pub const TARGETS_TPS: [f64; 2] = [100_000.0, 1_000_000.0];

/// Why a scale curve could not be measured.
#[derive(Debug, thiserror::Error)]
pub enum ScaleError {
    /// A setting is out of range.
    #[error("scale: `{field}` {problem}")]
    Invalid {
        /// The setting, e.g. `chains`.
        field: &'static str,
        /// What is wrong and what would be accepted.
        problem: String,
    },
    /// The scenario built for a point is not valid.
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    /// No temporary directory for a point's cluster.
    #[error("cannot create a temporary directory for the cluster: {0}")]
    TempDir(#[source] std::io::Error),
    /// A point's run could not be carried out.
    #[error("the run on {chains} chain(s): {source}")]
    Run {
        /// The point's chain count.
        chains: u32,
        /// Why.
        source: RunError,
    },
}

/// What to measure and how to plan.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Spec {
    /// The chain counts, one point each, in this order.
    pub chains: Vec<u32>,
    /// Replica processes (every replica serves every chain).
    pub replicas: u64,
    /// Seconds of load measured per point, after the warm-up.
    pub duration_s: f64,
    /// Seconds of the same load before each point's measured seconds, left out of its figures.
    pub warmup_s: f64,
    /// Concurrent closed-loop submitters per chain.
    pub submitters: usize,
    /// Transactions per submission.
    pub batch: usize,
    /// Transactions signed ahead per submitter; a point whose submitters run out ends early and
    /// says so.
    pub presign: usize,
    /// Cores of one machine in the capacity plan.
    pub cores_per_machine: u32,
    /// Share of each machine's cores the plan may use (0 < headroom ≤ 1).
    pub headroom: f64,
}

impl Spec {
    /// Transactions per submitter that keep up with 10,000 tx/s per chain for `duration_s`
    /// (pass the warm-up's seconds too), at least the scenarios' default of 10,000.
    pub fn default_presign(duration_s: f64, submitters: usize) -> usize {
        let per_chain = 10_000.0 * duration_s.max(0.0);
        ((per_chain / submitters.max(1) as f64).ceil() as usize).max(10_000)
    }

    /// Check the settings that the scenario does not.
    pub fn validate(&self) -> Result<(), ScaleError> {
        let invalid = |field, problem: &str| Err(ScaleError::Invalid { field, problem: problem.into() });
        if self.chains.is_empty() {
            return invalid("chains", "is empty; give at least one chain count, e.g. 1,2,4");
        }
        if self.chains.contains(&0) {
            return invalid("chains", "contains 0; every point needs at least one chain");
        }
        if !(self.warmup_s.is_finite() && self.warmup_s >= 0.0) {
            return invalid("warmup_s", "must be 0 or more seconds");
        }
        if self.cores_per_machine == 0 {
            return invalid("cores_per_machine", "must be at least 1");
        }
        if !(self.headroom > 0.0 && self.headroom <= 1.0) {
            return invalid("headroom", "must be in (0, 1], e.g. 0.6 to use 60% of each machine");
        }
        Ok(())
    }

    /// The scenario of the point with `chains` chains: closed loop, no faults.
    pub fn scenario(&self, chains: u32) -> Result<Scenario, ScaleError> {
        let text = format!(
            "name = \"scale-{chains}\"\n\
             description = \"Closed-loop load on {chains} chain(s), for the scale curve\"\n\
             [cluster]\nchains = {chains}\nreplicas = {replicas}\n\
             [load]\nrate = \"max\"\nduration_s = {duration:?}\nwarmup_s = {warmup:?}\nsubmitters = {submitters}\nbatch = {batch}\n\
             presign = {presign}\n",
            replicas = self.replicas,
            duration = self.duration_s + self.warmup_s,
            warmup = self.warmup_s,
            submitters = self.submitters,
            batch = self.batch,
            presign = self.presign,
        );
        Ok(Scenario::parse(&text, "scale")?)
    }
}

/// One point of the curve.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Point {
    /// Chains.
    pub chains: u32,
    /// Committed transactions per second over all chains.
    pub committed_tps: f64,
    /// That, per chain.
    pub per_chain_tps: f64,
    /// `committed_tps` over the first point's.
    pub vs_first: f64,
    /// Median batch latency, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Transactions committed after the warm-up.
    pub committed: u64,
    /// Node CPU seconds after the warm-up (see [`Report::node_cpu_s`]); absent without `/proc`.
    pub node_cpu_s: Option<f64>,
    /// Node CPU seconds per committed transaction.
    pub cpu_s_per_tx: Option<f64>,
    /// Seconds the load lasted.
    pub load_seconds: f64,
    /// The submitters used up their pre-signed transactions before the duration was over, so the
    /// point offered less than the cluster could take.
    pub ran_out: bool,
    /// The history checker found nothing wrong.
    pub history_ok: bool,
    /// Violations and settling problems, for people.
    pub problems: Vec<String>,
}

impl Point {
    /// The point measured by `r`; `first_tps` is the first point's aggregate (this one's when it
    /// is the first).
    pub fn from_report(r: &Report, first_tps: Option<f64>) -> Point {
        let committed = r.measured_committed;
        let cpu_s_per_tx = r.node_cpu_s.filter(|_| committed > 0).map(|s| s / committed as f64);
        let first = first_tps.unwrap_or(r.committed_tps);
        let mut problems: Vec<String> = r.verdict.violations.iter().take(20).map(ToString::to_string).collect();
        if r.verdict.violations.len() > 20 {
            problems.push(format!("… and {} more violations", r.verdict.violations.len() - 20));
        }
        problems.extend(r.settle_problems.iter().cloned());
        Point {
            chains: r.chains,
            committed_tps: r.committed_tps,
            per_chain_tps: r.committed_tps / f64::from(r.chains.max(1)),
            vs_first: if first > 0.0 { r.committed_tps / first } else { 0.0 },
            p50_ms: r.p50_ms,
            p99_ms: r.p99_ms,
            committed,
            node_cpu_s: r.node_cpu_s,
            cpu_s_per_tx,
            load_seconds: r.load_seconds,
            ran_out: r.load_seconds < r.duration_s,
            history_ok: r.ok(),
            problems,
        }
    }
}

/// One row of the capacity plan.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CapacityRow {
    /// Committed transactions per second to serve.
    pub target_tps: f64,
    /// Cores busy at that rate: target × CPU seconds per transaction.
    pub cores: f64,
    /// Machines of `cores_per_machine` used to `headroom`.
    pub machines: u64,
}

/// A capacity plan projected from measured CPU per transaction: not a measurement.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Capacity {
    /// Always `"projection"`, so that nobody reads the JSON as measured figures.
    pub kind: &'static str,
    /// The CPU seconds per committed transaction planned with: the worst measured point's.
    pub cpu_s_per_tx: f64,
    /// Cores per machine.
    pub cores_per_machine: u32,
    /// Share of each machine's cores used.
    pub headroom: f64,
    /// One row per target.
    pub rows: Vec<CapacityRow>,
    /// What the projection assumes.
    pub assumes: String,
}

/// The capacity plan for `targets` tx/s at `cpu_s_per_tx` node CPU seconds per transaction:
/// cores = target × cpu_s_per_tx; machines = ⌈cores / (cores_per_machine × headroom)⌉.
pub fn capacity(cpu_s_per_tx: f64, targets: &[f64], cores_per_machine: u32, headroom: f64) -> Capacity {
    let usable = f64::from(cores_per_machine) * headroom;
    let rows = targets
        .iter()
        .map(|&target_tps| {
            let cores = target_tps * cpu_s_per_tx;
            // The tolerance keeps a plan that fits exactly from asking for one more machine.
            let machines = if usable > 0.0 { (cores / usable - 1e-9).ceil().max(0.0) as u64 } else { 0 };
            CapacityRow { target_tps, cores, machines }
        })
        .collect();
    Capacity {
        kind: "projection",
        cpu_s_per_tx,
        cores_per_machine,
        headroom,
        rows,
        assumes: "node CPU per committed transaction stays at the worst measured point's, replication \
                  included (every replica's CPU is in the figure), and capacity grows linearly with \
                  machines; not counted: the load generator, clients, network, disk limits, and the \
                  contention of the measuring machine, whose cores the replicas and load shared"
            .into(),
    }
}

/// The curve and the plan, as written to the JSON report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScaleReport {
    /// What was measured.
    pub spec: Spec,
    /// One point per chain count.
    pub points: Vec<Point>,
    /// The capacity plan; absent when no point has a CPU figure.
    pub projection: Option<Capacity>,
}

impl ScaleReport {
    /// The report of measured `points`, with the plan projected from the worst CPU per tx.
    pub fn new(spec: Spec, points: Vec<Point>) -> ScaleReport {
        let worst = points.iter().filter_map(|p| p.cpu_s_per_tx).reduce(f64::max);
        let projection = worst.map(|w| capacity(w, &TARGETS_TPS, spec.cores_per_machine, spec.headroom));
        ScaleReport { spec, points, projection }
    }

    /// True when every point's history checked out.
    pub fn ok(&self) -> bool {
        self.points.iter().all(|p| p.history_ok)
    }
}

/// What a measurement reports while it runs.
#[derive(Clone, Copy, Debug)]
pub enum Event<'a> {
    /// A point's run progressed.
    Progress {
        /// Index of the point in [`Spec::chains`].
        index: usize,
        /// Its chains.
        chains: u32,
        /// The run's progress.
        progress: &'a Progress,
    },
    /// A point is done.
    Point(&'a Point),
}

/// Measure every point of `spec` with the `elchain` binary at `bin`, calling `on` as they
/// progress; each point runs on a fresh cluster in a temporary directory.
pub fn measure(bin: PathBuf, spec: &Spec, on: &dyn Fn(Event<'_>)) -> Result<ScaleReport, ScaleError> {
    spec.validate()?;
    let scenarios = spec.chains.iter().map(|&c| spec.scenario(c)).collect::<Result<Vec<_>, _>>()?;
    let mut points: Vec<Point> = Vec::new();
    for (index, (scenario, &chains)) in scenarios.iter().zip(&spec.chains).enumerate() {
        let dir = ClusterDir::Temporary(tempfile::tempdir().map_err(ScaleError::TempDir)?);
        let show = |progress: &Progress| on(Event::Progress { index, chains, progress });
        let report =
            run::run(bin.clone(), scenario, dir, &show).map_err(|source| ScaleError::Run { chains, source })?;
        let point = Point::from_report(&report, points.first().map(|p| p.committed_tps));
        on(Event::Point(&point));
        points.push(point);
    }
    Ok(ScaleReport::new(spec.clone(), points))
}

/// A number with thousands separators, for tables.
fn thousands(v: f64) -> String {
    let digits = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0.0 && digits != "0" {
        out.insert(0, '-');
    }
    out
}

/// The curve as a self-contained HTML page: the plot, the points and the projection.
pub fn html(r: &ScaleReport) -> String {
    let s = &r.spec;
    let mut body = format!(
        "<h1>Scale curve</h1>\n<p>Closed-loop load (rate \"max\", {} submitter(s) of {} tx per chain) for {} s \
         per point, measured after a {} s warm-up, on a fresh local cluster of {} replica(s); every replica \
         serves every chain.</p>\n",
        s.submitters, s.batch, s.duration_s, s.warmup_s, s.replicas
    );
    let first = r.points.first();
    let x_ticks: Vec<f64> = r.points.iter().map(|p| f64::from(p.chains)).collect();
    let mut lines = vec![Line {
        label: "committed tx/s".into(),
        color: "#1f77b4".into(),
        dashed: false,
        dots: true,
        points: r.points.iter().map(|p| (f64::from(p.chains), Some(p.committed_tps))).collect(),
    }];
    if let Some(f) = first.filter(|f| f.chains > 0) {
        let per_chain = f.committed_tps / f64::from(f.chains);
        lines.push(Line {
            label: "linear from the first point".into(),
            color: "#999999".into(),
            dashed: true,
            dots: false,
            points: r.points.iter().map(|p| (f64::from(p.chains), Some(per_chain * f64::from(p.chains)))).collect(),
        });
    }
    body += &line_chart(&Chart {
        title: format!("Aggregate committed tx/s by chains ({} replicas, one machine)", s.replicas),
        x_label: "chains".into(),
        y_label: "tx/s".into(),
        lines,
        markers: Vec::new(),
        x_ticks: x_ticks.clone(),
    });
    if r.points.iter().any(|p| p.cpu_s_per_tx.is_some()) {
        body += &line_chart(&Chart {
            title: "Node CPU per committed transaction".into(),
            x_label: "chains".into(),
            y_label: "CPU µs/tx".into(),
            lines: vec![Line {
                label: "CPU µs/tx".into(),
                color: "#d62728".into(),
                dashed: false,
                dots: true,
                points: r.points.iter().map(|p| (f64::from(p.chains), p.cpu_s_per_tx.map(|c| c * 1e6))).collect(),
            }],
            markers: Vec::new(),
            x_ticks,
        });
    }

    let vs = first.map_or(1, |f| f.chains);
    let _ = writeln!(
        body,
        "<h2>Measured</h2>\n<table>\n<tr><th>chains</th><th>committed tx/s</th><th>per chain</th>\
         <th>vs {vs} chain(s)</th><th>p50 ms</th><th>p99 ms</th><th>CPU µs/tx</th><th>history</th><th>notes</th></tr>"
    );
    for p in &r.points {
        let mut notes: Vec<String> = p.problems.clone();
        if p.ran_out {
            notes.insert(0, format!("pre-signed load ran out after {:.1} s", p.load_seconds));
        }
        let _ = writeln!(
            body,
            "<tr><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{:.2}×</td><td class=\"num\">{:.1}</td><td class=\"num\">{:.1}</td>\
             <td class=\"num\">{}</td><td class=\"{}\">{}</td><td>{}</td></tr>",
            p.chains,
            thousands(p.committed_tps),
            thousands(p.per_chain_tps),
            p.vs_first,
            p.p50_ms,
            p.p99_ms,
            p.cpu_s_per_tx.map_or("–".into(), |c| format!("{:.1}", c * 1e6)),
            if p.history_ok { "ok" } else { "bad" },
            if p.history_ok { "OK" } else { "VIOLATIONS" },
            escape(&notes.join("; "))
        );
    }
    body += "</table>\n";

    body += "<h2>Capacity plan (projection)</h2>\n";
    match &r.projection {
        None => body += "<p class=\"note\">No CPU figures (no /proc on the measuring machine): no plan.</p>\n",
        Some(c) => {
            let _ = writeln!(
                body,
                "<p class=\"note\">A projection, not a measurement: {:.1} µs of node CPU per committed transaction \
                 (the worst point), machines of {} cores used to {:.0}%. It assumes {}.</p>\n<table>\n\
                 <tr><th>target tx/s</th><th>cores busy</th><th>machines</th></tr>",
                c.cpu_s_per_tx * 1e6,
                c.cores_per_machine,
                c.headroom * 100.0,
                escape(&c.assumes)
            );
            for row in &c.rows {
                let _ = writeln!(
                    body,
                    "<tr><td class=\"num\">{}</td><td class=\"num\">{:.1}</td><td class=\"num\">{}</td></tr>",
                    thousands(row.target_tps),
                    row.cores,
                    row.machines
                );
            }
            body += "</table>\n";
        }
    }
    page("elchain sim scale", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Spec {
        Spec {
            chains: vec![1, 2],
            replicas: 3,
            duration_s: 10.0,
            warmup_s: 5.0,
            submitters: 4,
            batch: 50,
            presign: 25_000,
            cores_per_machine: 4,
            headroom: 0.6,
        }
    }

    fn point(chains: u32, tps: f64, cpu_s_per_tx: Option<f64>) -> Point {
        Point {
            chains,
            committed_tps: tps,
            per_chain_tps: tps / f64::from(chains),
            vs_first: tps / 5000.0,
            p50_ms: 30.0,
            p99_ms: 120.0,
            committed: (tps * 10.0) as u64,
            node_cpu_s: cpu_s_per_tx.map(|c| c * tps * 10.0),
            cpu_s_per_tx,
            load_seconds: 10.1,
            ran_out: false,
            history_ok: true,
            problems: Vec::new(),
        }
    }

    #[test]
    fn the_plan_needs_target_times_cpu_per_tx_cores_on_machines_used_to_the_headroom() {
        // 200 µs per tx: 100,000 tx/s keep 20 cores busy; 4-core machines at 60% give 2.4 each.
        let c = capacity(200e-6, &TARGETS_TPS, 4, 0.6);
        assert_eq!(c.kind, "projection");
        assert!((c.rows[0].cores - 20.0).abs() < 1e-9);
        assert_eq!(c.rows[0].machines, 9); // 20 / 2.4 = 8.33
        assert!((c.rows[1].cores - 200.0).abs() < 1e-9);
        assert_eq!(c.rows[1].machines, 84); // 200 / 2.4 = 83.3
                                            // A plan that fits exactly takes no extra machine.
        assert_eq!(capacity(10e-6, &[240_000.0], 4, 0.6).rows[0].machines, 1);
    }

    #[test]
    fn the_plan_uses_the_worst_measured_cpu_per_tx() {
        let r = ScaleReport::new(
            spec(),
            vec![point(1, 5000.0, Some(100e-6)), point(2, 9000.0, Some(150e-6)), point(4, 9500.0, None)],
        );
        assert_eq!(r.projection.as_ref().map(|c| c.cpu_s_per_tx), Some(150e-6));
        assert!(ScaleReport::new(spec(), vec![point(1, 5000.0, None)]).projection.is_none());
    }

    #[test]
    fn the_json_has_the_points_and_the_labelled_projection() {
        let r = ScaleReport::new(spec(), vec![point(1, 5000.0, Some(100e-6)), point(2, 9000.0, Some(110e-6))]);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["spec"]["chains"], serde_json::json!([1, 2]));
        assert_eq!(v["spec"]["headroom"], 0.6);
        let points = v["points"].as_array().unwrap();
        assert_eq!(points.len(), 2);
        for key in ["chains", "committed_tps", "vs_first", "p99_ms", "cpu_s_per_tx", "ran_out", "history_ok"] {
            assert!(points[1].get(key).is_some(), "points[1] has no {key}: {}", points[1]);
        }
        assert_eq!(points[1]["chains"], 2);
        assert_eq!(v["projection"]["kind"], "projection");
        assert_eq!(v["projection"]["rows"][0]["target_tps"], 100_000.0);
        assert_eq!(v["projection"]["rows"][1]["machines"], 46); // 1e6 × 110 µs = 110 cores / 2.4
    }

    #[test]
    fn a_point_scenario_is_closed_loop_on_its_chains_without_faults() {
        let s = spec().scenario(4).unwrap();
        assert_eq!((s.cluster.chains, s.cluster.replicas), (4, 3));
        assert_eq!(s.load.rate, crate::scenario::Rate::Max);
        // The warm-up runs first, within the scenario's load, and is left out of the figures.
        assert_eq!((s.load.duration_s, s.load.warmup_s), (15.0, 5.0));
        assert_eq!((s.load.submitters, s.load.batch, s.load.presign), (4, 50, 25_000));
        assert!(s.faults.is_empty());
        assert_eq!(Spec::default_presign(10.0, 4), 25_000);
        assert_eq!(Spec::default_presign(1.0, 4), 10_000);
    }

    #[test]
    fn bad_settings_are_refused_with_the_setting_named() {
        let e = Spec { chains: vec![], ..spec() }.validate().unwrap_err();
        assert!(e.to_string().contains("chains"), "{e}");
        let e = Spec { headroom: 1.5, ..spec() }.validate().unwrap_err();
        assert!(e.to_string().contains("headroom"), "{e}");
        assert!(Spec { chains: vec![0, 1], ..spec() }.validate().is_err());
        let e = Spec { warmup_s: -1.0, ..spec() }.validate().unwrap_err();
        assert!(e.to_string().contains("warmup_s"), "{e}");
        assert!(spec().validate().is_ok());
    }

    #[test]
    fn the_page_plots_the_curve_and_labels_the_projection() {
        let r = ScaleReport::new(spec(), vec![point(1, 5000.0, Some(100e-6)), point(2, 9000.0, Some(110e-6))]);
        let page = html(&r);
        assert_eq!(page.matches("<svg").count(), 2);
        assert!(page.contains("Capacity plan (projection)"));
        assert!(page.contains("<td class=\"num\">1,000,000</td>"));
        assert_eq!(thousands(1234567.0), "1,234,567");
        assert_eq!(thousands(999.0), "999");
    }
}
