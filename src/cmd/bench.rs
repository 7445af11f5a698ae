//! `elchain bench`: the end-to-end throughput harness on a local cluster of real node processes.
//!
//! ```text
//!  pre-sign S = chains × clients independent streams (all cores) ─► start each chain's R
//!  `elchain node` processes (QUIC, mTLS, redb, fsync) [─► meta chain + router with --via-router]
//!  --rate max:  each submitter: submit a batch ─► wait for its receipts ─► next  (closed loop)
//!  --rate N:    each submitter: a batch every batch/(N/S) s, whether or not earlier ones
//!               returned (open loop; at most --max-in-flight outstanding, the rest counted late)
//!  report: offered and committed tx/s, batch latency p50/p90/p99, CPU-seconds per committed tx
//! ```
//!
//! Direct submission goes over QUIC to each chain's leader ([`Client::submit`]); `--via-router`
//! posts the same batches as JSON to a router's `POST /v1/transactions/batch`.

use std::fmt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use elchain_router::json::BatchResponse;
use elchain_router::rest::{wait_healthy, RestClient};
use elchain_shard::node::client::Client;
use elchain_shard::node::config::RaftConfig;
use elchain_shard::node::rpc::{Receipt, ReceiptStatus};
use elchain_sim::cluster::{Cluster, ClusterDir, Settings};
use elchain_sim::{governance, Workload};
use elchain_types::codec::Encode;
use elchain_types::ids::{ChainId, Timestamp};
use elchain_types::profile::Profile;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// A batch sent this long after its scheduled time counts as late.
const LATE_AFTER: Duration = Duration::from_millis(10);

/// How long one submission may wait for its receipts.
const SUBMIT_DEADLINE: Duration = Duration::from_secs(30);

/// The router's id (its certificate names node 901), as in the deployment tests.
const ROUTER: u64 = 901;

/// Router limits for the benchmark: high enough never to refuse the load generator, so that the
/// figures measure the path, not the rate limits.
const ROUTER_LIMITS: &str = "[limits]\nmax_body_bytes = 1073741824\nmax_batch = 1000000\n\
                             requests_per_second = 1000000000\nburst = 1000000000\n\
                             txs_per_second_per_signer = 1000000000\n";

/// Arguments of `elchain bench`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    elchain bench --replicas 3 --duration 20                  closed loop, one chain, QUIC to its leader\n  \
    elchain bench --replicas 3 --rate 3000                    offer 3000 tx/s open-loop\n  \
    elchain bench --chains 2 --replicas 3 --rate max --json   two chains on 6 processes, JSON last line\n  \
    elchain bench --replicas 3 --via-router                   through a router's HTTP batch submit")]
pub struct Args {
    /// Licence chains, each on its own `--replicas` node processes (chains share nothing on the hot
    /// path); the load is spread evenly over them.
    #[arg(long, default_value_t = 1)]
    chains: u32,
    /// Replicas of each chain (separate processes).
    #[arg(long, default_value_t = 3)]
    replicas: u64,
    /// Seconds of load measured (the timed window), after the warm-up.
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// Seconds of the same load before the timed window, not measured (its batches, commits and
    /// CPU are left out): a new cluster's first seconds (the Raft log files growing from nothing,
    /// memory touched for the first time, connections opening) are not the steady state the
    /// window is meant to show. 0: measure from the first batch.
    #[arg(long, default_value_t = 5, value_name = "SECS")]
    warmup: u64,
    /// Total offered load in transactions per second, spread over chains and submitters (open
    /// loop: batches leave on schedule whether or not earlier ones returned), or `max`: each
    /// submitter sends its next batch as soon as the previous one is committed (closed loop).
    #[arg(long, default_value = "max", value_parser = parse_rate)]
    rate: Rate,
    /// Submit through a router (also started, with the meta chain) over HTTP
    /// (`POST /v1/transactions/batch`) instead of QUIC to the chain's leader. One chain only.
    #[arg(long)]
    via_router: bool,
    /// Concurrent submitters per chain, each with its own stream of holders and licences. In the
    /// closed loop they keep `--clients` × `--batch` transactions in flight per chain, and a
    /// batch's latency is about that many divided by the committed rate. The default keeps 1,000
    /// in flight: on a 2-core machine without AVX-512 IFMA 8 submitters (2,000) commit about 5%
    /// more and wait about 70% longer at p99, past 300 ms (BENCHMARKS.md).
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Transactions per submission.
    #[arg(long, default_value_t = 250)]
    batch: usize,
    /// With `--rate max`: transactions signed ahead per submitter (the run ends early, with a
    /// warning, when they are used up). Default: enough for `--warmup` and `--duration` at
    /// 20,000 tx/s per chain, shared by its submitters (2,000 tx/s each at least), at most
    /// 2,000,000 over all submitters, at least 40,000. With a numeric rate, exactly what the
    /// schedule needs is signed.
    #[arg(long)]
    txs_per_client: Option<usize>,
    /// With a numeric rate: batches a submitter may have outstanding; a batch that finds none free
    /// waits for one and is counted late.
    #[arg(long, default_value_t = 16)]
    max_in_flight: usize,
    /// Close a block at this many transactions.
    #[arg(long, default_value_t = 2000)]
    block_size: usize,
    /// Or after this many milliseconds.
    #[arg(long, default_value_t = 10)]
    block_wait_ms: u64,
    /// Put the fault tests' UDP relays (threads of this process) in front of every node, as the
    /// first recorded figures did; by default peers and clients reach nodes directly.
    #[arg(long)]
    relays: bool,
    /// Keep the cluster's files (CA, configs, data, logs) in this directory.
    #[arg(long)]
    keep: Option<PathBuf>,
    /// Print one JSON object as the last line.
    #[arg(long)]
    json: bool,
    /// Also report latency second by second (batches answered, p50, p99, max), to see when a
    /// tail happens; with `--json`, as the object's `timeline`.
    #[arg(long)]
    timeline: bool,
    /// Run the release gate described in FILE (e.g. benches/gate.toml): calibrate this machine,
    /// run the bench as the file says, and fail unless the normalised throughput is within the
    /// file's tolerance of its floor. The file's settings replace the flags above.
    #[arg(long, value_name = "FILE")]
    gate: Option<PathBuf>,
    /// With --gate: measure and write the result as the file's new floor.
    #[arg(long, requires = "gate")]
    update_floor: bool,
    /// Measure the scale curve: run the bench once per chain count in this comma-separated list
    /// (e.g. 1,2,4,8), the other flags alike, and print chains → aggregate committed tx/s.
    #[arg(long, value_delimiter = ',', value_name = "N,N,…", conflicts_with = "gate")]
    curve: Vec<u32>,
    /// With --curve: also draw the curve as an SVG file.
    #[arg(long, value_name = "FILE", requires = "curve")]
    svg: Option<PathBuf>,
    /// Testing only: every replica sleeps this many milliseconds per applied block, a deliberate
    /// slowdown that shows the gate failing.
    #[arg(long, default_value_t = 0)]
    inject_apply_delay_ms: u64,
    /// Replicas write applied blocks to their chain store this often (`[raft] state_sync_ms`),
    /// sooner when 100,000 transactions wait: shorter spreads the writes thinner, longer writes
    /// shared pages once.
    #[arg(long, default_value_t = RaftConfig::default().state_sync_ms, value_name = "MS")]
    state_sync_ms: u64,
    /// Of those writes, fsync one at most this often (`[raft] state_fsync_ms`); the others go to
    /// the kernel's writeback without waiting.
    #[arg(long, default_value_t = RaftConfig::default().state_fsync_ms, value_name = "MS")]
    state_fsync_ms: u64,
}

/// How fast the load is offered.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Rate {
    /// Closed loop: as fast as commits come back.
    Max,
    /// Open loop at this many transactions per second in total.
    PerSecond(f64),
}

fn parse_rate(s: &str) -> Result<Rate, String> {
    if s.eq_ignore_ascii_case("max") {
        return Ok(Rate::Max);
    }
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(Rate::PerSecond(r)),
        _ => Err(format!("`{s}` is neither `max` nor a positive number of transactions per second")),
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rate::Max => f.write_str("max"),
            Rate::PerSecond(r) => write!(f, "{r}"),
        }
    }
}

/// `"max"`, or the number.
impl Serialize for Rate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Rate::Max => s.serialize_str("max"),
            Rate::PerSecond(r) => s.serialize_f64(*r),
        }
    }
}

/// The result, as printed with `--json`.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    /// Committed transactions per second (in blocks, valid or not) over the whole run.
    pub tps: f64,
    /// Transactions sent per second while sending.
    offered_tps: f64,
    /// Seconds of load before the timed window, not measured.
    warmup_s: u64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    /// CPU of every node process, and the router's when used, per committed transaction.
    cpu_us_per_tx: f64,
    /// The router's share of `cpu_us_per_tx` (0 without a router).
    router_cpu_us_per_tx: f64,
    /// The load generator's own CPU (this process: submitters, client, relays) per committed tx.
    load_cpu_us_per_tx: f64,
    /// CPU-seconds that other processes on the machine used during the run (the cores are shared:
    /// a high figure means a noisy measurement).
    other_cpu_s: f64,
    committed: u64,
    valid: u64,
    rejected: u64,
    /// Transactions of batches that got no receipt (timeouts, errors, router `unavailable`).
    unanswered: u64,
    /// Open loop: batches sent more than 10 ms after their scheduled time.
    late_batches: u64,
    /// Committed tx/s of each chain, in chain order.
    per_chain_tps: Vec<f64>,
    chains: u32,
    replicas: u64,
    rate: Rate,
    via_router: bool,
    relays: bool,
    seconds: f64,
    clients: usize,
    batch: usize,
    block_size: usize,
    block_wait_ms: u64,
    state_sync_ms: u64,
    durability: String,
    mode: &'static str,
    /// With `--timeline`: the batches answered in each second of the run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    timeline: Vec<Second>,
}

/// The batches answered in one second of the run (`--timeline`).
#[derive(Debug, Serialize)]
struct Second {
    /// Seconds from the start of the load to the end of this second.
    second: u64,
    batches: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

/// Latency per second of the run, by when each batch was answered.
fn timeline(started: Instant, answered: &[(Instant, f64)]) -> Vec<Second> {
    let mut by_second: Vec<Vec<f64>> = Vec::new();
    for (at, ms) in answered {
        let s = at.saturating_duration_since(started).as_secs() as usize;
        if by_second.len() <= s {
            by_second.resize_with(s + 1, Vec::new);
        }
        by_second[s].push(*ms);
    }
    by_second
        .into_iter()
        .enumerate()
        .map(|(s, mut lat)| {
            lat.sort_by(f64::total_cmp);
            Second {
                second: s as u64 + 1,
                batches: lat.len(),
                p50_ms: percentile(&lat, 0.5),
                p99_ms: percentile(&lat, 0.99),
                max_ms: lat.last().copied().unwrap_or(0.0),
            }
        })
        .collect()
}

fn now() -> Timestamp {
    Timestamp(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64))
}

/// CPU seconds (user + system) a process has used so far, from /proc.
/// CPU seconds the whole machine has spent busy (every state but idle and I/O wait), from
/// /proc/stat.
fn machine_busy_seconds(ticks: f64) -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else { return 0.0 };
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else { return 0.0 };
    let f: Vec<f64> = line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal guest guest_nice; guests are inside user.
    let busy: f64 = f.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, v)| v).sum();
    busy / ticks
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// A free TCP port on loopback for the router's HTTP.
fn free_http() -> anyhow::Result<std::net::SocketAddr> {
    Ok(elchain_sim::cluster::free_tcp())
}

/// One pre-built submission.
enum Body {
    /// Encoded transactions, for QUIC.
    Raw(Vec<Vec<u8>>),
    /// The JSON body of `POST /v1/transactions/batch`.
    Json(String),
}

struct Batch {
    txs: u64,
    body: Body,
}

/// A submitter's pre-signed load for one chain.
struct Stream {
    chain: u32,
    batches: Vec<Batch>,
}

/// Where batches go.
#[derive(Clone)]
enum Sender {
    Quic(Client),
    Rest(RestClient),
}

/// What became of a batch's transactions.
#[derive(Default, Debug, Clone, Copy)]
struct Tally {
    committed: u64,
    valid: u64,
    rejected: u64,
    unanswered: u64,
}

impl Tally {
    fn add(&mut self, o: Tally) {
        self.committed += o.committed;
        self.valid += o.valid;
        self.rejected += o.rejected;
        self.unanswered += o.unanswered;
    }

    fn of_receipts(receipts: &[Receipt]) -> Tally {
        let mut t = Tally::default();
        for r in receipts {
            match r.status {
                ReceiptStatus::Committed { outcome, .. } => {
                    t.committed += 1;
                    t.valid += u64::from(outcome == 0);
                }
                ReceiptStatus::Rejected { .. } => t.rejected += 1,
            }
        }
        t
    }
}

impl Sender {
    /// Submit one batch and wait for its receipts; an error when none came.
    async fn send(&self, chain: u32, batch: Batch) -> Result<Tally, String> {
        match (self, batch.body) {
            (Sender::Quic(client), Body::Raw(txs)) => {
                let receipts = client.submit(chain, txs, SUBMIT_DEADLINE).await.map_err(|e| e.to_string())?;
                let mut t = Tally::of_receipts(&receipts);
                t.unanswered += batch.txs.saturating_sub(receipts.len() as u64);
                Ok(t)
            }
            (Sender::Rest(rest), Body::Json(body)) => {
                let rest = rest.clone();
                let answer = tokio::task::spawn_blocking(move || rest.post("/v1/transactions/batch", &body))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?;
                let receipts = answer.json::<BatchResponse>().map_err(|e| e.to_string())?.receipts;
                let mut t = Tally::default();
                for r in &receipts {
                    match r.status.as_str() {
                        "committed" => {
                            t.committed += 1;
                            t.valid += u64::from(r.outcome.as_deref() == Some("valid"));
                        }
                        "rejected" => t.rejected += 1,
                        _ => t.unanswered += 1,
                    }
                }
                t.unanswered += batch.txs.saturating_sub(receipts.len() as u64);
                Ok(t)
            }
            _ => Err("a batch built for the other submission path".into()),
        }
    }
}

/// Counters the progress line reads while the run goes on.
#[derive(Default)]
struct Live {
    sent: AtomicU64,
    committed: AtomicU64,
}

/// What one submitter saw.
#[derive(Default)]
struct Outcome {
    tally: Tally,
    sent_txs: u64,
    late: u64,
    failed_batches: u64,
    first_error: Option<String>,
    /// Each answered batch: when its answer came and its latency in ms.
    answered: Vec<(Instant, f64)>,
    /// Used up its pre-signed batches before the deadline.
    ran_out: bool,
}

impl Outcome {
    /// A batch's result, answered at `answered_at` after `latency`.
    fn record(
        &mut self,
        live: &Live,
        txs: u64,
        result: Result<Tally, String>,
        latency: Duration,
        answered_at: Instant,
    ) {
        match result {
            Ok(t) => {
                live.committed.fetch_add(t.committed, Ordering::Relaxed);
                self.tally.add(t);
                self.answered.push((answered_at, latency.as_secs_f64() * 1000.0));
            }
            Err(e) => {
                self.tally.unanswered += txs;
                self.failed_batches += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }
}

/// Closed loop: the next batch leaves when the previous one is answered, until `deadline`;
/// batches sent before `window` (the warm-up) are not recorded.
async fn closed_loop(sender: Sender, stream: Stream, window: Instant, deadline: Instant, live: Arc<Live>) -> Outcome {
    let mut out = Outcome { ran_out: true, ..Outcome::default() };
    for batch in stream.batches {
        let t0 = Instant::now();
        if t0 >= deadline {
            out.ran_out = false;
            break;
        }
        let txs = batch.txs;
        let result = sender.send(stream.chain, batch).await;
        if t0 >= window {
            out.sent_txs += txs;
            live.sent.fetch_add(txs, Ordering::Relaxed);
            out.record(&live, txs, result, t0.elapsed(), Instant::now());
        }
    }
    out
}

/// Open loop: batch k leaves at `first + k × interval` whatever became of the earlier ones, with
/// at most `max_in_flight` outstanding. A batch's latency runs from its scheduled time, so a
/// batch that waited for a free slot carries its wait (no coordinated omission). Batches
/// scheduled before `window` (the warm-up) are sent and not recorded.
#[allow(clippy::too_many_arguments)]
async fn open_loop(
    sender: Sender,
    stream: Stream,
    first: Instant,
    interval: Duration,
    window: Instant,
    deadline: Instant,
    max_in_flight: usize,
    live: Arc<Live>,
) -> Outcome {
    let slots = Arc::new(Semaphore::new(max_in_flight));
    let mut out = Outcome::default();
    let mut tasks = Vec::new();
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
        let measured = at >= window;
        if measured && Instant::now().duration_since(at) > LATE_AFTER {
            out.late += 1;
        }
        let txs = batch.txs;
        if measured {
            out.sent_txs += txs;
            live.sent.fetch_add(txs, Ordering::Relaxed);
        }
        let (sender, chain) = (sender.clone(), stream.chain);
        let task = tokio::spawn(async move {
            let result = sender.send(chain, batch).await;
            drop(slot);
            (txs, result, at.elapsed(), Instant::now())
        });
        // A warm-up batch is sent and let go: its answer is not waited for.
        if measured {
            tasks.push(task);
        }
    }
    // Awaited after the schedule is sent: each task kept the time its answer came.
    for task in tasks {
        match task.await {
            Ok((txs, result, latency, answered_at)) => out.record(&live, txs, result, latency, answered_at),
            Err(e) => out.record(&live, 0, Err(e.to_string()), Duration::ZERO, Instant::now()),
        }
    }
    out
}

/// Closed loop: the send rate per submitter that pre-signed batches are dated for, at least.
/// Above what any submitter here reaches, so a batch's date stays at or behind the clock when it
/// is sent: dated ahead, a use would reach the chain before the grant it uses begins
/// (`not_before` is the grant's date) and be recorded as invalid, more of them the faster the
/// chain (at 500 tx/s per submitter, 8–18% of a 7,000 tx/s run).
const NOMINAL_TX_PER_SECOND_PER_SUBMITTER: f64 = 2000.0;

/// Closed loop: a chain's committed rate that its submitters' batches are dated and signed for,
/// at least: above what one three-replica chain commits on the CI-class machines (12,000–15,500
/// tx/s, and a run of 15,249 on 2026-12-04), so that its submitters, each sending more, still
/// date their batches behind the clock and still have enough for the whole run.
const NOMINAL_TX_PER_SECOND_PER_CHAIN: f64 = 20_000.0;

/// Closed loop: the rate one of `clients` submitters of a chain is dated and signed for.
fn nominal_rate_per_submitter(clients: usize) -> f64 {
    NOMINAL_TX_PER_SECOND_PER_SUBMITTER.max(NOMINAL_TX_PER_SECOND_PER_CHAIN / clients.max(1) as f64)
}

/// Closed loop without `--txs-per-client`: enough pre-signed transactions for `duration` seconds
/// at [`nominal_rate_per_submitter`] (a chain's 8 submitters get 2,500 tx/s each, 4 get 5,000; a
/// faster machine sends more, and then needs `--txs-per-client`), so that a run lasts as long as
/// asked; at most [`MAX_PRESIGNED`] over all `chains × clients` submitters, whose signing takes
/// time and memory before the run; at least [`MIN_PRESIGNED_PER_SUBMITTER`].
fn closed_loop_txs_per_client(duration: u64, chains: u32, clients: usize) -> usize {
    let for_duration = (duration as f64 * nominal_rate_per_submitter(clients)).ceil() as usize;
    let submitters = chains as usize * clients;
    for_duration.min(MAX_PRESIGNED / submitters.max(1)).max(MIN_PRESIGNED_PER_SUBMITTER)
}

/// Pre-signed transactions over all submitters at most, unless `--txs-per-client` says more:
/// they are all signed, and held in memory, before the timed window.
const MAX_PRESIGNED: usize = 2_000_000;

/// Pre-signed transactions per submitter at least, unless `--txs-per-client` says fewer.
const MIN_PRESIGNED_PER_SUBMITTER: usize = 40_000;

/// Sign every stream's transactions (one thread per stream) and cut them into batches. Each
/// batch is dated (its `valid_until`, grant windows) as if signed when it is sent, as a client
/// signs just before sending: at its slot of the open-loop schedule (`interval` apart), or at
/// [`nominal_rate_per_submitter`] in the closed loop. Transaction ids start with
/// `valid_until`, so this also gives the chain's tx index the time-ordered ids real clients send.
fn presign(args: &Args, per_stream: usize, interval: Option<Duration>) -> anyhow::Result<Vec<Stream>> {
    let consortium = Profile::sample().into_dev_consortium()?;
    let streams = args.chains as usize * args.clients;
    eprintln!(
        "signing {} transactions ahead ({streams} streams of {per_stream}, {} chain(s))…",
        streams * per_stream,
        args.chains
    );
    let start = std::time::Instant::now();
    let t = now();
    let (batch, json) = (args.batch, args.via_router);
    let step =
        interval.unwrap_or_else(|| Duration::from_secs_f64(batch as f64 / nominal_rate_per_submitter(args.clients)));
    let out = std::thread::scope(|s| {
        let handles: Vec<_> = (0..streams)
            .map(|i| {
                let consortium = consortium.clone();
                let chain = 1 + (i / args.clients) as u32;
                s.spawn(move || {
                    // The workload's validity windows (five minutes) outlast signing, start-up and run.
                    let mut w = Workload::new(consortium, ChainId(chain), 1000 + i as u64, 50_000);
                    let batches = (0..per_stream.div_ceil(batch))
                        .map(|k| {
                            let n = batch.min(per_stream - k * batch);
                            let at = t.plus_ms(step.mul_f64(k as f64).as_millis() as u64);
                            let c: Vec<Vec<u8>> = w.batch(n, at).iter().map(Encode::to_bytes).collect();
                            Batch {
                                txs: c.len() as u64,
                                body: if json {
                                    let hexes: Vec<String> = c.iter().map(hex::encode).collect();
                                    Body::Json(serde_json::json!({ "txs": hexes, "wait": true }).to_string())
                                } else {
                                    Body::Raw(c)
                                },
                            }
                        })
                        .collect();
                    Stream { chain, batches }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("signing thread")).collect()
    });
    eprintln!("signed in {:.1} s", start.elapsed().as_secs_f64());
    Ok(out)
}

/// Register the chains and the shard map on the meta chain, start the router and wait until it
/// serves.
async fn start_router(cluster: &mut Cluster, client: &Client) -> anyhow::Result<RestClient> {
    let consortium = Profile::sample().into_dev_consortium()?;
    let infos: Vec<_> = cluster.chains().into_iter().map(|c| cluster.chain_info(c)).collect();
    let txs = governance::bootstrap(&consortium, &infos).map_err(anyhow::Error::msg)?;
    let receipts = client
        .submit(governance::META.0, txs.iter().map(Encode::to_bytes).collect(), SUBMIT_DEADLINE)
        .await
        .context("bootstrapping the meta chain")?;
    for r in receipts {
        anyhow::ensure!(matches!(r.status, ReceiptStatus::Committed { outcome: 0, .. }), "bootstrap: {r:?}");
    }
    let http = cluster.start_router_with(ROUTER, free_http()?, ROUTER_LIMITS);
    let rest = RestClient::new(&format!("http://{http}"), SUBMIT_DEADLINE * 2);
    let probe = rest.clone();
    let healthy = tokio::task::spawn_blocking(move || wait_healthy(&probe, Duration::from_secs(60))).await?;
    if let Err(e) = healthy {
        anyhow::bail!("the router did not become healthy: {e}\n{}", cluster.router_log(ROUTER));
    }
    Ok(rest)
}

pub fn run(mut args: Args) -> anyhow::Result<ExitCode> {
    if let Some(file) = args.gate.clone() {
        return super::gate::run(&file, args.update_floor, &mut args);
    }
    if !args.curve.is_empty() {
        return curve(&mut args);
    }
    let report = measure(&args)?;
    print_report(&report);
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// One point of the scale curve.
#[derive(Debug, Serialize)]
struct Point {
    chains: u32,
    tps: f64,
    per_chain_tps: f64,
    p99_ms: f64,
    cpu_us_per_tx: f64,
    other_cpu_s: f64,
}

fn curve(args: &mut Args) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.curve.iter().all(|c| *c >= 1), "--curve takes chain counts of at least 1");
    let mut points = Vec::new();
    for &chains in &args.curve.clone() {
        args.chains = chains;
        eprintln!("== {chains} chain(s)");
        let r = measure(args)?;
        print_report(&r);
        points.push(Point {
            chains,
            tps: r.tps,
            per_chain_tps: r.tps / f64::from(chains),
            p99_ms: r.p99_ms,
            cpu_us_per_tx: r.cpu_us_per_tx,
            other_cpu_s: r.other_cpu_s,
        });
    }
    let base = points[0].tps / f64::from(points[0].chains);
    println!("chains  aggregate tx/s  per chain  vs {} chain(s) x n  p99 ms  CPU µs/tx", points[0].chains);
    for p in &points {
        println!(
            "{:>6}  {:>14.0}  {:>9.0}  {:>17.0}%  {:>6.0}  {:>9.1}",
            p.chains,
            p.tps,
            p.per_chain_tps,
            100.0 * p.tps / (base * f64::from(p.chains)),
            p.p99_ms,
            p.cpu_us_per_tx
        );
    }
    if let Some(path) = &args.svg {
        std::fs::write(path, curve_svg(&points, args.replicas))
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    if args.json {
        println!("{}", serde_json::json!({ "replicas": args.replicas, "curve": points }));
    }
    Ok(ExitCode::SUCCESS)
}

/// A small self-contained SVG line plot of chains → aggregate committed tx/s.
fn curve_svg(points: &[Point], replicas: u64) -> String {
    let (w, h, left, bottom, top, right) = (560.0, 320.0, 70.0, 50.0, 30.0, 20.0);
    let max_c = points.iter().map(|p| p.chains).max().unwrap_or(1) as f64;
    let max_t = points.iter().map(|p| p.tps).fold(1.0, f64::max) * 1.15;
    let x = |c: f64| left + (c / max_c) * (w - left - right);
    let y = |t: f64| h - bottom - (t / max_t) * (h - bottom - top);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" \
         font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"18\" text-anchor=\"middle\">Aggregate committed tx/s by chains ({replicas} replicas \
         each, one machine)</text>\n",
        w / 2.0
    );
    svg += &format!(
        "<line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n<line x1=\"{left}\" y1=\"{top}\" \
         x2=\"{left}\" y2=\"{}\" stroke=\"black\"/>\n",
        h - bottom,
        w - right,
        h - bottom,
        h - bottom
    );
    for i in 0..=4 {
        let t = max_t * f64::from(i) / 4.0;
        svg += &format!("<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{:.0}</text>\n", left - 6.0, y(t) + 4.0, t);
    }
    for p in points {
        svg += &format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
            x(f64::from(p.chains)),
            h - bottom + 18.0,
            p.chains
        );
    }
    svg += &format!("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">chains</text>\n", w / 2.0, h - 10.0);
    let path: Vec<String> = points.iter().map(|p| format!("{:.1},{:.1}", x(f64::from(p.chains)), y(p.tps))).collect();
    svg += &format!("<polyline points=\"{}\" fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\"/>\n", path.join(" "));
    for p in points {
        svg += &format!(
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"#1f77b4\"/><text x=\"{:.1}\" y=\"{:.1}\" \
             text-anchor=\"middle\">{:.0}</text>\n",
            x(f64::from(p.chains)),
            y(p.tps),
            x(f64::from(p.chains)),
            y(p.tps) - 8.0,
            p.tps
        );
    }
    svg + "</svg>\n"
}

/// Settings the release gate takes from its file.
pub(crate) struct GateSettings {
    /// Replicas.
    pub replicas: u64,
    /// Seconds of load.
    pub duration: u64,
    /// Submitters.
    pub clients: usize,
    /// Pre-signed transactions per submitter.
    pub txs_per_client: usize,
}

impl Args {
    /// Apply the gate's settings: one chain, closed loop, direct QUIC.
    pub(crate) fn for_gate(&mut self, g: &GateSettings) {
        self.chains = 1;
        self.replicas = g.replicas;
        self.duration = g.duration;
        self.clients = g.clients;
        self.txs_per_client = Some(g.txs_per_client);
        self.rate = Rate::Max;
        // As the floor was measured: from the first batch.
        self.warmup = 0;
        self.via_router = false;
        self.relays = false;
        self.keep = None;
    }
}

/// CPU-seconds used so far: by the node processes, the router, this process and the machine.
struct CpuMark {
    nodes: f64,
    router: f64,
    own: f64,
    machine: f64,
}

impl CpuMark {
    fn take(node_pids: &[u32], router_pids: &[u32]) -> CpuMark {
        let cpu = |pids: &[u32]| pids.iter().filter_map(|p| elchain_sim::cpu::process_seconds(*p)).sum::<f64>();
        CpuMark {
            nodes: cpu(node_pids),
            router: cpu(router_pids),
            own: cpu(&[std::process::id()]),
            machine: machine_busy_seconds(elchain_sim::cpu::clock_ticks()),
        }
    }
}

/// Run the bench once; committed throughput, latency and CPU.
pub(crate) fn measure(args: &Args) -> anyhow::Result<Report> {
    anyhow::ensure!(
        args.replicas >= 1 && args.clients >= 1 && args.batch >= 1 && args.max_in_flight >= 1,
        "replicas, clients, batch and max-in-flight must be >= 1"
    );
    anyhow::ensure!(
        args.chains >= 1 && u64::from(args.chains) * args.replicas < 900,
        "chains x replicas must be between 1 and 899 (node ids 900 and up are the load generator and the router)"
    );
    anyhow::ensure!(
        !(args.via_router && args.chains > 1),
        "--via-router runs one licence chain: the generated issuances name their chain, and with several \
         chains the router's shard map would place most of them elsewhere (409 misplaced)"
    );
    let submitters = args.chains as usize * args.clients;
    // The load runs for the warm-up and then the timed window.
    let load_secs = args.warmup + args.duration;
    // Open loop: each submitter sends `batch` every `interval`, and exactly that much is signed.
    let (per_stream, interval) = match args.rate {
        Rate::Max => (
            args.txs_per_client.unwrap_or_else(|| closed_loop_txs_per_client(load_secs, args.chains, args.clients)),
            None,
        ),
        Rate::PerSecond(r) => {
            let per_submitter = r / submitters as f64;
            let interval = Duration::from_secs_f64(args.batch as f64 / per_submitter);
            let batches = (load_secs as f64 / interval.as_secs_f64()).ceil() as usize + 1;
            (batches * args.batch, Some(interval))
        }
    };
    let streams = presign(args, per_stream, interval)?;

    let bin = std::env::current_exe().context("cannot find the elchain binary")?;
    let dir = match &args.keep {
        Some(p) => {
            std::fs::create_dir_all(p)?;
            anyhow::ensure!(std::fs::read_dir(p)?.next().is_none(), "{} is not empty", p.display());
            ClusterDir::Kept(p.clone())
        }
        None => ClusterDir::Temporary(tempfile::tempdir()?),
    };
    let settings = Settings {
        verify_threads: 0,
        block_txs: args.block_size,
        block_wait_ms: args.block_wait_ms,
        relays: args.relays,
        chains: 1,
        meta: args.via_router,
        apply_delay_ms: args.inject_apply_delay_ms,
        state_sync_ms: args.state_sync_ms,
        state_fsync_ms: args.state_fsync_ms,
        metrics: true,
        ..Settings::default()
    };
    // Chain 1 (and the meta chain with --via-router) on nodes 1..=R, chain c on its own R nodes.
    let mut cluster = Cluster::start_in(bin, dir, args.replicas, settings);
    for c in 2..=args.chains {
        let ids: Vec<u64> = (1..=args.replicas).map(|i| u64::from(c - 1) * args.replicas + i).collect();
        cluster.add_chain(c, &ids);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let report = runtime.block_on(async {
        let client = cluster.client().await;
        for c in cluster.chains() {
            let ids = cluster.nodes.values().filter(|n| n.chains.contains(&c)).map(|n| n.id).collect();
            client.set_replicas(c, ids);
        }
        for c in cluster.chains() {
            client.wait_leader(c, Duration::from_secs(60)).await.with_context(|| format!("chain {c} has no leader"))?;
        }
        let sender = if args.via_router {
            Sender::Rest(start_router(&mut cluster, &client).await?)
        } else {
            Sender::Quic(client.clone())
        };
        let node_pids: Vec<u32> = cluster.nodes.keys().filter_map(|id| cluster.pid(*id)).collect();
        let router_pids: Vec<u32> = cluster.router_pid(ROUTER).into_iter().collect();

        let bar = ProgressBar::new(load_secs);
        bar.set_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} s  {msg}").expect("template"),
        );
        let live = Arc::new(Live::default());
        let started = Instant::now();
        let window = started + Duration::from_secs(args.warmup);
        let deadline = window + Duration::from_secs(args.duration);
        // The CPU counters as the timed window opens.
        let at_window = {
            let (node_pids, router_pids) = (node_pids.clone(), router_pids.clone());
            tokio::spawn(async move {
                tokio::time::sleep_until(window).await;
                CpuMark::take(&node_pids, &router_pids)
            })
        };
        let mut tasks = Vec::new();
        for (i, stream) in streams.into_iter().enumerate() {
            let (sender, live) = (sender.clone(), live.clone());
            let chain = stream.chain;
            let task = match interval {
                None => tokio::spawn(closed_loop(sender, stream, window, deadline, live)),
                Some(interval) => {
                    // Stagger the submitters evenly over one interval.
                    let first = started + interval.mul_f64(i as f64 / submitters as f64);
                    let max_in_flight = args.max_in_flight;
                    tokio::spawn(open_loop(sender, stream, first, interval, window, deadline, max_in_flight, live))
                }
            };
            tasks.push((chain, task));
        }
        while tasks.iter().any(|(_, t)| !t.is_finished()) {
            tokio::time::sleep(Duration::from_millis(200)).await;
            bar.set_position((started.elapsed().as_secs()).min(load_secs));
            let now = Instant::now();
            if now < window {
                bar.set_message("warming up (not measured)");
                continue;
            }
            let secs = now.duration_since(window).as_secs_f64().max(0.001);
            bar.set_message(format!(
                "{:.0} tx/s committed, {:.0} tx/s offered",
                live.committed.load(Ordering::Relaxed) as f64 / secs,
                live.sent.load(Ordering::Relaxed) as f64 / secs.min(args.duration as f64)
            ));
        }
        let elapsed = window.elapsed().as_secs_f64();
        let start = at_window.await?;
        let end = CpuMark::take(&node_pids, &router_pids);
        let (node_cpu, router_cpu, own_cpu) = (end.nodes - start.nodes, end.router - start.router, end.own - start.own);
        let other_cpu = (end.machine - start.machine - node_cpu - router_cpu - own_cpu).max(0.0);
        bar.finish_and_clear();
        let mut total = Outcome::default();
        let mut per_chain = vec![0u64; args.chains as usize];
        for (chain, t) in tasks {
            let o = t.await?;
            per_chain[chain as usize - 1] += o.tally.committed;
            total.tally.add(o.tally);
            total.sent_txs += o.sent_txs;
            total.late += o.late;
            total.failed_batches += o.failed_batches;
            if total.first_error.is_none() {
                total.first_error = o.first_error;
            }
            total.answered.extend(o.answered);
            total.ran_out |= o.ran_out;
        }
        client.close().await;
        if let Some(e) = &total.first_error {
            eprintln!("warning: {} batch(es) got no receipts; the first error: {e}", total.failed_batches);
        }
        if total.ran_out {
            eprintln!("warning: a submitter used up its pre-signed transactions early; raise --txs-per-client");
        }
        anyhow::ensure!(
            total.tally.committed > 0,
            "nothing was committed ({} refused at admission, {} unanswered)",
            total.tally.rejected,
            total.tally.unanswered
        );
        // Sending lasted the whole duration unless a submitter ran out earlier.
        let sending = if total.ran_out { elapsed.min(args.duration as f64) } else { args.duration as f64 };
        let timeline = if args.timeline { timeline(window, &total.answered) } else { Vec::new() };
        let mut lat: Vec<f64> = total.answered.iter().map(|(_, ms)| *ms).collect();
        lat.sort_by(f64::total_cmp);
        let lat = &lat;
        let committed = total.tally.committed;
        let per_tx = |secs: f64| secs * 1e6 / committed as f64;
        anyhow::Ok(Report {
            tps: committed as f64 / elapsed,
            offered_tps: total.sent_txs as f64 / sending,
            warmup_s: args.warmup,
            p50_ms: percentile(lat, 0.5),
            p90_ms: percentile(lat, 0.9),
            p99_ms: percentile(lat, 0.99),
            cpu_us_per_tx: per_tx(node_cpu + router_cpu),
            router_cpu_us_per_tx: per_tx(router_cpu),
            load_cpu_us_per_tx: per_tx(own_cpu),
            other_cpu_s: other_cpu,
            committed,
            valid: total.tally.valid,
            rejected: total.tally.rejected,
            unanswered: total.tally.unanswered,
            late_batches: total.late,
            per_chain_tps: per_chain.iter().map(|c| *c as f64 / elapsed).collect(),
            chains: args.chains,
            replicas: args.replicas,
            rate: args.rate,
            via_router: args.via_router,
            relays: args.relays,
            seconds: elapsed,
            clients: args.clients,
            batch: args.batch,
            block_size: args.block_size,
            block_wait_ms: args.block_wait_ms,
            state_sync_ms: args.state_sync_ms,
            durability: format!(
                "raft log fsync per append; chain store written every {} ms, fsynced every {} ms \
                 (state_sync_ms, state_fsync_ms)",
                args.state_sync_ms,
                args.state_fsync_ms.max(args.state_sync_ms)
            ),
            mode: if interval.is_some() { "open loop" } else { "closed loop" },
            timeline,
        })
    });
    for e in cluster.try_stop_all() {
        eprintln!("{e}");
    }
    report
}

/// In a closed loop every submitter keeps one batch in flight, so by Little's law a batch's
/// latency is about the transactions in flight divided by the rate that commits them: the
/// transactions in flight per chain and that latency in milliseconds.
fn closed_loop_queue(r: &Report) -> Option<(usize, f64)> {
    let per_chain_tps = r.tps / r.chains.max(1) as f64;
    if !matches!(r.rate, Rate::Max) || per_chain_tps <= 0.0 {
        return None;
    }
    let in_flight = r.clients * r.batch;
    Some((in_flight, in_flight as f64 / per_chain_tps * 1000.0))
}

pub(crate) fn print_report(r: &Report) {
    let rate = match r.rate {
        Rate::Max => "as fast as commits return".to_string(),
        Rate::PerSecond(n) => format!("{n} tx/s offered"),
    };
    println!(
        "{} chain(s) x {} replica(s){}{}, {} clients per chain x batches of {}, {} ({rate}), blocks of up to {} \
         or {} ms, {}",
        r.chains,
        r.replicas,
        if r.via_router { ", through router HTTP batch submit" } else { ", QUIC to the leader" },
        if r.relays { ", behind UDP relays" } else { "" },
        r.clients,
        r.batch,
        r.mode,
        r.block_size,
        r.block_wait_ms,
        r.durability
    );
    println!(
        "  {:.0} committed tx/s over {:.1} s{}; {:.0} tx/s offered",
        r.tps,
        r.seconds,
        if r.warmup_s > 0 { format!(", after {} s of the same load not measured", r.warmup_s) } else { String::new() },
        r.offered_tps
    );
    if r.per_chain_tps.len() > 1 {
        let each: Vec<String> = r.per_chain_tps.iter().map(|t| format!("{t:.0}")).collect();
        println!("  per chain: {} tx/s", each.join(" / "));
    }
    println!(
        "  submit-to-commit latency per batch: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms",
        r.p50_ms, r.p90_ms, r.p99_ms
    );
    if let Some((in_flight, ms)) = closed_loop_queue(r) {
        println!(
            "  closed loop: {in_flight} transactions in flight per chain, so a batch waits about {ms:.0} ms behind \
             them at this rate (fewer --clients or a smaller --batch trade throughput for latency)"
        );
    }
    println!(
        "  {} committed ({} valid), {} refused at admission, {} unanswered; {} late batch(es)",
        r.committed, r.valid, r.rejected, r.unanswered, r.late_batches
    );
    println!(
        "  CPU per committed tx: {:.1} µs in the cluster (all replicas{}), {:.1} µs in the load generator",
        r.cpu_us_per_tx,
        if r.via_router { format!(" and the router: {:.1} µs", r.router_cpu_us_per_tx) } else { String::new() },
        r.load_cpu_us_per_tx
    );
    println!("  other processes on this machine used {:.1} CPU-seconds meanwhile", r.other_cpu_s);
    if !r.timeline.is_empty() {
        println!("  second  batches  p50 ms  p99 ms  max ms");
        for s in &r.timeline {
            println!("  {:>6}  {:>7}  {:>6.0}  {:>6.0}  {:>6.0}", s.second, s.batches, s.p50_ms, s.p99_ms, s.max_ms);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(rate: Rate, chains: u32, tps: f64) -> Report {
        Report {
            tps,
            offered_tps: tps,
            warmup_s: 0,
            p50_ms: 0.0,
            p90_ms: 0.0,
            p99_ms: 0.0,
            cpu_us_per_tx: 0.0,
            router_cpu_us_per_tx: 0.0,
            load_cpu_us_per_tx: 0.0,
            other_cpu_s: 0.0,
            committed: 0,
            valid: 0,
            rejected: 0,
            unanswered: 0,
            late_batches: 0,
            per_chain_tps: Vec::new(),
            chains,
            replicas: 3,
            rate,
            via_router: false,
            relays: false,
            seconds: 60.0,
            clients: 8,
            batch: 250,
            block_size: 2000,
            block_wait_ms: 10,
            state_sync_ms: 10_000,
            durability: String::new(),
            mode: "closed loop",
            timeline: Vec::new(),
        }
    }

    #[test]
    fn the_closed_loop_names_its_queue_and_the_wait_it_makes() {
        // 8 x 250 in flight at 10,000 tx/s: a batch waits 200 ms behind the other 1,999.
        assert_eq!(closed_loop_queue(&report(Rate::Max, 1, 10_000.0)), Some((2000, 200.0)));
        // Each chain has its own submitters: two chains sharing 20,000 tx/s each hold 2,000.
        assert_eq!(closed_loop_queue(&report(Rate::Max, 2, 20_000.0)), Some((2000, 200.0)));
        // An open loop's queue is whatever its schedule makes; nothing committed says nothing.
        assert_eq!(closed_loop_queue(&report(Rate::PerSecond(10_000.0), 1, 10_000.0)), None);
        assert_eq!(closed_loop_queue(&report(Rate::Max, 1, 0.0)), None);
    }

    #[test]
    fn the_closed_loop_signs_enough_for_the_duration_within_bounds() {
        // The issue's 60-second runs: 8 submitters get 150,000 each, enough for 20,000 tx/s.
        assert_eq!(closed_loop_txs_per_client(60, 1, 8), 150_000);
        // Fewer submitters send more each, and get more: 4 get 300,000, again 20,000 tx/s.
        assert_eq!(closed_loop_txs_per_client(60, 1, 4), 300_000);
        // More submitters each get the floor rate, 2,000 tx/s (one replica, 16 submitters).
        assert_eq!(closed_loop_txs_per_client(60, 1, 16), 120_000);
        // Short runs keep the old floor.
        assert_eq!(closed_loop_txs_per_client(10, 1, 8), MIN_PRESIGNED_PER_SUBMITTER);
        // Many chains share the cap: 4 chains x 8 submitters for 60 s get 62,500 each.
        assert_eq!(closed_loop_txs_per_client(60, 4, 8), MAX_PRESIGNED / 32);
        // But never below the floor (8 chains x 8 submitters), and no division by zero.
        assert_eq!(closed_loop_txs_per_client(60, 8, 8), MIN_PRESIGNED_PER_SUBMITTER);
        assert_eq!(closed_loop_txs_per_client(60, 0, 8), 150_000);
        assert_eq!(closed_loop_txs_per_client(60, 1, 0), MAX_PRESIGNED.min(1_200_000));
    }

    #[test]
    fn fewer_submitters_date_their_batches_for_the_chains_rate() {
        assert_eq!(nominal_rate_per_submitter(8), 2500.0);
        assert_eq!(nominal_rate_per_submitter(4), 5000.0);
        assert_eq!(nominal_rate_per_submitter(1), 20_000.0);
        assert_eq!(nominal_rate_per_submitter(32), 2000.0);
        assert_eq!(nominal_rate_per_submitter(0), 20_000.0);
    }

    #[test]
    fn the_timeline_buckets_batches_by_when_they_were_answered() {
        let started = Instant::now();
        let live = Live::default();
        let mut out = Outcome::default();
        let at = |ms: u64| started + Duration::from_millis(ms);
        // Recorded late (as the open loop does, after the schedule is sent): the answer's own
        // time decides the second, not the time of recording.
        out.record(&live, 1, Ok(Tally::default()), Duration::from_millis(10), at(100));
        out.record(&live, 1, Ok(Tally::default()), Duration::from_millis(30), at(900));
        out.record(&live, 1, Ok(Tally::default()), Duration::from_millis(500), at(2_500));
        out.record(&live, 1, Err("timeout".into()), Duration::ZERO, at(2_600));
        let t = timeline(started, &out.answered);
        let seen: Vec<(u64, usize, f64)> = t.iter().map(|s| (s.second, s.batches, s.max_ms)).collect();
        assert_eq!(seen, vec![(1, 2, 30.0), (2, 0, 0.0), (3, 1, 500.0)]);
        assert_eq!(out.failed_batches, 1);
    }
}
