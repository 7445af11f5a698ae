//! `elchain sim`: run a load-and-fault scenario on a local cluster and check that nothing
//! acknowledged was lost; measure the scale curve and project a capacity plan from it.
//!
//! ```text
//!  run:   SCENARIO.toml ─► elchain_sim::run::run (sign, start cluster, load + faults, settle, check)
//!         (--router URL: remote::Deployment::connect ─► run::run_remote: sign, load, check proofs)
//!           ─► live progress line ─► summary ─► JSON (--out) + HTML (--html) ─► exit 0 (history intact) | 1
//!  scale: --chains 1,2,4 ─► elchain_sim::scale::measure (one closed-loop run per chain count)
//!           ─► table + projection ─► JSON (--out) + HTML (--html) ─► exit 0 | 1
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use elchain_sim::cluster::ClusterDir;
use elchain_sim::run::{Answer, Mode, Phase, Progress, Report};
use elchain_sim::scale::{Event, ScaleReport, Spec};
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
    /// With --router, load and check a deployed cluster through its routers instead.
    #[command(after_help = "Examples:\n  \
        elchain sim run simulator/scenarios/service-day.toml\n  \
        elchain sim run simulator/scenarios/leader-failover.toml --out failover.json --keep /tmp/failover\n  \
        elchain sim run simulator/scenarios/router-loss.toml --out router-loss.json\n  \
        elchain sim run simulator/scenarios/minority-partition.toml --deterministic --seed 7\n  \
        elchain sim run simulator/scenarios/service-day.toml --router http://10.0.0.5:8080 --router http://10.0.0.6:8080\n\n\
        --deterministic runs every node in this process on a simulated network and clock (real\n\
        stores, Raft, admission and execution): the same scenario and seed give the same blocks,\n\
        answers and final digest, so a failure found with a seed replays exactly. Its times are\n\
        simulated (CPU work takes none); it supports kill, restart, kill_leader, partition, heal,\n\
        slow_net and fast_net.\n\n\
        --router URL drives a deployed cluster instead (repeatable or comma-separated; the load\n\
        goes round-robin over the routers' REST API and fails over). It starts nothing and takes\n\
        no faults; of the scenario it uses [load] and how many licence chains to load (the first\n\
        that many of the deployment's, from GET /v1/chains; issuance placed by its shard map). The\n\
        deployment must run the SAMPLE PROFILE WITH DEVELOPMENT KEYS, like `elchain dev`: the\n\
        workload signs as its members. Load is signed ahead, valid 5 minutes: at most 240 s of it.\n\
        The check fetches each acknowledged transaction's proven receipt (every one up to\n\
        --check-limit, then a seeded sample) and verifies it offline: height, index and outcome as\n\
        acknowledged, the inclusion proof against the header's tx root, the checkpoint signed by a\n\
        quorum of replicas; and a few blocks per chain from every router must be the same.\n\
        Replica-by-replica comparison and store audits need the stores: run `elchain verify\n\
        DATA_DIR` on each node.\n\n\
        Scenario files (TOML): [cluster] chains, replicas, routers (> 0: the load goes through the\n\
        routers' REST API); [load] rate (tx/s or \"max\") or ramp = [{at_s, rate}, ...], duration_s,\n\
        population, seed, submitters, batch, mix; [[faults]] at_s, action, and what it takes:\n    \
        kill node | restart [node] | kill_leader [chain] | partition node | heal [node]\n    \
        slow_net node delay_ms | fast_net [node]      (delay every datagram, each way)\n    \
        slow_disk node delay_ms | fast_disk [node]    (RESTARTS the node with an apply delay)\n    \
        kill_router router | restart_router [router]  (needs [cluster] routers)\n    \
        add_chain chain                               (new nodes serve a new chain, loaded from then on)\n    \
        add_replica chain | remove_replica node chain (a new node joins; a node leaves the chain)\n\
        heal only reconnects; fast_net removes delays; settling after the load undoes every fault.\n\
        See simulator/scenarios/ for examples and simulator/src/scenario.rs for every key.\n\n\
        Outputs: the JSON report (--out; with a per-second `series` of committed tx/s, p50/p99 batch\n\
        latency and errors) and a self-contained HTML page beside it (--html; summary, verdict, and\n\
        throughput and latency plots with the faults marked; no scripts or network needed to view).")]
    Run(RunArgs),
    /// Measure the scale curve: the same closed-loop load (rate "max", no faults) on each chain
    /// count in turn, each on a fresh local cluster of `--replicas` processes serving every chain;
    /// report per point the aggregate committed tx/s, its ratio to the first point, p99 batch
    /// latency and node CPU per committed tx, then a capacity plan projected from the worst CPU
    /// per tx. Exit 0 when every point's history checked out, 1 otherwise.
    #[command(after_help = "Example:\n  \
        elchain sim scale --chains 1,2,4,8 --duration 10 --out scale.json\n\n\
        CPU per tx is the node processes' user + system time (from /proc, Linux only) from the start of\n\
        each point's load until its nodes are stopped, divided by the transactions committed; the\n\
        load generator (this process) is not counted, every replica is. The capacity plan is a\n\
        PROJECTION, not a measurement: for 100,000 and 1,000,000 tx/s, cores = target x worst CPU\n\
        s/tx, machines = ceil(cores / (--cores-per-machine x --headroom)). It assumes the cost per\n\
        tx stays flat as machines are added; on a small machine shared with the load generator the\n\
        measured cost includes contention.\n\n\
        Outputs: a table on standard output, the JSON (--out: spec, points, projection) and a\n\
        self-contained HTML page with the curve (--html).")]
    Scale(ScaleArgs),
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
    /// Write the HTML report here [default: the --out path with extension .html].
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Run the whole cluster in this process on a simulated network and clock, reproducibly.
    #[arg(long)]
    deterministic: bool,
    /// Use this seed instead of the scenario's `load.seed`.
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// Testing: plant a bug in every node to show that the checker catches it. The one bug:
    /// `ack-before-commit` (receipts sent when a block is proposed, before it commits).
    #[arg(long, value_name = "BUG", value_parser = ["ack-before-commit"])]
    plant_bug: Option<String>,
    /// Drive a deployed cluster through this router's REST API instead of starting one
    /// (repeatable, or comma-separated: the load is spread over them and fails over). The
    /// deployment must run the sample profile with development keys, like `elchain dev`.
    #[arg(long = "router", value_name = "URL", value_delimiter = ',')]
    routers: Vec<String>,
    /// With --router: check every acknowledged transaction's proof up to this many; past it, a
    /// random sample of this many (seeded by the workload seed).
    #[arg(long, value_name = "N", default_value_t = elchain_sim::remote::DEFAULT_CHECK_LIMIT)]
    check_limit: usize,
}

/// Arguments of `elchain sim scale`.
#[derive(Debug, clap::Args)]
struct ScaleArgs {
    /// Chain counts to measure, comma-separated, one fresh cluster each.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4", value_name = "N,N,…")]
    chains: Vec<u32>,
    /// Replica processes; every replica serves every chain.
    #[arg(long, default_value_t = 3)]
    replicas: u64,
    /// Seconds of load measured per point, after the warm-up.
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    duration: f64,
    /// Seconds of the same load before each point's measured seconds, not measured (its
    /// commits, latencies and CPU are left out; the history check covers them): a new
    /// cluster's first seconds are not its steady state. 0: measure from the first batch.
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    warmup: f64,
    /// Closed-loop submitters per chain.
    #[arg(long, default_value_t = 4)]
    submitters: usize,
    /// Transactions per submission.
    #[arg(long, default_value_t = 50)]
    batch: usize,
    /// Transactions signed ahead per submitter [default: enough for 10,000 tx/s per chain over
    /// --warmup and --duration, at least 10,000]. A point that runs out ends early and says so.
    #[arg(long)]
    presign: Option<usize>,
    /// Cores per machine in the capacity plan.
    #[arg(long, default_value_t = 4)]
    cores_per_machine: u32,
    /// Share of each machine's cores the capacity plan may use (0 < h ≤ 1).
    #[arg(long, default_value_t = 0.6)]
    headroom: f64,
    /// Write the JSON (spec, points, projection) here.
    #[arg(long, default_value = "scale.json", value_name = "FILE")]
    out: PathBuf,
    /// Write the HTML page here [default: the --out path with extension .html].
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        SimCommand::Run(a) => run_scenario(a),
        SimCommand::Scale(a) => run_scale(a),
    }
}

fn run_scenario(args: RunArgs) -> anyhow::Result<ExitCode> {
    let mut scenario = Scenario::load(&args.scenario)?;
    if let Some(seed) = args.seed {
        scenario.load.seed = seed;
    }
    let plant = args.plant_bug.is_some();
    if !args.routers.is_empty() {
        return run_remote(args, scenario);
    }
    if args.deterministic {
        if let Some(f) = scenario.faults.iter().find(|f| !elchain_sim::det::supported(f.action)) {
            anyhow::bail!(
                "scenario {}: fault `{}` at {} s needs real processes; run it without --deterministic",
                scenario.name,
                f.action,
                f.at_s
            );
        }
    }
    let dir = match &args.keep {
        Some(p) => {
            std::fs::create_dir_all(p).with_context(|| format!("cannot create {}", p.display()))?;
            anyhow::ensure!(std::fs::read_dir(p)?.next().is_none(), "{} is not empty", p.display());
            ClusterDir::Kept(p.clone())
        }
        None => ClusterDir::Temporary(tempfile::tempdir()?),
    };
    eprintln!(
        "scenario {}: {} chain(s) x {} replica(s), {} for {} s, {} fault(s), seed {}{}{}",
        scenario.name,
        scenario.cluster.chains,
        scenario.cluster.replicas,
        scenario.load.rate,
        scenario.load.duration_s,
        scenario.faults.len(),
        scenario.load.seed,
        if args.deterministic { ", deterministic (simulated network and clock)" } else { "" },
        if plant { ", PLANTED BUG: ack-before-commit" } else { "" },
    );
    let bar = ProgressBar::new_spinner();
    bar.set_style(ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}").expect("template"));
    bar.enable_steady_tick(Duration::from_millis(200));
    let show = |p: &Progress| bar.set_message(progress_line(p, args.deterministic));
    let report = if args.deterministic {
        let options = elchain_sim::det::Options { seed: None, plant_ack_before_commit: plant };
        elchain_sim::det::run(&scenario, dir.path(), &options, &show)
    } else {
        let bin = std::env::current_exe().context("cannot find the elchain binary")?;
        let options = elchain_sim::run::Options { plant_ack_before_commit: plant };
        elchain_sim::run::run_with(bin, &scenario, dir, &options, &show)
    };
    bar.finish_and_clear();
    finish(&args, &report?)
}

/// `sim run --router URL…`: load and check a deployed cluster through its routers.
fn run_remote(args: RunArgs, scenario: Scenario) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        !args.deterministic,
        "--deterministic runs its own cluster in this process; it cannot drive a deployed cluster (--router)"
    );
    anyhow::ensure!(args.plant_bug.is_none(), "--plant-bug needs nodes the simulator starts; drop it or --router");
    if let Some(f) = scenario.faults.first() {
        anyhow::bail!(
            "scenario {}: fault `{}` at {} s: faults need a cluster the simulator controls; remove [[faults]] or run \
             without --router",
            scenario.name,
            f.action,
            f.at_s
        );
    }
    anyhow::ensure!(args.check_limit > 0, "--check-limit must be at least 1");
    if let Some(p) = &args.keep {
        std::fs::create_dir_all(p).with_context(|| format!("cannot create {}", p.display()))?;
    }
    let deployment = elchain_sim::remote::Deployment::connect(&args.routers)?;
    let chosen = deployment.choose_chains(scenario.cluster.chains);
    eprintln!(
        "scenario {} against the deployment behind {}: licence chain(s) {:?}, {} for {} s, seed {}",
        scenario.name,
        deployment.urls().join(", "),
        chosen.ids,
        scenario.load.rate,
        scenario.load.duration_s,
        scenario.load.seed,
    );
    if let Some(note) = &chosen.note {
        eprintln!("  note: {note}");
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}").expect("template"));
    bar.enable_steady_tick(Duration::from_millis(200));
    let show = |p: &Progress| {
        bar.set_message(match p.phase {
            Phase::Checking => {
                format!(
                    "checking the acknowledgements' proofs through the routers: {}/{} requests",
                    p.committed, p.sent
                )
            }
            _ => progress_line(p, false),
        })
    };
    let options = elchain_sim::run::RemoteOptions { chains: chosen.ids, check_limit: args.check_limit };
    let report = elchain_sim::run::run_remote(&scenario, &deployment, &options, &show);
    bar.finish_and_clear();
    finish(&args, &report?)
}

/// Print the summary, write the reports (and with --keep, every answer); the exit code.
fn finish(args: &RunArgs, report: &Report) -> anyhow::Result<ExitCode> {
    print_summary(report);
    let json = serde_json::to_string_pretty(&report)?;
    std::fs::write(&args.out, json + "\n").with_context(|| format!("cannot write {}", args.out.display()))?;
    println!("report: {}", args.out.display());
    let html = args.html.clone().unwrap_or_else(|| args.out.with_extension("html"));
    std::fs::write(&html, elchain_sim::report::html(report))
        .with_context(|| format!("cannot write {}", html.display()))?;
    println!("html report: {}", html.display());
    if let Some(p) = &args.keep {
        let mut lines = String::new();
        for t in &report.txs {
            lines += &serde_json::to_string(t)?;
            lines.push('\n');
        }
        let txs = p.join("txs.jsonl");
        std::fs::write(&txs, lines).with_context(|| format!("cannot write {}", txs.display()))?;
        if report.mode == Mode::Remote {
            println!("every transaction's answer in {}", txs.display());
        } else {
            println!("cluster files kept in {}; every transaction's answer in {}", p.display(), txs.display());
        }
    }
    Ok(if report.ok() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn progress_line(p: &Progress, simulated: bool) -> String {
    match p.phase {
        Phase::Signing => "signing the load…".into(),
        Phase::Starting => "starting the cluster…".into(),
        Phase::Load => {
            let secs = p.elapsed_s.max(0.001);
            format!(
                "load {:.0}/{:.0} s{}  {:.0} tx/s committed  p99 {:.0} ms  {} committed  {} errors  faults {}/{}",
                p.elapsed_s.min(p.duration_s),
                p.duration_s,
                if simulated { " (simulated)" } else { "" },
                p.committed as f64 / secs,
                p.p99_ms,
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
    if let Some(d) = &r.digest {
        println!("  deterministic run, seed {}: final state digest {d} (times below are simulated)", r.seed);
    }
    if r.mode == Mode::Remote {
        println!("  deployed cluster, driven through its routers; workload seed {}", r.seed);
    }
    let after_warmup = if r.warmup_s > 0.0 { format!(" (after a {} s warm-up)", r.warmup_s) } else { String::new() };
    println!(
        "  {:.0} tx/s offered, {:.0} tx/s committed{after_warmup}; batch latency p50 {:.1} ms, p99 {:.1} ms",
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
        if r.mode == Mode::Remote {
            let committed = r.txs.iter().filter(|t| t.chain == c.chain && matches!(t.answer, Answer::Committed { .. }));
            println!(
                "  chain {}: height {}, replicas {:?}; {} of {} committed receipts checked against the routers' proofs",
                c.chain,
                c.height,
                c.replicas,
                c.acks,
                committed.count()
            );
        } else {
            println!(
                "  chain {}: height {}, {} transactions on replicas {:?}, {} receipts checked",
                c.chain, c.height, c.txs, c.replicas, c.acks
            );
        }
    }
    if r.verdict.ok && r.mode == Mode::Remote {
        println!(
            "  history: OK (every checked receipt proven at its height, index and outcome, checkpoints signed by a \
             quorum, one block per height across routers; replicas and audits: run `elchain verify` on each node)"
        );
    } else if r.verdict.ok {
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

fn run_scale(args: ScaleArgs) -> anyhow::Result<ExitCode> {
    let spec = Spec {
        presign: args.presign.unwrap_or_else(|| Spec::default_presign(args.duration + args.warmup, args.submitters)),
        chains: args.chains,
        replicas: args.replicas,
        duration_s: args.duration,
        warmup_s: args.warmup,
        submitters: args.submitters,
        batch: args.batch,
        cores_per_machine: args.cores_per_machine,
        headroom: args.headroom,
    };
    spec.validate()?;
    let bin = std::env::current_exe().context("cannot find the elchain binary")?;
    eprintln!(
        "scale curve: chains {:?} x {} replica(s), closed loop for {} s each after a {} s warm-up ({} submitter(s)/chain, batch {})",
        spec.chains, spec.replicas, spec.duration_s, spec.warmup_s, spec.submitters, spec.batch
    );
    let bar = ProgressBar::new_spinner();
    bar.set_style(ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}").expect("template"));
    bar.enable_steady_tick(Duration::from_millis(200));
    let points = spec.chains.len();
    let on = |e: Event<'_>| match e {
        Event::Progress { index, chains, progress } => bar.set_message(format!(
            "point {}/{points}, {chains} chain(s): {}",
            index + 1,
            progress_line(progress, false)
        )),
        // Not `bar.println`: that prints nothing when standard error is not a terminal.
        Event::Point(p) => bar.suspend(|| {
            eprintln!(
                "  {} chain(s): {:.0} tx/s committed, p99 {:.1} ms, {}{}",
                p.chains,
                p.committed_tps,
                p.p99_ms,
                p.cpu_s_per_tx.map_or("CPU unknown".into(), |c| format!("{:.1} CPU µs/tx", c * 1e6)),
                if p.history_ok { "" } else { ", HISTORY VIOLATIONS" }
            )
        }),
    };
    let report = elchain_sim::scale::measure(bin, &spec, &on);
    bar.finish_and_clear();
    let report = report?;
    print_scale(&report);
    let json = serde_json::to_string_pretty(&report)?;
    std::fs::write(&args.out, json + "\n").with_context(|| format!("cannot write {}", args.out.display()))?;
    println!("report: {}", args.out.display());
    let html = args.html.unwrap_or_else(|| args.out.with_extension("html"));
    std::fs::write(&html, elchain_sim::scale::html(&report))
        .with_context(|| format!("cannot write {}", html.display()))?;
    println!("html report: {}", html.display());
    Ok(if report.ok() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn print_scale(r: &ScaleReport) {
    let first = r.points.first().map_or(1, |p| p.chains);
    println!(
        "measured ({} replica(s), {} s closed loop per point after a {} s warm-up):",
        r.spec.replicas, r.spec.duration_s, r.spec.warmup_s
    );
    println!("  chains  committed tx/s  per chain  vs {first} chain(s)  p99 ms  CPU µs/tx  history");
    for p in &r.points {
        println!(
            "  {:>6}  {:>14.0}  {:>9.0}  {:>13.2}x  {:>6.1}  {:>9}  {}",
            p.chains,
            p.committed_tps,
            p.per_chain_tps,
            p.vs_first,
            p.p99_ms,
            p.cpu_s_per_tx.map_or("-".into(), |c| format!("{:.1}", c * 1e6)),
            if p.history_ok { "OK" } else { "VIOLATIONS" }
        );
        if p.ran_out {
            println!("          warning: the pre-signed load ran out after {:.1} s; raise --presign", p.load_seconds);
        }
        for problem in &p.problems {
            println!("          {problem}");
        }
    }
    match &r.projection {
        None => println!("capacity plan: no CPU figures (no /proc here), no projection"),
        Some(c) => {
            println!(
                "capacity plan (PROJECTION, not measured): {:.1} µs node CPU per tx (worst point), {}-core machines used to {:.0}%",
                c.cpu_s_per_tx * 1e6,
                c.cores_per_machine,
                c.headroom * 100.0
            );
            println!("  target tx/s  cores busy  machines");
            for row in &c.rows {
                println!("  {:>11.0}  {:>10.1}  {:>8}", row.target_tps, row.cores, row.machines);
            }
            println!("  assumes: {}", c.assumes);
        }
    }
}
