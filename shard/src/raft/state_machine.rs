//! The Raft state machine of a chain: applies committed blocks to the chain store.
//!
//! Every replica re-verifies every signature of a block before executing it, so a faulty leader
//! cannot slip a forged transaction in: the forged entry stays in the block marked
//! `bad_signature` on every replica. The block, its state changes and the applied log position
//! are written in one redb transaction, so a restart resumes exactly after the last applied entry
//! that reached the disk.
//!
//! Applied blocks are staged in the chain store (every read sees them) and written to its file
//! together every `[raft] state_sync_ms`, durably (see [`crate::store`]): the Raft log holds every
//! entry durably before it is applied. They are also written before a snapshot is built, since
//! the log behind a snapshot may be purged. A crash rolls the store back to its last flush;
//! openraft then applies the log again from the applied position stored with it, and execution,
//! being deterministic, makes the same blocks again.

use std::path::{Path, PathBuf};
use std::sync::atomic::{
    AtomicBool, AtomicU64,
    Ordering::{AcqRel, Acquire, Relaxed, Release},
};
use std::sync::{Arc, Mutex, RwLock};

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine, Snapshot};
use openraft::{BasicNode, RaftLogId};
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, LogId, OptionalSend, SnapshotMeta, StoredMembership};

use elchain_types::contract::Consortium;
use elchain_types::ids::{Hash32, Timestamp};

use super::snapshot::SnapshotFile;
use super::{io_error, BlockApplied, Entry, NodeId, StorageError, TypeConfig};
use crate::exec::{Executor, LogPosition};
use crate::state::Overlay;
use crate::store::{Commit, Store};
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

/// What a replica knows of its snapshots.
#[derive(Default)]
struct Snapshots {
    /// The last snapshot built or installed: the position openraft knows, behind which it may
    /// purge the log. Building one writes the store durably and takes its position, nothing
    /// more: the store's file is the snapshot's state.
    latest: Option<SnapshotMeta<NodeId, BasicNode>>,
    /// The newest export of the store, complete or being written. It serves every replica
    /// that needs a snapshot while it is not older than `latest`; then the next one is made.
    export: Option<Exported>,
    /// Names this process's snapshots apart from another's at the same position (a peer may
    /// still hold part of an earlier process's export under that id).
    nonce: u64,
}

/// An export of the store into a file, for sending as a snapshot.
struct Exported {
    meta: SnapshotMeta<NodeId, BasicNode>,
    path: PathBuf,
    /// `Some` once written: `Ok`, or why it failed.
    done: tokio::sync::watch::Receiver<Option<Result<(), String>>>,
}

impl Exported {
    /// The export as a snapshot to send: its file, read once it is written.
    fn snapshot(&self, blocking: bool) -> Result<Snapshot<TypeConfig>, StorageError> {
        let file = SnapshotFile::reader(&self.path, Some(wait_for(self.done.clone())), blocking).map_err(|e| {
            io_error(ErrorSubject::Snapshot(None), ErrorVerb::Read, format!("open {}: {e}", self.path.display()))
        })?;
        Ok(Snapshot { meta: self.meta.clone(), snapshot: Box::new(file) })
    }
}

/// Applies committed entries of one chain.
#[derive(Clone)]
pub struct StateMachine {
    store: SharedStore,
    path: PathBuf,
    consortium: Arc<Consortium>,
    verifier: Arc<Verifier>,
    snapshots: Arc<Mutex<Snapshots>>,
    applied: Option<tokio::sync::mpsc::UnboundedSender<(u64, Hash32)>>,
    verdicts: Arc<VerdictCache>,
    apply_delay: std::time::Duration,
    sync: Arc<StoreSync>,
    metrics: Arc<ApplyMetrics>,
    /// Apply on the calling task instead of a blocking thread (the deterministic simulator).
    in_place: bool,
}

/// What applying blocks has cost, exported as metrics.
#[derive(Debug, Default)]
pub struct ApplyMetrics {
    /// Calls to apply (each one redb write transaction).
    pub batches: AtomicU64,
    /// Blocks applied.
    pub blocks: AtomicU64,
    /// Transactions applied.
    pub txs: AtomicU64,
    /// Microseconds spent decoding and verifying signatures at apply.
    pub verify_micros: AtomicU64,
    /// Microseconds spent executing blocks.
    pub execute_micros: AtomicU64,
    /// Microseconds spent committing blocks and state to the chain store.
    pub commit_micros: AtomicU64,
    /// Writes of staged blocks to the chain store (flushes, fsynced or not).
    pub store_syncs: AtomicU64,
    /// Microseconds applying paused or waited because the chain store's writes were behind.
    pub store_wait_micros: AtomicU64,
}

/// Keeps a replica's applied blocks from waiting in memory for longer than a bound: the chain
/// store is flushed (durably) on a thread of its own at the first apply after `every`, so that
/// applying goes on meanwhile, and by [`StoreSync::flush_due`] when no block comes.
#[derive(Debug)]
pub struct StoreSync {
    every: std::time::Duration,
    /// Writes in between are not fsynced; the file's new pages are handed to the kernel's
    /// writeback at once instead, so the next fsync finds little left to write.
    fsync_every: std::time::Duration,
    state: Mutex<SyncState>,
    /// Flushes so far.
    syncs: AtomicU64,
    /// A background flush is running.
    running: AtomicBool,
    /// Hands writes to the `store-flush` thread, started at the first background flush; the
    /// thread ends when this is dropped. One long-lived thread keeps its allocator's pages from
    /// one write to the next, where a thread per write began each with fresh ones.
    flusher: Mutex<Option<std::sync::mpsc::Sender<FlushJob>>>,
}

/// Work for the `store-flush` thread.
enum FlushJob {
    /// A periodic write ([`StoreSync::write`]).
    Write(Arc<Store>),
    /// A durable write for a snapshot, answered with the metadata asked for
    /// ([`Store::flush_durable_meta`]).
    Durable {
        store: Arc<Store>,
        keys: Vec<&'static str>,
        reply: std::sync::mpsc::Sender<Result<crate::store::MetaValues, crate::store::StoreError>>,
    },
}

#[derive(Debug)]
struct SyncState {
    /// When the store was last flushed.
    last: std::time::Instant,
    /// When a flush last fsynced.
    last_fsync: std::time::Instant,
    /// Blocks were staged since.
    dirty: bool,
}

/// Staged transactions that start a flush before `every` has passed: a fast chain writes as
/// many at a time as a slower one does in `every`, and holds fewer in memory.
const FLUSH_AT_TXS: usize = 100_000;

/// Staged transactions at most, whatever the time (held in memory, 1–2 KB each with their state
/// changes): past this, applying waits for a flush. Four times [`FLUSH_AT_TXS`], so that a flush
/// running late at nice 10 on a busy machine does not stop applying.
const MAX_STAGED_TXS: usize = 4 * FLUSH_AT_TXS;

/// Staged transactions from which applying slows down while a flush runs, so that the flush
/// (at nice 10, given the CPU nothing else wants) catches up before [`MAX_STAGED_TXS`] stops
/// applying for the whole of a write of everything staged.
const SLOW_AT_TXS: usize = 2 * FLUSH_AT_TXS;

/// The pause after an apply when [`MAX_STAGED_TXS`] are staged; it grows from nothing at
/// [`SLOW_AT_TXS`].
const MAX_PAUSE: std::time::Duration = std::time::Duration::from_millis(50);

/// How long applying pauses with `staged` transactions staged while a flush runs.
fn pause_for(staged: usize) -> std::time::Duration {
    let over = staged.saturating_sub(SLOW_AT_TXS).min(MAX_STAGED_TXS - SLOW_AT_TXS);
    MAX_PAUSE.mul_f64(over as f64 / (MAX_STAGED_TXS - SLOW_AT_TXS) as f64)
}

impl StoreSync {
    /// Flush at most `every` apart (zero: at every apply), each flush durable (fsynced).
    pub fn new(every: std::time::Duration) -> Self {
        Self::with_fsync(every, every)
    }

    /// Flush at most `every` apart, and fsync at the first flush `fsync_every` after the last
    /// fsync (other flushes write to the file without one). A crash loses what was not fsynced,
    /// and the replica applies it again from the Raft log.
    pub fn with_fsync(every: std::time::Duration, fsync_every: std::time::Duration) -> Self {
        let now = std::time::Instant::now();
        Self {
            every,
            fsync_every: fsync_every.max(every),
            state: Mutex::new(SyncState { last: now, last_fsync: now, dirty: false }),
            syncs: AtomicU64::new(0),
            running: AtomicBool::new(false),
            flusher: Mutex::new(None),
        }
    }

    /// After staging: start a flush of `store` if the bound is reached, pause a little if a
    /// flush is behind, wait for one if too much is staged. Returns the time paused.
    fn staged(self: &Arc<Self>, store: &Arc<Store>) -> Result<std::time::Duration, crate::store::StoreError> {
        let due = self.note_staged();
        if self.every.is_zero() {
            return self.write(store).map(|()| std::time::Duration::ZERO);
        }
        let staged = store.staged_txs();
        if staged >= MAX_STAGED_TXS {
            let started = std::time::Instant::now();
            self.write(store)?;
            let waited = started.elapsed();
            tracing::warn!(
                chain = %store.chain(),
                staged,
                waited_ms = waited.as_millis() as u64,
                "applying waited for the chain store: more than {MAX_STAGED_TXS} transactions were staged"
            );
            return Ok(waited);
        }
        let due = due || staged >= FLUSH_AT_TXS;
        if due && !self.running.swap(true, AcqRel) && !self.flush_in_background(store) {
            self.running.store(false, Release);
            return self.write(store).map(|()| std::time::Duration::ZERO);
        }
        // Behind: the flush started before these were staged still runs. Pausing here (a
        // blocking thread, not the runtime's) lets fewer blocks commit, which frees CPU for it.
        if staged >= SLOW_AT_TXS && self.running.load(Acquire) {
            let pause = pause_for(staged);
            std::thread::sleep(pause);
            return Ok(pause);
        }
        Ok(std::time::Duration::ZERO)
    }

    /// Hand `store` to the `store-flush` thread (started now if it is not running); false when
    /// no thread can take it.
    fn flush_in_background(self: &Arc<Self>, store: &Arc<Store>) -> bool {
        self.to_flusher(FlushJob::Write(store.clone()))
    }

    /// Hand `job` to the `store-flush` thread (started now if it is not running); false when no
    /// thread can take it.
    fn to_flusher(self: &Arc<Self>, job: FlushJob) -> bool {
        let mut flusher = self.flusher.lock().expect("flusher lock");
        if flusher.is_none() {
            let (tx, rx) = std::sync::mpsc::channel::<FlushJob>();
            let sync = Arc::downgrade(self);
            let started = std::thread::Builder::new().name("store-flush".into()).spawn(move || {
                crate::thread::lower_this_threads_priority(10);
                for job in rx {
                    let Some(sync) = sync.upgrade() else { break };
                    match job {
                        FlushJob::Write(store) => {
                            if let Err(e) = sync.write(&store) {
                                tracing::warn!(chain = %store.chain(), error = %e, "cannot write applied blocks to the chain store");
                            }
                            sync.running.store(false, Release);
                        }
                        FlushJob::Durable { store, keys, reply } => {
                            let _ = reply.send(sync.flush_durable_meta_here(&store, &keys));
                        }
                    }
                }
            });
            if started.is_err() {
                return false;
            }
            *flusher = Some(tx);
        }
        let sent = flusher.as_ref().is_some_and(|tx| tx.send(job).is_ok());
        if !sent {
            // The thread is gone (it panicked): the next background flush starts another.
            *flusher = None;
        }
        sent
    }

    /// Note that blocks (or checkpoints) were staged; true when a flush is due.
    pub(crate) fn note_staged(&self) -> bool {
        let mut s = self.state.lock().expect("sync lock");
        s.dirty = true;
        self.every.is_zero() || s.last.elapsed() >= self.every
    }

    /// Flush `store` if blocks have waited for longer than the bound; true when it flushed.
    /// Also fsyncs writes that were not, once the fsync interval has passed (a quiet chain).
    /// Nothing is done while the `store-flush` thread is writing.
    pub fn flush_due(&self, store: &Store) -> Result<bool, crate::store::StoreError> {
        if !self.claim_due(store) {
            return Ok(false);
        }
        let written = self.write(store);
        self.running.store(false, Release);
        written.map(|()| true)
    }

    /// [`StoreSync::flush_due`], with the write handed to the `store-flush` thread (here only
    /// when no thread can take it); true when a write was started or made. The timer that
    /// calls this wakes as often as a busy chain's writes fall due, and often got there before
    /// the apply that would have started the write: the whole write then ran on the timer's
    /// blocking thread, at the pipeline's priority, and stalled committing on every replica.
    pub fn flush_due_in_background(self: &Arc<Self>, store: &Arc<Store>) -> Result<bool, crate::store::StoreError> {
        if !self.claim_due(store) {
            return Ok(false);
        }
        if self.every.is_zero() || !self.flush_in_background(store) {
            let written = self.write(store);
            self.running.store(false, Release);
            return written.map(|()| true);
        }
        Ok(true)
    }

    /// Whether a write is due (staged blocks older than `every`, or writes not fsynced for
    /// `fsync_every`) and no other is running; when true the caller runs it and clears
    /// `running` after.
    fn claim_due(&self, store: &Store) -> bool {
        let due = {
            let s = self.state.lock().expect("sync lock");
            (s.dirty && s.last.elapsed() >= self.every)
                || (store.unsynced() && s.last_fsync.elapsed() >= self.fsync_every)
        };
        due && !self.running.swap(true, AcqRel)
    }

    /// Flush `store` now, durably.
    pub fn flush(&self, store: &Store) -> Result<(), crate::store::StoreError> {
        self.flush_as(store, Commit::Durable)
    }

    /// A periodic flush: written, its pages written back a few MiB at a time, and then made
    /// durable when an fsync is due. (An fsync straight after the write would hand all of its
    /// pages to the disk at once, and every Raft log fsync would wait behind them.) The fsync
    /// is of the store as written, not of what was staged meanwhile: that waits for the next
    /// write, as a smaller write of its own would cost more per transaction.
    /// When every apply flushes, each write is small and durable at once.
    fn write(&self, store: &Store) -> Result<(), crate::store::StoreError> {
        if self.every.is_zero() {
            return self.flush_as(store, Commit::Durable);
        }
        let fsync_due = self.state.lock().expect("sync lock").last_fsync.elapsed() >= self.fsync_every;
        self.flush_as(store, Commit::Deferred)?;
        store.write_back();
        if fsync_due {
            let started = std::time::Instant::now();
            store.sync()?;
            self.state.lock().expect("sync lock").last_fsync = started;
            tracing::debug!(chain = %store.chain(), ms = started.elapsed().as_millis() as u64, "chain store fsynced");
        }
        Ok(())
    }

    /// Flush `store` now, durably, and read `keys` of its metadata as of that flush (see
    /// [`Store::flush_durable_meta`]). The write runs on the `store-flush` thread, after any
    /// write it has in hand, at that thread's low priority: a snapshot's write is as large as a
    /// periodic one (tens of thousands of transactions), and on the blocking thread that asks
    /// for it, at the pipeline's priority, it took the CPU from committing for a second or more
    /// on every replica at once. Here instead when `here` is set (work done in place, in order),
    /// when every apply flushes (nothing is staged), or when no thread can take it.
    pub fn flush_durable_meta(
        self: &Arc<Self>,
        store: &Arc<Store>,
        keys: &[&'static str],
        here: bool,
    ) -> Result<crate::store::MetaValues, crate::store::StoreError> {
        let (reply, answer) = std::sync::mpsc::channel();
        let job = || FlushJob::Durable { store: store.clone(), keys: keys.to_vec(), reply };
        if !here && !self.every.is_zero() && self.to_flusher(job()) {
            // No answer means the thread ended (it panicked) with the job in hand.
            if let Ok(written) = answer.recv() {
                return written;
            }
        }
        self.flush_durable_meta_here(store, keys)
    }

    fn flush_durable_meta_here(
        &self,
        store: &Store,
        keys: &[&str],
    ) -> Result<crate::store::MetaValues, crate::store::StoreError> {
        self.flushing(store, Commit::Durable, || store.flush_durable_meta(keys))
    }

    fn flush_as(&self, store: &Store, how: Commit) -> Result<(), crate::store::StoreError> {
        self.flushing(store, how, || store.flush(how))
    }

    fn flushing<T>(
        &self,
        store: &Store,
        how: Commit,
        flush: impl FnOnce() -> Result<T, crate::store::StoreError>,
    ) -> Result<T, crate::store::StoreError> {
        let (started, cpu, staged) = (std::time::Instant::now(), crate::thread::cpu_time(), store.staged_txs());
        {
            let mut s = self.state.lock().expect("sync lock");
            s.dirty = false;
            s.last = std::time::Instant::now();
            if how == Commit::Durable {
                s.last_fsync = s.last;
            }
        }
        match flush() {
            Ok(v) => {
                tracing::debug!(
                    chain = %store.chain(),
                    txs = staged,
                    durable = how == Commit::Durable,
                    ms = started.elapsed().as_millis() as u64,
                    cpu_ms = crate::thread::cpu_time().saturating_sub(cpu).as_millis() as u64,
                    "chain store written"
                );
                self.syncs.fetch_add(1, Relaxed);
                Ok(v)
            }
            Err(e) => {
                // Still staged: the next flush writes them.
                self.state.lock().expect("sync lock").dirty = true;
                Err(e)
            }
        }
    }

    /// Flushes so far.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Relaxed)
    }
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

/// A snapshot id: the log position and the process's nonce.
fn snapshot_id(at: &Option<LogId<NodeId>>, nonce: u64) -> String {
    match at {
        Some(l) => format!("{}-{}-{nonce}", l.leader_id.term, l.index),
        None => format!("empty-{nonce}"),
    }
}

/// Snapshot metadata from the stored applied position and membership.
fn snapshot_meta(
    values: crate::store::MetaValues,
    snapshot_id: String,
) -> Result<SnapshotMeta<NodeId, BasicNode>, StorageError> {
    let mut values = values.into_iter();
    let last_log_id: Option<LogId<NodeId>> = decode_meta(values.next().flatten())?;
    let last_membership: StoredMembership<NodeId, BasicNode> = decode_meta(values.next().flatten())?;
    Ok(SnapshotMeta { last_log_id, last_membership, snapshot_id })
}

/// Resolves when the export `done` reports is written, with its error if it failed.
fn wait_for(
    mut done: tokio::sync::watch::Receiver<Option<Result<(), String>>>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<()>> + Send>> {
    Box::pin(async move {
        let written = done
            .wait_for(Option::is_some)
            .await
            .map_err(|_| std::io::Error::other("the export stopped before it was written"))?;
        match written.as_ref() {
            Some(Err(e)) => Err(std::io::Error::other(format!("export failed: {e}"))),
            _ => Ok(()),
        }
    })
}

/// A process's snapshot id nonce: a replica restarted while a peer still receives its earlier
/// export must not reuse that export's id.
fn process_nonce() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

impl StateMachine {
    /// A state machine over the chain store at `store`'s path.
    pub fn new(store: SharedStore, consortium: Arc<Consortium>, verifier: Arc<Verifier>) -> Self {
        let path = current(&store).path().to_path_buf();
        let sm = Self {
            store,
            path,
            consortium,
            verifier,
            snapshots: Arc::new(Mutex::new(Snapshots { nonce: process_nonce(), ..Snapshots::default() })),
            applied: None,
            verdicts: Arc::default(),
            apply_delay: std::time::Duration::ZERO,
            sync: Arc::new(StoreSync::new(std::time::Duration::ZERO)),
            metrics: Arc::default(),
            in_place: false,
        };
        sm.remove_stale_snapshot_files();
        sm
    }

    /// Apply on openraft's own task (the deterministic simulator, whose one thread must do all
    /// the work in a reproducible order) instead of a blocking thread. Elsewhere applying runs
    /// beside the runtime: verifying and executing a few hundred transactions takes
    /// milliseconds, and the runtime's threads must keep answering Raft RPCs meanwhile (openraft
    /// gives an AppendEntries one heartbeat interval).
    pub fn in_place(mut self, in_place: bool) -> Self {
        self.in_place = in_place;
        if in_place {
            // Reproducible snapshot ids.
            self.snapshots.lock().expect("snapshot lock").nonce = 0;
        }
        self
    }

    /// Count what applying costs in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<ApplyMetrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Commit blocks as `sync` says, instead of durably one by one (the default).
    pub fn with_sync(mut self, sync: Arc<StoreSync>) -> Self {
        self.sync = sync;
        self
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

    /// Apply the entries openraft hands over together, in order, as one redb write transaction:
    /// each block executes against the state the blocks before it left (the store and their
    /// writes in memory), then blocks, state and the last applied position are committed at once.
    /// Under load several blocks commit together, which spreads the commit's fixed cost and the
    /// copying of B-tree pages over all of them (group commit).
    fn apply_batch(&self, entries: Vec<Entry>) -> Result<Vec<BlockApplied>, StorageError> {
        let read = |e: crate::store::StoreError| sm_err(ErrorVerb::Read, e);
        let store = current(&self.store);
        let executor = Executor::new(&self.consortium, store.chain());
        let mut results = Vec::with_capacity(entries.len());
        let mut blocks = Vec::new();
        let mut hashes: Vec<(u64, Hash32)> = Vec::new();
        let mut last = None;
        let mut membership = None;
        let view = store.view().map_err(read)?;
        let mut state = Overlay::new(&view);
        let mut tip = store.tip().map_err(read)?;
        let (mut verify, mut execute, mut txs) = (std::time::Duration::ZERO, std::time::Duration::ZERO, 0u64);
        for entry in entries {
            let log_id = *entry.get_log_id();
            last = Some(log_id);
            match entry.payload {
                EntryPayload::Blank => results.push(BlockApplied::default()),
                EntryPayload::Membership(m) => {
                    membership = Some(StoredMembership::new(Some(log_id), m));
                    results.push(BlockApplied::default());
                }
                EntryPayload::Normal(proposal) => {
                    let started = std::time::Instant::now();
                    txs += proposal.txs.len() as u64;
                    let checked = self.verifier.check_cached(proposal.txs, &self.verdicts);
                    let verified = std::time::Instant::now();
                    let pos = LogPosition { term: log_id.leader_id.term, index: log_id.index };
                    let executed = executor.execute(&state, &tip, Timestamp(proposal.time), pos, checked);
                    state.extend(executed.writes);
                    verify += verified - started;
                    execute += verified.elapsed();
                    let b = executed.block;
                    tip = b.header;
                    let hash = b.header.hash();
                    hashes.push((b.header.height, hash));
                    results.push(BlockApplied {
                        height: b.header.height,
                        hash: hash.0,
                        results: b.ids.iter().zip(&b.outcomes).map(|(id, o)| (id.0, o.as_u16())).collect(),
                    });
                    blocks.push(b);
                }
            }
        }
        let writes = state.into_writes();
        drop(view);
        let applied = bincode::serialize(&last).map_err(|e| sm_err(ErrorVerb::Write, e))?;
        let membership =
            membership.map(|m| bincode::serialize(&m)).transpose().map_err(|e| sm_err(ErrorVerb::Write, e))?;
        let mut meta: Vec<(&str, &[u8])> = vec![(META_APPLIED, &applied)];
        if let Some(m) = &membership {
            meta.push((META_MEMBERSHIP, m));
        }
        let started = std::time::Instant::now();
        let write = |e| sm_err(ErrorVerb::Write, e);
        store.stage(blocks, writes, &meta).map_err(write)?;
        let waited = self.sync.staged(&store).map_err(write)?;
        let m = &self.metrics;
        m.batches.fetch_add(1, Relaxed);
        m.blocks.fetch_add(hashes.len() as u64, Relaxed);
        m.txs.fetch_add(txs, Relaxed);
        m.verify_micros.fetch_add(verify.as_micros() as u64, Relaxed);
        m.execute_micros.fetch_add(execute.as_micros() as u64, Relaxed);
        m.commit_micros.fetch_add(started.elapsed().saturating_sub(waited).as_micros() as u64, Relaxed);
        m.store_wait_micros.fetch_add(waited.as_micros() as u64, Relaxed);
        m.store_syncs.store(self.sync.syncs(), Relaxed);
        if let Some(hook) = &self.applied {
            for h in hashes {
                let _ = hook.send(h);
            }
        }
        Ok(results)
    }
}

impl StateMachine {
    /// Build a snapshot: write what is staged durably and take the position it reaches. The
    /// log behind that position may be purged from here on, so it must be on disk first. No
    /// bytes are made: the store's file holds the state, and an export is made only when a
    /// replica needs one ([`StateMachine::current_snapshot`]).
    fn snapshot_now(&self) -> Result<SnapshotMeta<NodeId, BasicNode>, StorageError> {
        let store = current(&self.store);
        let values = self
            .sync
            .flush_durable_meta(&store, &[META_APPLIED, META_MEMBERSHIP], self.in_place)
            .map_err(|e| io_error(ErrorSubject::Snapshot(None), ErrorVerb::Write, e))?;
        let meta = snapshot_meta(values, String::new())?;
        let mut s = self.snapshots.lock().expect("snapshot lock");
        let meta = SnapshotMeta { snapshot_id: snapshot_id(&meta.last_log_id, s.nonce), ..meta };
        s.latest = Some(meta.clone());
        drop(s);
        tracing::info!(chain = %store.chain(), last = ?meta.last_log_id, "snapshot taken");
        Ok(meta)
    }

    /// The snapshot to send to a replica: the newest export if it is not older than the last
    /// snapshot built, else a new export of the store as it is now (at or past that snapshot),
    /// written on a thread of its own while the sender waits for it. None before any snapshot
    /// was built or installed (openraft builds one at start when the log is purged).
    fn current_snapshot(&self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let mut s = self.snapshots.lock().expect("snapshot lock");
        let Some(latest) = s.latest.clone() else {
            return Ok(None);
        };
        let err = |e: &dyn std::fmt::Display| io_error(ErrorSubject::Snapshot(None), ErrorVerb::Read, e);
        // A failed export is not served again: the next request makes a new one.
        let usable =
            |e: &&Exported| e.meta.last_log_id >= latest.last_log_id && !matches!(*e.done.borrow(), Some(Err(_)));
        if let Some(e) = s.export.as_ref().filter(usable) {
            return e.snapshot(self.in_place).map(Some);
        }
        let store = current(&self.store);
        let export = store.begin_export().map_err(|e| err(&e))?;
        let meta = snapshot_meta(export.meta(&[META_APPLIED, META_MEMBERSHIP]).map_err(|e| err(&e))?, String::new())?;
        // The snapshot built or installed last, when nothing was applied since; else a new one.
        let snapshot_id = match meta.last_log_id == latest.last_log_id {
            true => latest.snapshot_id.clone(),
            false => snapshot_id(&meta.last_log_id, s.nonce),
        };
        let meta = SnapshotMeta { snapshot_id, ..meta };
        let path = self.path.with_extension(format!("snapshot-{}", meta.snapshot_id));
        let out = std::fs::File::create(&path).map_err(|e| err(&format!("create {}: {e}", path.display())))?;
        let (tx, done) = tokio::sync::watch::channel(None);
        let chain = store.chain();
        let (snapshot_id, to) = (meta.snapshot_id.clone(), path.clone());
        let write = move || {
            let started = std::time::Instant::now();
            let mut out = out;
            let written = export.write_to(&mut out);
            match &written {
                Ok(bytes) => tracing::info!(%chain, id = %snapshot_id, bytes, file = %to.display(),
                    seconds = started.elapsed().as_secs_f64(), "exported the chain store for a snapshot"),
                Err(e) => {
                    tracing::warn!(%chain, id = %snapshot_id, error = %e, "cannot export the chain store for a snapshot")
                }
            }
            let _ = tx.send(Some(written.map(|_| ()).map_err(|e| e.to_string())));
        };
        if self.in_place {
            write();
        } else {
            std::thread::Builder::new()
                .name("snapshot-export".into())
                .spawn(write)
                .map_err(|e| err(&format!("start the export thread: {e}")))?;
        }
        let exported = Exported { meta, path, done };
        let snapshot = exported.snapshot(self.in_place)?;
        // Readers of an older export keep their open file; its name goes.
        if let Some(old) = s.export.replace(exported).filter(|old| old.path != snapshot.snapshot.path()) {
            let _ = std::fs::remove_file(&old.path);
        }
        Ok(Some(snapshot))
    }

    /// Where a snapshot being received is written.
    fn received_path(&self) -> PathBuf {
        self.path.with_extension("snapshot-received")
    }

    /// Replace the store with the one a received snapshot carries.
    fn install_now(&self, meta: &SnapshotMeta<NodeId, BasicNode>, received: &Path) -> Result<(), StorageError> {
        let err =
            |e: &dyn std::fmt::Display| io_error(ErrorSubject::Snapshot(Some(meta.signature())), ErrorVerb::Write, e);
        let from = std::fs::File::open(received).map_err(|e| err(&format!("open {}: {e}", received.display())))?;
        let imported = Store::import_from(&self.path, from);
        if received == self.received_path() {
            let _ = std::fs::remove_file(received);
        }
        let new_store = imported.map_err(|e| err(&e))?;
        let applied: Option<LogId<NodeId>> = decode_meta(new_store.get_meta(META_APPLIED).map_err(|e| err(&e))?)?;
        if applied != meta.last_log_id {
            return Err(sm_err(
                ErrorVerb::Write,
                format!("snapshot holds state up to {applied:?}, its metadata says {:?}", meta.last_log_id),
            ));
        }
        tracing::info!(chain = %new_store.chain(), height = new_store.tip().map(|t| t.height).unwrap_or(0), "installed snapshot");
        *self.store.write().expect("store lock") = Arc::new(new_store);
        let mut s = self.snapshots.lock().expect("snapshot lock");
        s.latest = Some(meta.clone());
        if let Some(old) = s.export.take() {
            let _ = std::fs::remove_file(&old.path);
        }
        Ok(())
    }

    /// Remove snapshot files a previous run of this replica left (exports, a partial receipt).
    fn remove_stale_snapshot_files(&self) {
        let (Some(dir), Some(stem)) = (self.path.parent(), self.path.file_stem().and_then(|s| s.to_str())) else {
            return;
        };
        let prefix = format!("{stem}.snapshot-");
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            if e.file_name().to_str().is_some_and(|n| n.starts_with(&prefix)) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    /// Run `work` on a blocking thread, or here when in place.
    async fn off_runtime<T: Send + 'static>(
        &self,
        work: impl FnOnce(Self) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, StorageError> {
        if self.in_place {
            return work(self.clone());
        }
        let sm = self.clone();
        tokio::task::spawn_blocking(move || work(sm))
            .await
            .map_err(|e| sm_err(ErrorVerb::Write, format!("state machine work stopped: {e}")))?
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let meta = self.off_runtime(|sm| sm.snapshot_now()).await?;
        Ok(Snapshot { meta, snapshot: Box::new(SnapshotFile::position_only()) })
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
        let entries: Vec<Entry> = entries.into_iter().collect();
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let applied = self.off_runtime(move |sm| sm.apply_batch(entries)).await;
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

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotFile>, StorageError> {
        let path = self.received_path();
        let file = SnapshotFile::receiver(&path, self.in_place).map_err(|e| {
            io_error(ErrorSubject::Snapshot(None), ErrorVerb::Write, format!("create {}: {e}", path.display()))
        })?;
        Ok(Box::new(file))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<SnapshotFile>,
    ) -> Result<(), StorageError> {
        let meta = meta.clone();
        let received = snapshot.path().to_path_buf();
        drop(snapshot);
        self.off_runtime(move |sm| sm.install_now(&meta, &received)).await
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        // Opening files and starting a thread: no waiting, the export is written beside.
        self.current_snapshot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applying_pauses_only_past_the_slow_mark_and_at_most_the_longest_pause() {
        assert_eq!(pause_for(0), std::time::Duration::ZERO);
        assert_eq!(pause_for(SLOW_AT_TXS), std::time::Duration::ZERO);
        let halfway = pause_for((SLOW_AT_TXS + MAX_STAGED_TXS) / 2);
        assert!(halfway > MAX_PAUSE / 3 && halfway < MAX_PAUSE * 2 / 3, "{halfway:?}");
        assert_eq!(pause_for(MAX_STAGED_TXS), MAX_PAUSE);
        assert_eq!(pause_for(10 * MAX_STAGED_TXS), MAX_PAUSE);
    }

    #[test]
    fn a_snapshots_durable_write_is_made_by_the_flush_thread_and_answered() {
        use elchain_types::ids::{ChainId, Timestamp};
        use elchain_types::profile::Profile;
        let dir = tempfile::tempdir().unwrap();
        let consortium = Profile::sample().into_dev_consortium().unwrap();
        let store =
            Arc::new(Store::create(&dir.path().join("chain.redb"), ChainId(1), &consortium, Timestamp(1)).unwrap());
        let sync = Arc::new(StoreSync::new(std::time::Duration::from_secs(10)));
        store.stage(Vec::new(), crate::state::Writes::default(), &[("applied", b"7")]).unwrap();
        let values = sync.flush_durable_meta(&store, &["applied", "absent"], false).unwrap();
        assert_eq!(values, vec![Some(b"7".to_vec()), None]);
        assert!(sync.flusher.lock().unwrap().is_some(), "the store-flush thread made the write");
        assert!(!store.unsynced(), "and made it durable");
        // In place (the deterministic simulator), no thread is started.
        let in_place = Arc::new(StoreSync::new(std::time::Duration::from_secs(10)));
        store.stage(Vec::new(), crate::state::Writes::default(), &[("applied", b"8")]).unwrap();
        let values = in_place.flush_durable_meta(&store, &["applied"], true).unwrap();
        assert_eq!(values, vec![Some(b"8".to_vec())]);
        assert!(in_place.flusher.lock().unwrap().is_none());
        assert!(!store.unsynced());
    }

    #[test]
    fn a_write_the_timer_finds_due_is_made_by_the_flush_thread() {
        use elchain_types::ids::{ChainId, Timestamp};
        use elchain_types::profile::Profile;
        use std::time::{Duration, Instant};
        let dir = tempfile::tempdir().unwrap();
        let consortium = Profile::sample().into_dev_consortium().unwrap();
        let store =
            Arc::new(Store::create(&dir.path().join("chain.redb"), ChainId(1), &consortium, Timestamp(1)).unwrap());
        let sync = Arc::new(StoreSync::with_fsync(Duration::from_millis(1), Duration::from_millis(1)));
        assert!(!sync.flush_due_in_background(&store).unwrap(), "nothing staged, nothing due");
        store.stage(Vec::new(), crate::state::Writes::default(), &[("applied", b"9")]).unwrap();
        sync.note_staged();
        std::thread::sleep(Duration::from_millis(5));
        assert!(sync.flush_due_in_background(&store).unwrap());
        assert!(sync.flusher.lock().unwrap().is_some(), "handed to the store-flush thread");
        let deadline = Instant::now() + Duration::from_secs(10);
        while sync.running.load(Acquire) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!sync.running.load(Acquire), "the thread finished the write");
        assert_eq!(store.begin_export().unwrap().meta(&["applied"]).unwrap(), vec![Some(b"9".to_vec())]);
        assert!(!store.unsynced(), "and fsynced it, as one was due");
        assert_eq!(sync.syncs(), 1);
    }
}
