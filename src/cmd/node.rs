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
        // Handlers first: a stop request that arrives while the node is still starting is
        // answered with a clean shutdown once it has started, not by the default action.
        let mut signals = Signals::install()?;
        let node = Node::start(cfg).await?;
        signals.recv().await;
        info!("shutting down");
        node.shutdown().await;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Ctrl-C and SIGTERM, caught from the moment this is installed.
pub(crate) struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    /// Install the handlers (inside a tokio runtime).
    pub(crate) fn install() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Self {
                interrupt: signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?,
                terminate: signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// Wait for the next Ctrl-C or SIGTERM.
    pub(crate) async fn recv(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}
