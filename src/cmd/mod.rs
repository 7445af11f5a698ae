//! Command-line interface: one module per command.

mod admin;
mod bench;
mod ca;
mod client;
mod clock;
mod dev;
mod gate;
mod govern;
mod keygen;
mod node;
mod router;
mod sim;
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// elchain: a permissioned multi-chain ledger for government electronic licences.
///
/// Departments issue licences; holders authorise departments to use chosen fields for a
/// service item and a time; every use is recorded on the chain before data is released.
#[derive(Debug, Parser)]
#[command(name = "elchain", version, propagate_version = true)]
pub struct Cli {
    /// More log output (-v: debug, -vv: trace). ELCHAIN_LOG overrides, e.g. ELCHAIN_LOG=elchain_shard=debug.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

impl Cli {
    /// The log filter the flags ask for.
    pub fn log_level(&self) -> &'static str {
        match self.verbose {
            // `sim run --deterministic` runs whole nodes in this process: their routine logs
            // would drown the progress line, so a simulation shows warnings only.
            // openraft reports every unreachable peer during a fault as an error; the checker,
            // not those lines, says whether the run went wrong.
            0 if matches!(self.command, Command::Sim(_)) => "warn,openraft=off",
            0 => "info",
            1 => "debug",
            _ => "trace",
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Look at a chain's replicas and add or remove replicas.
    Admin(admin::Args),
    /// Measure committed throughput, latency and CPU per transaction on a local cluster.
    Bench(bench::Args),
    /// Run the consortium certificate authority: root, member and node certificates, revocation.
    Ca(ca::Args),
    /// Issue, grant, use and trace licences over a router's REST API, signing locally with key files.
    Client(client::Args),
    /// Run a whole local deployment (meta chain, licence chains, router on :8080) on the sample consortium.
    Dev(dev::Args),
    /// Build, co-sign and submit governance transactions (chains, shard map, parameters) as a consortium admin.
    Govern(govern::Args),
    /// Generate a key pair (Ed25519 signing + X25519 encryption) for a holder or a member.
    Keygen(keygen::Args),
    /// Run a node: replicas of one or more chains, serving Raft and clients over QUIC with mutual TLS.
    Node(node::Args),
    /// Serve the REST API (with OpenAPI) in front of the chains; follows the meta chain.
    Router(router::Args),
    /// Run load-and-fault scenarios on a local cluster and check that nothing acknowledged was lost.
    Sim(sim::Args),
    /// Re-hash a stored chain and its transaction index; exit non-zero on any tampering.
    Verify(verify::Args),
}

/// Run the chosen command; the exit code says how it went.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Admin(a) => admin::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Ca(a) => ca::run(a),
        Command::Client(a) => client::run(a),
        Command::Dev(a) => dev::run(a),
        Command::Govern(a) => govern::run(a),
        Command::Keygen(a) => keygen::run(a),
        Command::Node(a) => node::run(a),
        Command::Router(a) => router::run(a),
        Command::Sim(a) => sim::run(a),
        Command::Verify(a) => verify::run(a),
    }
}
