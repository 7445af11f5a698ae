//! Scenario files: the cluster to start, the load to offer and the faults to inject, in TOML.
//!
//! ```toml
//! name = "leader-failover"              # optional: defaults to the file's stem
//! description = "Kill chain 1's leader under load, bring it back."
//!
//! [cluster]
//! chains = 1                            # licence chains 1 ..= chains, served by every replica
//! replicas = 3                          # node processes 1 ..= replicas
//! snapshot_every = 1000                 # Raft snapshot every this many blocks
//! keep_logs = 500                       # blocks of log kept after a snapshot
//!
//! [load]
//! rate = 500                            # offered tx/s over all chains (open loop), or "max"
//! duration_s = 15
//! population = 2000                     # holders per workload stream
//! seed = 7
//! mix = { issue = 15, grant = 25, use = 55, revoke_grant = 3, status = 2 }
//!
//! [[faults]]
//! at_s = 5
//! action = "kill_leader"                # kill | restart | partition | heal | kill_leader
//! chain = 1
//!
//! [[faults]]
//! at_s = 10
//! action = "restart"                    # without `node`: every node killed so far
//! ```
//!
//! Unknown keys are errors, so a typo cannot silently change a run.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::workload::Mix;

/// Node ids from 900 up are the load generator's and routers' certificates.
const MAX_REPLICAS: u64 = 899;

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
#[serde(deny_unknown_fields)]
pub struct LoadSpec {
    /// Offered transactions per second over all chains, or `"max"` (closed loop).
    pub rate: Rate,
    /// Seconds of load.
    pub duration_s: f64,
    /// Holders per workload stream.
    #[serde(default = "default_population")]
    pub population: u32,
    /// Seed of the workload streams (stream `i` of chain `c` uses a seed derived from it).
    #[serde(default = "one_u64")]
    pub seed: u64,
    /// Concurrent submitters per chain, each with its own workload stream.
    #[serde(default = "default_submitters")]
    pub submitters: usize,
    /// Transactions per submission.
    #[serde(default = "default_batch")]
    pub batch: usize,
    /// With `rate = "max"`: transactions signed ahead per submitter (it stops when they run out).
    #[serde(default = "default_max_presign")]
    pub presign: usize,
    /// Relative weights of the operations; the service-centre mix when absent.
    #[serde(default)]
    pub mix: Option<MixSpec>,
}

/// `mix = { … }`: relative weights of the generated operations (absent keys weigh 0).
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
}

impl From<MixSpec> for Mix {
    fn from(m: MixSpec) -> Mix {
        Mix { issue: m.issue, grant: m.grant, use_: m.use_, revoke_grant: m.revoke_grant, status: m.status }
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

/// What a fault does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// kill -9 node `node`.
    Kill,
    /// Start node `node` again from its disk; without `node`, every node killed so far.
    Restart,
    /// Cut node `node` off from every other node and from the load generator.
    Partition,
    /// Reconnect node `node`; without `node`, every partitioned node.
    Heal,
    /// Ask who leads chain `chain` (default 1) and kill -9 that node.
    KillLeader,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Kill => "kill",
            Action::Restart => "restart",
            Action::Partition => "partition",
            Action::Heal => "heal",
            Action::KillLeader => "kill_leader",
        })
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
    /// The node (required by `kill` and `partition`; optional for `restart` and `heal`).
    #[serde(default)]
    pub node: Option<u64>,
    /// The chain whose leader `kill_leader` kills (default 1).
    #[serde(default)]
    pub chain: Option<u32>,
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

    /// Check ranges and that every fault names a node or chain that exists.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        let (c, l) = (&self.cluster, &self.load);
        if !(1..=64).contains(&c.chains) {
            return Err(self.invalid("cluster.chains", format!("is {}; it must be between 1 and 64", c.chains)));
        }
        if !(1..=MAX_REPLICAS).contains(&c.replicas) {
            return Err(
                self.invalid("cluster.replicas", format!("is {}; it must be between 1 and {MAX_REPLICAS}", c.replicas))
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
        for (field, v) in [("load.submitters", l.submitters), ("load.batch", l.batch), ("load.presign", l.presign)] {
            if v == 0 {
                return Err(self.invalid(field, "must be at least 1"));
            }
        }
        if l.population == 0 {
            return Err(self.invalid("load.population", "must be at least 1"));
        }
        if let Some(m) = l.mix {
            if m.issue + m.grant + m.use_ + m.revoke_grant + m.status == 0 {
                return Err(self.invalid("load.mix", "gives every operation weight 0"));
            }
        }
        for (i, f) in self.faults.iter().enumerate() {
            let at = |p: &str| format!("faults[{i}].{p}");
            if !(0.0..=l.duration_s).contains(&f.at_s) {
                return Err(self.invalid(
                    at("at_s"),
                    format!("is {}; faults happen during the load, between 0 and {}", f.at_s, l.duration_s),
                ));
            }
            match (f.action, f.node) {
                (Action::Kill | Action::Partition, None) => {
                    return Err(self.invalid(at("node"), format!("is required by `{}`", f.action)));
                }
                (Action::KillLeader, Some(_)) => {
                    return Err(self.invalid(at("node"), "is not taken by `kill_leader` (give `chain`)"));
                }
                (_, Some(n)) if !(1..=c.replicas).contains(&n) => {
                    return Err(self.invalid(at("node"), format!("is {n}; the nodes are 1 ..= {}", c.replicas)));
                }
                _ => {}
            }
            match (f.action, f.chain) {
                (Action::KillLeader, Some(ch)) if !(1..=c.chains).contains(&ch) => {
                    return Err(self.invalid(at("chain"), format!("is {ch}; the chains are 1 ..= {}", c.chains)));
                }
                (Action::KillLeader, _) => {}
                (_, Some(_)) => {
                    return Err(
                        self.invalid(at("chain"), format!("is only taken by `kill_leader`, not `{}`", f.action))
                    );
                }
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        [cluster]
        replicas = 3
        [load]
        rate = 500
        duration_s = 15
        mix = { issue = 10, use = 90 }
        [[faults]]
        at_s = 10
        action = "restart"
        [[faults]]
        at_s = 5
        action = "kill_leader"
        chain = 1
    "#;

    #[test]
    fn a_scenario_parses_with_defaults_and_faults_in_time_order() {
        let s = Scenario::parse(GOOD, "failover").unwrap();
        assert_eq!(s.name, "failover");
        assert_eq!(s.cluster.chains, 1);
        assert_eq!(s.load.rate, Rate::PerSecond(500.0));
        assert_eq!(Mix::from(s.load.mix.unwrap()), Mix { issue: 10, grant: 0, use_: 90, revoke_grant: 0, status: 0 });
        assert_eq!(s.faults.iter().map(|f| f.action).collect::<Vec<_>>(), [Action::KillLeader, Action::Restart]);
        let max = Scenario::parse(&GOOD.replace("rate = 500", "rate = \"max\""), "x").unwrap();
        assert_eq!(max.load.rate, Rate::Max);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_with_the_field_named() {
        let typo = Scenario::parse(&GOOD.replace("duration_s", "duraton_s"), "x").unwrap_err();
        assert!(typo.to_string().contains("duraton_s"), "{typo}");
        let rate = Scenario::parse(&GOOD.replace("rate = 500", "rate = \"fast\""), "x").unwrap_err();
        assert!(rate.to_string().contains("fast"), "{rate}");
        let node = Scenario::parse(&format!("{GOOD}\n[[faults]]\nat_s = 1\naction = \"kill\"\nnode = 4\n"), "x");
        assert!(node.unwrap_err().to_string().contains("faults[0].node"));
        let late = Scenario::parse(&format!("{GOOD}\n[[faults]]\nat_s = 99\naction = \"heal\"\n"), "x");
        assert!(late.unwrap_err().to_string().contains("at_s"));
        let action = Scenario::parse(&format!("{GOOD}\n[[faults]]\nat_s = 1\naction = \"explode\"\n"), "x");
        assert!(action.unwrap_err().to_string().contains("explode"));
    }

    #[test]
    fn the_shipped_scenarios_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let s = Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
                assert!(s.load.duration_s <= 30.0, "{}: keep shipped scenarios short", s.name);
                seen += 1;
            }
        }
        assert!(seen >= 3, "{seen} scenarios in {}", dir.display());
    }
}
