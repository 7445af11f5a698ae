//! Deterministic mode: the whole cluster in this process, on the simulated network and clock.
//!
//! ```text
//!  current-thread tokio runtime, time paused (it jumps to the next timer when nothing can run)
//!    SimNet(seed): node 1 … node R, each a real Node (redb stores, openraft, admission, batcher)
//!                  on a port of the in-memory network; the load generator is node 900
//!    Clock::Simulated(EPOCH_MS): block times = epoch + simulated time
//!    load: per stream, batch k generated and sent when the schedule (rate or ramp) says (open
//!          loop) or after the previous answer (closed loop), from Workload(seed of the stream)
//!    faults at their simulated times: kill | restart | partition | heal | kill_leader | slow_net
//!  ─► settle (heal, restart, wait until every chain's replicas agree) ─► stop ─► check stores
//!  ─► digest = blake3 over every chain's (height, tip hash)
//! ```
//!
//! Nothing in a run reads the wall clock, spawns a thread whose timing matters, or draws from an
//! unseeded random source: elections use fixed, distinct timeouts per node, admission verifies
//! signatures in place, the network's delays come from the scenario's seed. So the same scenario
//! and seed give the same blocks, the same receipts and the same digest, and a failure found
//! with a seed replays exactly. CPU work takes no simulated time, so the figures of a
//! deterministic run describe the protocol (latency in network round trips and batching
//! delays), not the machine's speed: measure speed with the process mode or `elchain bench`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use elchain_shard::net::{PeerIdentity, SimNet};
use elchain_shard::node::client::Client;
use elchain_shard::node::config::{
    BatchConfig, ChainConfig, ConsortiumConfig, NodeConfig, PeerConfig, RaftConfig, TestingConfig, TlsConfig,
};
use elchain_shard::node::Node;
use elchain_shard::Clock;
use elchain_types::codec::Encode;
use elchain_types::contract::Consortium;
use elchain_types::crypto::Keypair;
use elchain_types::ids::{ChainId, Timestamp};
use elchain_types::profile::Profile;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use crate::checker::{check_stores, Verdict};
use crate::fault::{named_or_all, Damage};
use crate::run::{
    max_acked_height, report, wait_converged, AppliedFault, Driven, How, Live, Mode, Phase, Progress, Report, RunError,
    StreamOutcome,
};
use crate::scenario::{Action, Fault, Scenario};
use crate::schedule::Schedule;
use crate::workload::{Mix, Workload};

/// Simulated time at the start of a run: 2027-01-15T08:00:00Z, in milliseconds.
pub const EPOCH_MS: u64 = 1_800_000_000_000;

/// The load generator's node id on the simulated network.
const LOAD_NODE: u64 = 900;

/// One-way network delay between simulated nodes, plus up to [`JITTER`].
const LATENCY: Duration = Duration::from_micros(500);
const JITTER: Duration = Duration::from_micros(500);

/// How long a submission may wait for its receipts.
const SUBMIT_DEADLINE: Duration = Duration::from_secs(20);

/// Most batches a stream has outstanding in open loop.
const MAX_IN_FLIGHT: usize = 16;

/// A batch sent this long after its scheduled time counts as late.
const LATE_AFTER: Duration = Duration::from_millis(10);

/// Simulated time between progress reports.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// Options of a deterministic run beyond the scenario.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Use this seed instead of the scenario's (workload streams, network delays, elections).
    pub seed: Option<u64>,
    /// Plant the `ack_before_commit` bug in every node (to show that the checker catches it).
    pub plant_ack_before_commit: bool,
}

/// Faults a deterministic run can apply; the others need real processes.
pub fn supported(action: Action) -> bool {
    matches!(
        action,
        Action::Kill
            | Action::Restart
            | Action::Partition
            | Action::Heal
            | Action::KillLeader
            | Action::SlowNet
            | Action::FastNet
    )
}

fn node_key(id: u64) -> Keypair {
    Keypair::dev(&format!("sim-node/{id}"))
}

fn node_addr(id: u64) -> SocketAddr {
    // Never bound: the simulated network routes by node id. Distinct, so logs stay readable.
    SocketAddr::from(([10, 0, (id >> 8) as u8, id as u8], 7000))
}

/// Node configurations of the simulated cluster: every node serves every chain; election
/// timeouts are fixed per node (distinct, drawn from the seed) so elections replay exactly.
fn configs(s: &Scenario, dir: &Path, seed: u64, plant: bool) -> Vec<NodeConfig> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0xE1EC);
    let ids: Vec<u64> = (1..=s.cluster.replicas).collect();
    let mut order = ids.clone();
    // A seeded shuffle decides which node times out first.
    for i in (1..order.len()).rev() {
        order.swap(i, rng.gen_range(0..=i));
    }
    let peers: Vec<PeerConfig> = ids.iter().map(|&id| PeerConfig { id, addr: node_addr(id) }).collect();
    ids.iter()
        .map(|&id| {
            let rank = order.iter().position(|&o| o == id).unwrap_or(0) as u64;
            let election = 400 + 150 * rank + rng.gen_range(0..100);
            NodeConfig {
                node_id: id,
                listen: node_addr(id),
                data_dir: dir.join(format!("node-{id}")),
                metrics_listen: None,
                tls: TlsConfig { ca_cert: PathBuf::new(), cert: PathBuf::new(), key: PathBuf::new(), crl: None },
                consortium: ConsortiumConfig::default(),
                raft: RaftConfig {
                    election_min_ms: election,
                    election_max_ms: election + 1,
                    snapshot_every: s.cluster.snapshot_every,
                    keep_logs: s.cluster.keep_logs,
                    ..RaftConfig::default()
                },
                batch: BatchConfig {
                    max_txs: s.cluster.block_txs,
                    max_wait_ms: s.cluster.block_wait_ms,
                    ..BatchConfig::default()
                },
                verify_threads: 1,
                chains: (1..=s.cluster.chains)
                    .map(|c| ChainConfig { id: c, peers: peers.clone(), bootstrap: id == 1 })
                    .collect(),
                testing: TestingConfig { ack_before_commit: plant, ..TestingConfig::default() },
            }
        })
        .collect()
}

/// The running simulated cluster.
struct SimCluster {
    net: SimNet,
    clock: Clock,
    configs: BTreeMap<u64, NodeConfig>,
    nodes: BTreeMap<u64, Node>,
}

impl SimCluster {
    async fn start_node(&mut self, id: u64) -> Result<(), String> {
        let cfg = self.configs[&id].clone();
        let node = Node::start_simulated(cfg, &self.net, node_key(id), self.clock)
            .await
            .map_err(|e| format!("node {id} did not start: {e:#}"))?;
        self.nodes.insert(id, node);
        Ok(())
    }

    /// Stop node `id` at once: its Raft stops and it leaves the network. (Its stores are
    /// durable at every commit, so this is what a crash leaves behind.)
    async fn kill(&mut self, id: u64) -> bool {
        match self.nodes.remove(&id) {
            Some(node) => {
                self.net.detach(id);
                node.shutdown().await;
                true
            }
            None => false,
        }
    }

    async fn stop_all(&mut self) {
        for id in self.nodes.keys().copied().collect::<Vec<_>>() {
            self.kill(id).await;
        }
    }
}

/// Run `scenario` deterministically with its data under `dir`, calling `progress` every 100 ms
/// of simulated load time and at each phase.
pub fn run(
    scenario: &Scenario,
    dir: &Path,
    options: &Options,
    progress: &dyn Fn(&Progress),
) -> Result<Report, RunError> {
    if let Some(f) = scenario.faults.iter().find(|f| !supported(f.action)) {
        return Err(RunError::Unsupported(format!(
            "fault `{}` at {} s needs real processes; run without --deterministic",
            f.action, f.at_s
        )));
    }
    let consortium = Profile::sample().into_dev_consortium().map_err(|e| RunError::Profile(e.to_string()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .map_err(RunError::Runtime)?;
    let seed = options.seed.unwrap_or(scenario.load.seed);
    let live = Arc::new(Live::default());
    progress(&live.progress(scenario, Phase::Starting, 0.0));
    let (driven, verdict, digest) =
        runtime.block_on(drive(scenario, dir, seed, options, consortium, live, progress))?;
    let how = How { mode: Mode::Deterministic, seed, digest: Some(digest), node_cpu_s: None };
    Ok(report(scenario, driven, verdict, how))
}

async fn drive(
    s: &Scenario,
    dir: &Path,
    seed: u64,
    options: &Options,
    consortium: Consortium,
    live: Arc<Live>,
    progress: &dyn Fn(&Progress),
) -> Result<(Driven, Verdict, String), RunError> {
    let net = SimNet::new(seed, LATENCY, JITTER);
    let clock = Clock::simulated(EPOCH_MS);
    let configs = configs(s, dir, seed, options.plant_ack_before_commit);
    let mut cluster = SimCluster {
        net: net.clone(),
        clock,
        configs: configs.into_iter().map(|c| (c.node_id, c)).collect(),
        nodes: BTreeMap::new(),
    };
    for id in 1..=s.cluster.replicas {
        cluster.start_node(id).await.map_err(RunError::Start)?;
    }
    let identity = PeerIdentity {
        node_id: Some(LOAD_NODE),
        member: None,
        role: Some("router".into()),
        public_key: Some(node_key(LOAD_NODE).public().0),
    };
    let nodes = (1..=s.cluster.replicas).map(|id| (id, node_addr(id))).collect();
    let client = Client::simulated(&net, LOAD_NODE, identity, nodes);
    let chains: Vec<u32> = (1..=s.cluster.chains).collect();
    for &chain in &chains {
        client
            .wait_leader(chain, Duration::from_secs(30))
            .await
            .map_err(|source| RunError::NoLeader { chain, source })?;
    }

    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(s.load.duration_s);
    let streams = chains.len() * s.load.submitters;
    let mix = s.load.mix.map(Mix::from).unwrap_or_default();
    let schedule = s.load.rate_points().map(|points| Schedule::new(&points, streams, s.load.batch));
    let mut tasks = Vec::new();
    for i in 0..streams {
        let chain = chains[i / s.load.submitters];
        let stream_seed = seed.wrapping_mul(1_000_003).wrapping_add(i as u64);
        let workload = Workload::new(consortium.clone(), ChainId(chain), stream_seed, s.load.population).with_mix(mix);
        let stream = StreamLoad { chain, workload, batch: s.load.batch, clock, live: live.clone() };
        // Streams are staggered evenly over one batch of their own.
        let timing = schedule.clone().map(|sch| (sch, started, i as f64 / streams as f64));
        tasks.push(tokio::spawn(stream.offer(client.clone(), timing, deadline)));
    }

    let mut driven = Driven { started: Some(started), ..Driven::default() };
    let mut damage = Damage::default();
    let mut pending = s.faults.iter().peekable();
    while pending.peek().is_some() || tasks.iter().any(|t| !t.is_finished()) {
        let elapsed = started.elapsed().as_secs_f64();
        while let Some(f) = pending.next_if(|f| f.at_s <= elapsed) {
            let done = apply(&mut cluster, &client, &mut damage, f, elapsed).await;
            driven.faults.push(done);
            live.faults.fetch_add(1, Ordering::Relaxed);
        }
        progress(&live.progress(s, Phase::Load, elapsed));
        let next_fault = pending.peek().map(|f| started + Duration::from_secs_f64(f.at_s));
        let tick = Instant::now() + PROGRESS_EVERY;
        tokio::time::sleep_until(next_fault.map_or(tick, |t| t.min(tick))).await;
    }
    for t in tasks {
        match t.await {
            Ok(o) => driven.outcome.merge(o),
            Err(e) => driven.settle_problems.push(format!("a load stream failed: {e}")),
        }
    }
    driven.load_seconds = started.elapsed().as_secs_f64();
    progress(&live.progress(s, Phase::Settling, driven.load_seconds));

    // Settle: undo the damage and wait until every chain's replicas agree.
    for n in std::mem::take(&mut damage.partitioned) {
        net.isolate(n, false);
    }
    for n in std::mem::take(&mut damage.slow_net) {
        net.slow_down(n, Duration::ZERO);
    }
    for n in std::mem::take(&mut damage.killed) {
        if let Err(e) = cluster.start_node(n).await {
            driven.settle_problems.push(e);
        }
    }
    for &chain in &chains {
        let min_height = max_acked_height(&driven.outcome.acks, chain);
        let ids: Vec<u64> = (1..=s.cluster.replicas).collect();
        match wait_converged(&client, chain, &ids, min_height).await {
            Ok(h) => driven.heights.push(h),
            Err(e) => {
                driven.heights.push(0);
                driven.settle_problems.push(e);
            }
        }
    }
    progress(&live.progress(s, Phase::Checking, driven.load_seconds));
    client.close().await;
    cluster.stop_all().await;
    drop(cluster);

    let replicas = |_chain: u32| -> Vec<(u64, PathBuf)> {
        (1..=s.cluster.replicas).map(|id| (id, dir.join(format!("node-{id}")))).collect()
    };
    let verdict = check_stores(&chains, replicas, &driven.outcome.acks);
    let digest = digest(&chains, &verdict);
    Ok((driven, verdict, digest))
}

/// The final state digest: every chain's height and tip header hash as the checker read them.
fn digest(chains: &[u32], verdict: &Verdict) -> String {
    let mut h = blake3::Hasher::new();
    h.update(b"elchain-sim digest v1");
    for c in chains {
        if let Some(v) = verdict.chains.iter().find(|v| v.chain == *c) {
            h.update(&c.to_le_bytes());
            h.update(&v.height.to_le_bytes());
            h.update(v.tip_hash.as_bytes());
        }
    }
    h.finalize().to_hex().to_string()
}

async fn apply(cluster: &mut SimCluster, client: &Client, damage: &mut Damage, f: &Fault, at: f64) -> AppliedFault {
    let mut done = AppliedFault::begin(f, at);
    match f.action {
        Action::Kill => {
            let n = f.node.unwrap_or(0);
            done.applied = cluster.kill(n).await;
            damage.killed.insert(n);
            done.note = format!("stopped node {n}");
        }
        Action::KillLeader => {
            let chain = f.chain.unwrap_or(1);
            done.chain = Some(chain);
            match client.wait_leader(chain, Duration::from_secs(10)).await {
                Ok(n) => {
                    cluster.kill(n).await;
                    damage.killed.insert(n);
                    done.nodes = vec![n];
                    done.note = format!("stopped node {n}, the leader of chain {chain}");
                }
                Err(e) => {
                    done.applied = false;
                    done.note = format!("chain {chain} has no leader to stop: {e}");
                }
            }
        }
        Action::Restart => {
            let targets = named_or_all(f.node, &damage.killed);
            done.nodes.clear();
            for n in targets {
                if !cluster.nodes.contains_key(&n) {
                    match cluster.start_node(n).await {
                        Ok(()) => done.nodes.push(n),
                        Err(e) => done.note = e,
                    }
                }
                damage.killed.remove(&n);
            }
            done.applied = !done.nodes.is_empty();
            if done.note.is_empty() {
                done.note = if done.applied {
                    format!("restarted node(s) {:?}", done.nodes)
                } else {
                    "no stopped node to restart".into()
                };
            }
        }
        Action::Partition => {
            let n = f.node.unwrap_or(0);
            cluster.net.isolate(n, true);
            damage.partitioned.insert(n);
            done.note = format!("cut node {n} off");
        }
        Action::Heal => {
            let targets = named_or_all(f.node, &damage.partitioned);
            for n in &targets {
                cluster.net.isolate(*n, false);
                damage.partitioned.remove(n);
            }
            done.nodes = targets;
            done.note = format!("healed node(s) {:?}", done.nodes);
        }
        Action::SlowNet => {
            let (n, ms) = (f.node.unwrap_or(0), f.delay_ms.unwrap_or(0));
            cluster.net.slow_down(n, Duration::from_millis(ms));
            damage.slow_net.insert(n);
            done.note = format!("delayed node {n}'s messages by {ms} ms each way");
        }
        Action::FastNet => {
            let targets = named_or_all(f.node, &damage.slow_net);
            for n in &targets {
                cluster.net.slow_down(*n, Duration::ZERO);
                damage.slow_net.remove(n);
            }
            done.nodes = targets;
            done.note = format!("removed the network delay of node(s) {:?}", done.nodes);
        }
        _ => {
            done.applied = false;
            done.note = format!("`{}` is not supported in deterministic mode", f.action);
        }
    }
    done
}

/// One load stream: a workload for one chain, sent in batches.
struct StreamLoad {
    chain: u32,
    workload: Workload,
    batch: usize,
    clock: Clock,
    live: Arc<Live>,
}

impl StreamLoad {
    /// Transactions generated at the simulated time they are sent, so they are always fresh.
    fn next_batch(&mut self) -> (Vec<[u8; 32]>, Vec<Vec<u8>>) {
        let txs = self.workload.batch(self.batch, Timestamp(self.clock.now_ms()));
        (txs.iter().map(|t| t.id().0).collect(), txs.iter().map(Encode::to_bytes).collect())
    }

    /// Offer batches: open loop on `timing` (the schedule, the load's start, this stream's
    /// offset), or closed loop without one, until `deadline`.
    async fn offer(
        mut self,
        client: Client,
        timing: Option<(Schedule, Instant, f64)>,
        deadline: Instant,
    ) -> StreamOutcome {
        let mut out = StreamOutcome::default();
        let chain = self.chain;
        match timing {
            Some((schedule, started, offset)) => {
                let slots = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
                let mut tasks = Vec::new();
                for k in 0.. {
                    let Some(t) = schedule.at(k, offset, 0.0) else { break };
                    let at = started + Duration::from_secs_f64(t);
                    if at >= deadline {
                        break;
                    }
                    tokio::time::sleep_until(at).await;
                    let Ok(slot) = slots.clone().acquire_owned().await else { break };
                    if Instant::now().duration_since(at) > LATE_AFTER {
                        out.late += 1;
                    }
                    let (ids, raws) = self.next_batch();
                    out.sent += ids.len() as u64;
                    self.live.sent.fetch_add(ids.len() as u64, Ordering::Relaxed);
                    let client = client.clone();
                    tasks.push(tokio::spawn(async move {
                        let result = client.submit(chain, raws, SUBMIT_DEADLINE).await.map_err(|e| e.to_string());
                        drop(slot);
                        (ids, result, at, Instant::now())
                    }));
                }
                for t in tasks {
                    if let Ok((ids, result, at, answered)) = t.await {
                        let ms = (answered - at).as_secs_f64() * 1e3;
                        out.record(&self.live, chain, &ids, result, ms, answered);
                    }
                }
            }
            None => {
                while Instant::now() < deadline {
                    let (ids, raws) = self.next_batch();
                    out.sent += ids.len() as u64;
                    self.live.sent.fetch_add(ids.len() as u64, Ordering::Relaxed);
                    let t0 = Instant::now();
                    let result = client.submit(chain, raws, SUBMIT_DEADLINE).await.map_err(|e| e.to_string());
                    let now = Instant::now();
                    out.record(&self.live, chain, &ids, result, (now - t0).as_secs_f64() * 1e3, now);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCENARIO: &str = r#"
        [cluster]
        chains = 1
        replicas = 3
        [load]
        rate = 400
        duration_s = 3
        population = 300
        submitters = 2
        batch = 20
        [[faults]]
        at_s = 1
        action = "kill_leader"
        [[faults]]
        at_s = 2
        action = "restart"
    "#;

    fn once(seed: u64) -> Report {
        let s = Scenario::parse(SCENARIO, "det").unwrap();
        let dir = tempfile::tempdir().unwrap();
        run(&s, dir.path(), &Options { seed: Some(seed), ..Options::default() }, &|_| {}).unwrap()
    }

    #[test]
    fn the_same_seed_gives_the_same_run_and_digest() {
        let t = std::time::Instant::now();
        let a = once(11);
        eprintln!("one run: {:?}, {} sent, heights {:?}, faults {:?}", t.elapsed(), a.submitted, a.heights, a.faults);
        assert!(a.verdict.ok, "{:?} {:?}", a.verdict.violations, a.settle_problems);
        assert!(a.faults.iter().all(|f| f.applied), "{:?}", a.faults);
        let b = once(11);
        assert_eq!(a.digest, b.digest);
        assert_eq!(a.heights, b.heights);
        let answers = |r: &Report| r.txs.iter().map(|t| format!("{t:?}")).collect::<Vec<_>>();
        assert_eq!(answers(&a), answers(&b), "every answer is the same");
        assert_eq!((a.p50_ms, a.p99_ms), (b.p50_ms, b.p99_ms), "latencies are simulated time");
        assert!(a.digest.is_some());
        let c = once(12);
        assert_ne!(a.digest, c.digest, "another seed, another run");
    }

    #[test]
    fn a_warm_up_is_checked_but_left_out_of_the_figures() {
        let s = Scenario::parse(
            "[cluster]\nreplicas = 3\n[load]\nrate = 400\nduration_s = 3\nwarmup_s = 1\npopulation = 300\nsubmitters = 2\nbatch = 20\n",
            "warm",
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let r = run(&s, dir.path(), &Options { seed: Some(5), ..Options::default() }, &|_| {}).unwrap();
        assert!(r.verdict.ok, "{:?}", r.verdict.violations);
        assert_eq!(r.committed, r.submitted, "the warm-up's transactions are committed and checked");
        let after: u64 = r.series.iter().filter(|s| s.t_s >= 1).map(|s| s.committed).sum();
        assert!(after > 0 && after < r.committed, "{after} of {}", r.committed);
        assert_eq!(r.measured_committed, after, "only what was answered after the warm-up is measured");
        let measured_s = r.load_seconds.max(r.duration_s) - 1.0;
        assert!((r.committed_tps - after as f64 / measured_s).abs() < 1e-9, "{}", r.committed_tps);
        assert_eq!(r.warmup_s, 1.0);
    }

    #[test]
    fn the_checker_catches_receipts_sent_before_commit() {
        let s = Scenario::parse(SCENARIO, "planted").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let o = run(&s, dir.path(), &Options { seed: Some(11), plant_ack_before_commit: true }, &|_| {}).unwrap();
        assert!(!o.verdict.ok, "the planted bug went unnoticed");
        assert!(
            o.verdict.violations.iter().any(|v| matches!(v, crate::checker::Violation::Lost { .. })),
            "{:?}",
            &o.verdict.violations[..o.verdict.violations.len().min(5)]
        );
    }

    #[test]
    fn a_follower_cut_off_and_healed_does_not_disturb_the_leader() {
        // Without the election gate, node 3 raises its term while cut off and the leader steps
        // down when it returns: about two simulated seconds without commits after the heal.
        let s = Scenario::parse(
            r#"
            [cluster]
            replicas = 3
            [load]
            rate = 300
            duration_s = 6
            population = 300
            [[faults]]
            at_s = 1
            action = "partition"
            node = 3
            [[faults]]
            at_s = 4
            action = "heal"
            node = 3
            "#,
            "gate",
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let r = run(&s, dir.path(), &Options { seed: Some(3), ..Options::default() }, &|_| {}).unwrap();
        assert!(r.verdict.ok, "{:?}", r.verdict.violations);
        assert_eq!(r.committed, r.submitted);
        assert!(r.p99_ms < 100.0, "p99 {} ms of simulated time: the heal disturbed the chain", r.p99_ms);
        assert!(r.series.iter().take(6).all(|s| s.committed > 0), "{:?}", r.series);
    }
}
