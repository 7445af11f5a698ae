//! Node configuration: a TOML file, parsed and checked once at start.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A node's configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// This node's id; must match the `n<id>.elchain` name in its certificate.
    pub node_id: u64,
    /// UDP address for QUIC (Raft and client RPCs).
    pub listen: SocketAddr,
    /// Where chain stores and Raft logs live (`chain-<id>/`).
    pub data_dir: PathBuf,
    /// HTTP address of the Prometheus `/metrics` endpoint; none when absent.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// Certificates and keys.
    pub tls: TlsConfig,
    /// The consortium definition.
    #[serde(default)]
    pub consortium: ConsortiumConfig,
    /// Raft timing and log compaction.
    #[serde(default)]
    pub raft: RaftConfig,
    /// Block building at the leader.
    #[serde(default)]
    pub batch: BatchConfig,
    /// Signature-verification threads (0: one per core).
    #[serde(default)]
    pub verify_threads: usize,
    /// The chains this node serves.
    pub chains: Vec<ChainConfig>,
    /// Settings that exist for fault tests only.
    #[serde(default)]
    pub testing: TestingConfig,
}

/// Paths of the node's TLS material (from `elchain ca`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The consortium CA certificate.
    pub ca_cert: PathBuf,
    /// This node's certificate.
    pub cert: PathBuf,
    /// This node's private key.
    pub key: PathBuf,
    /// The CA's revocation list, if any.
    #[serde(default)]
    pub crl: Option<PathBuf>,
}

/// Which consortium profile the chains run under.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsortiumConfig {
    /// `sample` for the built-in profile, or a path to a profile TOML file.
    pub profile: String,
    /// `dev`: development member keys derived from member codes (never in production).
    pub keys: String,
}

impl Default for ConsortiumConfig {
    fn default() -> Self {
        Self { profile: "sample".into(), keys: "dev".into() }
    }
}

/// Raft settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RaftConfig {
    /// Leader heartbeat interval.
    pub heartbeat_ms: u64,
    /// Lower bound of the election timeout.
    pub election_min_ms: u64,
    /// Upper bound of the election timeout.
    pub election_max_ms: u64,
    /// Build a snapshot every this many log entries (blocks).
    pub snapshot_every: u64,
    /// Log entries kept after a snapshot, for followers that are only a little behind.
    pub keep_logs: u64,
    /// Purge the log in steps of at least this many entries.
    pub purge_batch: u64,
    /// Most log entries (blocks) in one AppendEntries. openraft gives each AppendEntries one
    /// heartbeat interval to complete, so a lagging follower is sent a few blocks at a time: a
    /// payload of hundreds of blocks (megabytes each) would time out and be retried forever.
    pub max_payload_entries: u64,
    /// Time allowed to send a snapshot segment, and to send and install the last one.
    pub install_snapshot_timeout_ms: u64,
    /// Write applied blocks to the chain store this often, in one transaction, and sooner when
    /// 100,000 transactions wait. In between they are staged in memory (1–2 KB a transaction),
    /// where every read sees them: the Raft log is durable before a block is applied, so after a
    /// crash the replica applies the log again from the store's last write. Longer writes the
    /// B-tree pages that many transactions share once. 0: every block as it is applied.
    pub state_sync_ms: u64,
    /// Of those writes, fsync one at most this often; the others are handed to the kernel's
    /// writeback without waiting, so no single fsync has much to write and the Raft log's
    /// fsyncs do not queue behind it. A crash loses the writes since the last fsync, which the
    /// replica applies again from the log. At least `state_sync_ms`.
    pub state_fsync_ms: u64,
}

impl Default for RaftConfig {
    fn default() -> Self {
        Self {
            heartbeat_ms: 100,
            election_min_ms: 400,
            election_max_ms: 800,
            snapshot_every: 1000,
            keep_logs: 500,
            purge_batch: 64,
            max_payload_entries: 4,
            install_snapshot_timeout_ms: 20_000,
            state_sync_ms: 10_000,
            state_fsync_ms: 10_000,
        }
    }
}

/// Block building.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Close a block at this many transactions.
    pub max_txs: usize,
    /// Or after this long since its first transaction.
    pub max_wait_ms: u64,
    /// Blocks proposed and not yet applied, at most.
    pub in_flight: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self { max_txs: 2000, max_wait_ms: 10, in_flight: 4 }
    }
}

/// One chain this node serves.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainConfig {
    /// Chain id.
    pub id: u32,
    /// The chain's initial replicas (this node among them, unless it joins later as a learner).
    pub peers: Vec<PeerConfig>,
    /// Form the cluster from `peers` when the log is empty. Exactly one initial replica sets it.
    #[serde(default)]
    pub bootstrap: bool,
}

/// A replica of a chain.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// Node id.
    pub id: u64,
    /// Its QUIC address.
    pub addr: SocketAddr,
}

/// Fault-test switches; all off by default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestingConfig {
    /// Accept `ProposeRaw`: propose transactions without admission checks (a faulty leader).
    #[serde(default)]
    pub allow_raw_propose: bool,
    /// Sleep this long per applied block: a deliberate slowdown, to show that the release gate
    /// (`elchain bench --gate`) catches one.
    #[serde(default)]
    pub apply_delay_ms: u64,
    /// A planted bug: answer each submission with a receipt (a guessed height, outcome valid)
    /// as soon as its block is proposed, before it is replicated, made durable or executed. It
    /// exists to show that the simulator's history checker catches lost acknowledgements.
    #[serde(default)]
    pub ack_before_commit: bool,
}

/// A configuration that cannot be used, with what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not valid TOML or not of the config's shape.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (names the key and line).
        message: String,
    },
    /// A value breaks a rule.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong and how to fix it.
        message: String,
    },
}

impl NodeConfig {
    /// Read, parse and check a configuration file. Relative paths in it are taken relative to the
    /// file's directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        let mut cfg: NodeConfig = toml::from_str(&text)
            .map_err(|e| ConfigError::Parse { path: path.to_path_buf(), message: e.to_string() })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let rebase = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        rebase(&mut cfg.data_dir);
        rebase(&mut cfg.tls.ca_cert);
        rebase(&mut cfg.tls.cert);
        rebase(&mut cfg.tls.key);
        if let Some(c) = cfg.tls.crl.as_mut() {
            rebase(c);
        }
        cfg.check().map_err(|message| ConfigError::Invalid { path: path.to_path_buf(), message })?;
        Ok(cfg)
    }

    fn check(&self) -> Result<(), String> {
        if self.chains.is_empty() {
            return Err("no [[chains]]: a node must serve at least one chain".into());
        }
        let mut ids = BTreeSet::new();
        for c in &self.chains {
            if !ids.insert(c.id) {
                return Err(format!("chain {} is listed twice", c.id));
            }
            if c.peers.is_empty() {
                return Err(format!("chain {}: peers is empty", c.id));
            }
            let mut peer_ids = BTreeSet::new();
            for p in &c.peers {
                if !peer_ids.insert(p.id) {
                    return Err(format!("chain {}: peer {} is listed twice", c.id, p.id));
                }
            }
            if c.bootstrap && !peer_ids.contains(&self.node_id) {
                return Err(format!(
                    "chain {}: bootstrap is set but node {} is not among its peers",
                    c.id, self.node_id
                ));
            }
        }
        let r = &self.raft;
        if r.heartbeat_ms == 0 || r.election_min_ms <= r.heartbeat_ms * 2 || r.election_max_ms <= r.election_min_ms {
            return Err(format!(
                "[raft] needs 0 < heartbeat_ms ({}) < election_min_ms/2 ({}) and election_min_ms < election_max_ms ({})",
                r.heartbeat_ms, r.election_min_ms, r.election_max_ms
            ));
        }
        if r.max_payload_entries == 0 || r.install_snapshot_timeout_ms < r.heartbeat_ms {
            return Err("[raft] max_payload_entries must be at least 1 and install_snapshot_timeout_ms at least \
                        heartbeat_ms"
                .into());
        }
        if self.batch.max_txs == 0 || self.batch.in_flight == 0 {
            return Err("[batch] max_txs and in_flight must be at least 1".into());
        }
        if self.consortium.keys != "dev" {
            return Err(format!(
                "[consortium] keys = \"{}\": only \"dev\" (development keys) is supported so far",
                self.consortium.keys
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
node_id = 1
listen = "127.0.0.1:7001"
data_dir = "data"
[tls]
ca_cert = "ca/ca.pem"
cert = "certs/node-1.pem"
key = "certs/node-1.key"
[[chains]]
id = 1
bootstrap = true
peers = [{ id = 1, addr = "127.0.0.1:7001" }, { id = 2, addr = "127.0.0.1:7002" }]
"#;

    fn load(text: &str) -> Result<NodeConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("node.toml");
        std::fs::write(&p, text).unwrap();
        NodeConfig::load(&p)
    }

    #[test]
    fn a_good_config_loads_with_defaults_and_rebased_paths() {
        let c = load(GOOD).unwrap();
        assert_eq!(c.batch.max_txs, 2000);
        assert!(c.data_dir.is_absolute());
        assert!(c.tls.cert.ends_with("certs/node-1.pem"));
    }

    #[test]
    fn the_documented_example_config_loads() {
        let c = load(include_str!("../../../deploy/examples/node.toml")).unwrap();
        assert_eq!(c.chains[0].peers.len(), 3);
        assert_eq!(c.metrics_listen.map(|a| a.port()), Some(9101));
    }

    #[test]
    fn mistakes_are_named() {
        let e = load(&GOOD.replace("node_id = 1", "node_id = 1\ncolour = 3")).unwrap_err().to_string();
        assert!(e.contains("colour"), "{e}");
        let e = load(&GOOD.replace("{ id = 1, addr", "{ id = 3, addr")).unwrap_err().to_string();
        assert!(e.contains("bootstrap is set but node 1"), "{e}");
        let e = load(&format!("{GOOD}\n[raft]\nheartbeat_ms = 500\n")).unwrap_err().to_string();
        assert!(e.contains("heartbeat_ms"), "{e}");
        let e = load(&GOOD.replace("127.0.0.1:7001\"\ndata", "nowhere\"\ndata")).unwrap_err().to_string();
        assert!(e.contains("listen"), "{e}");
    }
}
