//! Scenario files: the cluster to start, the load to offer and the faults to inject, in TOML.
//!
//! ```toml
//! name = "leader-failover"              # optional: defaults to the file's stem
//! description = "Kill chain 1's leader under load, bring it back."
//!
//! [cluster]
//! chains = 1                            # licence chains 1 ..= chains, served by every replica
//! replicas = 3                          # node processes 1 ..= replicas
//! routers = 0                           # router processes 1 ..= routers; with any, the load
//!                                       # goes through their REST batch endpoint, not QUIC
//! block_txs = 500                       # close a block at this many transactions
//! block_wait_ms = 10                    # or after this many milliseconds
//! snapshot_every = 1000                 # Raft snapshot every this many blocks
//! keep_logs = 500                       # blocks of log kept after a snapshot
//!
//! [load]
//! rate = 500                            # offered tx/s over the initial chains (open loop), or "max"
//! # ramp = [{ at_s = 0, rate = 200 }, { at_s = 10, rate = 1500 }]
//! #                                     # instead of `rate`: tx/s rising or falling linearly
//! #                                     # between the points, the last one held to the end
//! duration_s = 15
//! warmup_s = 0                          # first seconds of the load left out of tx/s, latency
//!                                       # and CPU (the history check covers them)
//! population = 2000                     # holders per workload stream
//! seed = 7
//! submitters = 4                        # workload streams per chain
//! batch = 50                            # transactions per submission
//! presign = 10000                       # rate = "max": transactions signed ahead per submitter
//! mix = { issue = 150, grant = 250, use = 540, revoke_grant = 30, status = 15, renew = 12, revoke = 3 }
//!
//! [[faults]]
//! at_s = 5                              # seconds after the load starts
//! action = "kill_leader"
//! chain = 1
//!
//! [[faults]]
//! at_s = 10
//! action = "restart"                    # without `node`: every node killed so far
//! ```
//!
//! `mix` weighs the operations each workload stream draws from (relative weights; an absent key
//! weighs 0, an absent `mix` is the service-centre pattern above, which is [`Mix::default`]):
//!
//! | `mix` key | operation |
//! |---|---|
//! | `issue` | issue a licence of any type, full fields, issuer and endorsers sign |
//! | `grant` | a holder grants a department the fields a service item needs (items Zipf-popular) |
//! | `use` | a department uses a grant at a service window (the trace before any data) |
//! | `revoke_grant` | a holder withdraws a grant |
//! | `status` | an issuer suspends a licence, or reinstates a suspended one |
//! | `renew` | an issuer and endorsers extend a licence of a renewable type to a full term |
//! | `revoke` | an issuer revokes a licence for good (keep it rare) |
//! | `short_grants` | not a weight: the share, 0 to 1 (default 0.05), of grants that end soon (10–60 s windows or 1–3 uses) and of issuances 10–60 s before their end |
//!
//! The fault actions, the keys each takes (`?`: optional) and what they do:
//!
//! | action | keys | effect |
//! |---|---|---|
//! | `kill` | `node` | kill -9 the node |
//! | `restart` | `node?` | start it again from its disk; without `node`, every node killed so far |
//! | `kill_leader` | `chain?` | kill -9 whichever node leads `chain` (default 1) |
//! | `partition` | `node` | cut it off from every other node, the routers and the load generator |
//! | `heal` | `node?` | reconnect it; without `node`, every cut-off node (network delays stay) |
//! | `slow_net` | `node`, `delay_ms` | delay every datagram to and from the node by `delay_ms`, each way |
//! | `fast_net` | `node?` | remove that delay; without `node`, every delay |
//! | `slow_disk` | `node`, `delay_ms` | **restart** the node (SIGTERM, start) with every applied block taking `delay_ms` longer |
//! | `fast_disk` | `node?` | **restart** it without that delay; without `node`, every slowed node |
//! | `kill_router` | `router` | kill -9 router `router` (1 ..= `cluster.routers`) |
//! | `restart_router` | `router?` | start it again; without `router`, every router killed so far |
//! | `add_chain` | `chain` | scale out: start `replicas` new nodes serving the new licence chain, register it on the meta chain, and load it too from then on |
//! | `add_replica` | `chain` | start a new node serving `chain` and make it a voter (learner first, caught up, then voter) |
//! | `remove_replica` | `node`, `chain` | take the node out of `chain`'s voters (it keeps serving its other chains) |
//!
//! `heal` only reconnects; `fast_net` is what removes a delay (and settling after the load removes
//! every fault). The nodes' Raft RPCs time out after one heartbeat (100 ms): a `slow_net` whose
//! round trip (2 × `delay_ms`) reaches that stalls replication to the node, and the whole chain
//! while the node leads it. New nodes take the next ids, in the order of the faults that start
//! them: `add_chain` starts `replicas` of them (the first chain added to a 3-replica cluster runs
//! on nodes 4, 5, 6), `add_replica` one. `add_chain` hands the new chain the top `1/(n+1)` of
//! the shard map's buckets (n: licence chains before it), and gives it `rate / chains` tx/s of its
//! own pre-signed load: `rate` is what the initial chains are offered, each added chain adds its
//! share. With routers or `add_chain` the nodes also serve the meta chain 0, which the run
//! bootstraps with admin-signed governance and checks like the others.
//!
//! Unknown keys are errors, so a typo cannot silently change a run.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::workload::Mix;

/// Node ids from 900 up are the load generator's and routers' certificates.
const MAX_REPLICAS: u64 = 899;

/// Most router processes a scenario may start (certificate ids 901 ..= 900 + routers).
const MAX_ROUTERS: u32 = 16;

/// Most licence chains, added ones included.
const MAX_CHAINS: u32 = 64;

/// Longest `delay_ms` of `slow_net` and `slow_disk`.
const MAX_DELAY_MS: u64 = 10_000;

/// Why a scenario file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file cannot be read.
    #[error("cannot read scenario {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not have the scenario's shape.
    #[error("scenario {path} is malformed: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What TOML or serde found (with the line and column).
        source: Box<toml::de::Error>,
    },
    /// A value is out of range or the parts do not fit together.
    #[error("scenario {name}: `{field}` {problem}")]
    Invalid {
        /// The scenario's name.
        name: String,
        /// The offending key, e.g. `faults[2].node`.
        field: String,
        /// What is wrong with it and what would be accepted.
        problem: String,
    },
}

/// A whole scenario.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Name used in reports; defaults to the file's stem.
    #[serde(default)]
    pub name: String,
    /// What the scenario shows, for people.
    #[serde(default)]
    pub description: String,
    /// The cluster to start.
    pub cluster: ClusterSpec,
    /// The load to offer.
    pub load: LoadSpec,
    /// Faults, applied at their times (in any order in the file).
    #[serde(default)]
    pub faults: Vec<Fault>,
}

/// `[cluster]`: the local cluster the run starts.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    /// Licence chains 1 ..= `chains`; every replica process serves all of them.
    #[serde(default = "one")]
    pub chains: u32,
    /// Replica processes (node ids 1 ..= `replicas`).
    #[serde(default = "three")]
    pub replicas: u64,
    /// Router processes 1 ..= `routers`. With any, the load goes through their REST batch
    /// endpoint (round-robin, failing over) instead of straight to the chains over QUIC.
    #[serde(default)]
    pub routers: u32,
    /// Close a block at this many transactions.
    #[serde(default = "default_block_txs")]
    pub block_txs: usize,
    /// Or after this many milliseconds.
    #[serde(default = "default_block_wait_ms")]
    pub block_wait_ms: u64,
    /// Build a Raft snapshot every this many log entries (blocks).
    #[serde(default = "default_snapshot_every")]
    pub snapshot_every: u64,
    /// Log entries kept after a snapshot: a replica further behind is caught up by snapshot,
    /// a closer one by appending the entries it misses.
    #[serde(default = "default_keep_logs")]
    pub keep_logs: u64,
}

/// `[load]`: what the load generator offers.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(try_from = "LoadFields", into = "LoadFields")]
pub struct LoadSpec {
    /// Offered transactions per second over the initial chains, or `"max"` (closed loop). With
    /// a [`ramp`](Self::ramp), its highest rate.
    pub rate: Rate,
    /// Open loop with a rate that changes over the run: (seconds after the load starts, tx/s)
    /// points, linear in between, the last rate held to the end. Empty: `rate` throughout.
    pub ramp: Vec<RampPoint>,
    /// Seconds of load.
    pub duration_s: f64,
    /// Seconds at the start of the load left out of the figures (committed tx/s, latency, node
    /// CPU per transaction): a new cluster's first seconds (log files growing from nothing,
    /// memory touched for the first time, connections opening) are not its steady state. Part
    /// of `duration_s`; the history check covers the whole load. 0: measure from the start.
    pub warmup_s: f64,
    /// Holders per workload stream.
    pub population: u32,
    /// Seed of the workload streams (stream `i` of chain `c` uses a seed derived from it).
    pub seed: u64,
    /// Concurrent submitters per chain, each with its own workload stream.
    pub submitters: usize,
    /// Transactions per submission.
    pub batch: usize,
    /// With `rate = "max"`: transactions signed ahead per submitter (it stops when they run out).
    pub presign: usize,
    /// Relative weights of the operations; the service-centre mix when absent.
    pub mix: Option<MixSpec>,
}

/// One point of `[load] ramp`.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RampPoint {
    /// Seconds after the load starts.
    pub at_s: f64,
    /// Offered tx/s over the initial chains at that moment.
    pub rate: f64,
}

/// `[load]` as written: `rate` and `ramp` are alternatives.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct LoadFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rate: Option<Rate>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    ramp: Vec<RampPoint>,
    duration_s: f64,
    #[serde(default, skip_serializing_if = "is_zero")]
    warmup_s: f64,
    #[serde(default = "default_population")]
    population: u32,
    #[serde(default = "one_u64")]
    seed: u64,
    #[serde(default = "default_submitters")]
    submitters: usize,
    #[serde(default = "default_batch")]
    batch: usize,
    #[serde(default = "default_max_presign")]
    presign: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mix: Option<MixSpec>,
}

impl TryFrom<LoadFields> for LoadSpec {
    type Error = String;

    fn try_from(f: LoadFields) -> Result<LoadSpec, String> {
        let rate = match (f.rate, f.ramp.is_empty()) {
            (Some(rate), true) => rate,
            (Some(_), false) => return Err("[load] takes `rate` or `ramp`, not both".into()),
            (None, true) => return Err("[load] needs `rate` (tx/s or \"max\") or `ramp`".into()),
            (None, false) => {
                let peak = f.ramp.iter().map(|p| p.rate).fold(0.0, f64::max);
                if !(peak.is_finite() && peak > 0.0) {
                    return Err("[load] `ramp` needs at least one point with a positive, finite rate".into());
                }
                Rate::PerSecond(peak)
            }
        };
        Ok(LoadSpec {
            rate,
            ramp: f.ramp,
            duration_s: f.duration_s,
            warmup_s: f.warmup_s,
            population: f.population,
            seed: f.seed,
            submitters: f.submitters,
            batch: f.batch,
            presign: f.presign,
            mix: f.mix,
        })
    }
}

impl From<LoadSpec> for LoadFields {
    fn from(l: LoadSpec) -> LoadFields {
        LoadFields {
            rate: l.ramp.is_empty().then_some(l.rate),
            ramp: l.ramp,
            duration_s: l.duration_s,
            warmup_s: l.warmup_s,
            population: l.population,
            seed: l.seed,
            submitters: l.submitters,
            batch: l.batch,
            presign: l.presign,
            mix: l.mix,
        }
    }
}

impl LoadSpec {
    /// The offered rate over the initial chains as (seconds, tx/s) points, linear in between and
    /// held after the last; `None` for a closed loop (`rate = "max"`).
    pub fn rate_points(&self) -> Option<Vec<(f64, f64)>> {
        match (self.rate, self.ramp.is_empty()) {
            (Rate::Max, _) => None,
            (Rate::PerSecond(r), true) => Some(vec![(0.0, r)]),
            (Rate::PerSecond(_), false) => Some(self.ramp.iter().map(|p| (p.at_s, p.rate)).collect()),
        }
    }
}

/// `mix = { … }`: relative weights of the generated operations (absent keys weigh 0), and the
/// share of short grants.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MixSpec {
    /// Licence issuance.
    #[serde(default)]
    pub issue: u32,
    /// Grants by holders.
    #[serde(default)]
    pub grant: u32,
    /// Uses by departments.
    #[serde(default, rename = "use")]
    pub use_: u32,
    /// Grant revocations.
    #[serde(default)]
    pub revoke_grant: u32,
    /// Suspensions and reinstatements.
    #[serde(default)]
    pub status: u32,
    /// Renewals of licences of renewable types.
    #[serde(default)]
    pub renew: u32,
    /// Licence revocations, for good.
    #[serde(default)]
    pub revoke: u32,
    /// Not a weight: the share (0 ..= 1) of grants that run out soon and of issuances near their
    /// end; the service-centre share ([`Mix::default`]) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short_grants: Option<f64>,
}

impl From<MixSpec> for Mix {
    fn from(m: MixSpec) -> Mix {
        Mix {
            issue: m.issue,
            grant: m.grant,
            use_: m.use_,
            revoke_grant: m.revoke_grant,
            status: m.status,
            renew: m.renew,
            revoke: m.revoke,
            short_grants: m.short_grants.unwrap_or(Mix::default().short_grants),
        }
    }
}

/// How fast the load is offered.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(try_from = "RateValue")]
pub enum Rate {
    /// Closed loop: each submitter sends its next batch as soon as the previous one returned.
    Max,
    /// Open loop: this many transactions per second in total, whatever became of earlier ones.
    PerSecond(f64),
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

/// The TOML forms of a rate.
#[derive(Deserialize)]
#[serde(untagged)]
enum RateValue {
    Int(i64),
    Float(f64),
    Word(String),
}

impl TryFrom<RateValue> for Rate {
    type Error = String;

    fn try_from(v: RateValue) -> Result<Rate, String> {
        let r = match v {
            RateValue::Word(w) if w.eq_ignore_ascii_case("max") => return Ok(Rate::Max),
            RateValue::Word(w) => return Err(format!("rate `{w}` is neither \"max\" nor a number of tx/s")),
            RateValue::Int(i) => i as f64,
            RateValue::Float(f) => f,
        };
        if r.is_finite() && r > 0.0 {
            Ok(Rate::PerSecond(r))
        } else {
            Err(format!("rate {r} must be a positive number of tx/s (or \"max\")"))
        }
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rate::Max => f.write_str("max"),
            Rate::PerSecond(r) => write!(f, "{r} tx/s"),
        }
    }
}

/// What a fault does (the table in the [module docs](self) says which keys each takes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// kill -9 node `node`.
    Kill,
    /// Start node `node` again from its disk; without `node`, every node killed so far.
    Restart,
    /// Cut node `node` off from every other node, the routers and the load generator.
    Partition,
    /// Reconnect node `node`; without `node`, every partitioned node. Network delays stay.
    Heal,
    /// Ask who leads chain `chain` (default 1) and kill -9 that node.
    KillLeader,
    /// Delay every datagram to and from node `node` by `delay_ms`, each way (its relay and the
    /// other nodes' relays hold them in a delay queue, in order).
    SlowNet,
    /// Remove node `node`'s network delay; without `node`, every node's.
    FastNet,
    /// Restart node `node` (SIGTERM, then start) with `[testing] apply_delay_ms = delay_ms`:
    /// every block it applies takes that much longer, on every chain it serves.
    SlowDisk,
    /// Restart node `node` without the apply delay; without `node`, every slowed node.
    FastDisk,
    /// kill -9 router `router`.
    KillRouter,
    /// Start router `router` again; without `router`, every router killed so far.
    RestartRouter,
    /// Scale out: start new nodes serving licence chain `chain`, register it on the meta chain,
    /// and offer it load from then on.
    AddChain,
    /// Start a new node (the next id) serving chain `chain` and make it a voter.
    AddReplica,
    /// Take node `node` out of chain `chain`'s voters.
    RemoveReplica,
}

impl Action {
    /// The name used in scenario files and reports.
    pub fn name(self) -> &'static str {
        match self {
            Action::Kill => "kill",
            Action::Restart => "restart",
            Action::Partition => "partition",
            Action::Heal => "heal",
            Action::KillLeader => "kill_leader",
            Action::SlowNet => "slow_net",
            Action::FastNet => "fast_net",
            Action::SlowDisk => "slow_disk",
            Action::FastDisk => "fast_disk",
            Action::KillRouter => "kill_router",
            Action::RestartRouter => "restart_router",
            Action::AddChain => "add_chain",
            Action::AddReplica => "add_replica",
            Action::RemoveReplica => "remove_replica",
        }
    }

    /// Whether the action takes each of [`KEYS`].
    fn keys(self) -> [Key; 4] {
        use Key::{Optional as O, Required as R, Unused as U};
        match self {
            Action::Kill | Action::Partition => [R, U, U, U],
            Action::Restart | Action::Heal | Action::FastNet | Action::FastDisk => [O, U, U, U],
            Action::KillLeader => [U, O, U, U],
            Action::SlowNet | Action::SlowDisk => [R, U, U, R],
            Action::KillRouter => [U, U, R, U],
            Action::RestartRouter => [U, U, O, U],
            Action::AddChain | Action::AddReplica => [U, R, U, U],
            Action::RemoveReplica => [R, R, U, U],
        }
    }
}

/// A fault's keys besides `at_s` and `action`.
const KEYS: [&str; 4] = ["node", "chain", "router", "delay_ms"];

/// Whether an action takes a key.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Key {
    Required,
    Optional,
    Unused,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `[[faults]]`: one scheduled fault.
#[derive(Clone, Copy, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// Seconds after the load starts.
    pub at_s: f64,
    /// What to do.
    pub action: Action,
    /// The node (required by `kill`, `partition`, `slow_net`, `slow_disk`; optional for
    /// `restart`, `heal`, `fast_net`, `fast_disk`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<u64>,
    /// The chain whose leader `kill_leader` kills (default 1), that `add_chain` adds, or whose
    /// replicas `add_replica` and `remove_replica` change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<u32>,
    /// The router (1 ..= `cluster.routers`) of `kill_router` and `restart_router`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router: Option<u32>,
    /// Milliseconds of delay of `slow_net` (per datagram, each way) and `slow_disk` (per
    /// applied block).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
}

fn one() -> u32 {
    1
}
fn one_u64() -> u64 {
    1
}
fn three() -> u64 {
    3
}
fn default_block_txs() -> usize {
    500
}
fn default_block_wait_ms() -> u64 {
    10
}
fn default_snapshot_every() -> u64 {
    crate::cluster::Settings::default().snapshot_every
}
fn default_keep_logs() -> u64 {
    crate::cluster::Settings::default().keep_logs
}
fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

fn default_population() -> u32 {
    2000
}
fn default_submitters() -> usize {
    4
}
fn default_batch() -> usize {
    50
}
fn default_max_presign() -> usize {
    10_000
}

impl Scenario {
    /// Read, parse and check a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ScenarioError::Read { path: path.to_path_buf(), source })?;
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("scenario");
        Self::parse(&text, stem).map_err(|e| match e {
            ScenarioError::Parse { source, .. } => ScenarioError::Parse { path: path.to_path_buf(), source },
            other => other,
        })
    }

    /// Parse and check scenario text; `default_name` names it when the text does not.
    pub fn parse(text: &str, default_name: &str) -> Result<Scenario, ScenarioError> {
        let mut s: Scenario = toml::from_str(text)
            .map_err(|e| ScenarioError::Parse { path: PathBuf::from(default_name), source: Box::new(e) })?;
        if s.name.is_empty() {
            s.name = default_name.to_string();
        }
        s.faults.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
        s.validate()?;
        Ok(s)
    }

    fn invalid(&self, field: impl Into<String>, problem: impl Into<String>) -> ScenarioError {
        ScenarioError::Invalid { name: self.name.clone(), field: field.into(), problem: problem.into() }
    }

    /// The chains `add_chain` faults add, in the order they are added.
    pub fn added_chains(&self) -> Vec<u32> {
        self.faults.iter().filter(|f| f.action == Action::AddChain).filter_map(|f| f.chain).collect()
    }

    /// The highest node id the run may start: the initial replicas, then `replicas` more per
    /// added chain and one per added replica.
    pub fn max_node(&self) -> u64 {
        let replicas = self.faults.iter().filter(|f| f.action == Action::AddReplica).count() as u64;
        self.cluster.replicas * (1 + self.added_chains().len() as u64) + replicas
    }

    /// Whether the nodes also serve the meta chain 0 (routers follow it; `add_chain` registers the
    /// new chain on it).
    pub fn needs_meta(&self) -> bool {
        self.cluster.routers > 0 || !self.added_chains().is_empty()
    }

    /// Check ranges and that every fault names a node, chain or router that exists.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        let (c, l) = (&self.cluster, &self.load);
        if !(1..=MAX_CHAINS).contains(&c.chains) {
            return Err(
                self.invalid("cluster.chains", format!("is {}; it must be between 1 and {MAX_CHAINS}", c.chains))
            );
        }
        if !(1..=MAX_REPLICAS).contains(&c.replicas) {
            return Err(
                self.invalid("cluster.replicas", format!("is {}; it must be between 1 and {MAX_REPLICAS}", c.replicas))
            );
        }
        if c.routers > MAX_ROUTERS {
            return Err(
                self.invalid("cluster.routers", format!("is {}; it must be between 0 and {MAX_ROUTERS}", c.routers))
            );
        }
        if c.snapshot_every == 0 {
            return Err(self.invalid("cluster.snapshot_every", "must be at least 1"));
        }
        if c.block_txs == 0 {
            return Err(self.invalid("cluster.block_txs", "must be at least 1"));
        }
        if !(l.duration_s.is_finite() && l.duration_s > 0.0 && l.duration_s <= 24.0 * 3600.0) {
            return Err(self.invalid("load.duration_s", format!("is {}; it must be in (0, 86400]", l.duration_s)));
        }
        if !(l.warmup_s.is_finite() && l.warmup_s >= 0.0 && l.warmup_s < l.duration_s) {
            return Err(self.invalid(
                "load.warmup_s",
                format!("is {}; it must be at least 0 and less than load.duration_s ({})", l.warmup_s, l.duration_s),
            ));
        }
        self.validate_ramp()?;
        for (field, v) in [("load.submitters", l.submitters), ("load.batch", l.batch), ("load.presign", l.presign)] {
            if v == 0 {
                return Err(self.invalid(field, "must be at least 1"));
            }
        }
        if l.population == 0 {
            return Err(self.invalid("load.population", "must be at least 1"));
        }
        if let Some(m) = l.mix {
            if Mix::from(m).total() == 0 {
                return Err(self.invalid("load.mix", "gives every operation weight 0"));
            }
            if let Some(share) = m.short_grants.filter(|s| !(0.0..=1.0).contains(s)) {
                return Err(self.invalid("load.mix.short_grants", format!("is {share}; it must be between 0 and 1")));
            }
        }
        if self.max_node() > MAX_REPLICAS {
            return Err(self.invalid(
                "faults",
                format!("start {} nodes in all (added chains and replicas), more than {MAX_REPLICAS}", self.max_node()),
            ));
        }
        let mut added: Vec<u32> = Vec::new();
        for (i, f) in self.faults.iter().enumerate() {
            self.validate_fault(i, f, &added)?;
            if f.action == Action::AddChain {
                added.extend(f.chain);
            }
        }
        Ok(())
    }

    fn validate_ramp(&self) -> Result<(), ScenarioError> {
        let l = &self.load;
        let Some(first) = l.ramp.first() else { return Ok(()) };
        if first.at_s != 0.0 {
            return Err(self.invalid("load.ramp[0].at_s", format!("is {}; the ramp starts at 0", first.at_s)));
        }
        for (i, p) in l.ramp.iter().enumerate() {
            if !(p.rate.is_finite() && p.rate >= 0.0) {
                return Err(self.invalid(format!("load.ramp[{i}].rate"), format!("is {}; it must be >= 0", p.rate)));
            }
            if !(0.0..=l.duration_s).contains(&p.at_s) {
                return Err(self.invalid(
                    format!("load.ramp[{i}].at_s"),
                    format!("is {}; it must be between 0 and load.duration_s ({})", p.at_s, l.duration_s),
                ));
            }
            if i > 0 && p.at_s <= l.ramp[i - 1].at_s {
                return Err(self.invalid(
                    format!("load.ramp[{i}].at_s"),
                    format!("is {}; the points must be in increasing time order", p.at_s),
                ));
            }
        }
        Ok(())
    }

    /// Check fault `i` given the chains added by the faults before it.
    fn validate_fault(&self, i: usize, f: &Fault, added: &[u32]) -> Result<(), ScenarioError> {
        let (c, l) = (&self.cluster, &self.load);
        let at = |p: &str| format!("faults[{i}].{p}");
        if !(0.0..=l.duration_s).contains(&f.at_s) {
            return Err(self.invalid(
                at("at_s"),
                format!("is {}; faults happen during the load, between 0 and {}", f.at_s, l.duration_s),
            ));
        }
        let given = [f.node.is_some(), f.chain.is_some(), f.router.is_some(), f.delay_ms.is_some()];
        for (j, key) in KEYS.iter().enumerate() {
            match (f.action.keys()[j], given[j]) {
                (Key::Required, false) => {
                    return Err(self.invalid(at(key), format!("is required by `{}`", f.action)));
                }
                (Key::Unused, true) => {
                    let takers: Vec<&str> =
                        ALL_ACTIONS.iter().filter(|a| a.keys()[j] != Key::Unused).map(|a| a.name()).collect();
                    return Err(self
                        .invalid(at(key), format!("is not taken by `{}` (only by {})", f.action, takers.join(", "))));
                }
                _ => {}
            }
        }
        if let Some(n) = f.node {
            let max = self.max_node();
            if !(1..=max).contains(&n) {
                let why = if max > c.replicas { " (the added chains' nodes included)" } else { "" };
                return Err(self.invalid(at("node"), format!("is {n}; the nodes are 1 ..= {max}{why}")));
            }
        }
        if let Some(d) = f.delay_ms {
            if !(1..=MAX_DELAY_MS).contains(&d) {
                return Err(self.invalid(at("delay_ms"), format!("is {d}; it must be between 1 and {MAX_DELAY_MS}")));
            }
        }
        if let Some(r) = f.router {
            if c.routers == 0 {
                return Err(self.invalid(at("router"), "names a router, but `cluster.routers` is 0 (none started)"));
            }
            if !(1..=c.routers).contains(&r) {
                return Err(self.invalid(at("router"), format!("is {r}; the routers are 1 ..= {}", c.routers)));
            }
        }
        if matches!(f.action, Action::KillRouter | Action::RestartRouter) && c.routers == 0 {
            return Err(self.invalid(at("action"), format!("`{}` needs `cluster.routers` >= 1", f.action)));
        }
        match (f.action, f.chain) {
            (Action::KillLeader | Action::AddReplica | Action::RemoveReplica, Some(ch))
                if !((1..=c.chains).contains(&ch) || added.contains(&ch)) =>
            {
                let when = if self.added_chains().contains(&ch) { ", and it is added only later" } else { "" };
                return Err(self.invalid(
                    at("chain"),
                    format!("is {ch}; the chains are 1 ..= {}{}{when}", c.chains, added_list(added)),
                ));
            }
            (Action::AddChain, Some(ch)) => {
                if ch <= c.chains || ch > MAX_CHAINS {
                    return Err(self.invalid(
                        at("chain"),
                        format!(
                            "is {ch}; a new chain is numbered after the initial ones, {} ..= {MAX_CHAINS}",
                            c.chains + 1
                        ),
                    ));
                }
                if added.contains(&ch) {
                    return Err(
                        self.invalid(at("chain"), format!("is {ch}, which an earlier `add_chain` adds already"))
                    );
                }
                if c.routers > 0 {
                    return Err(self.invalid(
                        at("action"),
                        "`add_chain` does not combine with `cluster.routers` yet: load through routers is \
                         placed by the shard map at the start, which adding a chain changes",
                    ));
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// " and the added 4, 5" for the chains added so far, for messages.
fn added_list(added: &[u32]) -> String {
    if added.is_empty() {
        return String::new();
    }
    let ids: Vec<String> = added.iter().map(u32::to_string).collect();
    format!(" and the added {}", ids.join(", "))
}

/// Every action, for messages that list the ones taking a key.
const ALL_ACTIONS: [Action; 14] = [
    Action::Kill,
    Action::Restart,
    Action::Partition,
    Action::Heal,
    Action::KillLeader,
    Action::SlowNet,
    Action::FastNet,
    Action::SlowDisk,
    Action::FastDisk,
    Action::KillRouter,
    Action::RestartRouter,
    Action::AddChain,
    Action::AddReplica,
    Action::RemoveReplica,
];

#[cfg(test)]
#[path = "scenario_tests.rs"]
mod tests;
