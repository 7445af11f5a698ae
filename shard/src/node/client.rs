//! A client of a chain's replicas: follows the leader and retries what is safe to retry.
//!
//! Resubmitting a transaction is always safe: its id is accepted once per chain, so a retry after
//! an ambiguous failure either commits it or shows up as `replay` with the original in the index.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;

use super::rpc::{decode, encode, Answer, ChainStatus, Query, Receipt, Request, Response};
use crate::net::{BoxFuture, Endpoint, Handler, Identity, NetError, PeerIdentity, SimNet, Wire};
use crate::raft::NodeId;

/// Why a client request did not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No node answered usefully before the deadline; the last problem is given.
    #[error("no answer within {waited:?}: {last}")]
    Deadline {
        /// How long the client tried.
        waited: Duration,
        /// The last error seen.
        last: String,
    },
    /// A node answered with an error that retrying will not fix.
    #[error("node {node}: {message}")]
    Refused {
        /// The node.
        node: NodeId,
        /// Its message.
        message: String,
    },
}

/// While a request is unanswered, the client looks for a new leader this often.
const HEDGE_AFTER: Duration = Duration::from_millis(500);

/// How long the client waits for a replica's status while looking for a new leader.
const STATUS_PROBE: Duration = Duration::from_millis(500);

struct NoService;

impl Handler for NoService {
    fn handle(&self, _peer: PeerIdentity, _request: Bytes) -> BoxFuture<Result<Bytes, String>> {
        Box::pin(async { Err("this endpoint only makes requests".to_string()) })
    }
}

/// Talks to the replicas of chains. Clones share one endpoint, node table and leader cache;
/// [`Client::fork`] gives a client with tables of its own.
#[derive(Clone)]
pub struct Client {
    endpoint: Wire,
    nodes: Arc<RwLock<BTreeMap<NodeId, SocketAddr>>>,
    /// The replicas of each chain, when known; a chain without an entry is tried on every node.
    replicas: Arc<RwLock<HashMap<u32, Vec<NodeId>>>>,
    timeout: Duration,
    /// Last leader seen per chain: where the next request goes first.
    leaders: Arc<Mutex<HashMap<u32, NodeId>>>,
}

impl Client {
    /// A client with `identity` (a certificate of the consortium CA) that knows `nodes`.
    pub async fn new(identity: Identity, nodes: BTreeMap<NodeId, SocketAddr>) -> Result<Self, NetError> {
        let bind: SocketAddr = ([127, 0, 0, 1], 0).into();
        let endpoint = Endpoint::bind(bind, identity, Arc::new(NoService)).await?;
        Ok(Self::on_wire(endpoint.into(), nodes))
    }

    /// A client on the simulator's network as node `id`, presenting `identity` to the nodes.
    pub fn simulated(net: &SimNet, id: NodeId, identity: PeerIdentity, nodes: BTreeMap<NodeId, SocketAddr>) -> Self {
        Self::on_wire(Wire::Sim(net.attach(id, identity, Arc::new(NoService))), nodes)
    }

    fn on_wire(endpoint: Wire, nodes: BTreeMap<NodeId, SocketAddr>) -> Self {
        Self {
            endpoint,
            nodes: Arc::new(RwLock::new(nodes)),
            replicas: Arc::default(),
            timeout: Duration::from_secs(5),
            leaders: Arc::default(),
        }
    }

    /// A client on the same endpoint with its own copy of the node and replica tables, so that
    /// forgetting a node in one does not affect the other.
    pub fn fork(&self) -> Client {
        Client {
            endpoint: self.endpoint.clone(),
            nodes: Arc::new(RwLock::new(self.nodes())),
            replicas: Arc::new(RwLock::new(self.replicas.read().expect("replica table").clone())),
            timeout: self.timeout,
            leaders: Arc::new(Mutex::new(self.leaders.lock().expect("leader cache").clone())),
        }
    }

    /// Learn (or correct) a node's address.
    pub fn add_node(&self, id: NodeId, addr: SocketAddr) {
        self.nodes.write().expect("node table").insert(id, addr);
    }

    /// Stop talking to a node.
    pub fn forget_node(&self, id: NodeId) {
        self.nodes.write().expect("node table").remove(&id);
    }

    /// Say which nodes serve `chain`: requests for it go to those only.
    pub fn set_replicas(&self, chain: u32, nodes: Vec<NodeId>) {
        self.replicas.write().expect("replica table").insert(chain, nodes);
    }

    /// The nodes this client knows.
    pub fn nodes(&self) -> BTreeMap<NodeId, SocketAddr> {
        self.nodes.read().expect("node table").clone()
    }

    /// The nodes to try for `chain`.
    fn candidates(&self, chain: u32) -> Vec<NodeId> {
        let nodes = self.nodes.read().expect("node table");
        match self.replicas.read().expect("replica table").get(&chain) {
            Some(ids) => ids.iter().copied().filter(|id| nodes.contains_key(id)).collect(),
            None => nodes.keys().copied().collect(),
        }
    }

    /// One request to one node.
    pub async fn request(&self, node: NodeId, req: &Request) -> Result<Response, String> {
        let addr = *self.nodes.read().expect("node table").get(&node).ok_or_else(|| format!("unknown node {node}"))?;
        let bytes = self.endpoint.call(node, addr, encode(req), self.timeout).await.map_err(|e| e.to_string())?;
        decode(&bytes)
    }

    /// A node's view of a chain.
    pub async fn status(&self, node: NodeId, chain: u32) -> Result<ChainStatus, String> {
        match self.request(node, &Request::Status { chain }).await? {
            Response::Status(s) => Ok(s),
            other => Err(format!("unexpected answer {other:?}")),
        }
    }

    /// Wait until some node reports a leader for `chain`.
    pub async fn wait_leader(&self, chain: u32, deadline: Duration) -> Result<NodeId, ClientError> {
        let start = Instant::now();
        let mut last = String::from("no node answered");
        while start.elapsed() < deadline {
            for n in self.candidates(chain) {
                match self.status(n, chain).await {
                    Ok(s) => {
                        if let Some(l) = s.leader {
                            if self.status(l, chain).await.is_ok_and(|ls| ls.leader == Some(l)) {
                                return Ok(l);
                            }
                        }
                        last = format!("node {n} knows no leader");
                    }
                    Err(e) => last = e,
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(ClientError::Deadline { waited: deadline, last })
    }

    /// Send `req` to the chain's leader, following redirects and trying other nodes, until an
    /// answer other than "not leader" comes or `deadline` passes.
    pub async fn to_leader(&self, req: Request, deadline: Duration) -> Result<Response, ClientError> {
        let start = Instant::now();
        let chain = req.chain();
        let mut hint: Option<NodeId> = self.leaders.lock().expect("leader cache").get(&chain).copied();
        let mut last = String::from("no node tried");
        let mut round = 0usize;
        while start.elapsed() < deadline {
            let ids = self.candidates(chain);
            if ids.is_empty() {
                return Err(ClientError::Refused { node: 0, message: format!("no known replica of chain {chain}") });
            }
            let node = hint.take().unwrap_or_else(|| ids[round % ids.len()]);
            round += 1;
            let (node, answer) = self.hedged(chain, node, &ids, &req).await;
            if answer.is_err() {
                // Do not send the next request to a node that did not answer this one.
                let mut leaders = self.leaders.lock().expect("leader cache");
                if leaders.get(&chain) == Some(&node) {
                    leaders.remove(&chain);
                }
            }
            match answer {
                Ok(Response::NotLeader { leader }) => {
                    last = format!("node {node} is not the leader");
                    hint = leader.map(|(id, _)| id).filter(|id| *id != node && ids.contains(id));
                    if hint.is_none() {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                Ok(Response::Error(m)) => {
                    // Leadership changes surface as errors while a write is in flight; those
                    // are retried, anything else is final.
                    // A node stopping with the write in flight ("raft stopped") is one of them:
                    // resending the same bytes is safe, they commit at most once.
                    if m.contains("leader")
                        || m.contains("shutting down")
                        || m.contains("starting")
                        || m.contains("stopped")
                    {
                        last = format!("node {node}: {m}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    } else {
                        return Err(ClientError::Refused { node, message: m });
                    }
                }
                Ok(other) => {
                    self.leaders.lock().expect("leader cache").insert(chain, node);
                    return Ok(other);
                }
                Err(e) => {
                    last = format!("node {node}: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        Err(ClientError::Deadline { waited: deadline, last })
    }

    /// Send `req` to `node`; while no answer has come, ask the chain's other replicas every
    /// [`HEDGE_AFTER`] who leads now and, once one names another leader, send the same request
    /// there too and take the first useful answer. A leader killed or cut off is then left behind in
    /// about a second instead of after the full request timeout. Sending a request twice is
    /// safe: the same transaction bytes commit at most once.
    async fn hedged(
        &self,
        chain: u32,
        node: NodeId,
        ids: &[NodeId],
        req: &Request,
    ) -> (NodeId, Result<Response, String>) {
        let first = self.request(node, req);
        tokio::pin!(first);
        // Until it answers, look again every HEDGE_AFTER: the other replicas notice a lost
        // leader only after their election timeout, and elect another a little later.
        let other = loop {
            tokio::select! {
                biased;
                r = &mut first => return (node, r),
                _ = tokio::time::sleep(HEDGE_AFTER) => {}
            }
            if let Some(other) = self.other_leader(chain, node, ids).await {
                break other;
            }
        };
        let second = self.request(other, req);
        tokio::pin!(second);
        let useful = |r: &Result<Response, String>| !matches!(r, Err(_) | Ok(Response::NotLeader { .. }));
        tokio::select! {
            biased;
            r = &mut first => {
                if useful(&r) { (node, r) } else { (other, second.await) }
            }
            r = &mut second => {
                if useful(&r) { (other, r) } else { (node, first.await) }
            }
        }
    }

    /// A leader of `chain` other than `node` that one of the other replicas reports, asking
    /// each briefly.
    async fn other_leader(&self, chain: u32, node: NodeId, ids: &[NodeId]) -> Option<NodeId> {
        for &id in ids.iter().filter(|id| **id != node) {
            let status = tokio::time::timeout(STATUS_PROBE, self.status(id, chain)).await;
            if let Ok(Ok(s)) = status {
                if let Some(l) = s.leader.filter(|l| *l != node && ids.contains(l)) {
                    return Some(l);
                }
            }
        }
        None
    }

    /// Submit encoded transactions and wait for their receipts.
    pub async fn submit(&self, chain: u32, txs: Vec<Vec<u8>>, deadline: Duration) -> Result<Vec<Receipt>, ClientError> {
        match self.to_leader(Request::Submit { chain, txs }, deadline).await? {
            Response::Receipts(r) => Ok(r),
            other => Err(ClientError::Refused { node: 0, message: format!("unexpected answer {other:?}") }),
        }
    }

    /// Read a chain's state, preferring its leader (whose applied state is the newest).
    pub async fn query(&self, chain: u32, query: Query, deadline: Duration) -> Result<Answer, ClientError> {
        match self.to_leader(Request::Query { chain, query }, deadline).await? {
            Response::Answer(a) => Ok(a),
            other => Err(ClientError::Refused { node: 0, message: format!("unexpected answer {other:?}") }),
        }
    }

    /// The last leader this client saw for `chain`.
    pub fn leader_hint(&self, chain: u32) -> Option<NodeId> {
        self.leaders.lock().expect("leader cache").get(&chain).copied()
    }

    /// Close the client's endpoint.
    pub async fn close(&self) {
        self.endpoint.close().await;
    }
}
