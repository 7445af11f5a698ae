//! Run a scenario end to end: sign the load, start a cluster, offer the load while breaking the
//! cluster on schedule, repair it, stop it and check its history.
//!
//! ```text
//!  Scenario ─► presign (one thread per stream) ─► Cluster::start_in (relays on)
//!    ─► wait for every chain's leader ─► fault::prepare: [meta chain] bootstrap, [routers] start
//!    ─► load: per stream, batches on the rate's schedule (open loop, ≤ 16 in flight), or the
//!             next batch as soon as the last returned (rate = "max"); over QUIC, or through
//!             the routers' REST API (gateway); an added chain's streams start when it is added
//!       faults: at their times: fault::apply (kill, partition, slow_net, slow_disk, kill_router,
//!             add_chain, …)
//!    ─► settle: fault::repair (heal, remove delays, restart), wait until each chain's replicas
//!               agree
//!    ─► stop every node ─► checker::check_cluster ─► Report (JSON-serialisable)
//! ```
//!
//! Against a deployed cluster ([`run_remote`]) the simulator starts nothing: it signs the load
//! for the deployment's chains and shard map, offers it through the given routers, and checks
//! the acknowledgements with the routers' proven receipts ([`crate::remote`]); no faults.
//!
//! Every submitted transaction's answer is recorded: committed (height, index, outcome), refused
//! at admission, or no answer before the deadline. Only committed receipts are promises the
//! checker holds the cluster to.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use elchain_shard::node::client::{Client, ClientError};
use elchain_shard::node::rpc::{Receipt, ReceiptStatus};
use elchain_types::codec::Encode;
use elchain_types::ids::{ChainId, Timestamp};
use elchain_types::profile::Profile;
use elchain_types::shardmap::{ShardMap, DEFAULT_BUCKETS};
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::checker::{check_cluster, Ack, Verdict};
use crate::cluster::{Cluster, ClusterDir, Settings};
use crate::cpu;
use crate::fault::{self, Damage};
use crate::gateway::{Gateway, Reply};
use crate::scenario::{Action, Fault, Rate, Scenario};
use crate::schedule::Schedule;
use crate::series::{self, Answered, Sample};
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
    /// The scenario asks for something this mode cannot do.
    #[error("{0}")]
    Unsupported(String),
    /// A node of a simulated cluster did not start.
    #[error("{0}")]
    Start(String),
    /// The meta chain could not be bootstrapped, or a router did not start.
    #[error("cannot prepare the cluster: {0}")]
    Prepare(String),
    /// A deployed cluster cannot be driven through its routers.
    #[error(transparent)]
    Remote(#[from] crate::remote::RemoteError),
    /// A chain elected no leader after the cluster started.
    #[error("chain {chain} elected no leader: {source}")]
    NoLeader {
        /// The chain.
        chain: u32,
        /// The client's last error.
        source: ClientError,
    },
}

/// How the cluster of a run was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Real `elchain node` processes over QUIC, faults on the wall clock.
    Processes,
    /// Every node in this process on the simulated network and clock ([`crate::det`]).
    Deterministic,
    /// A deployed cluster the simulator did not start, driven and checked through its routers'
    /// REST API ([`crate::remote`]).
    Remote,
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
    /// 99th percentile latency of the last 200 batches answered, in milliseconds.
    pub p99_ms: f64,
    /// Faults applied so far.
    pub faults_applied: usize,
    /// Faults in the scenario.
    pub faults_total: usize,
}

impl Progress {
    /// Progress in `phase` before the load has started: nothing sent yet.
    pub fn before_load(s: &Scenario, phase: Phase) -> Progress {
        Progress {
            phase,
            elapsed_s: 0.0,
            duration_s: s.load.duration_s,
            sent: 0,
            committed: 0,
            errors: 0,
            p99_ms: 0.0,
            faults_applied: 0,
            faults_total: s.faults.len(),
        }
    }
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

impl AppliedFault {
    /// `f`, applied at `at` seconds, before its action fills in what happened.
    pub fn begin(f: &Fault, at: f64) -> AppliedFault {
        AppliedFault {
            at_s: f.at_s,
            applied_s: at,
            action: f.action,
            nodes: f.node.into_iter().collect(),
            chain: None,
            applied: true,
            note: String::new(),
        }
    }
}

/// The result of a run, as written to the JSON report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Scenario description.
    pub description: String,
    /// Real processes, or the deterministic in-process simulation.
    pub mode: Mode,
    /// The seed of the workload streams (and, in deterministic mode, of everything else).
    pub seed: u64,
    /// Deterministic mode: blake3 over every chain's final height and tip hash; the same
    /// scenario and seed always give the same digest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
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
    /// Seconds at the start of the load left out of `committed_tps`, the latencies,
    /// `measured_committed` and `node_cpu_s` (`[load] warmup_s`).
    pub warmup_s: f64,
    /// Transactions sent per second of the scenario's duration.
    pub offered_tps: f64,
    /// Committed transactions (valid or not) per second of load after the warm-up.
    pub committed_tps: f64,
    /// Transactions committed in the batches answered after the warm-up (all of them without
    /// one): what `node_cpu_s` is spent on.
    pub measured_committed: u64,
    /// Submit-to-receipt latency per committed batch answered after the warm-up, from its
    /// scheduled time: median.
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
    /// Per second of load: committed tx/s, batch latency, errors.
    pub series: Vec<Sample>,
    /// CPU seconds (user + system) the node processes used from the start of the load (the end
    /// of its warm-up) until just before they were stopped (settling included), summed over the
    /// nodes alive then. A node killed during the run takes what it used with it (not counted);
    /// a restarted one counts from its restart. `None` where `/proc` cannot be read.
    pub node_cpu_s: Option<f64>,
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
    /// Open loop: where its batches fall between two of one stream's, in [0, 1), so that the
    /// streams do not all send at once.
    offset: f64,
    batches: Vec<Batch>,
}

/// Live counters for the progress display.
#[derive(Default)]
pub(crate) struct Live {
    pub(crate) sent: AtomicU64,
    pub(crate) committed: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) faults: AtomicUsize,
    /// Latencies of the last batches answered, for the live p99.
    recent_ms: std::sync::Mutex<std::collections::VecDeque<f64>>,
}

impl Live {
    /// Batches the live p99 looks back over.
    const RECENT: usize = 200;

    fn note_latency(&self, ms: f64) {
        let mut r = self.recent_ms.lock().unwrap_or_else(|e| e.into_inner());
        if r.len() == Self::RECENT {
            r.pop_front();
        }
        r.push_back(ms);
    }

    /// The 99th percentile of the recent batch latencies.
    pub(crate) fn recent_p99(&self) -> f64 {
        let mut v: Vec<f64> = self.recent_ms.lock().unwrap_or_else(|e| e.into_inner()).iter().copied().collect();
        v.sort_by(f64::total_cmp);
        series::percentile(&v, 0.99)
    }

    /// A progress snapshot in `phase`, `elapsed_s` into the load.
    pub(crate) fn progress(&self, s: &Scenario, phase: Phase, elapsed_s: f64) -> Progress {
        Progress {
            phase,
            elapsed_s,
            duration_s: s.load.duration_s,
            sent: self.sent.load(Ordering::Relaxed),
            committed: self.committed.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            p99_ms: self.recent_p99(),
            faults_applied: self.faults.load(Ordering::Relaxed),
            faults_total: s.faults.len(),
        }
    }
}

/// What one stream's submitter saw.
#[derive(Default)]
pub(crate) struct StreamOutcome {
    pub(crate) records: Vec<TxRecord>,
    pub(crate) acks: Vec<Ack>,
    /// Every answered submission: when, latency, committed, errors.
    pub(crate) answers: Vec<(Instant, f64, u64, u64)>,
    pub(crate) sent: u64,
    pub(crate) late: u64,
}

impl StreamOutcome {
    /// Add another stream's outcome to this one.
    pub(crate) fn merge(&mut self, o: StreamOutcome) {
        self.records.extend(o.records);
        self.acks.extend(o.acks);
        self.answers.extend(o.answers);
        self.sent += o.sent;
        self.late += o.late;
    }

    pub(crate) fn record(
        &mut self,
        live: &Live,
        chain: u32,
        batch: &[[u8; 32]],
        result: Result<Vec<Receipt>, String>,
        ms: f64,
        answered: Instant,
    ) {
        match result {
            Ok(receipts) => {
                let (mut committed, mut refused) = (0, 0);
                for r in receipts {
                    let answer = match r.status {
                        ReceiptStatus::Committed { height, index, outcome } => {
                            committed += 1;
                            Answer::Committed { height, index, outcome }
                        }
                        ReceiptStatus::Rejected { code } => {
                            live.errors.fetch_add(1, Ordering::Relaxed);
                            refused += 1;
                            Answer::Refused { code }
                        }
                    };
                    self.records.push(TxRecord { chain, tx: hex(&r.tx_id), answer });
                    self.acks.push(Ack { chain, receipt: r });
                }
                live.committed.fetch_add(committed, Ordering::Relaxed);
                if committed > 0 {
                    live.note_latency(ms);
                }
                self.answers.push((answered, ms, committed, refused));
            }
            Err(error) => {
                live.errors.fetch_add(batch.len() as u64, Ordering::Relaxed);
                self.answers.push((answered, ms, 0, batch.len() as u64));
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

/// Batches to sign per stream and, open loop, when the streams send them. The rate (or ramp)
/// is shared by the initial chains' streams; an added chain's streams send at the same
/// per-stream rate from when it is added.
fn plan(s: &Scenario) -> (usize, Option<Schedule>) {
    let streams = s.cluster.chains as usize * s.load.submitters;
    match s.load.rate_points() {
        None => (s.load.presign.div_ceil(s.load.batch), None),
        Some(points) => {
            let schedule = Schedule::new(&points, streams, s.load.batch);
            (schedule.batches(s.load.duration_s), Some(schedule))
        }
    }
}

/// Sign every stream's batches, one thread per stream. The workload's validity window (five
/// minutes) outlasts signing, start-up and a short run.
fn presign(s: &Scenario, batches: usize, schedule: Option<&Schedule>) -> Result<Vec<Stream>, RunError> {
    // Streams of the initial chains, then of the chains added later (signed now, sent then).
    let chains: Vec<u32> = (1..=s.cluster.chains).chain(s.added_chains()).collect();
    let initial = s.cluster.chains as usize * s.load.submitters;
    // Routers refuse a misplaced issuance: place the holders as shard map 1 (which the run's
    // bootstrap sets) does.
    let placement = if s.cluster.routers > 0 {
        let ids: Vec<ChainId> = (1..=s.cluster.chains).map(ChainId).collect();
        Some(ShardMap::even(&ids, DEFAULT_BUCKETS).map_err(|e| RunError::Profile(e.to_string()))?)
    } else {
        None
    };
    sign_streams(s, batches, &chains, initial, placement, schedule)
}

/// Sign `batches` batches for each of `s.load.submitters` streams per chain of `chains`, one
/// thread per stream, from the seed `s.load.seed`; the first `initial` streams share the open
/// loop's offsets. With `placement`, issuance goes only to holders it places on the stream's
/// chain. With the open loop's `schedule`, each batch of the initial streams is dated at its
/// planned send time (counted from now), so short grant windows and licences near their end
/// behave as they will when the batch is sent; batches of chains added later are dated now.
fn sign_streams(
    s: &Scenario,
    batches: usize,
    chains: &[u32],
    initial: usize,
    placement: Option<ShardMap>,
    schedule: Option<&Schedule>,
) -> Result<Vec<Stream>, RunError> {
    let consortium = Profile::sample().into_dev_consortium().map_err(|e| RunError::Profile(e.to_string()))?;
    let t = now();
    let mix = s.load.mix.map(Mix::from).unwrap_or_default();
    let (submitters, batch, population) = (s.load.submitters, s.load.batch, s.load.population);
    let seed = s.load.seed;
    let initial = initial.max(1);
    Ok(std::thread::scope(|scope| {
        let handles: Vec<_> = (0..chains.len() * submitters)
            .map(|i| {
                let consortium = consortium.clone();
                let chain = chains[i / submitters];
                let offset = (i % initial) as f64 / initial as f64;
                let placement = placement.clone();
                scope.spawn(move || {
                    let stream_seed = seed.wrapping_mul(1_000_003).wrapping_add(i as u64);
                    let mut w = Workload::new(consortium, ChainId(chain), stream_seed, population).with_mix(mix);
                    if let Some(map) = placement {
                        w = w.with_placement(map);
                    }
                    let batches = (0..batches)
                        .map(|k| {
                            let planned = schedule
                                .filter(|_| i < initial)
                                .and_then(|sch| sch.at(k, offset, 0.0))
                                .map_or(t, |at| t.plus_ms((at * 1000.0) as u64));
                            let txs = w.batch(batch, planned);
                            Batch {
                                ids: txs.iter().map(|t| t.id().0).collect(),
                                raws: txs.iter().map(Encode::to_bytes).collect(),
                            }
                        })
                        .collect();
                    Stream { chain, offset, batches }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("signing thread")).collect()
    }))
}

async fn submit(gateway: &Gateway, chain: u32, batch: Batch) -> Vec<Reply> {
    gateway.submit(chain, batch.ids, batch.raws, SUBMIT_DEADLINE).await
}

/// When an open-loop stream runs: the schedule, the load's start, and when the stream starts
/// (seconds after the load's).
#[derive(Clone)]
struct Timing {
    schedule: Arc<Schedule>,
    started: Instant,
    from_s: f64,
}

/// Open loop: batch k leaves at its time on the schedule whatever became of the earlier ones. A
/// batch's latency runs from its scheduled time, so waiting for a free slot counts.
async fn open_loop(
    gateway: Gateway,
    stream: Stream,
    timing: Timing,
    deadline: Instant,
    live: Arc<Live>,
) -> StreamOutcome {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut out = StreamOutcome::default();
    let mut tasks = Vec::new();
    let chain = stream.chain;
    for (k, batch) in stream.batches.into_iter().enumerate() {
        let Some(t) = timing.schedule.at(k, stream.offset, timing.from_s) else { break };
        let at = timing.started + Duration::from_secs_f64(t);
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
        let gateway = gateway.clone();
        tasks.push(tokio::spawn(async move {
            let replies = submit(&gateway, chain, batch).await;
            drop(slot);
            (replies, at.elapsed(), Instant::now())
        }));
    }
    for task in tasks {
        match task.await {
            Ok((replies, latency, answered)) => {
                for r in replies {
                    out.record(&live, chain, &r.ids, r.result, latency.as_secs_f64() * 1e3, answered);
                }
            }
            Err(e) => out.record(&live, chain, &[], Err(e.to_string()), 0.0, Instant::now()),
        }
    }
    out
}

/// Closed loop: the next batch as soon as the previous one returned, until the deadline or the
/// pre-signed batches run out.
async fn closed_loop(gateway: Gateway, stream: Stream, deadline: Instant, live: Arc<Live>) -> StreamOutcome {
    let mut out = StreamOutcome::default();
    let chain = stream.chain;
    for batch in stream.batches {
        if Instant::now() >= deadline {
            break;
        }
        out.sent += batch.ids.len() as u64;
        live.sent.fetch_add(batch.ids.len() as u64, Ordering::Relaxed);
        let t0 = Instant::now();
        for r in submit(&gateway, chain, batch).await {
            out.record(&live, chain, &r.ids, r.result, t0.elapsed().as_secs_f64() * 1e3, Instant::now());
        }
    }
    out
}

/// How long the replicas must agree, unchanged, before settling counts them converged: a
/// leader may still hold an entry it commits once a repaired network carries it (a few
/// heartbeats).
const SETTLED_FOR: Duration = Duration::from_millis(600);

/// The highest block of `chain` an acknowledgement points at: settling waits for every replica
/// to reach at least that.
pub(crate) fn max_acked_height(acks: &[Ack], chain: u32) -> u64 {
    acks.iter()
        .filter(|a| a.chain == chain)
        .filter_map(|a| match a.receipt.status {
            ReceiptStatus::Committed { height, .. } => Some(height),
            ReceiptStatus::Rejected { .. } => None,
        })
        .max()
        .unwrap_or(0)
}

/// Wait until every node in `ids` reports the same height and tip of `chain`, at least
/// `min_height`, and keeps reporting it for [`SETTLED_FOR`]; the height, or what was seen last.
pub(crate) async fn wait_converged(client: &Client, chain: u32, ids: &[u64], min_height: u64) -> Result<u64, String> {
    // tokio's clock: real time here, simulated time in the deterministic mode.
    let start = Instant::now();
    let mut agreed: Option<(u64, [u8; 32], Instant)> = None;
    loop {
        let mut statuses = Vec::new();
        for id in ids {
            if let Ok(s) = client.status(*id, chain).await {
                statuses.push(s);
            }
        }
        let now_agreed = (statuses.len() == ids.len())
            .then(|| (statuses[0].height, statuses[0].tip_hash))
            .filter(|(h, tip)| *h >= min_height && statuses.iter().all(|s| s.height == *h && s.tip_hash == *tip));
        agreed = match (agreed, now_agreed) {
            (Some((h, tip, since)), Some((h2, tip2))) if (h, tip) == (h2, tip2) => {
                if since.elapsed() >= SETTLED_FOR {
                    return Ok(h);
                }
                Some((h, tip, since))
            }
            (_, Some((h, tip))) => Some((h, tip, Instant::now())),
            (_, None) => None,
        };
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
pub(crate) struct Driven {
    pub(crate) outcome: StreamOutcome,
    pub(crate) faults: Vec<AppliedFault>,
    pub(crate) load_seconds: f64,
    pub(crate) settle_problems: Vec<String>,
    pub(crate) heights: Vec<u64>,
    /// When the load started (the origin of the time series).
    pub(crate) started: Option<Instant>,
}

async fn drive(
    cluster: &mut Cluster,
    s: &Scenario,
    streams: Vec<Stream>,
    schedule: Option<Schedule>,
    progress: &dyn Fn(&Progress),
) -> Result<Driven, RunError> {
    let consortium = Profile::sample().into_dev_consortium().map_err(|e| RunError::Profile(e.to_string()))?;
    let client = cluster.client().await;
    let chains: Vec<u32> = (1..=s.cluster.chains).collect();
    for &c in &chains {
        let ids = cluster.nodes.values().filter(|n| n.chains.contains(&c)).map(|n| n.id).collect();
        client.set_replicas(c, ids);
    }
    for &chain in &chains {
        client.wait_leader(chain, SETTLE_DEADLINE).await.map_err(|source| RunError::NoLeader { chain, source })?;
    }
    let governance_acks = fault::prepare(cluster, &client, s, &consortium).await.map_err(RunError::Prepare)?;
    let gateway = if s.cluster.routers > 0 { Gateway::routers(cluster) } else { Gateway::Quic(client.clone()) };
    let live = Arc::new(Live::default());
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(s.load.duration_s);
    let schedule = schedule.map(Arc::new);
    // The streams of chains added later wait for their `add_chain`.
    let (streams, mut later): (Vec<Stream>, Vec<Stream>) =
        streams.into_iter().partition(|st| st.chain <= s.cluster.chains);
    let start_stream = |stream: Stream, from_s: f64| {
        let (gateway, live) = (gateway.clone(), live.clone());
        match &schedule {
            None => tokio::spawn(closed_loop(gateway, stream, deadline, live)),
            Some(schedule) => {
                let timing = Timing { schedule: schedule.clone(), started, from_s };
                tokio::spawn(open_loop(gateway, stream, timing, deadline, live))
            }
        }
    };
    let mut tasks: Vec<_> = streams.into_iter().map(|stream| start_stream(stream, 0.0)).collect();
    let mut driven = Driven { started: Some(started), ..Driven::default() };
    driven.outcome.acks.extend(governance_acks);
    let mut damage = Damage::default();
    let mut pending = s.faults.iter();
    let mut next = pending.next();
    let snapshot = |phase: Phase, elapsed: f64| live.progress(s, phase, elapsed);
    while next.is_some() || tasks.iter().any(|t| !t.is_finished()) {
        let elapsed = started.elapsed().as_secs_f64();
        while let Some(f) = next.filter(|f| f.at_s <= elapsed) {
            let at = started.elapsed().as_secs_f64();
            let (done, acks) = fault::apply(cluster, &client, &consortium, &mut damage, f, at).await;
            if let (Action::AddChain, true, Some(chain)) = (f.action, done.applied, done.chain) {
                // The new chain's load starts now, at the rate of one chain.
                let from_s = started.elapsed().as_secs_f64();
                let (now, rest): (Vec<Stream>, Vec<Stream>) = later.into_iter().partition(|st| st.chain == chain);
                later = rest;
                tasks.extend(now.into_iter().map(|stream| start_stream(stream, from_s)));
            }
            driven.outcome.acks.extend(acks);
            driven.faults.push(done);
            live.faults.fetch_add(1, Ordering::Relaxed);
            next = pending.next();
        }
        progress(&snapshot(Phase::Load, elapsed));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    driven.load_seconds = started.elapsed().as_secs_f64();
    for t in tasks {
        match t.await {
            Ok(o) => driven.outcome.merge(o),
            Err(e) => driven.settle_problems.push(format!("a submitter failed: {e}")),
        }
    }

    // Undo the damage and let every replica catch up before the stores are read.
    progress(&snapshot(Phase::Settling, driven.load_seconds));
    driven.settle_problems.extend(fault::repair(cluster, &mut damage));
    // Every chain the cluster serves now: the meta chain and added chains too. `heights` lists
    // the licence chains'.
    for chain in cluster.chains() {
        let min_height = max_acked_height(&driven.outcome.acks, chain);
        let ids: Vec<u64> = cluster.nodes.values().filter(|n| n.chains.contains(&chain)).map(|n| n.id).collect();
        let converged = wait_converged(&client, chain, &ids, min_height).await;
        if let Err(e) = &converged {
            driven.settle_problems.push(e.clone());
        }
        if chain != 0 {
            driven.heights.push(converged.unwrap_or(0));
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
    run_with(bin, scenario, dir, &Options::default(), progress)
}

/// Testing switches of a run.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Plant the `ack_before_commit` bug in every node, to show that the checker catches it.
    pub plant_ack_before_commit: bool,
}

/// [`run`] with `options`.
pub fn run_with(
    bin: PathBuf,
    scenario: &Scenario,
    dir: ClusterDir,
    options: &Options,
    progress: &dyn Fn(&Progress),
) -> Result<Report, RunError> {
    let s = scenario;
    let phase = |phase: Phase| Progress::before_load(s, phase);
    progress(&phase(Phase::Signing));
    let (batches, schedule) = plan(s);
    let streams = presign(s, batches, schedule.as_ref())?;
    progress(&phase(Phase::Starting));
    let settings = Settings {
        chains: s.cluster.chains,
        relays: true,
        block_txs: s.cluster.block_txs,
        block_wait_ms: s.cluster.block_wait_ms,
        snapshot_every: s.cluster.snapshot_every,
        keep_logs: s.cluster.keep_logs,
        meta: s.needs_meta(),
        ack_before_commit: options.plant_ack_before_commit,
        ..Settings::default()
    };
    let mut cluster = Cluster::start_in(bin, dir, s.cluster.replicas, settings);
    // The nodes' CPU is sampled when the load starts (the first progress of that phase), or
    // when its warm-up ends, not here: starting up and electing leaders is not the load's cost.
    let pids: Vec<u32> = cluster.nodes.keys().filter_map(|&id| cluster.pid(id)).collect();
    let cpu_at_load = std::cell::OnceCell::new();
    let watch = |p: &Progress| {
        if p.phase == Phase::Load && p.elapsed_s >= s.load.warmup_s {
            cpu_at_load.get_or_init(|| cpu::sample(pids.iter().copied()));
        }
        progress(p);
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(RunError::Runtime)?;
    let driven = runtime.block_on(drive(&mut cluster, s, streams, schedule, &watch));
    progress(&phase(Phase::Checking));
    let cpu_at_stop = cpu::sample(cluster.nodes.keys().filter_map(|&id| cluster.pid(id)));
    let node_cpu_s = cpu_at_load.into_inner().filter(|b| !b.is_empty()).map(|b| cpu::used(&b, &cpu_at_stop));
    let stop_problems = cluster.try_stop_all();
    let mut driven = driven?;
    driven.settle_problems.extend(stop_problems);
    let verdict = check_cluster(&cluster, &driven.outcome.acks);
    let how = How { mode: Mode::Processes, seed: s.load.seed, digest: None, node_cpu_s };
    Ok(report(s, driven, verdict, how))
}

/// Longest load against a deployed cluster, in seconds: the load is signed before it starts and
/// the workload makes each transaction valid for five minutes from signing, which must cover
/// signing, the load and the last answers (with a margin for the deployment's clock).
pub const MAX_REMOTE_LOAD_S: f64 = 240.0;

/// How long transactions the workload signs stay valid (its `valid_until`), in seconds.
const SIGNED_VALID_S: f64 = 300.0;

/// What a run against a deployed cluster loads and checks.
#[derive(Clone, Debug)]
pub struct RemoteOptions {
    /// The licence chains to load ([`crate::remote::Deployment::choose_chains`]).
    pub chains: Vec<u32>,
    /// Check every acknowledgement up to this many; past it, a seeded random sample of this many.
    pub check_limit: usize,
}

/// Run `scenario`'s load against a deployed cluster through its routers, then check what was
/// acknowledged with the routers' proven receipts and blocks ([`crate::remote::check`]).
///
/// The deployment must run the sample consortium with development keys (like `elchain dev`):
/// the workload signs as its members and holders. Of the scenario it takes `[load]` and the
/// number of chains; `[cluster]`'s other keys describe a cluster the simulator would start and
/// are ignored, and faults are refused, as is a load longer than [`MAX_REMOTE_LOAD_S`]. Issuance
/// is placed by the deployment's shard map. The workload seed is `load.seed` mixed with the
/// chains' heights at the start (unchanged on a fresh deployment), so that a second run on the
/// same deployment does not replay the first one's licences; the report gives the seed used.
///
/// `progress` is called as in [`run`]; while checking ([`Phase::Checking`]), its `sent` is the
/// number of requests to make and `committed` the number answered.
pub fn run_remote(
    scenario: &Scenario,
    deployment: &crate::remote::Deployment,
    options: &RemoteOptions,
    progress: &dyn Fn(&Progress),
) -> Result<Report, RunError> {
    let s = scenario;
    if let Some(f) = s.faults.first() {
        return Err(RunError::Unsupported(format!(
            "scenario {}: fault `{}` at {} s: faults need a cluster the simulator controls; remove [[faults]] or run \
             without --router",
            s.name, f.action, f.at_s
        )));
    }
    let have = deployment.licence_chains();
    if options.chains.is_empty() || options.chains.iter().any(|c| !have.contains(c)) {
        return Err(RunError::Unsupported(format!(
            "chains {:?} to load, but the deployment places licences on chains {have:?}",
            options.chains
        )));
    }
    if s.load.duration_s > MAX_REMOTE_LOAD_S {
        return Err(RunError::Unsupported(format!(
            "scenario {}: {} s of load, but against a deployed cluster at most {MAX_REMOTE_LOAD_S} s: the load is \
             signed before it starts and each transaction is valid for {SIGNED_VALID_S} s from then; run several \
             shorter scenarios instead",
            s.name, s.load.duration_s
        )));
    }
    let chains = options.chains.clone();
    let start_heights = deployment.heights(&chains)?;
    let mut run = s.clone();
    run.cluster.chains = chains.len() as u32;
    run.cluster.replicas = chains.iter().map(|&c| deployment.replicas(c).len() as u64).max().unwrap_or(0);
    run.cluster.routers = deployment.urls().len() as u32;
    run.load.seed = s.load.seed ^ start_heights.values().sum::<u64>().rotate_left(32);
    let s = &run;
    let phase = |phase: Phase| Progress::before_load(s, phase);
    progress(&phase(Phase::Signing));
    let signing = std::time::Instant::now();
    let (batches, schedule) = plan(s);
    let initial = chains.len() * s.load.submitters;
    let streams = sign_streams(s, batches, &chains, initial, Some(deployment.shard_map().clone()), schedule.as_ref())?;
    let signed_s = signing.elapsed().as_secs_f64();
    if signed_s + s.load.duration_s + SUBMIT_DEADLINE.as_secs_f64() > SIGNED_VALID_S - 20.0 {
        return Err(RunError::Unsupported(format!(
            "signing took {signed_s:.0} s: with {} s of load, the last transactions would be sent after their \
             {SIGNED_VALID_S} s validity window; shorten the load",
            s.load.duration_s
        )));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(RunError::Runtime)?;
    let gateway = Gateway::router_urls(&deployment.urls());
    let mut driven = runtime.block_on(drive_remote(s, gateway, streams, schedule, progress));
    drop(runtime);
    match deployment.heights(&chains) {
        Ok(h) => driven.heights = chains.iter().map(|c| h.get(c).copied().unwrap_or(0)).collect(),
        Err(e) => driven.settle_problems.push(format!("cannot read the chains' heights after the load: {e}")),
    }
    let requests =
        |done: usize, total: usize| Progress { sent: total as u64, committed: done as u64, ..phase(Phase::Checking) };
    progress(&requests(0, 0));
    let settings = crate::remote::CheckSettings { limit: options.check_limit, seed: s.load.seed };
    let checked = crate::remote::check(deployment, &chains, &driven.outcome.acks, settings, &|done, total| {
        progress(&requests(done, total))
    });
    driven.settle_problems.extend(checked.notes);
    let how = How { mode: Mode::Remote, seed: s.load.seed, digest: None, node_cpu_s: None };
    Ok(report(s, driven, checked.verdict, how))
}

/// Offer the signed streams through `gateway` until the load's end, every stream from the start.
async fn drive_remote(
    s: &Scenario,
    gateway: Gateway,
    streams: Vec<Stream>,
    schedule: Option<Schedule>,
    progress: &dyn Fn(&Progress),
) -> Driven {
    let live = Arc::new(Live::default());
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(s.load.duration_s);
    let schedule = schedule.map(Arc::new);
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|stream| {
            let (gateway, live) = (gateway.clone(), live.clone());
            match &schedule {
                None => tokio::spawn(closed_loop(gateway, stream, deadline, live)),
                Some(schedule) => {
                    let timing = Timing { schedule: schedule.clone(), started, from_s: 0.0 };
                    tokio::spawn(open_loop(gateway, stream, timing, deadline, live))
                }
            }
        })
        .collect();
    while tasks.iter().any(|t| !t.is_finished()) {
        progress(&live.progress(s, Phase::Load, started.elapsed().as_secs_f64()));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut driven =
        Driven { started: Some(started), load_seconds: started.elapsed().as_secs_f64(), ..Driven::default() };
    for t in tasks {
        match t.await {
            Ok(o) => driven.outcome.merge(o),
            Err(e) => driven.settle_problems.push(format!("a submitter failed: {e}")),
        }
    }
    driven
}

/// How a run was carried out, for its report.
pub(crate) struct How {
    pub(crate) mode: Mode,
    pub(crate) seed: u64,
    pub(crate) digest: Option<String>,
    pub(crate) node_cpu_s: Option<f64>,
}

/// The report of a finished run.
pub(crate) fn report(s: &Scenario, mut driven: Driven, verdict: Verdict, how: How) -> Report {
    let o = &mut driven.outcome;
    let count = |f: &dyn Fn(&Answer) -> bool| o.records.iter().filter(|r| f(&r.answer)).count() as u64;
    let committed = count(&|a| matches!(a, Answer::Committed { .. }));
    let valid = count(&|a| matches!(a, Answer::Committed { outcome: 0, .. }));
    let refused = count(&|a| matches!(a, Answer::Refused { .. }));
    let unanswered = count(&|a| matches!(a, Answer::NoAnswer { .. }));
    let answers: Vec<Answered> = o
        .answers
        .iter()
        .map(|&(at, ms, committed, errors)| Answered {
            at_s: driven.started.map_or(0.0, |t| at.saturating_duration_since(t).as_secs_f64()),
            ms,
            committed,
            errors,
        })
        .collect();
    let warmup_s = s.load.warmup_s;
    let measured = || answers.iter().filter(|a| a.at_s >= warmup_s);
    let measured_committed: u64 = measured().map(|a| a.committed).sum();
    let mut latencies_ms: Vec<f64> = measured().filter(|a| a.committed > 0).map(|a| a.ms).collect();
    latencies_ms.sort_by(f64::total_cmp);
    Report {
        scenario: s.name.clone(),
        description: s.description.clone(),
        mode: how.mode,
        seed: how.seed,
        digest: how.digest,
        // Licence chains at the end: chains added during the run count too.
        chains: if driven.heights.is_empty() { s.cluster.chains } else { driven.heights.len() as u32 },
        replicas: s.cluster.replicas,
        rate: s.load.rate,
        duration_s: s.load.duration_s,
        load_seconds: driven.load_seconds,
        warmup_s,
        offered_tps: o.sent as f64 / s.load.duration_s,
        committed_tps: measured_committed as f64 / (driven.load_seconds.max(s.load.duration_s) - warmup_s),
        measured_committed,
        p50_ms: series::percentile(&latencies_ms, 0.5),
        p99_ms: series::percentile(&latencies_ms, 0.99),
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
        series: series::per_second(&answers, s.load.duration_s),
        node_cpu_s: how.node_cpu_s,
        txs: std::mem::take(&mut o.records),
    }
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
        let (batches, schedule) = plan(&s);
        // 4 streams at 100 tx/s each: a batch of 50 every 0.5 s, 20 batches in 10 s (+1 spare).
        let schedule = schedule.unwrap();
        assert_eq!((schedule.at(0, 0.0, 0.0), schedule.at(1, 0.0, 0.0)), (Some(0.0), Some(0.5)));
        assert_eq!(batches, 21);
    }
}
