//! `elchain dev`: a local replicated chain on the sample consortium, under a realistic load.
//!
//! By default: a consortium CA, three `elchain node` processes (QUIC with mutual TLS, redb,
//! openraft) under the data directory, a generated load submitted through the client, then the
//! cluster keeps serving until Ctrl-C. Run it again on the same directory to resume the same
//! chain. `--in-process` instead drives one replica's ledger directly, without networking.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use elchain_shard::node::rpc::ReceiptStatus;
use elchain_shard::{Ledger, LogPosition};
use elchain_sim::cluster::{Cluster, ClusterDir, Settings, CHAIN};
use elchain_sim::Workload;
use elchain_types::codec::Encode;
use elchain_types::ids::{ChainId, Timestamp};
use elchain_types::profile::Profile;
use elchain_types::reason::{Outcome, RejectCode};
use indicatif::{ProgressBar, ProgressStyle};
use tracing::info;

/// Arguments of `elchain dev`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory for the cluster (CA, certificates, node configs, data, logs); reused when it
    /// already holds one.
    #[arg(long, default_value = "elchain-data", env = "ELCHAIN_DATA_DIR")]
    data_dir: PathBuf,
    /// Replicas of the chain, each its own process.
    #[arg(long, default_value_t = 3)]
    replicas: u64,
    /// Transactions to submit (cluster mode).
    #[arg(long, default_value_t = 20_000)]
    txs: usize,
    /// Transactions per submission (cluster mode).
    #[arg(long, default_value_t = 250)]
    batch: usize,
    /// Stop the cluster once the load is done, instead of serving until Ctrl-C.
    #[arg(long)]
    exit: bool,
    /// Drive one replica's ledger in this process (no networking, no consensus).
    #[arg(long)]
    in_process: bool,
    /// Chain id of the local chain (in-process mode; the cluster serves chain 1).
    #[arg(long, default_value_t = 1)]
    chain: u32,
    /// Blocks to produce (in-process mode).
    #[arg(long, default_value_t = 200)]
    blocks: u64,
    /// Transactions per block (in-process mode).
    #[arg(long, default_value_t = 500)]
    block_size: usize,
    /// Holders (persons and enterprises) in the generated population.
    #[arg(long, default_value_t = 10_000)]
    population: u32,
    /// Seed of the generated load.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Signature-verification threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Delete the data directory first.
    #[arg(long)]
    fresh: bool,
}

fn now() -> Timestamp {
    Timestamp(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.block_size > 0 && args.batch > 0, "--block-size and --batch must be at least 1");
    if args.fresh && args.data_dir.exists() {
        std::fs::remove_dir_all(&args.data_dir)
            .with_context(|| format!("cannot delete {}", args.data_dir.display()))?;
    }
    if args.in_process {
        run_in_process(args)
    } else {
        run_cluster(args)
    }
}

fn run_cluster(args: Args) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.replicas >= 1, "--replicas must be at least 1");
    let bin = std::env::current_exe().context("cannot find the elchain binary")?;
    let settings = Settings { relays: false, verify_threads: 0, metrics: true, block_txs: 2000, ..Settings::default() };
    let resuming = args.data_dir.join("node-1.toml").is_file();
    let mut cluster = if resuming {
        Cluster::resume(bin, args.data_dir.clone(), settings).map_err(anyhow::Error::msg)?
    } else {
        if args.data_dir.exists() {
            anyhow::ensure!(
                std::fs::read_dir(&args.data_dir)?.next().is_none(),
                "{} exists and holds no cluster; use another --data-dir or --fresh",
                args.data_dir.display()
            );
        }
        std::fs::create_dir_all(&args.data_dir)?;
        Cluster::start_in(bin, ClusterDir::Kept(args.data_dir.clone()), args.replicas, settings)
    };
    let consortium = Profile::sample().into_dev_consortium()?;
    println!(
        "elchain dev: {} {} replica(s) of chain {CHAIN} in {}",
        if resuming { "resumed" } else { "started" },
        cluster.nodes.len(),
        args.data_dir.display()
    );
    for n in cluster.nodes.values() {
        let metrics = n.metrics.map(|m| format!("  metrics http://{m}/metrics")).unwrap_or_default();
        println!("  node {}: quic {}{metrics}  log {}", n.id, n.listen, n.log.display());
    }
    print_consortium(&consortium);
    let replicas = cluster.nodes.len();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let outcome = runtime.block_on(async {
        let mut signals = super::node::Signals::install()?;
        let client = cluster.client().await;
        let leader = client.wait_leader(CHAIN, Duration::from_secs(30)).await?;
        let start_height = client.status(leader, CHAIN).await.map_err(anyhow::Error::msg)?.height;
        println!("  leader: node {leader}; chain height {start_height}");
        let mut workload =
            Workload::new(consortium, ChainId(CHAIN), args.seed ^ start_height.rotate_left(32), args.population);
        let bar = ProgressBar::new(args.txs as u64);
        bar.set_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} transactions  {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        let mut outcomes: BTreeMap<&'static str, u64> = BTreeMap::new();
        let started = Instant::now();
        let load = async {
            let mut sent = 0;
            while sent < args.txs {
                let n = args.batch.min(args.txs - sent);
                let raws: Vec<Vec<u8>> = workload.batch(n, now()).iter().map(Encode::to_bytes).collect();
                let receipts = client.submit(CHAIN, raws, Duration::from_secs(30)).await?;
                for r in receipts {
                    let key = match r.status {
                        ReceiptStatus::Committed { outcome: 0, .. } => "valid",
                        ReceiptStatus::Committed { outcome, .. } | ReceiptStatus::Rejected { code: outcome } => {
                            RejectCode::from_u16(outcome).map_or("unknown", RejectCode::as_str)
                        }
                    };
                    *outcomes.entry(key).or_default() += 1;
                }
                sent += n;
                bar.set_position(sent as u64);
                bar.set_message(format!("{:.0} tx/s", sent as f64 / started.elapsed().as_secs_f64().max(1e-9)));
            }
            anyhow::Ok(sent)
        };
        let sent = tokio::select! {
            r = load => Some(r?),
            _ = signals.recv() => None,
        };
        bar.finish_and_clear();
        if let Some(sent) = sent {
            let status = client.status(leader, CHAIN).await.map_err(anyhow::Error::msg)?;
            println!(
                "committed {sent} transactions in {:.1} s ({:.0} tx/s) through {replicas}-way replication",
                started.elapsed().as_secs_f64(),
                sent as f64 / started.elapsed().as_secs_f64().max(1e-9)
            );
            println!("  outcomes: {}", outcomes.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" "));
            println!("  tip: height {} hash {}", status.height, elchain_types::ids::Hash32(status.tip_hash));
            if !args.exit {
                println!("serving; press Ctrl-C to stop (then: elchain verify {})", args.data_dir.display());
                signals.recv().await;
            }
        }
        client.close().await;
        anyhow::Ok(())
    });
    println!("stopping the cluster…");
    let errors = cluster.try_stop_all();
    for e in &errors {
        eprintln!("{e}");
    }
    outcome?;
    anyhow::ensure!(errors.is_empty(), "{} node(s) did not stop cleanly (see above)", errors.len());
    println!("stopped; check the stored chains with: elchain verify {}", args.data_dir.display());
    Ok(ExitCode::SUCCESS)
}

fn print_consortium(consortium: &elchain_types::Consortium) {
    println!(
        "  consortium '{}': {} members, {} licence types, {} service items (development keys)",
        consortium.name,
        consortium.members.len(),
        consortium.licence_types.len(),
        consortium.items.len()
    );
}

fn run_in_process(args: Args) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.data_dir).with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    let chain = ChainId(args.chain);
    let path = args.data_dir.join(format!("chain-{}.redb", chain.0));
    let consortium = Profile::sample().into_dev_consortium()?;
    let ledger = if path.exists() {
        let l = Ledger::open(&path, args.threads).with_context(|| format!("cannot open {}", path.display()))?;
        anyhow::ensure!(
            l.consortium() == &consortium,
            "{} was created under another consortium profile; use another --data-dir or --fresh",
            path.display()
        );
        info!(path = %path.display(), height = l.tip()?.height, "reopened chain store");
        l
    } else {
        let l = Ledger::create(&path, chain, consortium.clone(), now(), args.threads)?;
        info!(path = %path.display(), "created chain store");
        l
    };
    let start_height = ledger.tip()?.height;
    println!("elchain dev: chain {} in {} (starting at height {start_height})", chain, path.display());
    print_consortium(&consortium);
    println!(
        "  load: {} blocks x {} transactions over {} holders, seed {}",
        args.blocks, args.block_size, args.population, args.seed
    );
    println!("  in-process: one replica's ledger, no networking or consensus");

    let mut workload = Workload::new(consortium, chain, args.seed ^ start_height.rotate_left(32), args.population);
    let bar = ProgressBar::new(args.blocks);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} blocks  {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let mut outcomes: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut ledger_time = Duration::ZERO;
    let mut committed = 0u64;
    for _ in 0..args.blocks {
        let t = now();
        let raws: Vec<Vec<u8>> = workload.batch(args.block_size, t).iter().map(Encode::to_bytes).collect();
        let started = Instant::now();
        let ex = ledger.append(raws, t, LogPosition::default())?;
        ledger_time += started.elapsed();
        for o in &ex.block.outcomes {
            let key = match o {
                Outcome::Valid => "valid",
                Outcome::Invalid(c) => c.as_str(),
            };
            *outcomes.entry(key).or_default() += 1;
        }
        committed += ex.block.txs.len() as u64;
        bar.inc(1);
        bar.set_message(format!(
            "height {}  {:.0} tx/s through verify+execute+commit",
            ex.block.header.height,
            committed as f64 / ledger_time.as_secs_f64().max(1e-9)
        ));
    }
    bar.finish_and_clear();
    let tip = ledger.tip()?;
    println!(
        "committed {committed} transactions in {} blocks: {:.0} tx/s through verify+execute+commit (signing excluded)",
        args.blocks,
        committed as f64 / ledger_time.as_secs_f64().max(1e-9)
    );
    println!("  outcomes: {}", outcomes.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" "));
    println!("  tip: height {} hash {}", tip.height, tip.hash());
    println!("  check it: elchain verify {}", args.data_dir.display());
    Ok(ExitCode::SUCCESS)
}
