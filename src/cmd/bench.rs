//! `elchain bench`: the end-to-end throughput harness on a local cluster of real node processes.
//!
//! ```text
//!  pre-sign C independent streams ─► start R `elchain node` processes (QUIC, mTLS, redb, fsync)
//!  C submitters, each: submit a batch ─► wait for its receipts ─► next batch   (closed loop)
//!  report: committed tx/s, batch submit-to-commit latency p50/p90/p99, node CPU-seconds per tx
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use elchain_shard::node::rpc::ReceiptStatus;
use elchain_sim::cluster::{Cluster, ClusterDir, Settings, CHAIN};
use elchain_sim::Workload;
use elchain_types::codec::Encode;
use elchain_types::ids::{ChainId, Timestamp};
use elchain_types::profile::Profile;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

/// Arguments of `elchain bench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Replicas of the chain (separate processes).
    #[arg(long, default_value_t = 3)]
    replicas: u64,
    /// Seconds of load after the cluster is up.
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// Concurrent submitters, each with its own stream of holders and licences.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Transactions per submission.
    #[arg(long, default_value_t = 250)]
    batch: usize,
    /// Transactions signed ahead per submitter (the run ends early when they are used up).
    #[arg(long, default_value_t = 40_000)]
    txs_per_client: usize,
    /// Close a block at this many transactions.
    #[arg(long, default_value_t = 2000)]
    block_size: usize,
    /// Or after this many milliseconds.
    #[arg(long, default_value_t = 10)]
    block_wait_ms: u64,
    /// Keep the cluster's files (CA, configs, data, logs) in this directory.
    #[arg(long)]
    keep: Option<PathBuf>,
    /// Print one JSON object as the last line.
    #[arg(long)]
    json: bool,
}

/// The result, as printed with `--json`.
#[derive(Debug, Serialize)]
struct Report {
    tps: f64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    cpu_us_per_tx: f64,
    committed: u64,
    valid: u64,
    rejected: u64,
    chains: u32,
    replicas: u64,
    seconds: f64,
    clients: usize,
    batch: usize,
    block_size: usize,
    durability: &'static str,
    mode: &'static str,
}

fn now() -> Timestamp {
    Timestamp(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64))
}

/// CPU seconds (user + system) a process has used so far, from /proc.
fn cpu_seconds(pid: u32, ticks: f64) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { return 0.0 };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (t(11) + t(12)) / ticks
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.replicas >= 1 && args.clients >= 1 && args.batch >= 1,
        "replicas, clients and batch must be >= 1"
    );
    let consortium = Profile::sample().into_dev_consortium()?;
    eprintln!("signing {} transactions ahead ({} streams)…", args.clients * args.txs_per_client, args.clients);
    let start_sign = Instant::now();
    let t = now();
    let streams: Vec<Vec<Vec<Vec<u8>>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..args.clients)
            .map(|c| {
                let consortium = consortium.clone();
                let (per, batch) = (args.txs_per_client, args.batch);
                s.spawn(move || {
                    // Windows long enough to outlast the run; the chain allows at most one hour.
                    let mut w = Workload::new(consortium, ChainId(CHAIN), 1000 + c as u64, 50_000);
                    let txs: Vec<Vec<u8>> = w.batch(per, t).iter().map(Encode::to_bytes).collect();
                    txs.chunks(batch).map(<[Vec<u8>]>::to_vec).collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("signing thread")).collect()
    });
    eprintln!("signed in {:.1} s", start_sign.elapsed().as_secs_f64());

    let bin = std::env::current_exe().context("cannot find the elchain binary")?;
    let dir = match &args.keep {
        Some(p) => {
            std::fs::create_dir_all(p)?;
            anyhow::ensure!(std::fs::read_dir(p)?.next().is_none(), "{} is not empty", p.display());
            ClusterDir::Kept(p.clone())
        }
        None => ClusterDir::Temporary(tempfile::tempdir()?),
    };
    let settings = Settings {
        verify_threads: 0,
        block_txs: args.block_size,
        block_wait_ms: args.block_wait_ms,
        ..Settings::default()
    };
    let mut cluster = Cluster::start_in(bin, dir, args.replicas, settings);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let report = runtime.block_on(async {
        let client = cluster.client().await;
        client.wait_leader(CHAIN, Duration::from_secs(30)).await?;
        let ticks = clock_ticks();
        let pids: Vec<u32> = cluster.nodes.keys().filter_map(|id| cluster.pid(*id)).collect();
        let cpu_before: f64 = pids.iter().map(|p| cpu_seconds(*p, ticks)).sum();
        let bar = ProgressBar::new(args.duration);
        bar.set_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} s  {msg}").expect("template"),
        );
        let started = Instant::now();
        let deadline = started + Duration::from_secs(args.duration);
        let mut tasks = Vec::new();
        for stream in streams {
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                let (mut committed, mut valid, mut rejected, mut lat) = (0u64, 0u64, 0u64, Vec::new());
                for batch in stream {
                    if Instant::now() >= deadline {
                        break;
                    }
                    let t0 = Instant::now();
                    let receipts = client.submit(CHAIN, batch, Duration::from_secs(30)).await?;
                    lat.push(t0.elapsed().as_secs_f64() * 1000.0);
                    for r in receipts {
                        match r.status {
                            ReceiptStatus::Committed { outcome, .. } => {
                                committed += 1;
                                valid += u64::from(outcome == 0);
                            }
                            ReceiptStatus::Rejected { .. } => rejected += 1,
                        }
                    }
                }
                anyhow::Ok((committed, valid, rejected, lat))
            }));
        }
        while tasks.iter().any(|t| !t.is_finished()) {
            tokio::time::sleep(Duration::from_millis(200)).await;
            bar.set_position(started.elapsed().as_secs().min(args.duration));
        }
        let elapsed = started.elapsed().as_secs_f64();
        let cpu_after: f64 = pids.iter().map(|p| cpu_seconds(*p, ticks)).sum();
        bar.finish_and_clear();
        let (mut committed, mut valid, mut rejected, mut lat) = (0, 0, 0, Vec::new());
        for t in tasks {
            let (c, v, r, l) = t.await??;
            committed += c;
            valid += v;
            rejected += r;
            lat.extend(l);
        }
        lat.sort_by(f64::total_cmp);
        client.close().await;
        anyhow::Ok(Report {
            tps: committed as f64 / elapsed,
            p50_ms: percentile(&lat, 0.5),
            p90_ms: percentile(&lat, 0.9),
            p99_ms: percentile(&lat, 0.99),
            cpu_us_per_tx: if committed == 0 { 0.0 } else { (cpu_after - cpu_before) * 1e6 / committed as f64 },
            committed,
            valid,
            rejected,
            chains: 1,
            replicas: args.replicas,
            seconds: elapsed,
            clients: args.clients,
            batch: args.batch,
            block_size: args.block_size,
            durability: "raft log fsync per append; block commit fsync",
            mode: "closed loop",
        })
    })?;
    for e in cluster.try_stop_all() {
        eprintln!("{e}");
    }
    println!(
        "{} replica(s), 1 chain, {} clients x batches of {}, blocks of up to {}: {:.0} committed tx/s over {:.1} s",
        report.replicas, report.clients, report.batch, report.block_size, report.tps, report.seconds
    );
    println!(
        "  submit-to-commit latency per batch: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms",
        report.p50_ms, report.p90_ms, report.p99_ms
    );
    println!(
        "  {} committed ({} valid), {} refused at admission; {:.1} µs of node CPU per committed tx (all replicas)",
        report.committed, report.valid, report.rejected, report.cpu_us_per_tx
    );
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(ExitCode::SUCCESS)
}
