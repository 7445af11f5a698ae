//! `elchain router`: serve the REST API in front of the chains until interrupted.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use elchain_router::config::RouterConfig;
use tracing::info;

/// Arguments of `elchain router`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The router's configuration file (TOML); see deploy/examples/router.toml.
    #[arg(short, long, env = "ELCHAIN_ROUTER_CONFIG", required_unless_present = "openapi")]
    config: Option<PathBuf>,
    /// Print the OpenAPI document of the REST API and exit.
    #[arg(long)]
    openapi: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.openapi {
        println!("{}", elchain_router::api::openapi().to_pretty_json()?);
        return Ok(ExitCode::SUCCESS);
    }
    let path = args.config.context("--config is required")?;
    let cfg = RouterConfig::load(&path)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("elchain-router")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let mut signals = super::node::Signals::install()?;
        let router = elchain_router::service::start(cfg).await?;
        signals.recv().await;
        info!("shutting down");
        router.shutdown().await;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
