//! `elchain node`: run a node until interrupted.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use elchain_shard::node::config::NodeConfig;
use elchain_shard::node::Node;
use tracing::info;

/// Arguments of `elchain node`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The node's configuration file (TOML); see deploy/examples/node.toml.
    #[arg(short, long, env = "ELCHAIN_NODE_CONFIG")]
    config: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let cfg = NodeConfig::load(&args.config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("elchain-node")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let node = Node::start(cfg).await?;
        wait_for_signal().await;
        info!("shutting down");
        node.shutdown().await;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Wait for Ctrl-C or SIGTERM.
pub(crate) async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
