//! `elchain admin`: look at a chain's replicas and change its membership.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Subcommand;
use elchain_shard::net::{Identity, TlsFiles};
use elchain_shard::node::client::Client;
use elchain_shard::node::rpc::{Request, Response};

/// Arguments of `elchain admin`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The consortium CA certificate.
    #[arg(long, value_name = "FILE", default_value = "ca/ca.pem")]
    ca_cert: PathBuf,
    /// A certificate of that CA to connect with (a router or replica certificate).
    #[arg(long, value_name = "FILE")]
    cert: PathBuf,
    /// Its private key.
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// A replica to talk to, as ID=ADDRESS (repeat for each replica you know).
    #[arg(long = "node", value_name = "ID=ADDRESS", required = true, value_parser = parse_node)]
    nodes: Vec<(u64, SocketAddr)>,
    /// The chain.
    #[arg(long, default_value_t = 1)]
    chain: u32,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Each node's view of the chain: leader, term, height, tip, voters.
    Status,
    /// Add a replica: it joins as a learner, catches up, then becomes a voter.
    AddReplica {
        /// The new replica's node id.
        #[arg(long)]
        id: u64,
        /// Its QUIC address.
        #[arg(long)]
        addr: SocketAddr,
    },
    /// Remove a replica from the chain's voters.
    RemoveReplica {
        /// The replica's node id.
        #[arg(long)]
        id: u64,
    },
}

fn parse_node(s: &str) -> Result<(u64, SocketAddr), String> {
    let (id, addr) = s.split_once('=').ok_or("expected ID=ADDRESS, e.g. 1=127.0.0.1:7001")?;
    Ok((
        id.parse().map_err(|e| format!("bad node id {id:?}: {e}"))?,
        addr.parse().map_err(|e| format!("bad address {addr:?}: {e}"))?,
    ))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let identity = Identity::load(&TlsFiles { ca_cert: args.ca_cert, cert: args.cert, key: args.key, crl: None })?;
    let nodes: BTreeMap<u64, SocketAddr> = args.nodes.into_iter().collect();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let client = Client::new(identity, nodes.clone()).await?;
        let deadline = Duration::from_secs(60);
        let result = match args.command {
            Command::Status => {
                let mut reached = 0;
                for id in nodes.keys() {
                    match client.status(*id, args.chain).await {
                        Ok(s) => {
                            reached += 1;
                            println!(
                                "node {}: chain {} leader {} term {} height {} tip {} voters {:?} learners {:?}",
                                s.node,
                                s.chain,
                                s.leader.map_or("none".to_string(), |l| l.to_string()),
                                s.term,
                                s.height,
                                elchain_types::ids::Hash32(s.tip_hash),
                                s.voters,
                                s.learners
                            );
                        }
                        Err(e) => println!("node {id}: unreachable: {e}"),
                    }
                }
                if reached == 0 {
                    bail!("no node answered");
                }
                Ok(())
            }
            Command::AddReplica { id, addr } => {
                let req = Request::AddReplica { chain: args.chain, node: id, addr: addr.to_string() };
                expect_done(client.to_leader(req, deadline).await.context("add replica")?)
                    .map(|()| println!("node {id} is now a voter of chain {}", args.chain))
            }
            Command::RemoveReplica { id } => {
                let req = Request::RemoveReplica { chain: args.chain, node: id };
                expect_done(client.to_leader(req, deadline).await.context("remove replica")?)
                    .map(|()| println!("node {id} no longer replicates chain {}", args.chain))
            }
        };
        client.close().await;
        result
    })?;
    Ok(ExitCode::SUCCESS)
}

fn expect_done(r: Response) -> anyhow::Result<()> {
    match r {
        Response::Done => Ok(()),
        Response::Error(m) => bail!("{m}"),
        other => bail!("unexpected answer: {other:?}"),
    }
}
