//! `elchain dev`: a local chain on the sample consortium, under a realistic generated load.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use elchain_shard::{Ledger, LogPosition};
use elchain_sim::Workload;
use elchain_types::codec::Encode;
use elchain_types::ids::{ChainId, Timestamp};
use elchain_types::profile::Profile;
use elchain_types::reason::Outcome;
use indicatif::{ProgressBar, ProgressStyle};
use tracing::info;

/// Arguments of `elchain dev`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory for the chain store; reused (and extended) when it already holds one.
    #[arg(long, default_value = "elchain-data", env = "ELCHAIN_DATA_DIR")]
    data_dir: PathBuf,
    /// Chain id of the local chain.
    #[arg(long, default_value_t = 1)]
    chain: u32,
    /// Blocks to produce.
    #[arg(long, default_value_t = 200)]
    blocks: u64,
    /// Transactions per block.
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
    anyhow::ensure!(args.block_size > 0, "--block-size must be at least 1");
    if args.fresh && args.data_dir.exists() {
        std::fs::remove_dir_all(&args.data_dir)
            .with_context(|| format!("cannot delete {}", args.data_dir.display()))?;
    }
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
    println!(
        "  consortium '{}': {} members, {} licence types, {} service items (development keys)",
        consortium.name,
        consortium.members.len(),
        consortium.licence_types.len(),
        consortium.items.len()
    );
    println!(
        "  load: {} blocks x {} transactions over {} holders, seed {}",
        args.blocks, args.block_size, args.population, args.seed
    );
    println!("  note: one replica; replication across departments' nodes is not built yet (see README)");

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
