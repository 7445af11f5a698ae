//! `elchain verify`: audit stored chains.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use elchain_shard::store::audit::audit;
use elchain_shard::Store;
use indicatif::{ProgressBar, ProgressStyle};

/// Arguments of `elchain verify`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A chain store file (`*.redb`) or a data directory; every `*.redb` chain store found in
    /// it (and its sub-directories) is checked.
    data: PathBuf,
    /// No progress bar.
    #[arg(short, long)]
    quiet: bool,
    /// Also re-execute every block from genesis (verifying every signature again) and check
    /// that the recorded outcomes and state roots follow from the transactions. Slower.
    #[arg(long)]
    replay: bool,
}

/// Exit code when a chain fails the audit.
const TAMPERED: u8 = 1;

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let stores = find_stores(&args.data)?;
    if stores.is_empty() {
        anyhow::bail!("no chain store (*.redb) under {}", args.data.display());
    }
    let mut bad = 0;
    let mut checked = 0;
    let scanning = args.data.is_dir();
    for path in &stores {
        let store = match Store::open(path) {
            // A data directory also holds other redb files (Raft logs); only chain stores count.
            Err(elchain_shard::StoreError::NotAStore { .. }) if scanning => continue,
            r => r.with_context(|| format!("cannot open {}", path.display()))?,
        };
        checked += 1;
        let tip = store.tip()?;
        let bar = if args.quiet { ProgressBar::hidden() } else { ProgressBar::new(tip.height) };
        bar.set_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} blocks")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_message(format!("chain {}", store.chain()));
        let mut report = audit(&store, |h| bar.set_position(h))?;
        if args.replay && report.first_bad.is_none() {
            bar.set_position(0);
            bar.set_message(format!("chain {} replay", store.chain()));
            report.first_bad = elchain_shard::store::audit::replay(&store, |h| bar.set_position(h))?;
        }
        bar.finish_and_clear();
        match &report.first_bad {
            None => println!(
                "chain {} ({}): OK: {} blocks, {} transactions, {} index entries, {} checkpoints, tip {}",
                store.chain(),
                path.display(),
                report.blocks,
                report.txs,
                report.index_entries,
                report.checkpoints,
                tip.hash()
            ),
            Some(f) => {
                bad += 1;
                println!(
                    "chain {} ({}): TAMPERED: first bad block {}: {}",
                    store.chain(),
                    path.display(),
                    f.height,
                    f.problem
                );
            }
        }
    }
    if checked == 0 {
        anyhow::bail!("no chain store under {}", args.data.display());
    }
    Ok(if bad == 0 { ExitCode::SUCCESS } else { ExitCode::from(TAMPERED) })
}

fn find_stores(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    if !path.is_dir() {
        anyhow::bail!("{} does not exist", path.display());
    }
    let mut out = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))? {
            let p = entry?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "redb") {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}
