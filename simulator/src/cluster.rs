//! Start and control a local cluster of real `elchain node` processes on loopback.
//!
//! Used by the fault tests, `elchain bench` and the simulator. The cluster makes its own
//! consortium CA and node certificates, writes each node's config, and starts the processes.
//! Every node's address in the chain's membership is a UDP relay ([`Relay`]) in front of it, so
//! a fault can cut a node off from the others (both directions) without touching the node.
//!
//! ```text
//!  Cluster::start ─► ca init ─► issue node certs ─► node-<id>.toml ─► spawn `elchain node`
//!                         peers dial  relay(id) ──UDP──► node id's QUIC socket
//! ```

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP port");
    s.local_addr().expect("local address")
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
        let metrics = self.settings.metrics.then(|| {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free TCP port");
            l.local_addr().expect("local address")
        });
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

[batch]
max_txs = {block_txs}
max_wait_ms = {block_wait}

[testing]
allow_raw_propose = {raw}
apply_delay_ms = {delay}
{chains}"#,
            listen = n.listen,
            data = n.data.display(),
            ca = ca.display(),
            certs = certs.display(),
            snap = s.snapshot_every,
            keep = s.keep_logs,
            raw = s.allow_raw_propose,
            delay = s.apply_delay_ms,
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
    /// when it had already failed or does not stop cleanly within 10 s.
    pub fn try_stop(&mut self, id: u64) -> Result<(), String> {
        let Some(c) = self.nodes.get_mut(&id).and_then(|n| n.child.take()) else { return Ok(()) };
        terminate(c).map_err(|e| format!("node {id} {e}; its log:\n{}", self.log(id)))
    }

    /// Stop node `id`, panicking unless it stops cleanly (for tests).
    pub fn stop(&mut self, id: u64) {
        if let Err(e) = self.try_stop(id) {
            panic!("{e}");
        }
    }

    /// Stop router `id` with SIGTERM; an error (with its log) unless it stops cleanly in 10 s.
    pub fn try_stop_router(&mut self, id: u64) -> Result<(), String> {
        let Some(c) = self.routers.get_mut(&id).and_then(|r| r.child.take()) else { return Ok(()) };
        terminate(c).map_err(|e| format!("router {id} {e}; its log:\n{}", self.router_log(id)))
    }

    /// Stop every router and node; the errors of those that did not stop cleanly.
    pub fn try_stop_all(&mut self) -> Vec<String> {
        let routers: Vec<u64> = self.routers.keys().copied().collect();
        let mut errors: Vec<String> = routers.into_iter().filter_map(|id| self.try_stop_router(id).err()).collect();
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        errors.extend(ids.into_iter().filter_map(|id| self.try_stop(id).err()));
        errors
    }

    /// Stop every node, panicking unless all stop cleanly (for tests).
    pub fn stop_all(&mut self) {
        let errors = self.try_stop_all();
        assert!(errors.is_empty(), "{}", errors.join("\n"));
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

/// SIGTERM a process and wait up to 10 s for a clean exit (killing it after that).
fn terminate(mut c: Child) -> Result<(), String> {
    let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
    for _ in 0..100 {
        if let Ok(Some(status)) = c.try_wait() {
            return if status.success() { Ok(()) } else { Err(format!("exited with {status}")) };
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = c.kill();
    let _ = c.wait();
    Err("did not stop within 10 s".into())
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

/// A UDP relay in front of a node: forwards datagrams both ways, or drops them on command.
pub struct Relay {
    /// The relay's address (what peers dial).
    pub addr: SocketAddr,
    blocked: Arc<AtomicBool>,
    blocked_peers: Arc<Mutex<Vec<SocketAddr>>>,
    stop: Arc<AtomicBool>,
}

impl Relay {
    /// Relay datagrams sent to a fresh port to `target`.
    pub fn start(target: SocketAddr) -> Relay {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").expect("relay socket"));
        front.set_read_timeout(Some(Duration::from_millis(100))).expect("timeout");
        let addr = front.local_addr().expect("relay address");
        let blocked = Arc::new(AtomicBool::new(false));
        let blocked_peers: Arc<Mutex<Vec<SocketAddr>>> = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (b, bp, st) = (blocked.clone(), blocked_peers.clone(), stop.clone());
        std::thread::spawn(move || {
            // One upstream socket per client, so the node sees distinct peers.
            let mut upstream: BTreeMap<SocketAddr, Arc<UdpSocket>> = BTreeMap::new();
            let mut buf = vec![0u8; 65536];
            while !st.load(Ordering::Relaxed) {
                let Ok((n, from)) = front.recv_from(&mut buf) else { continue };
                if b.load(Ordering::Relaxed) || bp.lock().expect("lock").contains(&from) {
                    continue;
                }
                let up = upstream.entry(from).or_insert_with(|| {
                    let sock = Arc::new(UdpSocket::bind("127.0.0.1:0").expect("upstream socket"));
                    sock.set_read_timeout(Some(Duration::from_millis(100))).expect("timeout");
                    sock.connect(target).expect("connect upstream");
                    let (sock2, front2, b2, bp2, st2) =
                        (sock.clone(), front.clone(), b.clone(), bp.clone(), st.clone());
                    std::thread::spawn(move || {
                        let mut buf = vec![0u8; 65536];
                        while !st2.load(Ordering::Relaxed) {
                            let Ok(n) = sock2.recv(&mut buf) else { continue };
                            if b2.load(Ordering::Relaxed) || bp2.lock().expect("lock").contains(&from) {
                                continue;
                            }
                            let _ = front2.send_to(&buf[..n], from);
                        }
                    });
                    sock
                });
                let _ = up.send(&buf[..n]);
            }
        });
        Relay { addr, blocked, blocked_peers, stop }
    }

    /// Drop everything (the node behind is cut off) or forward again.
    pub fn set_blocked(&self, blocked: bool) {
        self.blocked.store(blocked, Ordering::Relaxed);
    }

    /// Drop (or forward again) traffic coming from `peer`.
    pub fn block_peer(&self, peer: SocketAddr, blocked: bool) {
        let mut list = self.blocked_peers.lock().expect("lock");
        list.retain(|p| *p != peer);
        if blocked {
            list.push(peer);
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
