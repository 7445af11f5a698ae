//! The Raft state machine of a chain: applies committed blocks to the chain store.
//!
//! Every replica re-verifies every signature of a block before executing it, so a faulty leader
//! cannot slip a forged transaction in: the forged entry stays in the block marked
//! `bad_signature` on every replica. The block, its state changes and the applied log position
//! are written in one redb transaction, so a restart resumes exactly after the last applied entry.

use std::io::Cursor;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine, Snapshot};
use openraft::{BasicNode, RaftLogId};
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, LogId, OptionalSend, SnapshotMeta, StoredMembership};

use elchain_types::contract::Consortium;
use elchain_types::ids::{Hash32, Timestamp};

use super::{io_error, BlockApplied, Entry, NodeId, StorageError, TypeConfig};
use crate::exec::{Executor, LogPosition};
use crate::store::Store;
use crate::verifier::{VerdictCache, Verifier};

/// Metadata key of the last applied log id (bincode `Option<LogId>`).
pub const META_APPLIED: &str = "raft_applied";
/// Metadata key of the last applied membership (bincode `StoredMembership`).
pub const META_MEMBERSHIP: &str = "raft_membership";

/// The chain store, replaceable when a snapshot is installed. Readers clone the inner `Arc`.
pub type SharedStore = Arc<RwLock<Arc<Store>>>;

/// The last applied log id and membership.
type AppliedState = (Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>);

/// The current store of a [`SharedStore`].
pub fn current(store: &SharedStore) -> Arc<Store> {
    store.read().expect("store lock").clone()
}

#[derive(Clone)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, BasicNode>,
    data: Vec<u8>,
}

/// Applies committed entries of one chain.
#[derive(Clone)]
pub struct StateMachine {
    store: SharedStore,
    path: PathBuf,
    consortium: Arc<Consortium>,
    verifier: Arc<Verifier>,
    snapshot: Arc<Mutex<Option<StoredSnapshot>>>,
    applied: Option<tokio::sync::mpsc::UnboundedSender<(u64, Hash32)>>,
    verdicts: Arc<VerdictCache>,
    apply_delay: std::time::Duration,
}

impl std::fmt::Debug for StateMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachine").field("path", &self.path).finish_non_exhaustive()
    }
}

fn sm_err(verb: ErrorVerb, e: impl std::fmt::Display) -> StorageError {
    io_error(ErrorSubject::StateMachine, verb, e)
}

fn decode_meta<T: serde::de::DeserializeOwned + Default>(v: Option<Vec<u8>>) -> Result<T, StorageError> {
    match v {
        None => Ok(T::default()),
        Some(b) => bincode::deserialize(&b).map_err(|e| sm_err(ErrorVerb::Read, e)),
    }
}

impl StateMachine {
    /// A state machine over the chain store at `store`'s path.
    pub fn new(store: SharedStore, consortium: Arc<Consortium>, verifier: Arc<Verifier>) -> Self {
        let path = current(&store).path().to_path_buf();
        Self {
            store,
            path,
            consortium,
            verifier,
            snapshot: Arc::new(Mutex::new(None)),
            applied: None,
            verdicts: Arc::default(),
            apply_delay: std::time::Duration::ZERO,
        }
    }

    /// Sleep `delay` per applied entry (testing: a deliberate slowdown).
    pub fn with_apply_delay(mut self, delay: std::time::Duration) -> Self {
        self.apply_delay = delay;
        self
    }

    /// Share the admission stage's verdicts, so the leader does not verify its own admissions
    /// twice.
    pub fn with_verdict_cache(mut self, cache: Arc<VerdictCache>) -> Self {
        self.verdicts = cache;
        self
    }

    /// Also report the height and header hash of every block applied (for checkpoint signing).
    pub fn with_applied_hook(mut self, hook: tokio::sync::mpsc::UnboundedSender<(u64, Hash32)>) -> Self {
        self.applied = Some(hook);
        self
    }

    /// The shared chain store.
    pub fn store(&self) -> SharedStore {
        self.store.clone()
    }

    fn applied(&self) -> Result<AppliedState, StorageError> {
        let store = current(&self.store);
        let applied = decode_meta(store.get_meta(META_APPLIED).map_err(|e| sm_err(ErrorVerb::Read, e))?)?;
        let membership = decode_meta(store.get_meta(META_MEMBERSHIP).map_err(|e| sm_err(ErrorVerb::Read, e))?)?;
        Ok((applied, membership))
    }

    fn apply_one(&self, entry: Entry) -> Result<BlockApplied, StorageError> {
        let log_id = *entry.get_log_id();
        let store = current(&self.store);
        let applied = bincode::serialize(&Some(log_id)).map_err(|e| sm_err(ErrorVerb::Write, e))?;
        let write = |e| sm_err(ErrorVerb::Write, e);
        match entry.payload {
            EntryPayload::Blank => {
                store.put_meta(&[(META_APPLIED, &applied)]).map_err(write)?;
                Ok(BlockApplied::default())
            }
            EntryPayload::Membership(m) => {
                let stored = StoredMembership::new(Some(log_id), m);
                let membership = bincode::serialize(&stored).map_err(|e| sm_err(ErrorVerb::Write, e))?;
                store.put_meta(&[(META_APPLIED, &applied), (META_MEMBERSHIP, &membership)]).map_err(write)?;
                Ok(BlockApplied::default())
            }
            EntryPayload::Normal(proposal) => {
                let checked = self.verifier.check_cached(proposal.txs, &self.verdicts);
                let tip = store.tip().map_err(|e| sm_err(ErrorVerb::Read, e))?;
                let view = store.view().map_err(|e| sm_err(ErrorVerb::Read, e))?;
                let pos = LogPosition { term: log_id.leader_id.term, index: log_id.index };
                let executed = Executor::new(&self.consortium, store.chain()).execute(
                    &view,
                    &tip,
                    Timestamp(proposal.time),
                    pos,
                    checked,
                );
                drop(view);
                store.commit_with(&executed, &[(META_APPLIED, &applied)]).map_err(write)?;
                let b = &executed.block;
                if let Some(hook) = &self.applied {
                    let _ = hook.send((b.header.height, b.header.hash()));
                }
                Ok(BlockApplied {
                    height: b.header.height,
                    hash: b.header.hash().0,
                    results: b.ids.iter().zip(&b.outcomes).map(|(id, o)| (id.0, o.as_u16())).collect(),
                })
            }
        }
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let store = current(&self.store);
        let (data, meta) = store
            .export_with_meta(&[META_APPLIED, META_MEMBERSHIP])
            .map_err(|e| io_error(ErrorSubject::Snapshot(None), ErrorVerb::Read, e))?;
        let mut meta = meta.into_iter();
        let last_log_id: Option<LogId<NodeId>> = decode_meta(meta.next().flatten())?;
        let last_membership: StoredMembership<NodeId, BasicNode> = decode_meta(meta.next().flatten())?;
        let snapshot_id = match last_log_id {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, data.len()),
            None => format!("empty-{}", data.len()),
        };
        let meta = SnapshotMeta { last_log_id, last_membership, snapshot_id };
        *self.snapshot.lock().expect("snapshot lock") = Some(StoredSnapshot { meta: meta.clone(), data: data.clone() });
        tracing::info!(chain = %store.chain(), bytes = data.len(), last = ?meta.last_log_id, "built snapshot");
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<AppliedState, StorageError> {
        self.applied()
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<BlockApplied>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let applied: Result<Vec<BlockApplied>, StorageError> = entries.into_iter().map(|e| self.apply_one(e)).collect();
        if !self.apply_delay.is_zero() {
            if let Ok(a) = &applied {
                tokio::time::sleep(self.apply_delay * a.len() as u32).await;
            }
        }
        applied
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let err =
            |e: crate::store::StoreError| io_error(ErrorSubject::Snapshot(Some(meta.signature())), ErrorVerb::Write, e);
        let new_store = Store::import(&self.path, &data).map_err(err)?;
        let applied: Option<LogId<NodeId>> = decode_meta(new_store.get_meta(META_APPLIED).map_err(err)?)?;
        if applied != meta.last_log_id {
            return Err(sm_err(
                ErrorVerb::Write,
                format!("snapshot holds state up to {applied:?}, its metadata says {:?}", meta.last_log_id),
            ));
        }
        tracing::info!(chain = %new_store.chain(), height = new_store.tip().map(|t| t.height).unwrap_or(0), "installed snapshot");
        *self.store.write().expect("store lock") = Arc::new(new_store);
        *self.snapshot.lock().expect("snapshot lock") = Some(StoredSnapshot { meta: meta.clone(), data });
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        Ok(self
            .snapshot
            .lock()
            .expect("snapshot lock")
            .clone()
            .map(|s| Snapshot { meta: s.meta, snapshot: Box::new(Cursor::new(s.data)) }))
    }
}
