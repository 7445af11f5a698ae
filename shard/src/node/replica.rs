//! One chain's replica on a node: Raft, admission and the block batcher.
//!
//! ```text
//!  Submit(txs) ─► leader? ─no─► NotLeader { leader }
//!       │ yes
//!       ▼
//!  admission: Verifier on the rayon pool (decode, shape, signatures) ─► refused: Rejected receipts
//!       │ verified
//!       ▼
//!  batcher: close a block at max_txs or max_wait ─► Raft::client_write (up to in_flight at once)
//!       │ committed and applied on a quorum
//!       ▼
//!  receipts: height, index, outcome
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, Raft, SnapshotPolicy};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tracing::{info, warn};

use elchain_types::block::{Checkpoint, CheckpointSig};
use elchain_types::codec::{Decode, Encode};
use elchain_types::contract::Consortium;
use elchain_types::crypto::{Keypair, PublicKey};
use elchain_types::ids::{ChainId, Hash32, Timestamp};

use super::admission::Admission;
use super::config::{ChainConfig, NodeConfig};
use super::mempool::{gather, BlockDraft};
use super::network::Network;
use super::rpc::{encode, Answer, ChainStatus, Governance, Query, RaftRpc, Receipt, ReceiptStatus, Request, Response};
use crate::clock::Clock;
use crate::net::{PeerIdentity, Wire};
use crate::raft::log_store::LogStore;
use crate::raft::state_machine::{current, ApplyMetrics, SharedStore, StateMachine, StoreSync};
use crate::raft::{BlockApplied, BlockProposal, ChainRaft, NodeId};
use crate::state::{Key, StateReads, StateView};
use crate::store::Store;
use crate::verifier::{CheckedTx, VerdictCache, Verifier, DEFAULT_BATCH};

/// Header hashes of applied blocks kept in memory for checkpoint gathering.
const RECENT_HEADERS: usize = 1024;

/// Counters exported on `/metrics`.
#[derive(Debug, Default)]
pub struct ReplicaMetrics {
    /// Transactions committed through this node as leader.
    pub committed_txs: AtomicU64,
    /// Transactions refused at admission.
    pub rejected_txs: AtomicU64,
    /// Blocks proposed by this node.
    pub proposed_blocks: AtomicU64,
    /// Transactions waiting for signature verification at admission.
    pub verify_queue: AtomicU64,
    /// The Raft log's fsynced writes and the time they took.
    pub log: Arc<crate::raft::log_store::LogMetrics>,
    /// What applying blocks costs.
    pub apply: Arc<ApplyMetrics>,
}

/// Why a batch was not committed.
#[derive(Debug, Clone)]
enum BatchError {
    NotLeader(Option<(NodeId, String)>),
    Failed(String),
}

/// The applied block and each submitted transaction's position in it, or why not.
type BatchResult = Result<(Arc<BlockApplied>, Vec<usize>), BatchError>;

struct Pending {
    /// Admitted transactions with their entry hashes.
    txs: Vec<(Vec<u8>, Hash32)>,
    /// Where each of `txs` ended up in the block (identical bytes share one position).
    reply: oneshot::Sender<BatchResult>,
}

/// A chain served by this node.
pub struct Replica {
    chain: ChainId,
    node_id: NodeId,
    raft: ChainRaft,
    store: SharedStore,
    admission: Admission,
    batcher: mpsc::Sender<Pending>,
    allow_raw: bool,
    verdicts: Arc<VerdictCache>,
    endpoint: Wire,
    signer: Option<Keypair>,
    clock: Clock,
    /// Checkpoint signatures gathered, by height, until a quorum agrees with the local header.
    pending: Mutex<BTreeMap<u64, Vec<CheckpointSig>>>,
    /// The header hash each pending signature signed, by (height, node).
    pending_hashes: Mutex<BTreeMap<(u64, NodeId), Hash32>>,
    /// Header hashes of the blocks applied lately, by height: what checkpoints are checked
    /// against, without reading blocks back from the store.
    applied: Mutex<BTreeMap<u64, Hash32>>,
    /// Keeps the chain store durable within `[raft] state_sync_ms`.
    sync: Arc<StoreSync>,
    /// Exported counters.
    pub metrics: Arc<ReplicaMetrics>,
}

impl Replica {
    /// Open (or create) the chain's stores under the node's data directory and start Raft,
    /// talking to the other replicas over `endpoint` and stamping blocks with `clock`.
    pub async fn start(
        node: &NodeConfig,
        chain: &ChainConfig,
        consortium: Arc<Consortium>,
        endpoint: Wire,
        signer: Option<Keypair>,
        clock: Clock,
    ) -> anyhow::Result<Arc<Self>> {
        let id = ChainId(chain.id);
        let dir = node.data_dir.join(format!("chain-{}", chain.id));
        std::fs::create_dir_all(&dir)?;
        let store_path = dir.join("chain.redb");
        // Every replica must build the identical genesis header: its time is fixed, not "now".
        let store = if store_path.exists() {
            let s = Store::open(&store_path)?;
            anyhow::ensure!(s.chain() == id, "{} holds chain {}, not {}", store_path.display(), s.chain(), id);
            anyhow::ensure!(
                s.consortium()? == *consortium,
                "{} was created under another consortium definition",
                store_path.display()
            );
            s
        } else {
            Store::create(&store_path, id, &consortium, Timestamp(0))?
        };
        let shared: SharedStore = Arc::new(RwLock::new(Arc::new(store)));
        let verifier = Arc::new(Verifier::new(id, node.verify_threads, DEFAULT_BATCH));
        let log_path = dir.join("raft-log.redb");
        let log =
            if endpoint.is_simulated() { LogStore::open_in_place(&log_path)? } else { LogStore::open(&log_path)? };
        let log_metrics = log.metrics();
        let (applied_tx, applied_rx) = mpsc::unbounded_channel();
        let verdicts = Arc::new(VerdictCache::default());
        let r = &node.raft;
        let sync = Arc::new(StoreSync::with_fsync(
            Duration::from_millis(r.state_sync_ms),
            Duration::from_millis(r.state_fsync_ms),
        ));
        let apply_metrics = Arc::new(ApplyMetrics::default());
        let sm = StateMachine::new(shared.clone(), consortium, verifier.clone())
            .with_sync(sync.clone())
            .with_metrics(apply_metrics.clone())
            .with_applied_hook(applied_tx)
            .with_verdict_cache(verdicts.clone())
            .with_apply_delay(Duration::from_millis(node.testing.apply_delay_ms))
            .in_place(endpoint.is_simulated());
        let config = openraft::Config {
            cluster_name: format!("elchain-chain-{}", chain.id),
            heartbeat_interval: r.heartbeat_ms,
            election_timeout_min: r.election_min_ms,
            election_timeout_max: r.election_max_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(r.snapshot_every),
            max_in_snapshot_log_to_keep: r.keep_logs,
            purge_batch_size: r.purge_batch.max(1),
            max_payload_entries: r.max_payload_entries,
            install_snapshot_timeout: r.install_snapshot_timeout_ms,
            ..Default::default()
        }
        .validate()?;
        let raft = Raft::new(
            node.node_id,
            Arc::new(config),
            Network::new(endpoint.clone(), chain.id, Duration::from_millis(r.heartbeat_ms)),
            log,
            sm,
        )
        .await?;
        if chain.bootstrap && !raft.is_initialized().await? {
            let members: BTreeMap<NodeId, BasicNode> =
                chain.peers.iter().map(|p| (p.id, BasicNode::new(p.addr.to_string()))).collect();
            info!(chain = chain.id, members = ?members.keys().collect::<Vec<_>>(), "forming the chain's cluster");
            if let Err(e) = raft.initialize(members).await {
                warn!(chain = chain.id, error = %e, "cluster already formed");
            }
        }
        let (tx, rx) = mpsc::channel(1024);
        let metrics = Arc::new(ReplicaMetrics { log: log_metrics, apply: apply_metrics, ..ReplicaMetrics::default() });
        let replica = Arc::new(Replica {
            chain: id,
            node_id: node.node_id,
            raft: raft.clone(),
            store: shared,
            admission: Admission::start(verifier, endpoint.is_simulated()),
            batcher: tx,
            allow_raw: node.testing.allow_raw_propose,
            verdicts,
            endpoint,
            signer,
            clock,
            pending: Mutex::new(BTreeMap::new()),
            pending_hashes: Mutex::new(BTreeMap::new()),
            applied: Mutex::new(BTreeMap::new()),
            sync,
            metrics: metrics.clone(),
        });
        // The planted bug of `[testing] ack_before_commit` needs the chain's tip to guess heights.
        let early = node.testing.ack_before_commit.then(|| replica.store.clone());
        if early.is_some() {
            warn!(chain = chain.id, "testing.ack_before_commit: receipts are sent BEFORE blocks commit (planted bug)");
        }
        tokio::spawn(batcher(raft, rx, node.batch.clone(), metrics, clock, early));
        tokio::spawn(checkpointer(Arc::downgrade(&replica), applied_rx));
        tokio::spawn(store_syncer(Arc::downgrade(&replica), Duration::from_millis(r.state_sync_ms.max(100))));
        let (every, settle) = (Duration::from_millis(r.heartbeat_ms.max(20)), Duration::from_millis(r.election_max_ms));
        tokio::spawn(election_gate(Arc::downgrade(&replica), every, settle));
        Ok(replica)
    }

    /// The chain.
    pub fn chain(&self) -> ChainId {
        self.chain
    }

    /// The Raft handle.
    pub fn raft(&self) -> &ChainRaft {
        &self.raft
    }

    /// The current chain store.
    pub fn store(&self) -> Arc<Store> {
        current(&self.store)
    }

    /// The leader's id and address, if known.
    pub fn leader(&self) -> Option<(NodeId, String)> {
        let m = self.raft.metrics().borrow().clone();
        let id = m.current_leader?;
        let addr = m.membership_config.membership().get_node(&id).map(|n| n.addr.clone()).unwrap_or_default();
        Some((id, addr))
    }

    fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.node_id)
    }

    /// Answer a Raft RPC.
    pub async fn handle_raft(&self, rpc: RaftRpc) -> Response {
        match rpc {
            RaftRpc::Append(r) => Response::Append(self.raft.append_entries(r).await),
            RaftRpc::Vote(r) => Response::Vote(self.raft.vote(r).await),
            RaftRpc::Snapshot(r) => Response::Snapshot(self.raft.install_snapshot(r).await),
        }
    }

    /// Admit, batch and commit `txs`; one receipt per transaction.
    pub async fn submit(&self, txs: Vec<Vec<u8>>) -> Response {
        if !self.is_leader() {
            return Response::NotLeader { leader: self.leader() };
        }
        let n = txs.len();
        self.metrics.verify_queue.fetch_add(n as u64, Ordering::Relaxed);
        let checked = self.admission.check(txs).await;
        self.metrics.verify_queue.fetch_sub(n as u64, Ordering::Relaxed);
        let Some(checked) = checked else {
            return Response::Error("verification failed: the admission stage stopped".into());
        };
        let mut receipts: Vec<Option<Receipt>> = vec![None; n];
        let mut admitted = Vec::new();
        let mut positions = Vec::new();
        for (i, c) in checked.into_iter().enumerate() {
            match c {
                CheckedTx::Rejected { id, code, .. } => {
                    self.metrics.rejected_txs.fetch_add(1, Ordering::Relaxed);
                    receipts[i] =
                        Some(Receipt { tx_id: id.0, status: ReceiptStatus::Rejected { code: code.as_u16() } });
                }
                CheckedTx::Verified(v) => {
                    positions.push((i, v.id()));
                    let entry = v.entry();
                    admitted.push((v.into_raw(), entry));
                }
            }
        }
        if !admitted.is_empty() {
            self.verdicts.remember(admitted.iter().map(|(_, e)| *e));
            let (reply, wait) = oneshot::channel();
            if self.batcher.send(Pending { txs: admitted, reply }).await.is_err() {
                return Response::Error("the node is shutting down".into());
            }
            match wait.await {
                Ok(Ok((applied, at))) => {
                    for ((i, id), index) in positions.into_iter().zip(at) {
                        let outcome = applied.results.get(index).map_or(u16::MAX, |r| r.1);
                        receipts[i] = Some(Receipt {
                            tx_id: id.0,
                            status: ReceiptStatus::Committed { height: applied.height, index: index as u32, outcome },
                        });
                    }
                }
                Ok(Err(BatchError::NotLeader(leader))) => return Response::NotLeader { leader },
                Ok(Err(BatchError::Failed(m))) => return Response::Error(m),
                Err(_) => return Response::Error("the batcher stopped".into()),
            }
        }
        Response::Receipts(receipts.into_iter().map(|r| r.expect("every position answered")).collect())
    }

    /// Propose transactions as they are, skipping admission (fault tests only).
    pub async fn propose_raw(&self, txs: Vec<Vec<u8>>) -> Response {
        if !self.allow_raw {
            return Response::Error("raw proposals are disabled (testing.allow_raw_propose)".into());
        }
        match self.raft.client_write(BlockProposal { time: self.clock.now_ms(), txs }).await {
            Ok(r) => Response::Receipts(
                r.data
                    .results
                    .iter()
                    .enumerate()
                    .map(|(i, (id, code))| Receipt {
                        tx_id: *id,
                        status: ReceiptStatus::Committed { height: r.data.height, index: i as u32, outcome: *code },
                    })
                    .collect(),
            ),
            Err(e) => write_error(e),
        }
    }

    /// Add `node` as a learner, wait until it has caught up, then make it a voter.
    pub async fn add_replica(&self, node: NodeId, addr: String) -> Response {
        if !self.is_leader() {
            return Response::NotLeader { leader: self.leader() };
        }
        if let Err(e) = self.raft.add_learner(node, BasicNode::new(addr), true).await {
            return write_error(e);
        }
        let mut voters: BTreeSet<NodeId> = self.voters();
        voters.insert(node);
        match self.raft.change_membership(voters, false).await {
            Ok(_) => Response::Done,
            Err(e) => write_error(e),
        }
    }

    /// Remove `node` from the chain.
    pub async fn remove_replica(&self, node: NodeId) -> Response {
        if !self.is_leader() {
            return Response::NotLeader { leader: self.leader() };
        }
        let mut voters = self.voters();
        if !voters.remove(&node) {
            return Response::Error(format!("node {node} is not a voter of chain {}", self.chain));
        }
        match self.raft.change_membership(voters, false).await {
            Ok(_) => Response::Done,
            Err(e) => write_error(e),
        }
    }

    fn voters(&self) -> BTreeSet<NodeId> {
        self.raft.metrics().borrow().membership_config.membership().voter_ids().collect()
    }

    /// A peer's checkpoint signature: check it, keep it, and store a checkpoint once a quorum of
    /// replicas signed the header this node has at that height.
    pub fn on_checkpoint(&self, peer: &PeerIdentity, height: u64, hash: [u8; 32], sig: &[u8]) -> Response {
        let Ok(sig) = <[u8; 64]>::try_from(sig) else {
            return Response::Error(format!("a checkpoint signature has 64 bytes, not {}", sig.len()));
        };
        let (Some(node), Some(key), Some("replica")) = (peer.node_id, peer.public_key, peer.role.as_deref()) else {
            return Response::Error("checkpoint signatures come from replica certificates only".into());
        };
        let sig = CheckpointSig { node, key: PublicKey(key), sig };
        let probe = Checkpoint { chain: self.chain, height, header_hash: Hash32(hash), signatures: Vec::new() };
        if !probe.signature_valid(&sig) {
            return Response::Error(format!("checkpoint signature of node {node} for height {height} does not verify"));
        }
        self.add_checkpoint_sig(height, Hash32(hash), sig);
        let ours = self.store().checkpoint(height).ok().flatten();
        Response::CheckpointTaken(ours.map(|c| c.to_bytes()))
    }

    /// Keep a checkpoint a peer gathered, if it is for our header and carries more valid
    /// signatures from distinct replicas than ours.
    fn adopt_checkpoint(&self, bytes: &[u8]) {
        let Ok(cp) = Checkpoint::from_bytes(bytes) else { return };
        let store = self.store();
        if cp.chain != self.chain || self.header_hash(&store, cp.height) != Some(cp.header_hash) {
            return;
        }
        let mut nodes: Vec<u64> = cp.signatures.iter().filter(|s| cp.signature_valid(s)).map(|s| s.node).collect();
        nodes.sort_unstable();
        nodes.dedup();
        if nodes.len() != cp.signatures.len() || nodes.len() < self.voters().len() / 2 + 1 {
            return;
        }
        let already = store.checkpoint(cp.height).ok().flatten().map_or(0, |c| c.signatures.len());
        if cp.signatures.len() > already {
            self.keep_checkpoint(&store, &cp);
        }
    }

    /// Stage `cp` in the chain store: written and made durable with its next flush, like the
    /// blocks, and within `state_sync_ms` on a quiet chain too.
    fn keep_checkpoint(&self, store: &Store, cp: &Checkpoint) {
        store.put_checkpoint(cp);
        self.sync.note_staged();
    }

    fn add_checkpoint_sig(&self, height: u64, hash: Hash32, sig: CheckpointSig) {
        {
            let mut pending = self.pending.lock().expect("pending lock");
            let sigs = pending.entry(height).or_default();
            // The message binds the hash, so keep the hash with the signature by re-deriving it
            // on finalisation; drop a second signature by the same node.
            if !sigs.iter().any(|s| s.node == sig.node) {
                sigs.push(sig);
            }
            self.pending_hashes.lock().expect("pending lock").insert((height, sig.node), hash);
        }
        self.try_finalize(height);
    }

    /// The hash of this replica's header at `height`, if it has applied that block.
    fn header_hash(&self, store: &Store, height: u64) -> Option<Hash32> {
        if let Some(h) = self.applied.lock().expect("applied lock").get(&height) {
            return Some(*h);
        }
        store.header(height).ok().flatten().map(|h| h.hash())
    }

    fn try_finalize(&self, height: u64) {
        let store = self.store();
        let Some(local) = self.header_hash(&store, height) else { return };
        let quorum = self.voters().len() / 2 + 1;
        let mut cp = Checkpoint { chain: self.chain, height, header_hash: local, signatures: Vec::new() };
        {
            let pending = self.pending.lock().expect("pending lock");
            let hashes = self.pending_hashes.lock().expect("pending lock");
            let Some(sigs) = pending.get(&height) else { return };
            cp.signatures = sigs.iter().filter(|s| hashes.get(&(height, s.node)) == Some(&local)).copied().collect();
            for s in sigs.iter().filter(|s| hashes.get(&(height, s.node)) != Some(&local)) {
                warn!(chain = %self.chain, height, node = s.node, "a replica signed another header at this height");
            }
        }
        if cp.signatures.len() < quorum {
            return;
        }
        cp.signatures.sort_by_key(|s| s.node);
        let already = store.checkpoint(height).ok().flatten().map_or(0, |c| c.signatures.len());
        if cp.signatures.len() > already {
            self.keep_checkpoint(&store, &cp);
        }
        if cp.signatures.len() >= self.voters().len() {
            let mut pending = self.pending.lock().expect("pending lock");
            pending.remove(&height);
            self.pending_hashes.lock().expect("pending lock").retain(|(h, _), _| *h != height);
        }
        // Signatures that will never complete (a replica gone) must not pile up.
        let mut pending = self.pending.lock().expect("pending lock");
        let floor = height.saturating_sub(1000);
        pending.retain(|h, _| *h >= floor);
        self.pending_hashes.lock().expect("pending lock").retain(|(h, _), _| *h >= floor);
    }

    /// Sign a block this replica applied, keep the signature and send it to the other voters.
    fn sign_applied(self: &Arc<Self>, height: u64, hash: Hash32) {
        {
            let mut applied = self.applied.lock().expect("applied lock");
            applied.insert(height, hash);
            while applied.len() > RECENT_HEADERS {
                applied.pop_first();
            }
        }
        let Some(signer) = &self.signer else { return };
        let msg = Checkpoint::message(self.chain, height, &hash);
        let sig = CheckpointSig { node: self.node_id, key: signer.public(), sig: signer.sign(&msg) };
        self.add_checkpoint_sig(height, hash, sig);
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership().clone();
        for (id, node) in membership.nodes() {
            if *id == self.node_id || !membership.voter_ids().any(|v| v == *id) {
                continue;
            }
            let Ok(addr) = node.addr.parse() else { continue };
            let req = encode(&Request::Checkpoint { chain: self.chain.0, height, hash: hash.0, sig: sig.sig.to_vec() });
            let (endpoint, target, me) = (self.endpoint.clone(), *id, self.clone());
            tokio::spawn(async move {
                if let Ok(bytes) = endpoint.call(target, addr, req, Duration::from_secs(2)).await {
                    if let Ok(Response::CheckpointTaken(Some(cp))) = super::rpc::decode::<Response>(&bytes) {
                        me.adopt_checkpoint(&cp);
                    }
                }
            });
        }
    }

    /// The receipt of a transaction this replica has applied, with its proofs.
    pub fn receipt(&self, tx_id: [u8; 32]) -> Response {
        let store = self.store();
        match store.receipt(&elchain_types::ids::TxId(tx_id)) {
            Ok(None) => Response::TxReceipt(None),
            Ok(Some(r)) => Response::TxReceipt(Some(super::rpc::ProvenReceipt {
                height: r.height,
                header: r.header.to_bytes(),
                proof: r.proof.to_bytes(),
                checkpoint: store.checkpoint(r.height).ok().flatten().map(|c| c.to_bytes()),
            })),
            Err(e) => Response::Error(e.to_string()),
        }
    }

    /// Read applied state.
    pub fn query(&self, query: &Query) -> Response {
        match self.read(query) {
            Ok(a) => Response::Answer(a),
            Err(e) => Response::Error(e.to_string()),
        }
    }

    fn read(&self, query: &Query) -> Result<Answer, crate::store::StoreError> {
        use elchain_types::ids::{GrantId, HolderId, LicenceId};
        let store = self.store();
        if let Query::Governance = query {
            return Self::governance(&store);
        }
        let view = store.view()?;
        Ok(match query {
            Query::Licence(id) => Answer::Record(view.get(&Key::Licence(LicenceId(*id)))),
            Query::Grant(id) => Answer::Record(view.grant(&GrantId(*id)).map(|g| g.to_bytes())),
            Query::HolderLicences(h) => {
                Answer::Records(store.holder_licences(&HolderId(*h))?.iter().map(|l| l.0.to_vec()).collect())
            }
            Query::HolderTraces(h) => {
                Answer::Records(view.traces(&HolderId(*h)).iter().map(Encode::to_bytes).collect())
            }
            Query::Governance => unreachable!("answered above"),
        })
    }

    /// The governance state, with a height read before its view, so that the height never runs
    /// ahead of the state: a router keeps its view while the height stays the same, and a block
    /// applied between the two reads once left it with the old shard map for good.
    fn governance(store: &Store) -> Result<Answer, crate::store::StoreError> {
        let height = store.tip()?.height;
        let view = store.view()?;
        let consortium = match view.governed_consortium() {
            Some(c) => c,
            None => store.consortium()?,
        };
        Ok(Answer::Governance(Governance {
            height,
            consortium: consortium.to_bytes(),
            shard_map: view.shard_map().map(|m| m.to_bytes()),
            chains: view.chains().iter().map(Encode::to_bytes).collect(),
            params: view.params(),
            revoked: view.revoked_certificates(),
        }))
    }

    /// A stored block.
    pub fn block(&self, height: u64) -> Response {
        match self.store().block(height) {
            Ok(b) => Response::Block(b.map(|b| b.to_bytes())),
            Err(e) => Response::Error(e.to_string()),
        }
    }

    /// This node's view of the chain.
    pub fn status(&self) -> ChainStatus {
        let m = self.raft.metrics().borrow().clone();
        let tip = self.store().tip().ok();
        ChainStatus {
            node: self.node_id,
            chain: self.chain.0,
            leader: m.current_leader,
            term: m.current_term,
            applied_index: m.last_applied.map_or(0, |l| l.index),
            height: tip.map_or(0, |t| t.height),
            tip_hash: tip.map_or([0; 32], |t| t.hash().0),
            voters: m.membership_config.membership().voter_ids().collect(),
            learners: m.membership_config.membership().learner_ids().collect(),
        }
    }

    /// Stop Raft, and make every applied block durable.
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            warn!(chain = %self.chain, error = %e, "raft did not shut down cleanly");
        }
        if let Err(e) = self.sync.flush(&self.store()) {
            warn!(chain = %self.chain, error = %e, "cannot make the chain store durable");
        }
    }

    /// Flush the chain store when applied blocks have waited longer than `[raft] state_sync_ms`
    /// for an fsync (when blocks come, the apply path flushes; this covers a chain gone quiet).
    fn flush_due(&self) {
        let store = self.store();
        let due = if self.endpoint.is_simulated() {
            self.sync.flush_due(&store)
        } else {
            self.sync.flush_due_in_background(&store)
        };
        if let Err(e) = due {
            warn!(chain = %self.chain, error = %e, "cannot make the chain store durable");
        }
    }
}

type WriteError = RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>;

/// The leader to ask instead, when the error is "not the leader".
fn forward(e: &WriteError) -> Option<Option<(NodeId, String)>> {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            Some(f.leader_id.map(|id| (id, f.leader_node.as_ref().map(|n| n.addr.clone()).unwrap_or_default())))
        }
        _ => None,
    }
}

fn write_error(e: WriteError) -> Response {
    match forward(&e) {
        Some(leader) => Response::NotLeader { leader },
        None => Response::Error(e.to_string()),
    }
}

/// Let this replica start elections only while it can reach a majority of the voters.
///
/// openraft 0.9 has no pre-vote: a replica cut off from the others would time out again and
/// again, raising its term each time, and on rejoining make the healthy leader step down for
/// its higher term: a second outage, caused by the repair (the simulator's minority-partition
/// scenario showed ~2 s without commits after the heal). A replica that cannot reach a
/// majority could not win an election anyway, so it waits, keeps its term, and rejoins as a
/// follower. Reachability is a status request to each other voter every `every` (one
/// heartbeat), answered within `every`; elections are allowed again once a majority has been
/// reachable for `settle` (the longest election timeout), so that the leader's heartbeats reach
/// the replica before its own long-expired election timer does.
async fn election_gate(replica: std::sync::Weak<Replica>, every: Duration, settle: Duration) {
    let mut allowed = true;
    let mut reachable_since: Option<tokio::time::Instant> = None;
    loop {
        tokio::time::sleep(every).await;
        let Some(r) = replica.upgrade() else { return };
        let m = r.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership().clone();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        let (endpoint, chain, me) = (r.endpoint.clone(), r.chain.0, r.node_id);
        drop(r);
        // All probes at once, each allowed one heartbeat (what openraft allows an AppendEntries):
        // the check ends within about a heartbeat, well inside the election timeout.
        let probes: Vec<_> = voters
            .iter()
            .copied()
            .filter(|id| *id != me)
            .filter_map(|id| Some((id, membership.get_node(&id)?.addr.parse().ok()?)))
            .map(|(id, addr)| {
                let endpoint = endpoint.clone();
                tokio::spawn(async move { endpoint.call(id, addr, encode(&Request::Status { chain }), every).await })
            })
            .collect();
        let mut reachable = usize::from(voters.contains(&me));
        for p in probes {
            reachable += usize::from(matches!(p.await, Ok(Ok(_))));
        }
        let majority = reachable * 2 > voters.len();
        let now = tokio::time::Instant::now();
        reachable_since = if majority { Some(reachable_since.unwrap_or(now)) } else { None };
        let can_win = majority && (allowed || reachable_since.is_some_and(|t| now - t >= settle));
        if can_win != allowed {
            let Some(r) = replica.upgrade() else { return };
            r.raft.runtime_config().elect(can_win);
            if can_win {
                info!(chain, reachable, voters = voters.len(), "a majority is reachable again: elections allowed");
            } else {
                warn!(chain, reachable, voters = voters.len(), "cannot reach a majority: not starting elections");
            }
            allowed = can_win;
        }
    }
}

/// Flush the chain store of a quiet chain, for as long as the replica lives.
async fn store_syncer(replica: std::sync::Weak<Replica>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(r) = replica.upgrade() else { return };
        if r.endpoint.is_simulated() {
            r.flush_due();
        } else if tokio::task::spawn_blocking(move || r.flush_due()).await.is_err() {
            return;
        }
    }
}

/// Sign every applied block, for as long as the replica lives.
async fn checkpointer(replica: std::sync::Weak<Replica>, mut applied: mpsc::UnboundedReceiver<(u64, Hash32)>) {
    while let Some((height, hash)) = applied.recv().await {
        let Some(r) = replica.upgrade() else { return };
        r.sign_applied(height, hash);
    }
}

/// Collect submitted transactions into blocks and propose them, a few at a time.
async fn batcher(
    raft: ChainRaft,
    mut rx: mpsc::Receiver<Pending>,
    cfg: super::config::BatchConfig,
    metrics: Arc<ReplicaMetrics>,
    clock: Clock,
    ack_early: Option<SharedStore>,
) {
    let in_flight = Arc::new(Semaphore::new(cfg.in_flight));
    let mut guessed_height = 0u64;
    let max_wait = Duration::from_millis(cfg.max_wait_ms);
    loop {
        // A free slot first, then the block: under load, what arrived while every slot was
        // taken goes into one larger block instead of waiting behind a small one.
        let permit = match in_flight.clone().acquire_owned().await {
            Ok(p) => p,
            Err(_) => return,
        };
        let Some(first) = rx.recv().await else { return };
        let (batch, count) = gather(&mut rx, first, |p: &Pending| p.txs.len(), cfg.max_txs, max_wait).await;
        let raft = raft.clone();
        let metrics = metrics.clone();
        let early = ack_early.as_ref().map(|store| {
            let tip = current(store).tip().map_or(0, |t| t.height);
            guessed_height = guessed_height.max(tip) + 1;
            guessed_height
        });
        tokio::spawn(async move {
            // Identical bytes submitted twice (a client retrying, two routers forwarding) go into
            // the block once and share the receipt.
            let mut draft = BlockDraft::with_capacity(count);
            for p in batch {
                draft.add(p.txs, p.reply);
            }
            let (txs, mut replies) = draft.into_parts();
            metrics.proposed_blocks.fetch_add(1, Ordering::Relaxed);
            if let Some(height) = early {
                // Planted bug (testing only): promise a position before the block is replicated,
                // durable or even executed. The history checker must catch it.
                let guess = Arc::new(BlockApplied { height, hash: [0; 32], results: vec![([0; 32], 0); txs.len()] });
                for (at, reply) in std::mem::take(&mut replies) {
                    let _ = reply.send(Ok((guess.clone(), at)));
                }
            }
            let result = raft.client_write(BlockProposal { time: clock.now_ms(), txs }).await;
            drop(permit);
            match result {
                Ok(r) => {
                    metrics.committed_txs.fetch_add(r.data.results.len() as u64, Ordering::Relaxed);
                    let applied = Arc::new(r.data);
                    for (at, reply) in replies {
                        let _ = reply.send(Ok((applied.clone(), at)));
                    }
                }
                Err(e) => {
                    let err = match forward(&e) {
                        Some(leader) => BatchError::NotLeader(leader),
                        None => BatchError::Failed(e.to_string()),
                    };
                    for (_, reply) in replies {
                        let _ = reply.send(Err(err.clone()));
                    }
                }
            }
        });
    }
}
