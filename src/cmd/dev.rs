//! `elchain dev`: a whole local deployment on the sample consortium.
//!
//! By default: a consortium CA, three `elchain node` processes (QUIC with mutual TLS, redb,
//! openraft) under the data directory, each serving the meta chain 0 and licence chains 1 and 2;
//! the meta chain gets the chain directory and shard map version 1 (admin-signed governance
//! transactions); a router serves the REST API on http://127.0.0.1:8080 until Ctrl-C. Run it
//! again on the same directory to resume. `--txs N` also drives generated load; `--in-process`
//! instead drives one replica's ledger directly, without networking.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use elchain_shard::node::client::Client;
use elchain_shard::node::rpc::ReceiptStatus;
use elchain_shard::node::rpc::{Answer, Query};
use elchain_shard::{Ledger, LogPosition};
use elchain_sim::cluster::{Cluster, ClusterDir, Settings};
use elchain_sim::governance::{self};
use elchain_sim::Workload;
use elchain_types::codec::Encode;
use elchain_types::contract::Consortium;

const META: u32 = 0;
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
    /// Replicas of every chain; each is its own `elchain node` process serving all chains.
    #[arg(long, default_value_t = 3)]
    replicas: u64,
    /// Licence chains (besides the meta chain 0) of a new cluster.
    #[arg(long, default_value_t = 2)]
    chains: u32,
    /// HTTP address of the router's REST API.
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: std::net::SocketAddr,
    /// Node `i` listens for QUIC on UDP port `quic-port + i` (0: any free ports).
    #[arg(long, default_value_t = 7100)]
    quic_port: u16,
    /// Generated transactions to submit straight to the licence chains after start (cluster
    /// mode; 0: none).
    #[arg(long, default_value_t = 0)]
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
    anyhow::ensure!(args.chains >= 1, "--chains must be at least 1");
    let bin = std::env::current_exe().context("cannot find the elchain binary")?;
    let settings = Settings {
        relays: false,
        verify_threads: 0,
        metrics: true,
        block_txs: 2000,
        chains: args.chains,
        meta: true,
        base_port: (args.quic_port != 0).then_some(args.quic_port),
        ..Settings::default()
    };
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
    let chains = cluster.chains();
    anyhow::ensure!(chains.first() == Some(&META), "{} holds no meta chain; use --fresh", args.data_dir.display());
    let licence_chains: Vec<u32> = chains.iter().copied().filter(|c| *c != META).collect();
    println!(
        "elchain dev: {} {} node(s) in {}: meta chain 0 and licence chain(s) {:?}, {} replica(s) each",
        if resuming { "resumed" } else { "started" },
        cluster.nodes.len(),
        args.data_dir.display(),
        licence_chains,
        cluster.nodes.len(),
    );
    for n in cluster.nodes.values() {
        let metrics = n.metrics.map(|m| format!("  metrics http://{m}/metrics")).unwrap_or_default();
        println!("  node {}: quic {}{metrics}  log {}", n.id, n.listen, n.log.display());
    }
    print_consortium(&consortium);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let outcome = runtime.block_on(async {
        let mut signals = super::node::Signals::install()?;
        let client = cluster.client().await;
        let replicas: Vec<(u64, u32)> =
            cluster.nodes.values().flat_map(|n| n.chains.iter().map(move |&c| (n.id, c))).collect();
        let leaders = async {
            for &chain in &chains {
                let leader = client.wait_leader(chain, Duration::from_secs(60)).await?;
                let status = client.status(leader, chain).await.map_err(anyhow::Error::msg)?;
                println!("  chain {chain}: leader node {leader}, height {}", status.height);
            }
            // Started means every replica serves, not only a majority of each chain.
            let deadline = Instant::now() + Duration::from_secs(60);
            for &(node, chain) in &replicas {
                while let Err(e) = client.status(node, chain).await {
                    anyhow::ensure!(Instant::now() < deadline, "node {node} does not serve chain {chain}: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            anyhow::Ok(())
        };
        // A node that cannot start (a store of another schema, a port in use) exits at once: say
        // so then, with its log, rather than after the wait for a leader runs out (or, with the
        // other nodes a majority, once the cluster runs without it).
        tokio::select! {
            r = leaders => r?,
            e = first_exit(&mut cluster, "while the cluster was starting") => { client.close().await; return Err(e); }
            _ = signals.recv() => { client.close().await; return anyhow::Ok(()); }
        };
        bootstrap_governance(&client, &cluster, &consortium).await?;
        client.close().await;

        let router = start_router(&cluster, args.http).await?;
        let url = format!("http://{}", router.addr());
        println!("  router: {url}  (API under /v1, OpenAPI at {url}/openapi.json, health at {url}/healthz)");
        println!("  try:    curl -s {url}/v1/chains");
        if args.txs > 0 {
            let load = drive_load(&cluster, &consortium, &licence_chains, &args);
            tokio::select! {
                r = load => r?,
                _ = signals.recv() => { router.shutdown().await; return anyhow::Ok(()); }
            }
        }
        if !args.exit {
            println!("serving; press Ctrl-C to stop (then: elchain verify {})", args.data_dir.display());
            // A node that dies while serving is said at once, with its log; the others go on (a
            // chain keeps serving with a majority of its replicas).
            loop {
                tokio::select! {
                    _ = signals.recv() => break,
                    e = first_exit(&mut cluster, "while serving") => {
                        eprintln!("warning: {e:#}\n  the other nodes go on serving; stop with Ctrl-C and start `elchain dev` again to bring it back");
                    }
                }
            }
        }
        router.shutdown().await;
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

/// Lines of a node's log shown when it exits on its own.
const LOG_TAIL_LINES: usize = 20;

/// Resolves when a node of `cluster` exits on its own, with why (the end of its log); `when`
/// says in which phase, e.g. "while serving".
async fn first_exit(cluster: &mut Cluster, when: &str) -> anyhow::Error {
    loop {
        if let Some((id, status)) = cluster.exited() {
            let log = cluster.log(id);
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
            let path = cluster.nodes[&id].log.display().to_string();
            return anyhow::anyhow!("node {id} exited {when} ({status}); the end of {path}:\n{tail}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Register the chains and set shard map version 1 on a fresh meta chain.
async fn bootstrap_governance(client: &Client, cluster: &Cluster, consortium: &Consortium) -> anyhow::Result<()> {
    let Answer::Governance(g) = client.query(META, Query::Governance, Duration::from_secs(30)).await? else {
        anyhow::bail!("the meta chain answered a governance query with something else");
    };
    if g.shard_map.is_some() {
        return Ok(());
    }
    let infos: Vec<_> = cluster.chains().into_iter().map(|c| cluster.chain_info(c)).collect();
    let txs = governance::bootstrap(consortium, &infos).map_err(anyhow::Error::msg)?;
    let n = txs.len();
    let receipts = client.submit(META, txs.iter().map(Encode::to_bytes).collect(), Duration::from_secs(30)).await?;
    for r in &receipts {
        if let ReceiptStatus::Committed { outcome: 0, .. } = r.status {
            continue;
        }
        anyhow::bail!("a bootstrap governance transaction failed: {:?}", r.status);
    }
    println!(
        "  meta chain: registered {} chain(s) and set shard map version 1 ({n} admin-signed transactions)",
        infos.len()
    );
    Ok(())
}

async fn start_router(
    cluster: &Cluster,
    http: std::net::SocketAddr,
) -> anyhow::Result<elchain_router::service::Running> {
    use elchain_router::config::{Limits, MetaPeer, RouterConfig, TlsConfig};
    let dir = cluster.dir.path();
    let certs = dir.join("certs");
    if !certs.join("node-900.pem").exists() {
        elchain_shard::ca::issue_node(
            &dir.join("ca"),
            900,
            "city-services",
            elchain_shard::ca::Role::Router,
            &certs,
            false,
        )?;
    }
    let cfg = RouterConfig {
        listen: http,
        tls: TlsConfig {
            ca_cert: dir.join("ca/ca.pem"),
            cert: certs.join("node-900.pem"),
            key: certs.join("node-900.key"),
        },
        meta: cluster
            .nodes
            .values()
            .filter(|n| n.chains.contains(&META))
            .map(|n| MetaPeer { id: n.id, addr: n.public })
            .collect(),
        limits: Limits::default(),
        authorisation_key: "dev".into(),
        chain_timeout_ms: 10_000,
        refresh_ms: 500,
    };
    cfg.check().map_err(anyhow::Error::msg)?;
    let router =
        elchain_router::service::start(cfg).await.with_context(|| format!("cannot start the router on {http}"))?;
    anyhow::ensure!(router.wait_ready(Duration::from_secs(30)).await, "the router could not read the meta chain");
    Ok(router)
}

/// Submit generated load straight to the licence chains (over QUIC) and report it.
async fn drive_load(cluster: &Cluster, consortium: &Consortium, chains: &[u32], args: &Args) -> anyhow::Result<()> {
    let client = cluster.client().await;
    let mut workloads: Vec<(u32, Workload)> = Vec::new();
    for &c in chains {
        let h = client
            .status(client.wait_leader(c, Duration::from_secs(30)).await?, c)
            .await
            .map_err(anyhow::Error::msg)?
            .height;
        workloads.push((
            c,
            Workload::new(consortium.clone(), ChainId(c), args.seed ^ h.rotate_left(32) ^ c as u64, args.population),
        ));
    }
    println!(
        "  load: {} transactions in batches of {} over {} holders per chain, seed {}",
        args.txs, args.batch, args.population, args.seed
    );
    let bar = ProgressBar::new(args.txs as u64);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} txs  {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let mut outcomes: BTreeMap<&'static str, u64> = BTreeMap::new();
    let started = Instant::now();
    let mut sent = 0;
    let mut turn = 0;
    while sent < args.txs {
        let n = args.batch.min(args.txs - sent);
        let (chain, w) = &mut workloads[turn % chains.len()];
        turn += 1;
        let raws: Vec<Vec<u8>> = w.batch(n, now()).iter().map(Encode::to_bytes).collect();
        for r in client.submit(*chain, raws, Duration::from_secs(30)).await? {
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
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    println!(
        "committed {sent} transactions in {secs:.1} s ({:.0} tx/s) over {} chain(s), {}-way replication",
        sent as f64 / secs,
        chains.len(),
        cluster.nodes.len()
    );
    println!("  outcomes: {}", outcomes.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" "));
    client.close().await;
    Ok(())
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
