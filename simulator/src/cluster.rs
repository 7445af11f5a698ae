//! Start and control a local cluster of real `elchain node` processes on loopback.
//!
//! Used by the fault tests, `elchain bench` and the simulator. The cluster makes its own
//! consortium CA and node certificates, writes each node's config, and starts the processes.
//! Every node's address in the chain's membership is a UDP relay ([`Relay`]) in front of it, so
//! a fault can cut a node off from the others (both directions), or slow its network down,
//! without touching the node. A slow disk is a node restarted with a test-only apply delay.
//!
//! ```text
//!  Cluster::start ─► ca init ─► issue node certs ─► node-<id>.toml ─► spawn `elchain node`
//!                         peers dial  relay(id) ──UDP──► node id's QUIC socket
//! ```

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use elchain_shard::ca;
use elchain_shard::net::{Identity, TlsFiles};
use elchain_shard::node::client::Client;
use elchain_shard::node::rpc::{ChainStatus, Receipt};

/// The chain every cluster test uses.
pub const CHAIN: u32 = 1;

/// Raft and batching settings for a test cluster.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Build a snapshot every this many entries.
    pub snapshot_every: u64,
    /// Entries kept after a snapshot.
    pub keep_logs: u64,
    /// Let the leader propose unchecked transactions (a faulty leader).
    pub allow_raw_propose: bool,
    /// Signature-verification threads per node (0: one per core).
    pub verify_threads: usize,
    /// Close a block at this many transactions.
    pub block_txs: usize,
    /// Or after this many milliseconds.
    pub block_wait_ms: u64,
    /// Serve Prometheus metrics on a free TCP port per node.
    pub metrics: bool,
    /// Put a fault-injecting relay in front of every node (tests); without, peers dial nodes
    /// directly.
    pub relays: bool,
    /// Licence chains every initial node serves: ids 1 ..= chains, all in the same processes.
    pub chains: u32,
    /// Also serve the meta chain 0 on every initial node.
    pub meta: bool,
    /// Node `id` listens on UDP port `base_port + id` instead of a free port.
    pub base_port: Option<u16>,
    /// Every replica sleeps this long per applied block (a deliberate slowdown; testing only).
    pub apply_delay_ms: u64,
    /// `[raft] state_sync_ms`: how often replicas write applied blocks to their chain store.
    pub state_sync_ms: u64,
    /// `[raft] state_fsync_ms`: how often those writes are fsynced.
    pub state_fsync_ms: u64,
    /// Plant the `[testing] ack_before_commit` bug in every node (the checker must catch it).
    pub ack_before_commit: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            snapshot_every: 1000,
            keep_logs: 500,
            allow_raw_propose: false,
            verify_threads: 1,
            block_txs: 500,
            block_wait_ms: 10,
            metrics: false,
            relays: true,
            chains: 1,
            meta: false,
            base_port: None,
            apply_delay_ms: 0,
            // What a node runs with when its configuration does not say.
            state_sync_ms: elchain_shard::node::config::RaftConfig::default().state_sync_ms,
            state_fsync_ms: elchain_shard::node::config::RaftConfig::default().state_fsync_ms,
            ack_before_commit: false,
        }
    }
}

/// One node of the cluster.
pub struct NodeProc {
    /// Node id.
    pub id: u64,
    /// The node's own QUIC address.
    pub listen: SocketAddr,
    /// The relay address the others use.
    pub public: SocketAddr,
    /// Its config file.
    pub config: PathBuf,
    /// Its data directory.
    pub data: PathBuf,
    /// Its log file.
    pub log: PathBuf,
    /// Its `/metrics` address, when enabled.
    pub metrics: Option<SocketAddr>,
    /// The chains it serves.
    pub chains: Vec<u32>,
    child: Option<Child>,
}

/// A router process of the cluster.
pub struct RouterProc {
    /// Router id (its certificate names node `id`).
    pub id: u64,
    /// Its HTTP address.
    pub http: SocketAddr,
    /// Its config file.
    pub config: PathBuf,
    /// Its log file.
    pub log: PathBuf,
    child: Option<Child>,
}

/// Where a cluster keeps its files: a directory of the caller's, or a temporary one removed with
/// the cluster.
pub enum ClusterDir {
    /// Kept after the cluster stops.
    Kept(PathBuf),
    /// Removed with the cluster.
    Temporary(tempfile::TempDir),
}

impl ClusterDir {
    /// The directory.
    pub fn path(&self) -> &Path {
        match self {
            ClusterDir::Kept(p) => p,
            ClusterDir::Temporary(t) => t.path(),
        }
    }
}

/// A running local cluster.
pub struct Cluster {
    /// Working directory (CA, certificates, configs, data, logs).
    pub dir: ClusterDir,
    /// The `elchain` binary the nodes run.
    pub bin: PathBuf,
    /// The nodes by id.
    pub nodes: BTreeMap<u64, NodeProc>,
    /// The relays by node id.
    pub relays: BTreeMap<u64, Relay>,
    /// Router processes by id.
    pub routers: BTreeMap<u64, RouterProc>,
    settings: Settings,
}

fn free_udp_port() -> SocketAddr {
    reserve_port(true)
}

/// A free loopback port for a process this one starts. Ports come from below the kernel's
/// ephemeral range (32768 and up on Linux), so that nothing bound to port 0 meanwhile, such as
/// this process's own QUIC client, can take one before the child binds it; and this process
/// never hands out the same port twice.
fn reserve_port(udp: bool) -> SocketAddr {
    use rand::Rng;
    static TAKEN: Mutex<std::collections::BTreeSet<u16>> = Mutex::new(std::collections::BTreeSet::new());
    let mut taken = TAKEN.lock().expect("port reservations");
    let mut rng = rand::thread_rng();
    for _ in 0..10_000 {
        let addr = SocketAddr::from(([127, 0, 0, 1], rng.gen_range(20_000..32_000)));
        if taken.contains(&addr.port()) {
            continue;
        }
        let free = if udp { UdpSocket::bind(addr).is_ok() } else { std::net::TcpListener::bind(addr).is_ok() };
        if free {
            taken.insert(addr.port());
            return addr;
        }
    }
    panic!("no free loopback port between 20000 and 32000");
}

impl Cluster {
    /// Create a CA, certificates and configs for `n` replicas of one chain in a temporary
    /// directory, and start them with the `elchain` binary at `bin`.
    pub fn start(bin: PathBuf, n: u64, settings: Settings) -> Cluster {
        let dir = ClusterDir::Temporary(tempfile::tempdir().expect("temp dir"));
        Self::start_in(bin, dir, n, settings)
    }

    /// [`Cluster::start`] in a given directory.
    pub fn start_in(bin: PathBuf, dir: ClusterDir, n: u64, settings: Settings) -> Cluster {
        // Node configs name files by absolute path: a relative one would be read relative to the
        // config file's own directory.
        let dir = match dir {
            ClusterDir::Kept(p) => ClusterDir::Kept(std::path::absolute(&p).unwrap_or(p)),
            t => t,
        };
        let ca_dir = dir.path().join("ca");
        ca::init(&ca_dir, "local consortium").expect("ca init");
        let chains: Vec<u32> = (if settings.meta { 0 } else { 1 }..=settings.chains.max(1)).collect();
        let mut cluster =
            Cluster { dir, bin, nodes: BTreeMap::new(), relays: BTreeMap::new(), routers: BTreeMap::new(), settings };
        for id in 1..=n {
            cluster.prepare_node(id);
        }
        let peers: Vec<u64> = (1..=n).collect();
        for id in 1..=n {
            cluster.write_config_for(id, &peers, id == 1, &chains);
            cluster.spawn(id);
        }
        cluster
    }

    /// Start the nodes of a cluster created earlier in `dir` (without relays), from their
    /// config files, with their data as they left it.
    pub fn resume(bin: PathBuf, dir: PathBuf, settings: Settings) -> Result<Cluster, String> {
        let dir = std::path::absolute(&dir).unwrap_or(dir);
        let mut nodes = BTreeMap::new();
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        for entry in entries.flatten() {
            let path = entry.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
            let Some(id) = name.strip_prefix("node-").and_then(|r| r.strip_suffix(".toml")) else { continue };
            let Ok(id) = id.parse::<u64>() else { continue };
            let cfg = elchain_shard::node::config::NodeConfig::load(&path).map_err(|e| e.to_string())?;
            nodes.insert(
                id,
                NodeProc {
                    id,
                    listen: cfg.listen,
                    public: cfg.listen,
                    config: path.clone(),
                    log: dir.join(format!("node-{id}.log")),
                    data: cfg.data_dir.clone(),
                    metrics: cfg.metrics_listen,
                    chains: cfg.chains.iter().map(|c| c.id).collect(),
                    child: None,
                },
            );
        }
        if nodes.is_empty() {
            return Err(format!("no node-<id>.toml in {}", dir.display()));
        }
        let mut cluster = Cluster {
            dir: ClusterDir::Kept(dir),
            bin,
            nodes,
            relays: BTreeMap::new(),
            routers: BTreeMap::new(),
            settings,
        };
        let ids: Vec<u64> = cluster.nodes.keys().copied().collect();
        for id in ids {
            cluster.spawn(id);
        }
        Ok(cluster)
    }

    /// Issue a certificate for a new node and give it a relay (not started, not a member).
    pub fn prepare_node(&mut self, id: u64) {
        let certs = self.dir.path().join("certs");
        ca::issue_node(&self.dir.path().join("ca"), id, "public-security", ca::Role::Replica, &certs, false)
            .expect("issue node certificate");
        let listen = match self.settings.base_port {
            Some(base) => SocketAddr::from(([127, 0, 0, 1], base + id as u16)),
            None => free_udp_port(),
        };
        let public = if self.settings.relays {
            let relay = Relay::start(listen);
            let public = relay.addr;
            self.relays.insert(id, relay);
            public
        } else {
            listen
        };
        let data = self.dir.path().join(format!("node-{id}"));
        let metrics = self.settings.metrics.then(free_tcp);
        self.nodes.insert(
            id,
            NodeProc {
                id,
                listen,
                public,
                config: self.dir.path().join(format!("node-{id}.toml")),
                log: self.dir.path().join(format!("node-{id}.log")),
                data,
                metrics,
                chains: Vec::new(),
                child: None,
            },
        );
    }

    /// Write node `id`'s config: a replica of the cluster's licence chains (and the meta chain
    /// when the settings say so) whose initial members are `peers`.
    pub fn write_config(&mut self, id: u64, peers: &[u64], bootstrap: bool) {
        let chains: Vec<u32> = (if self.settings.meta { 0 } else { 1 }..=self.settings.chains.max(1)).collect();
        self.write_config_for(id, peers, bootstrap, &chains);
    }

    /// Write node `id`'s config: a replica of `chains`, whose initial members are `peers`.
    pub fn write_config_for(&mut self, id: u64, peers: &[u64], bootstrap: bool, chains: &[u32]) {
        self.nodes.get_mut(&id).expect("known node").chains = chains.to_vec();
        let n = &self.nodes[&id];
        let peer_list: Vec<String> =
            peers.iter().map(|p| format!("{{ id = {p}, addr = \"{}\" }}", self.nodes[p].public)).collect();
        let ca = self.dir.path().join("ca");
        let certs = self.dir.path().join("certs");
        let s = &self.settings;
        let metrics = n.metrics.map(|m| format!("metrics_listen = \"{m}\"\n")).unwrap_or_default();
        let text = format!(
            r#"node_id = {id}
listen = "{listen}"
data_dir = "{data}"
verify_threads = {threads}
{metrics}
[tls]
ca_cert = "{ca}/ca.pem"
cert = "{certs}/node-{id}.pem"
key = "{certs}/node-{id}.key"
crl = "{ca}/crl.pem"

[raft]
heartbeat_ms = 100
election_min_ms = 500
election_max_ms = 1000
snapshot_every = {snap}
keep_logs = {keep}
purge_batch = 1
state_sync_ms = {state_sync}
state_fsync_ms = {state_fsync}

[batch]
max_txs = {block_txs}
max_wait_ms = {block_wait}

[testing]
allow_raw_propose = {raw}
apply_delay_ms = {delay}
ack_before_commit = {early}
{chains}"#,
            listen = n.listen,
            data = n.data.display(),
            ca = ca.display(),
            certs = certs.display(),
            snap = s.snapshot_every,
            keep = s.keep_logs,
            raw = s.allow_raw_propose,
            delay = s.apply_delay_ms,
            state_sync = s.state_sync_ms,
            state_fsync = s.state_fsync_ms,
            early = s.ack_before_commit,
            threads = s.verify_threads,
            block_txs = s.block_txs,
            block_wait = s.block_wait_ms,
            chains = chains
                .iter()
                .map(|c| format!(
                    "\n[[chains]]\nid = {c}\nbootstrap = {bootstrap}\npeers = [{}]\n",
                    peer_list.join(", ")
                ))
                .collect::<String>(),
        );
        std::fs::write(&n.config, text).expect("write node config");
    }

    /// Start (or restart) node `id`'s process.
    pub fn spawn(&mut self, id: u64) {
        let n = self.nodes.get_mut(&id).expect("known node");
        assert!(n.child.is_none(), "node {id} is already running");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&n.log).expect("log file");
        let child = Command::new(&self.bin)
            .args(["node", "--config", n.config.to_str().expect("utf-8 path")])
            .env("NO_COLOR", "1")
            .env("ELCHAIN_LOG", std::env::var("ELCHAIN_LOG").unwrap_or_else(|_| "info,openraft=warn".into()))
            .stdout(Stdio::from(log.try_clone().expect("log file")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("node starts");
        n.child = Some(child);
    }

    /// kill -9 node `id`.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut c) = self.nodes.get_mut(&id).and_then(|n| n.child.take()) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stop node `id` with SIGTERM and wait for it to exit; an error (with the node's log)
    /// when it had already failed or does not stop cleanly within [`STOP_TIMEOUT`].
    pub fn try_stop(&mut self, id: u64) -> Result<(), String> {
        let Some(c) = self.nodes.get_mut(&id).and_then(|n| n.child.take()) else { return Ok(()) };
        terminate(c).map_err(|e| self.node_stop_failed(id, &e))
    }

    /// Why node `id` did not stop cleanly, with its log.
    fn node_stop_failed(&self, id: u64, why: &str) -> String {
        format!("node {id} {why}; its log:\n{}", self.log(id))
    }

    /// Stop node `id`, panicking unless it stops cleanly (for tests).
    pub fn stop(&mut self, id: u64) {
        if let Err(e) = self.try_stop(id) {
            panic!("{e}");
        }
    }

    /// Stop router `id` with SIGTERM; an error (with its log) unless it stops cleanly within
    /// [`STOP_TIMEOUT`].
    pub fn try_stop_router(&mut self, id: u64) -> Result<(), String> {
        let Some(c) = self.routers.get_mut(&id).and_then(|r| r.child.take()) else { return Ok(()) };
        terminate(c).map_err(|e| format!("router {id} {e}; its log:\n{}", self.router_log(id)))
    }

    /// Stop every router, then every node; the errors of those that did not stop cleanly. The
    /// nodes are all signalled before any is waited for: each writes what it has staged to its
    /// chain store before it exits, and they do so side by side rather than one after another.
    pub fn try_stop_all(&mut self) -> Vec<String> {
        let routers: Vec<u64> = self.routers.keys().copied().collect();
        let mut errors: Vec<String> = routers.into_iter().filter_map(|id| self.try_stop_router(id).err()).collect();
        let stopping: Vec<(u64, Child)> =
            self.nodes.iter_mut().filter_map(|(id, n)| n.child.take().map(|c| (*id, c))).collect();
        for (_, c) in &stopping {
            sigterm(c);
        }
        for (id, c) in stopping {
            if let Err(e) = wait_for_exit(c) {
                errors.push(self.node_stop_failed(id, &e));
            }
        }
        errors
    }

    /// Stop every node, panicking unless all stop cleanly (for tests).
    pub fn stop_all(&mut self) {
        let errors = self.try_stop_all();
        assert!(errors.is_empty(), "{}", errors.join("\n"));
    }

    /// A node that has exited although nobody stopped it, with how it ended (the lowest id of
    /// those); its process is reaped, so a later stop passes it by.
    pub fn exited(&mut self) -> Option<(u64, std::process::ExitStatus)> {
        self.nodes.iter_mut().find_map(|(id, n)| {
            let status = n.child.as_mut()?.try_wait().ok()??;
            n.child = None;
            Some((*id, status))
        })
    }

    /// The process id of node `id`, while it runs.
    pub fn pid(&self, id: u64) -> Option<u32> {
        self.nodes[&id].child.as_ref().map(Child::id)
    }

    /// The process id of router `id`, while it runs.
    pub fn router_pid(&self, id: u64) -> Option<u32> {
        self.routers.get(&id).and_then(|r| r.child.as_ref()).map(Child::id)
    }

    /// Node `id`'s log so far.
    pub fn log(&self, id: u64) -> String {
        std::fs::read_to_string(&self.nodes[&id].log).unwrap_or_default()
    }

    /// Cut node `id` off from every other node, or heal it.
    pub fn partition(&self, id: u64, cut: bool) {
        let victim = self.nodes[&id].listen;
        for (rid, relay) in &self.relays {
            if *rid == id {
                relay.set_blocked(cut);
            } else {
                relay.block_peer(victim, cut);
            }
        }
    }

    /// Delay every datagram to and from node `id` by `delay`, each way (zero: no delay): its own
    /// relay holds everything it forwards, the other nodes' relays hold what comes from and
    /// goes to it. Needs relays.
    pub fn set_net_delay(&self, id: u64, delay: Duration) -> Result<(), String> {
        let victim = self.nodes.get(&id).ok_or_else(|| format!("there is no node {id}"))?.listen;
        if !self.relays.contains_key(&id) {
            return Err(format!("node {id} has no relay (the cluster runs without relays)"));
        }
        for (rid, relay) in &self.relays {
            if *rid == id {
                relay.set_delay(delay);
            } else {
                relay.delay_peer(victim, delay);
            }
        }
        Ok(())
    }

    /// Give node `id` a slow disk: every block it applies takes `delay_ms` longer (0: none). The
    /// setting is read at start-up, so a running node is stopped (SIGTERM) and started again; a
    /// node that is down only gets the new config, for its next start. An error says the node
    /// did not stop cleanly (it is started again all the same) or its config could not be
    /// rewritten.
    pub fn set_apply_delay(&mut self, id: u64, delay_ms: u64) -> Result<(), String> {
        let config = self.nodes.get(&id).ok_or_else(|| format!("there is no node {id}"))?.config.clone();
        let text = std::fs::read_to_string(&config).map_err(|e| format!("cannot read {}: {e}", config.display()))?;
        std::fs::write(&config, with_apply_delay(&text, delay_ms))
            .map_err(|e| format!("cannot write {}: {e}", config.display()))?;
        if self.pid(id).is_none() {
            return Ok(());
        }
        let stopped = self.try_stop(id);
        self.spawn(id);
        stopped.map_err(|e| e.lines().next().unwrap_or_default().to_string())
    }

    /// The id after the highest node id in use.
    pub fn next_node_id(&self) -> u64 {
        self.nodes.keys().next_back().map_or(1, |id| id + 1)
    }

    /// Node `id`'s certificate key, as light clients would take it from its certificate.
    pub fn node_key(&self, id: u64) -> elchain_types::crypto::PublicKey {
        let certs = self.dir.path().join("certs");
        let identity = Identity::load(&TlsFiles {
            ca_cert: self.dir.path().join("ca/ca.pem"),
            cert: certs.join(format!("node-{id}.pem")),
            key: certs.join(format!("node-{id}.key")),
            crl: None,
        })
        .expect("node identity");
        elchain_types::crypto::PublicKey(identity.local().public_key.expect("Ed25519 node key"))
    }

    /// Submit to node `id` directly (bypassing its relay), giving up after a few seconds.
    pub async fn isolated_submit(&self, id: u64, txs: Vec<Vec<u8>>) -> Result<Vec<Receipt>, String> {
        let client = self.client().await;
        for other in self.nodes.keys() {
            client.forget_node(*other);
        }
        client.add_node(id, self.nodes[&id].listen);
        let r = client.submit(CHAIN, txs, Duration::from_secs(3)).await.map_err(|e| e.to_string());
        client.close().await;
        r
    }

    /// The directory entry of `chain`: its replicas' ids and the addresses peers use.
    pub fn chain_info(&self, chain: u32) -> elchain_types::shardmap::ChainInfo {
        let replicas: Vec<(u64, SocketAddr)> =
            self.nodes.values().filter(|n| n.chains.contains(&chain)).map(|n| (n.id, n.public)).collect();
        crate::governance::chain_info(chain, &replicas)
    }

    /// Every chain some node serves.
    pub fn chains(&self) -> Vec<u32> {
        let mut c: Vec<u32> = self.nodes.values().flat_map(|n| n.chains.iter().copied()).collect();
        c.sort_unstable();
        c.dedup();
        c
    }

    /// Start new nodes `ids` serving one new chain `chain` (the first one bootstraps it).
    pub fn add_chain(&mut self, chain: u32, ids: &[u64]) {
        for id in ids {
            self.prepare_node(*id);
        }
        for (i, id) in ids.iter().enumerate() {
            self.write_config_for(*id, ids, i == 0, &[chain]);
            self.spawn(*id);
        }
    }

    /// Write router `id`'s config (HTTP on `http`, the meta chain's replicas from this cluster)
    /// and start it.
    pub fn start_router(&mut self, id: u64, http: SocketAddr) -> SocketAddr {
        self.start_router_with(id, http, "")
    }

    /// [`Cluster::start_router`] with `extra` TOML appended to its config (e.g. `[limits]`).
    pub fn start_router_with(&mut self, id: u64, http: SocketAddr, extra: &str) -> SocketAddr {
        let certs = self.dir.path().join("certs");
        if !certs.join(format!("node-{id}.pem")).exists() {
            ca::issue_node(&self.dir.path().join("ca"), id, "city-services", ca::Role::Router, &certs, false)
                .expect("issue router certificate");
        }
        let meta: String = self
            .nodes
            .values()
            .filter(|n| n.chains.contains(&0))
            .map(|n| format!("\n[[meta]]\nid = {}\naddr = \"{}\"\n", n.id, n.public))
            .collect();
        let config = self.dir.path().join(format!("router-{id}.toml"));
        let text = format!(
            "listen = \"{http}\"\nrefresh_ms = 300\nchain_timeout_ms = 10000\n\n[tls]\nca_cert = \"{ca}\"\n\
             cert = \"{certs}/node-{id}.pem\"\nkey = \"{certs}/node-{id}.key\"\n{meta}\n{extra}",
            ca = self.dir.path().join("ca/ca.pem").display(),
            certs = certs.display(),
        );
        std::fs::write(&config, text).expect("write router config");
        let log = self.dir.path().join(format!("router-{id}.log"));
        self.routers.insert(id, RouterProc { id, http, config, log, child: None });
        self.spawn_router(id);
        http
    }

    /// Start (or restart) router `id`'s process.
    pub fn spawn_router(&mut self, id: u64) {
        let r = self.routers.get_mut(&id).expect("known router");
        assert!(r.child.is_none(), "router {id} is already running");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&r.log).expect("log file");
        let child = Command::new(&self.bin)
            .args(["router", "--config", r.config.to_str().expect("utf-8 path")])
            .env("NO_COLOR", "1")
            .env("ELCHAIN_LOG", std::env::var("ELCHAIN_LOG").unwrap_or_else(|_| "info".into()))
            .stdout(Stdio::from(log.try_clone().expect("log file")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("router starts");
        r.child = Some(child);
    }

    /// kill -9 router `id`.
    pub fn kill_router(&mut self, id: u64) {
        if let Some(mut c) = self.routers.get_mut(&id).and_then(|r| r.child.take()) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Router `id`'s log so far.
    pub fn router_log(&self, id: u64) -> String {
        std::fs::read_to_string(&self.routers[&id].log).unwrap_or_default()
    }

    /// A client with a router certificate.
    pub async fn client(&self) -> Client {
        let certs = self.dir.path().join("certs");
        let cert = certs.join("node-900.pem");
        if !cert.exists() {
            ca::issue_node(&self.dir.path().join("ca"), 900, "city-services", ca::Role::Router, &certs, false)
                .expect("issue router certificate");
        }
        let identity = Identity::load(&TlsFiles {
            ca_cert: self.dir.path().join("ca/ca.pem"),
            cert,
            key: certs.join("node-900.key"),
            crl: None,
        })
        .expect("client identity");
        let nodes = self.nodes.values().map(|n| (n.id, n.public)).collect();
        Client::new(identity, nodes).await.expect("client endpoint")
    }

    /// Wait until every running node in `ids` reports the same applied height as the others, at
    /// least `min_height`.
    pub async fn wait_converged(&self, client: &Client, ids: &[u64], min_height: u64, deadline: Duration) -> u64 {
        let start = std::time::Instant::now();
        loop {
            let mut statuses: Vec<ChainStatus> = Vec::new();
            for id in ids {
                if let Ok(s) = client.status(*id, CHAIN).await {
                    statuses.push(s);
                }
            }
            if statuses.len() == ids.len() {
                let h = statuses[0].height;
                if h >= min_height && statuses.iter().all(|s| s.height == h && s.tip_hash == statuses[0].tip_hash) {
                    return h;
                }
            }
            assert!(
                start.elapsed() < deadline,
                "nodes {ids:?} did not converge at height >= {min_height}: {statuses:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A free TCP port on loopback for a child process (a router's HTTP listener, a node's metrics),
/// out of the way of ports bound meanwhile (see `reserve_port`).
pub fn free_tcp() -> SocketAddr {
    reserve_port(false)
}

/// A node config's text with `[testing] apply_delay_ms` set to `delay_ms`.
fn with_apply_delay(config: &str, delay_ms: u64) -> String {
    let line = format!("apply_delay_ms = {delay_ms}");
    let mut out: Vec<String> = Vec::new();
    let (mut section, mut done) = (String::new(), false);
    for l in config.lines() {
        let t = l.trim();
        if t.starts_with('[') {
            if section == "[testing]" && !done {
                out.push(line.clone());
                done = true;
            }
            section = t.to_string();
        }
        if section == "[testing]" && t.split('=').next().is_some_and(|k| k.trim() == "apply_delay_ms") {
            if !done {
                out.push(line.clone());
                done = true;
            }
            continue;
        }
        out.push(l.to_string());
    }
    if !done {
        if section != "[testing]" {
            out.push("\n[testing]".into());
        }
        out.push(line);
    }
    out.join("\n") + "\n"
}

/// How long a process may take to stop after SIGTERM before it is killed: as long as the
/// systemd units in `deploy/` give it. A node writes the blocks it has applied but not yet
/// written (up to 400,000 transactions) to its chain store before it exits, which takes seconds
/// on a busy machine.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// SIGTERM a process and wait for a clean exit (see [`wait_for_exit`]).
fn terminate(c: Child) -> Result<(), String> {
    sigterm(&c);
    wait_for_exit(c)
}

/// Ask a process to stop.
fn sigterm(c: &Child) {
    let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
}

/// Wait up to [`STOP_TIMEOUT`] for a clean exit (killing the process after that).
fn wait_for_exit(mut c: Child) -> Result<(), String> {
    let started = std::time::Instant::now();
    while started.elapsed() < STOP_TIMEOUT {
        if let Ok(Some(status)) = c.try_wait() {
            return if status.success() { Ok(()) } else { Err(format!("exited with {status}")) };
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = c.kill();
    let _ = c.wait();
    Err(format!("did not stop within {} s", STOP_TIMEOUT.as_secs()))
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for r in self.routers.values_mut() {
            if let Some(mut c) = r.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        for n in self.nodes.values_mut() {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// A UDP relay in front of a node: forwards datagrams both ways, drops them on command, or holds
/// them back for a while (a slow network).
///
/// Delayed datagrams wait in a delay queue served by a thread of their own, so a delay adds
/// latency without slowing the forwarding threads (and so the throughput) down; datagrams of one
/// flow (one peer, one direction) leave in the order they came.
pub struct Relay {
    /// The relay's address (what peers dial).
    pub addr: SocketAddr,
    rules: Arc<Rules>,
}

/// What a relay does with the datagrams it forwards, shared with its threads.
#[derive(Default)]
struct Rules {
    stop: AtomicBool,
    /// Drop everything.
    blocked: AtomicBool,
    /// Delay everything by this many milliseconds.
    delay_ms: AtomicU64,
    /// Rules for the datagrams from and to one peer.
    peers: Mutex<BTreeMap<SocketAddr, PeerRule>>,
}

#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct PeerRule {
    blocked: bool,
    delay_ms: u64,
}

impl Rules {
    /// How long to hold a datagram from or to `peer`; `None`: drop it.
    fn verdict(&self, peer: SocketAddr) -> Option<Duration> {
        if self.blocked.load(Ordering::Relaxed) {
            return None;
        }
        let rule = self.peers.lock().expect("relay rules").get(&peer).copied().unwrap_or_default();
        (!rule.blocked).then(|| Duration::from_millis(self.delay_ms.load(Ordering::Relaxed).max(rule.delay_ms)))
    }

    fn set_peer(&self, peer: SocketAddr, change: impl FnOnce(&mut PeerRule)) {
        let mut peers = self.peers.lock().expect("relay rules");
        let rule = peers.entry(peer).or_default();
        change(rule);
        if *rule == PeerRule::default() {
            peers.remove(&peer);
        }
    }
}

/// A datagram in the delay queue.
struct Held {
    due: Instant,
    seq: u64,
    sock: Arc<UdpSocket>,
    /// `None`: the socket is connected to its destination.
    to: Option<SocketAddr>,
    bytes: Vec<u8>,
}

/// Send a datagram on `sock`, to `to` or to where it is connected; a datagram that cannot be
/// sent is lost, as on a network.
fn send(sock: &UdpSocket, to: Option<SocketAddr>, bytes: &[u8]) {
    let _ = match to {
        Some(to) => sock.send_to(bytes, to),
        None => sock.send(bytes),
    };
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Held {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

/// One direction of one peer's traffic through a relay: sends a datagram now or through the
/// delay queue, never ahead of one of its own that is still held.
struct Flow {
    sock: Arc<UdpSocket>,
    to: Option<SocketAddr>,
    queue: mpsc::Sender<Held>,
    seq: Arc<AtomicU64>,
    /// When this flow's last held datagram is due.
    last_due: Option<Instant>,
}

impl Flow {
    /// Past a held datagram's due time by this much, it has surely left: the next may go
    /// straight out without overtaking it.
    const DRAINED: Duration = Duration::from_millis(20);

    fn forward(&mut self, bytes: &[u8], delay: Duration) {
        let now = Instant::now();
        let queued = self.last_due.is_some_and(|d| now < d + Self::DRAINED);
        if delay.is_zero() && !queued {
            send(&self.sock, self.to, bytes);
            return;
        }
        // Never before an earlier datagram of the same flow (the delay may have just shrunk).
        let due = self.last_due.map_or(now + delay, |d| d.max(now + delay));
        self.last_due = Some(due);
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let held = Held { due, seq, sock: self.sock.clone(), to: self.to, bytes: bytes.to_vec() };
        let _ = self.queue.send(held);
    }
}

/// Send held datagrams when they are due, earliest first, until every sender is gone.
fn delay_queue(rx: mpsc::Receiver<Held>) {
    let mut heap: BinaryHeap<Reverse<Held>> = BinaryHeap::new();
    loop {
        let next = match heap.peek() {
            None => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
            Some(Reverse(h)) => rx.recv_timeout(h.due.saturating_duration_since(Instant::now())),
        };
        match next {
            Ok(h) => heap.push(Reverse(h)),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        let now = Instant::now();
        while heap.peek().is_some_and(|Reverse(h)| h.due <= now) {
            if let Some(Reverse(h)) = heap.pop() {
                send(&h.sock, h.to, &h.bytes);
            }
        }
    }
}

impl Relay {
    /// Relay datagrams sent to a fresh port to `target`.
    pub fn start(target: SocketAddr) -> Relay {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").expect("relay socket"));
        front.set_read_timeout(Some(Duration::from_millis(100))).expect("timeout");
        let addr = front.local_addr().expect("relay address");
        let rules = Arc::new(Rules::default());
        let (queue, held) = mpsc::channel::<Held>();
        std::thread::spawn(move || delay_queue(held));
        let seq = Arc::new(AtomicU64::new(0));
        let r = rules.clone();
        std::thread::spawn(move || {
            // One upstream socket per client, so the node sees distinct peers.
            let mut inbound: BTreeMap<SocketAddr, Flow> = BTreeMap::new();
            let mut buf = vec![0u8; 65536];
            while !r.stop.load(Ordering::Relaxed) {
                let Ok((n, from)) = front.recv_from(&mut buf) else { continue };
                let Some(delay) = r.verdict(from) else { continue };
                let flow = inbound.entry(from).or_insert_with(|| {
                    let sock = Arc::new(UdpSocket::bind("127.0.0.1:0").expect("upstream socket"));
                    sock.set_read_timeout(Some(Duration::from_millis(100))).expect("timeout");
                    sock.connect(target).expect("connect upstream");
                    let mut back = Flow {
                        sock: front.clone(),
                        to: Some(from),
                        queue: queue.clone(),
                        seq: seq.clone(),
                        last_due: None,
                    };
                    let (up, r2) = (sock.clone(), r.clone());
                    std::thread::spawn(move || {
                        let mut buf = vec![0u8; 65536];
                        while !r2.stop.load(Ordering::Relaxed) {
                            let Ok(n) = up.recv(&mut buf) else { continue };
                            if let Some(delay) = r2.verdict(from) {
                                back.forward(&buf[..n], delay);
                            }
                        }
                    });
                    Flow { sock, to: None, queue: queue.clone(), seq: seq.clone(), last_due: None }
                });
                flow.forward(&buf[..n], delay);
            }
        });
        Relay { addr, rules }
    }

    /// Drop everything (the node behind is cut off) or forward again.
    pub fn set_blocked(&self, blocked: bool) {
        self.rules.blocked.store(blocked, Ordering::Relaxed);
    }

    /// Drop (or forward again) traffic coming from and going to `peer`.
    pub fn block_peer(&self, peer: SocketAddr, blocked: bool) {
        self.rules.set_peer(peer, |r| r.blocked = blocked);
    }

    /// Hold every datagram, both ways, for `delay` (zero: forward at once).
    pub fn set_delay(&self, delay: Duration) {
        self.rules.delay_ms.store(delay.as_millis() as u64, Ordering::Relaxed);
    }

    /// Hold datagrams from and to `peer` for `delay` (zero: no longer).
    pub fn delay_peer(&self, peer: SocketAddr, delay: Duration) {
        self.rules.set_peer(peer, |r| r.delay_ms = delay.as_millis() as u64);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.rules.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_apply_delay_is_set_in_the_testing_section_only() {
        let config = "node_id = 1\n\n[testing]\nallow_raw_propose = false\napply_delay_ms = 0\n\n[[chains]]\nid = 1\n";
        let slow = with_apply_delay(config, 40);
        let parsed: toml::Table = toml::from_str(&slow).unwrap();
        assert_eq!(parsed["testing"]["apply_delay_ms"].as_integer(), Some(40), "{slow}");
        assert_eq!(parsed["testing"]["allow_raw_propose"].as_bool(), Some(false));
        assert_eq!(parsed["chains"][0]["id"].as_integer(), Some(1));
        assert_eq!(with_apply_delay(&slow, 0), with_apply_delay(config, 0), "undone");
        // A [testing] section without the key, or none at all.
        for text in ["node_id = 1\n[testing]\nallow_raw_propose = true\n[[chains]]\nid = 2\n", "node_id = 1\n"] {
            let parsed: toml::Table = toml::from_str(&with_apply_delay(text, 7)).unwrap();
            assert_eq!(parsed["testing"]["apply_delay_ms"].as_integer(), Some(7), "{text}");
        }
    }

    /// A UDP echo server; its address.
    fn echo() -> SocketAddr {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = s.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while let Ok((n, from)) = s.recv_from(&mut buf) {
                let _ = s.send_to(&buf[..n], from);
            }
        });
        addr
    }

    /// Send `n` numbered datagrams through `relay` and read the echoes: their numbers in arrival
    /// order, and how long the first took to come back.
    fn round_trips(relay: &Relay, n: u32) -> (Vec<u32>, Duration) {
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let t0 = Instant::now();
        for i in 0..n {
            c.send_to(&i.to_be_bytes(), relay.addr).unwrap();
        }
        let mut got = Vec::new();
        let mut first = Duration::ZERO;
        let mut buf = [0u8; 16];
        for _ in 0..n {
            let Ok(k) = c.recv(&mut buf) else { break };
            if got.is_empty() {
                first = t0.elapsed();
            }
            got.push(u32::from_be_bytes(buf[..k].try_into().unwrap()));
        }
        (got, first)
    }

    #[test]
    fn a_delayed_relay_holds_datagrams_each_way_and_keeps_their_order() {
        let relay = Relay::start(echo());
        let (fast, _) = round_trips(&relay, 50);
        assert_eq!(fast, (0..50).collect::<Vec<_>>());

        relay.set_delay(Duration::from_millis(150));
        let (slow, first) = round_trips(&relay, 200);
        assert_eq!(slow, (0..200).collect::<Vec<_>>(), "every datagram, in order");
        assert!(first >= Duration::from_millis(300), "150 ms each way, yet back after {first:?}");

        relay.set_delay(Duration::ZERO);
        relay.set_blocked(true);
        let (none, _) = {
            let c = UdpSocket::bind("127.0.0.1:0").unwrap();
            c.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
            c.send_to(&[1, 2, 3, 4], relay.addr).unwrap();
            let mut buf = [0u8; 16];
            (c.recv(&mut buf).ok(), ())
        };
        assert_eq!(none, None, "a blocked relay forwards nothing");
        relay.set_blocked(false);
        assert_eq!(round_trips(&relay, 5).0, vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn a_peer_delay_applies_to_that_peer_only() {
        let relay = Relay::start(echo());
        let slow = UdpSocket::bind("127.0.0.1:0").unwrap();
        relay.delay_peer(slow.local_addr().unwrap(), Duration::from_millis(1000));
        let t0 = Instant::now();
        slow.send_to(b"ping", relay.addr).unwrap();
        // Another peer's datagrams pass while the slow peer's are held.
        assert_eq!(round_trips(&relay, 3).0, vec![0, 1, 2]);
        slow.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 8];
        assert!(slow.recv(&mut buf).is_err(), "the slow peer's echo came back early");
        slow.set_nonblocking(false).unwrap();
        slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        slow.recv(&mut buf).unwrap();
        assert!(t0.elapsed() >= Duration::from_millis(2000), "held {:?} for 1 s each way", t0.elapsed());
        relay.delay_peer(slow.local_addr().unwrap(), Duration::ZERO);
        assert!(relay.rules.peers.lock().unwrap().is_empty(), "an undone rule is forgotten");
    }
}
