//! `elchain sim`: run a load-and-fault scenario on a local cluster and check that nothing
//! acknowledged was lost.
//!
//! ```text
//!  SCENARIO.toml ─► elchain_sim::run::run (sign, start cluster, load + faults, settle, check)
//!    ─► live progress line ─► summary ─► JSON report (--out) ─► exit 0 (history intact) | 1
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use elchain_sim::cluster::ClusterDir;
use elchain_sim::run::{Phase, Progress, Report};
use elchain_sim::scenario::Scenario;
use indicatif::{ProgressBar, ProgressStyle};

/// Arguments of `elchain sim`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: SimCommand,
}

#[derive(Debug, clap::Subcommand)]
enum SimCommand {
    /// Run a scenario: start a local cluster, offer its load, apply its faults on schedule, then
    /// check every replica's chain against the receipts. Exit 0 when nothing acknowledged was
    /// lost, duplicated or changed and the replicas agree; 1 when the checker found a violation.
    #[command(after_help = "Examples:\n  \
        elchain sim run simulator/scenarios/service-day.toml\n  \
        elchain sim run simulator/scenarios/leader-failover.toml --out failover.json --keep /tmp/failover\n\n\
        Scenario files (TOML): [cluster] chains, replicas; [load] rate (tx/s or \"max\"), duration_s,\n\
        population, seed, mix; [[faults]] at_s, action = kill | restart | partition | heal | kill_leader,\n\
        node, chain. See simulator/scenarios/ for examples.")]
    Run(RunArgs),
}

/// Arguments of `elchain sim run`.
#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The scenario file.
    scenario: PathBuf,
    /// Write the JSON report here.
    #[arg(long, default_value = "sim-report.json", value_name = "FILE")]
    out: PathBuf,
    /// Keep the cluster's files (CA, configs, data, node logs) in this directory (new or empty),
    /// with `txs.jsonl`: every submitted transaction and its answer.
    #[arg(long, value_name = "DIR")]
    keep: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        SimCommand::Run(a) => run_scenario(a),
    }
}

fn run_scenario(args: RunArgs) -> anyhow::Result<ExitCode> {
    let scenario = Scenario::load(&args.scenario)?;
    let bin = std::env::current_exe().context("cannot find the elchain binary")?;
    let dir = match &args.keep {
        Some(p) => {
            std::fs::create_dir_all(p).with_context(|| format!("cannot create {}", p.display()))?;
            anyhow::ensure!(std::fs::read_dir(p)?.next().is_none(), "{} is not empty", p.display());
            ClusterDir::Kept(p.clone())
        }
        None => ClusterDir::Temporary(tempfile::tempdir()?),
    };
    eprintln!(
        "scenario {}: {} chain(s) x {} replica(s), {} for {} s, {} fault(s)",
        scenario.name,
        scenario.cluster.chains,
        scenario.cluster.replicas,
        scenario.load.rate,
        scenario.load.duration_s,
        scenario.faults.len()
    );
    let bar = ProgressBar::new_spinner();
    bar.set_style(ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}").expect("template"));
    bar.enable_steady_tick(Duration::from_millis(200));
    let show = |p: &Progress| bar.set_message(progress_line(p));
    let report = elchain_sim::run::run(bin, &scenario, dir, &show);
    bar.finish_and_clear();
    let report = report?;
    print_summary(&report);
    let json = serde_json::to_string_pretty(&report)?;
    std::fs::write(&args.out, json + "\n").with_context(|| format!("cannot write {}", args.out.display()))?;
    println!("report: {}", args.out.display());
    if let Some(p) = &args.keep {
        let mut lines = String::new();
        for t in &report.txs {
            lines += &serde_json::to_string(t)?;
            lines.push('\n');
        }
        let txs = p.join("txs.jsonl");
        std::fs::write(&txs, lines).with_context(|| format!("cannot write {}", txs.display()))?;
        println!("cluster files kept in {}; every transaction's answer in {}", p.display(), txs.display());
    }
    Ok(if report.ok() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn progress_line(p: &Progress) -> String {
    match p.phase {
        Phase::Signing => "signing the load…".into(),
        Phase::Starting => "starting the cluster…".into(),
        Phase::Load => {
            let secs = p.elapsed_s.max(0.001);
            format!(
                "load {:.0}/{:.0} s  {:.0} tx/s committed  {} committed  {} errors  faults {}/{}",
                p.elapsed_s.min(p.duration_s),
                p.duration_s,
                p.committed as f64 / secs,
                p.committed,
                p.errors,
                p.faults_applied,
                p.faults_total
            )
        }
        Phase::Settling => "healing, restarting and waiting for the replicas to agree…".into(),
        Phase::Checking => "stopping the nodes and checking their chains…".into(),
    }
}

fn print_summary(r: &Report) {
    println!("{}: {} chain(s) x {} replica(s), {} for {} s", r.scenario, r.chains, r.replicas, r.rate, r.duration_s);
    println!(
        "  {:.0} tx/s offered, {:.0} tx/s committed; batch latency p50 {:.1} ms, p99 {:.1} ms",
        r.offered_tps, r.committed_tps, r.p50_ms, r.p99_ms
    );
    println!(
        "  {} submitted: {} committed ({} valid), {} refused at admission, {} unanswered; {} late batch(es)",
        r.submitted, r.committed, r.valid, r.refused, r.unanswered, r.late_batches
    );
    for f in &r.faults {
        println!(
            "  fault at {:.1} s (scheduled {:.1} s): {}{}",
            f.applied_s,
            f.at_s,
            f.note,
            if f.applied { "" } else { " (not applied)" }
        );
    }
    for p in &r.settle_problems {
        println!("  warning: {p}");
    }
    for c in &r.verdict.chains {
        println!(
            "  chain {}: height {}, {} transactions on replicas {:?}, {} receipts checked",
            c.chain, c.height, c.txs, c.replicas, c.acks
        );
    }
    if r.verdict.ok {
        println!("  history: OK (nothing acknowledged lost or duplicated, replicas identical, audits pass)");
    } else {
        println!("  history: {} VIOLATION(S)", r.verdict.violations.len());
        for v in r.verdict.violations.iter().take(20) {
            println!("    {v}");
        }
        if r.verdict.violations.len() > 20 {
            println!("    … and {} more (all in the report)", r.verdict.violations.len() - 20);
        }
    }
}
