//! Run a scenario end to end: sign the load, start a cluster, offer the load while breaking the
//! cluster on schedule, repair it, stop it and check its history.
//!
//! ```text
//!  Scenario ─► presign (one thread per stream) ─► Cluster::start_in (relays on)
//!    ─► wait for every chain's leader
//!    ─► load: per stream, a batch every batch/rate s over QUIC (open loop, ≤ 16 in flight), or
//!             the next batch as soon as the last returned (rate = "max")
//!       faults: at their times: kill | restart | partition | heal | kill_leader
//!    ─► settle: heal every cut, restart every killed node, wait until each chain's replicas agree
//!    ─► stop every node ─► checker::check_cluster ─► Report (JSON-serialisable)
//! ```
//!
//! Every submitted transaction's answer is recorded: committed (height, index, outcome), refused
//! at admission, or no answer before the deadline. Only committed receipts are promises the
//! checker holds the cluster to.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use elchain_shard::node::client::{Client, ClientError};
use elchain_shard::node::rpc::{Receipt, ReceiptStatus};
use elchain_types::codec::Encode;
use elchain_types::ids::{ChainId, Timestamp};
use elchain_types::profile::Profile;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::checker::{check_cluster, Ack, Verdict};
use crate::cluster::{Cluster, ClusterDir, Settings};
use crate::scenario::{Action, Fault, Rate, Scenario};
use crate::workload::{Mix, Workload};

/// How long one submission may wait for its receipts (it rides out a leader election).
const SUBMIT_DEADLINE: Duration = Duration::from_secs(20);

/// How long the run waits for leaders at the start and for the replicas to agree at the end.
const SETTLE_DEADLINE: Duration = Duration::from_secs(60);

/// Open loop: batches a submitter may have outstanding; a batch that finds none free waits.
const MAX_IN_FLIGHT: usize = 16;

/// A batch sent this long after its scheduled time counts as late.
const LATE_AFTER: Duration = Duration::from_millis(10);

/// Why a run could not be carried out (as opposed to a cluster that lost something, which the
/// [`Verdict`] reports).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The sample consortium profile did not load.
    #[error("the sample consortium: {0}")]
    Profile(String),
    /// The async runtime could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// A chain elected no leader after the cluster started.
    #[error("chain {chain} elected no leader: {source}")]
    NoLeader {
        /// The chain.
        chain: u32,
        /// The client's last error.
        source: ClientError,
    },
}

/// Where a run is, for a progress display.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Signing the load ahead.
    Signing,
    /// Starting the cluster and waiting for leaders.
    Starting,
    /// Offering the load and applying faults.
    Load,
    /// Healing, restarting and waiting for the replicas to agree.
    Settling,
    /// Stopping the nodes and checking their stores.
    Checking,
}

/// A snapshot of a run's progress.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    /// The phase.
    pub phase: Phase,
    /// Seconds since the load started (0 before).
    pub elapsed_s: f64,
    /// Seconds of load in the scenario.
    pub duration_s: f64,
    /// Transactions sent.
    pub sent: u64,
    /// Transactions committed (valid or not).
    pub committed: u64,
    /// Transactions refused at admission or unanswered.
    pub errors: u64,
    /// Faults applied so far.
    pub faults_applied: usize,
    /// Faults in the scenario.
    pub faults_total: usize,
}

/// What the chain answered for one submitted transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum Answer {
    /// In block `height` at `index` with `outcome` (0: valid, else the reject code).
    Committed {
        /// Block height.
        height: u64,
        /// Position in the block.
        index: u32,
        /// Outcome.
        outcome: u16,
    },
    /// Refused at admission with this reject code; in no block.
    Refused {
        /// Reject code.
        code: u16,
    },
    /// No receipt before the deadline: it may or may not have been committed.
    NoAnswer {
        /// The client's error.
        error: String,
    },
}

/// One submitted transaction and its answer.
#[derive(Clone, Debug, Serialize)]
pub struct TxRecord {
    /// Chain.
    pub chain: u32,
    /// Transaction id (hex).
    pub tx: String,
    /// The answer.
    #[serde(flatten)]
    pub answer: Answer,
}

/// A fault as it was applied.
#[derive(Clone, Debug, Serialize)]
pub struct AppliedFault {
    /// Scheduled time, seconds after the load started.
    pub at_s: f64,
    /// When it was applied.
    pub applied_s: f64,
    /// What.
    pub action: Action,
    /// The node(s) it hit.
    pub nodes: Vec<u64>,
    /// The chain (`kill_leader`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain: Option<u32>,
    /// False when it could not be applied (e.g. no leader found); `note` says why.
    pub applied: bool,
    /// What happened, for people.
    pub note: String,
}

/// The result of a run, as written to the JSON report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Scenario description.
    pub description: String,
    /// Licence chains.
    pub chains: u32,
    /// Replicas (every replica serves every chain).
    pub replicas: u64,
    /// The offered rate setting.
    pub rate: Rate,
    /// Seconds of load in the scenario.
    pub duration_s: f64,
    /// Seconds from the first batch until the last answer.
    pub load_seconds: f64,
    /// Transactions sent per second of the scenario's duration.
    pub offered_tps: f64,
    /// Committed transactions (valid or not) per second of load.
    pub committed_tps: f64,
    /// Submit-to-receipt latency per committed batch, from its scheduled time: median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Transactions sent.
    pub submitted: u64,
    /// Transactions committed in a block (valid or with a reject code).
    pub committed: u64,
    /// Of those, valid.
    pub valid: u64,
    /// Refused at admission.
    pub refused: u64,
    /// No answer before the deadline.
    pub unanswered: u64,
    /// Open loop: batches sent more than 10 ms after their scheduled time.
    pub late_batches: u64,
    /// The faults, as applied.
    pub faults: Vec<AppliedFault>,
    /// Problems while repairing and stopping the cluster after the load (replicas that did not
    /// agree in time, nodes that did not stop cleanly).
    pub settle_problems: Vec<String>,
    /// Tip height of each chain after settling.
    pub heights: Vec<u64>,
    /// The history checker's verdict.
    pub verdict: Verdict,
    /// Every submitted transaction and its answer (not in the JSON report: it can be large).
    #[serde(skip)]
    pub txs: Vec<TxRecord>,
}

impl Report {
    /// True when the checker found nothing wrong.
    pub fn ok(&self) -> bool {
        self.verdict.ok
    }
}

/// One pre-signed submission.
struct Batch {
    ids: Vec<[u8; 32]>,
    raws: Vec<Vec<u8>>,
}

/// A submitter's pre-signed load for one chain.
struct Stream {
    chain: u32,
    batches: Vec<Batch>,
}

/// Live counters for the progress display.
#[derive(Default)]
struct Live {
    sent: AtomicU64,
    committed: AtomicU64,
    errors: AtomicU64,
    faults: AtomicUsize,
}

/// What one stream's submitter saw.
#[derive(Default)]
struct StreamOutcome {
    records: Vec<TxRecord>,
    acks: Vec<Ack>,
    latencies_ms: Vec<f64>,
    sent: u64,
    late: u64,
}

impl StreamOutcome {
    fn record(&mut self, live: &Live, chain: u32, batch: &[[u8; 32]], result: Result<Vec<Receipt>, String>, ms: f64) {
        match result {
            Ok(receipts) => {
                let mut committed = 0;
                for r in receipts {
                    let answer = match r.status {
                        ReceiptStatus::Committed { height, index, outcome } => {
                            committed += 1;
                            Answer::Committed { height, index, outcome }
                        }
                        ReceiptStatus::Rejected { code } => {
                            live.errors.fetch_add(1, Ordering::Relaxed);
                            Answer::Refused { code }
                        }
                    };
                    self.records.push(TxRecord { chain, tx: hex(&r.tx_id), answer });
                    self.acks.push(Ack { chain, receipt: r });
                }
                live.committed.fetch_add(committed, Ordering::Relaxed);
                if committed > 0 {
                    self.latencies_ms.push(ms);
                }
            }
            Err(error) => {
                live.errors.fetch_add(batch.len() as u64, Ordering::Relaxed);
                for id in batch {
                    let answer = Answer::NoAnswer { error: error.clone() };
                    self.records.push(TxRecord { chain, tx: hex(id), answer });
                }
            }
        }
    }
}

fn hex(id: &[u8; 32]) -> String {
    elchain_types::ids::TxId(*id).to_hex()
}

fn now() -> Timestamp {
    Timestamp(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Streams of the run and, open loop, the interval between one stream's batches.
fn plan(s: &Scenario) -> (usize, Option<Duration>) {
    let streams = s.cluster.chains as usize * s.load.submitters;
    match s.load.rate {
        Rate::Max => (s.load.presign.div_ceil(s.load.batch), None),
        Rate::PerSecond(r) => {
            let interval = Duration::from_secs_f64(s.load.batch as f64 * streams as f64 / r);
            ((s.load.duration_s / interval.as_secs_f64()).ceil() as usize + 1, Some(interval))
        }
    }
}

/// Sign every stream's batches, one thread per stream. The workload's validity window (five
/// minutes) outlasts signing, start-up and a short run.
fn presign(s: &Scenario, batches: usize) -> Result<Vec<Stream>, RunError> {
    let consortium = Profile::sample().into_dev_consortium().map_err(|e| RunError::Profile(e.to_string()))?;
    let t = now();
    let mix = s.load.mix.map(Mix::from).unwrap_or_default();
    let (submitters, batch, population) = (s.load.submitters, s.load.batch, s.load.population);
    let seed = s.load.seed;
    Ok(std::thread::scope(|scope| {
        let handles: Vec<_> = (0..s.cluster.chains as usize * submitters)
            .map(|i| {
                let consortium = consortium.clone();
                let chain = 1 + (i / submitters) as u32;
                scope.spawn(move || {
                    let stream_seed = seed.wrapping_mul(1_000_003).wrapping_add(i as u64);
                    let mut w = Workload::new(consortium, ChainId(chain), stream_seed, population).with_mix(mix);
                    let batches = (0..batches)
                        .map(|_| {
                            let txs = w.batch(batch, t);
                            Batch {
                                ids: txs.iter().map(|t| t.id().0).collect(),
                                raws: txs.iter().map(Encode::to_bytes).collect(),
                            }
                        })
                        .collect();
                    Stream { chain, batches }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("signing thread")).collect()
    }))
}

async fn submit(client: &Client, chain: u32, raws: Vec<Vec<u8>>) -> Result<Vec<Receipt>, String> {
    client.submit(chain, raws, SUBMIT_DEADLINE).await.map_err(|e| e.to_string())
}

/// Open loop: batch k leaves at `first + k × interval` whatever became of the earlier ones. A
/// batch's latency runs from its scheduled time, so waiting for a free slot counts.
async fn open_loop(
    client: Client,
    stream: Stream,
    first: Instant,
    interval: Duration,
    deadline: Instant,
    live: Arc<Live>,
) -> StreamOutcome {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut out = StreamOutcome::default();
    let mut tasks = Vec::new();
    let chain = stream.chain;
    for (k, batch) in stream.batches.into_iter().enumerate() {
        let at = first + interval.mul_f64(k as f64);
        if at >= deadline {
            break;
        }
        tokio::time::sleep_until(at).await;
        let Ok(slot) = slots.clone().acquire_owned().await else { break };
        if Instant::now() >= deadline {
            break;
        }
        if Instant::now().duration_since(at) > LATE_AFTER {
            out.late += 1;
        }
        out.sent += batch.ids.len() as u64;
        live.sent.fetch_add(batch.ids.len() as u64, Ordering::Relaxed);
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let result = submit(&client, chain, batch.raws).await;
            drop(slot);
            (batch.ids, result, at.elapsed())
        }));
    }
    for task in tasks {
        match task.await {
            Ok((ids, result, latency)) => out.record(&live, chain, &ids, result, latency.as_secs_f64() * 1e3),
            Err(e) => out.record(&live, chain, &[], Err(e.to_string()), 0.0),
        }
    }
    out
}

/// Closed loop: the next batch as soon as the previous one returned, until the deadline or the
/// pre-signed batches run out.
async fn closed_loop(client: Client, stream: Stream, deadline: Instant, live: Arc<Live>) -> StreamOutcome {
    let mut out = StreamOutcome::default();
    let chain = stream.chain;
    for batch in stream.batches {
        if Instant::now() >= deadline {
            break;
        }
        out.sent += batch.ids.len() as u64;
        live.sent.fetch_add(batch.ids.len() as u64, Ordering::Relaxed);
        let t0 = Instant::now();
        let result = submit(&client, chain, batch.raws).await;
        out.record(&live, chain, &batch.ids, result, t0.elapsed().as_secs_f64() * 1e3);
    }
    out
}

/// Which nodes are down or cut off, so that settling can undo it.
#[derive(Default)]
struct Damage {
    killed: BTreeSet<u64>,
    partitioned: BTreeSet<u64>,
}

/// Apply one fault.
async fn apply(cluster: &mut Cluster, client: &Client, damage: &mut Damage, f: &Fault, at: f64) -> AppliedFault {
    let mut done = AppliedFault {
        at_s: f.at_s,
        applied_s: at,
        action: f.action,
        nodes: f.node.into_iter().collect(),
        chain: None,
        applied: true,
        note: String::new(),
    };
    match f.action {
        Action::Kill => {
            let n = f.node.expect("validated: kill names a node");
            cluster.kill(n);
            damage.killed.insert(n);
            done.note = format!("killed node {n}");
        }
        Action::KillLeader => {
            let chain = f.chain.unwrap_or(1);
            done.chain = Some(chain);
            match client.wait_leader(chain, Duration::from_secs(10)).await {
                Ok(n) => {
                    cluster.kill(n);
                    damage.killed.insert(n);
                    done.nodes = vec![n];
                    done.note = format!("killed node {n}, the leader of chain {chain}");
                }
                Err(e) => {
                    done.applied = false;
                    done.note = format!("chain {chain} has no leader to kill: {e}");
                }
            }
        }
        Action::Restart => {
            let targets: Vec<u64> = match f.node {
                Some(n) => vec![n],
                None => damage.killed.iter().copied().collect(),
            };
            done.nodes.clear();
            for n in targets {
                if cluster.pid(n).is_none() {
                    cluster.spawn(n);
                    done.nodes.push(n);
                }
                damage.killed.remove(&n);
            }
            done.applied = !done.nodes.is_empty();
            done.note = if done.applied {
                format!("restarted node(s) {:?}", done.nodes)
            } else {
                "no killed node to restart".into()
            };
        }
        Action::Partition => {
            let n = f.node.expect("validated: partition names a node");
            cluster.partition(n, true);
            damage.partitioned.insert(n);
            done.note = format!("cut node {n} off");
        }
        Action::Heal => {
            let targets: Vec<u64> = match f.node {
                Some(n) => vec![n],
                None => damage.partitioned.iter().copied().collect(),
            };
            for n in &targets {
                cluster.partition(*n, false);
                damage.partitioned.remove(n);
            }
            done.nodes = targets;
            done.note = format!("healed node(s) {:?}", done.nodes);
        }
    }
    done
}

/// Wait until every node in `ids` reports the same height and tip of `chain`, at least
/// `min_height`; the height, or what was seen last.
async fn wait_converged(client: &Client, chain: u32, ids: &[u64], min_height: u64) -> Result<u64, String> {
    let start = std::time::Instant::now();
    loop {
        let mut statuses = Vec::new();
        for id in ids {
            if let Ok(s) = client.status(*id, chain).await {
                statuses.push(s);
            }
        }
        if statuses.len() == ids.len() {
            let (h, tip) = (statuses[0].height, statuses[0].tip_hash);
            if h >= min_height && statuses.iter().all(|s| s.height == h && s.tip_hash == tip) {
                return Ok(h);
            }
        }
        if start.elapsed() > SETTLE_DEADLINE {
            let seen: Vec<String> = statuses.iter().map(|s| format!("node {} at {}", s.node, s.height)).collect();
            return Err(format!(
                "chain {chain}: replicas {ids:?} did not agree at height >= {min_height} within {SETTLE_DEADLINE:?} \
                 ({} answered: {})",
                statuses.len(),
                seen.join(", ")
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What the load phase produced.
#[derive(Default)]
struct Driven {
    outcome: StreamOutcome,
    faults: Vec<AppliedFault>,
    load_seconds: f64,
    settle_problems: Vec<String>,
    heights: Vec<u64>,
}

async fn drive(
    cluster: &mut Cluster,
    s: &Scenario,
    streams: Vec<Stream>,
    interval: Option<Duration>,
    progress: &dyn Fn(&Progress),
) -> Result<Driven, RunError> {
    let client = cluster.client().await;
    let chains: Vec<u32> = (1..=s.cluster.chains).collect();
    for &c in &chains {
        let ids = cluster.nodes.values().filter(|n| n.chains.contains(&c)).map(|n| n.id).collect();
        client.set_replicas(c, ids);
    }
    for &chain in &chains {
        client.wait_leader(chain, SETTLE_DEADLINE).await.map_err(|source| RunError::NoLeader { chain, source })?;
    }
    let live = Arc::new(Live::default());
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(s.load.duration_s);
    let n = streams.len();
    let mut tasks = Vec::new();
    for (i, stream) in streams.into_iter().enumerate() {
        let (client, live) = (client.clone(), live.clone());
        tasks.push(match interval {
            None => tokio::spawn(closed_loop(client, stream, deadline, live)),
            Some(interval) => {
                // Stagger the submitters evenly over one interval.
                let first = started + interval.mul_f64(i as f64 / n as f64);
                tokio::spawn(open_loop(client, stream, first, interval, deadline, live))
            }
        });
    }
    let mut driven = Driven::default();
    let mut damage = Damage::default();
    let mut pending = s.faults.iter();
    let mut next = pending.next();
    let snapshot = |phase: Phase, elapsed: f64| Progress {
        phase,
        elapsed_s: elapsed,
        duration_s: s.load.duration_s,
        sent: live.sent.load(Ordering::Relaxed),
        committed: live.committed.load(Ordering::Relaxed),
        errors: live.errors.load(Ordering::Relaxed),
        faults_applied: live.faults.load(Ordering::Relaxed),
        faults_total: s.faults.len(),
    };
    while next.is_some() || tasks.iter().any(|t| !t.is_finished()) {
        let elapsed = started.elapsed().as_secs_f64();
        while let Some(f) = next.filter(|f| f.at_s <= elapsed) {
            driven.faults.push(apply(cluster, &client, &mut damage, f, started.elapsed().as_secs_f64()).await);
            live.faults.fetch_add(1, Ordering::Relaxed);
            next = pending.next();
        }
        progress(&snapshot(Phase::Load, elapsed));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    driven.load_seconds = started.elapsed().as_secs_f64();
    for t in tasks {
        match t.await {
            Ok(o) => {
                let d = &mut driven.outcome;
                d.records.extend(o.records);
                d.acks.extend(o.acks);
                d.latencies_ms.extend(o.latencies_ms);
                d.sent += o.sent;
                d.late += o.late;
            }
            Err(e) => driven.settle_problems.push(format!("a submitter failed: {e}")),
        }
    }

    // Undo the damage and let every replica catch up before the stores are read.
    progress(&snapshot(Phase::Settling, driven.load_seconds));
    for n in std::mem::take(&mut damage.partitioned) {
        cluster.partition(n, false);
    }
    for n in std::mem::take(&mut damage.killed) {
        if cluster.pid(n).is_none() {
            cluster.spawn(n);
        }
    }
    for &chain in &chains {
        let min_height = driven
            .outcome
            .acks
            .iter()
            .filter(|a| a.chain == chain)
            .filter_map(|a| match a.receipt.status {
                ReceiptStatus::Committed { height, .. } => Some(height),
                ReceiptStatus::Rejected { .. } => None,
            })
            .max()
            .unwrap_or(0);
        let ids: Vec<u64> = cluster.nodes.values().filter(|n| n.chains.contains(&chain)).map(|n| n.id).collect();
        match wait_converged(&client, chain, &ids, min_height).await {
            Ok(h) => driven.heights.push(h),
            Err(e) => {
                driven.heights.push(0);
                driven.settle_problems.push(e);
            }
        }
    }
    client.close().await;
    Ok(driven)
}

/// Run `scenario` on a cluster of `bin` (the `elchain` binary) in `dir`, calling `progress`
/// every 100 ms of load and at each phase; the report with the checker's verdict.
pub fn run(
    bin: PathBuf,
    scenario: &Scenario,
    dir: ClusterDir,
    progress: &dyn Fn(&Progress),
) -> Result<Report, RunError> {
    let s = scenario;
    let phase = |phase: Phase| Progress {
        phase,
        elapsed_s: 0.0,
        duration_s: s.load.duration_s,
        sent: 0,
        committed: 0,
        errors: 0,
        faults_applied: 0,
        faults_total: s.faults.len(),
    };
    progress(&phase(Phase::Signing));
    let (batches, interval) = plan(s);
    let streams = presign(s, batches)?;
    progress(&phase(Phase::Starting));
    let settings = Settings {
        chains: s.cluster.chains,
        relays: true,
        block_txs: s.cluster.block_txs,
        block_wait_ms: s.cluster.block_wait_ms,
        snapshot_every: s.cluster.snapshot_every,
        keep_logs: s.cluster.keep_logs,
        ..Settings::default()
    };
    let mut cluster = Cluster::start_in(bin, dir, s.cluster.replicas, settings);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(RunError::Runtime)?;
    let driven = runtime.block_on(drive(&mut cluster, s, streams, interval, progress));
    progress(&phase(Phase::Checking));
    let stop_problems = cluster.try_stop_all();
    let mut driven = driven?;
    driven.settle_problems.extend(stop_problems);
    let verdict = check_cluster(&cluster, &driven.outcome.acks);

    let o = &mut driven.outcome;
    o.latencies_ms.sort_by(f64::total_cmp);
    let count = |f: &dyn Fn(&Answer) -> bool| o.records.iter().filter(|r| f(&r.answer)).count() as u64;
    let committed = count(&|a| matches!(a, Answer::Committed { .. }));
    let valid = count(&|a| matches!(a, Answer::Committed { outcome: 0, .. }));
    let refused = count(&|a| matches!(a, Answer::Refused { .. }));
    let unanswered = count(&|a| matches!(a, Answer::NoAnswer { .. }));
    Ok(Report {
        scenario: s.name.clone(),
        description: s.description.clone(),
        chains: s.cluster.chains,
        replicas: s.cluster.replicas,
        rate: s.load.rate,
        duration_s: s.load.duration_s,
        load_seconds: driven.load_seconds,
        offered_tps: o.sent as f64 / s.load.duration_s,
        committed_tps: committed as f64 / driven.load_seconds.max(s.load.duration_s),
        p50_ms: percentile(&o.latencies_ms, 0.5),
        p99_ms: percentile(&o.latencies_ms, 0.99),
        submitted: o.sent,
        committed,
        valid,
        refused,
        unanswered,
        late_batches: o.late,
        faults: driven.faults,
        settle_problems: driven.settle_problems,
        heights: driven.heights,
        verdict,
        txs: std::mem::take(&mut o.records),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_loop_plan_offers_the_rate_over_the_duration() {
        let s = Scenario::parse(
            "[cluster]\nchains = 2\n[load]\nrate = 400\nduration_s = 10\nsubmitters = 2\nbatch = 50\n",
            "plan",
        )
        .unwrap();
        let (batches, interval) = plan(&s);
        // 4 streams at 100 tx/s each: a batch of 50 every 0.5 s, 20 batches in 10 s (+1 spare).
        assert_eq!(interval, Some(Duration::from_millis(500)));
        assert_eq!(batches, 21);
    }
}
