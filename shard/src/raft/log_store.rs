//! The Raft log and vote of one chain, in their own redb file.
//!
//! redb has one writer per database, so the log does not share a file with the chain store:
//! appends (fsynced before openraft is told they are durable) never wait behind block commits.
//!
//! Appends return at once: the entries are readable from memory, and a writer thread puts
//! everything appended meanwhile into one fsynced transaction, then tells openraft (group
//! commit). openraft's core task therefore never waits for the disk: a leader sends block `n` to
//! its followers while its own fsync of `n` runs, and a follower goes on answering heartbeats
//! while it writes. Writes that must be durable before the caller goes on (vote, truncation,
//! purge) queue behind the appends and are awaited. On the deterministic simulator every write
//! is made in place instead, so that nothing runs outside its schedule.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogId, Vote};
use redb::{Database, Durability, ReadableTable, TableDefinition, WriteTransaction};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{io_error, Entry, NodeId, StorageError, TypeConfig};

/// Log index → bincode-encoded entry.
const LOG: TableDefinition<'static, u64, &[u8]> = TableDefinition::new("raft_log");
/// redb's page cache for the log. Entries are served from memory until their append is durable
/// and are rarely read back after (a lagging follower, a restart), so a cache as large as redb's
/// default (1 GiB) only filled with entries written once: a busy node grew by hundreds of
/// megabytes a minute, every page of it freshly faulted in and zeroed by the kernel.
const CACHE_BYTES: usize = 64 << 20;

/// Vote, last purged log id, committed log id.
const RAFT_META: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("raft_meta");

const VOTE: &str = "vote";
const LAST_PURGED: &str = "last_purged";
const COMMITTED: &str = "committed";

/// Durable-write figures, exported as metrics.
#[derive(Debug, Default)]
pub struct LogMetrics {
    /// Durable (fsynced) writes of appended entries; one may hold several appends.
    pub appends: std::sync::atomic::AtomicU64,
    /// Microseconds spent in them (encoding, write and fsync).
    pub append_micros: std::sync::atomic::AtomicU64,
}

/// What the log shares between its clones and its writer.
struct Shared {
    db: Database,
    metrics: Arc<LogMetrics>,
    /// Entries appended and not yet in the file, by index: readers look here first.
    pending: Mutex<BTreeMap<u64, Arc<Entry>>>,
    /// The committed log id to save with the next write (it only spares re-applying after a
    /// restart, so it is never worth a write of its own).
    committed: Mutex<Option<Option<LogId<NodeId>>>>,
}

/// A chain's Raft log on redb. Cloning shares the database and the writer (log readers are
/// clones).
#[derive(Clone)]
pub struct LogStore {
    shared: Arc<Shared>,
    /// None: every write is made on the caller's thread.
    writer: Option<Arc<Writer>>,
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogStore")
    }
}

fn read_err(e: impl std::fmt::Display) -> StorageError {
    io_error(ErrorSubject::Logs, ErrorVerb::Read, e)
}

fn write_err(e: impl std::fmt::Display) -> StorageError {
    io_error(ErrorSubject::Logs, ErrorVerb::Write, e)
}

/// A write that must be durable before its caller goes on.
type Write = Box<dyn FnOnce(&WriteTransaction) -> Result<(), StorageError> + Send>;

enum Job {
    Append(Vec<Arc<Entry>>, LogFlushed<TypeConfig>),
    Write(Write, tokio::sync::oneshot::Sender<Result<(), StorageError>>),
}

/// The writer thread; dropping the last handle lets it finish what was queued and waits for it,
/// so the file is closed when the log is.
struct Writer {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn send(&self, job: Job) -> Result<(), StorageError> {
        let jobs = self.jobs.as_ref().expect("the writer outlives its handles");
        jobs.send(job).map_err(|_| write_err("the raft log's writer has stopped"))
    }
}

/// Tell openraft how the write of appended entries ended.
fn report(flushed: LogFlushed<TypeConfig>, result: &Result<(), StorageError>) {
    flushed.log_io_completed(result.as_ref().map(|_| ()).map_err(|e| std::io::Error::other(e.to_string())));
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl LogStore {
    /// Open (or create) the log at `path`, with a writer thread.
    pub fn open(path: &Path) -> Result<Self, crate::store::StoreError> {
        let mut log = Self::open_in_place(path)?;
        let (tx, rx) = mpsc::channel();
        let shared = log.shared.clone();
        let thread = std::thread::Builder::new()
            .name("raft-log".into())
            .spawn(move || write_loop(&shared, rx))
            .map_err(|e| crate::store::StoreError::Redb(Box::new(redb::Error::Io(e))))?;
        log.writer = Some(Arc::new(Writer { jobs: Some(tx), thread: Some(thread) }));
        Ok(log)
    }

    /// Open (or create) the log at `path`; every write is made on the caller's thread and done
    /// when the call returns (the deterministic simulator).
    pub fn open_in_place(path: &Path) -> Result<Self, crate::store::StoreError> {
        let db = crate::store::open_database(path, CACHE_BYTES, true)?;
        let w = db.begin_write()?;
        w.open_table(LOG)?;
        w.open_table(RAFT_META)?;
        w.commit()?;
        let shared = Shared { db, metrics: Arc::default(), pending: Mutex::default(), committed: Mutex::default() };
        Ok(Self { shared: Arc::new(shared), writer: None })
    }

    /// The append figures of this log.
    pub fn metrics(&self) -> Arc<LogMetrics> {
        self.shared.metrics.clone()
    }

    fn meta<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StorageError> {
        let r = self.shared.db.begin_read().map_err(read_err)?;
        let t = r.open_table(RAFT_META).map_err(read_err)?;
        match t.get(key).map_err(read_err)? {
            None => Ok(None),
            Some(v) => bincode::deserialize(v.value()).map(Some).map_err(read_err),
        }
    }

    fn last_entry_log_id(&self) -> Result<Option<LogId<NodeId>>, StorageError> {
        let r = self.shared.db.begin_read().map_err(read_err)?;
        let t = r.open_table(LOG).map_err(read_err)?;
        let last = t.last().map_err(read_err)?;
        match last {
            None => Ok(None),
            Some((_, v)) => {
                let e: Entry = bincode::deserialize(v.value()).map_err(read_err)?;
                Ok(Some(*e.get_log_id()))
            }
        }
    }

    /// Make `write` durable after everything appended before it.
    async fn write_durably(&self, write: Write) -> Result<(), StorageError> {
        let Some(writer) = &self.writer else {
            return self.shared.commit(write);
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        writer.send(Job::Write(write, tx))?;
        rx.await.map_err(|_| write_err("the raft log's writer has stopped"))?
    }
}

impl Shared {
    /// One fsynced transaction: `write`, and the committed log id if one waits to be saved.
    fn commit(&self, write: impl FnOnce(&WriteTransaction) -> Result<(), StorageError>) -> Result<(), StorageError> {
        let mut w = self.db.begin_write().map_err(write_err)?;
        w.set_durability(Durability::Immediate);
        write(&w)?;
        if let Some(committed) = self.committed.lock().expect("committed lock").take() {
            put_meta(&w, COMMITTED, &committed)?;
        }
        w.commit().map_err(write_err)
    }

    /// Write appended entries in one fsynced transaction, then drop them from `pending` (an
    /// index truncated and appended again meanwhile keeps its newer entry).
    fn append(&self, appends: &[Vec<Arc<Entry>>]) -> Result<(), StorageError> {
        let started = std::time::Instant::now();
        self.commit(|w| {
            let mut t = w.open_table(LOG).map_err(write_err)?;
            for e in appends.iter().flatten() {
                let bytes = bincode::serialize(&**e).map_err(write_err)?;
                t.insert(e.get_log_id().index, &bytes[..]).map_err(write_err)?;
            }
            Ok(())
        })?;
        let mut pending = self.pending.lock().expect("pending lock");
        for e in appends.iter().flatten() {
            let index = e.get_log_id().index;
            if pending.get(&index).is_some_and(|p| Arc::ptr_eq(p, e)) {
                pending.remove(&index);
            }
        }
        drop(pending);
        use std::sync::atomic::Ordering::Relaxed;
        self.metrics.appends.fetch_add(1, Relaxed);
        self.metrics.append_micros.fetch_add(started.elapsed().as_micros() as u64, Relaxed);
        Ok(())
    }
}

/// Put `value` under `key` in the log's metadata within `w`.
fn put_meta<T: Serialize>(w: &WriteTransaction, key: &str, value: &T) -> Result<(), StorageError> {
    let bytes = bincode::serialize(value).map_err(write_err)?;
    w.open_table(RAFT_META).map_err(write_err)?.insert(key, &bytes[..]).map_err(write_err)?;
    Ok(())
}

/// The writer thread: everything appended while the last fsync ran goes into the next one.
fn write_loop(shared: &Shared, jobs: mpsc::Receiver<Job>) {
    let mut next = None;
    loop {
        let job = match next.take() {
            Some(job) => job,
            None => match jobs.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
        };
        match job {
            Job::Write(write, done) => {
                let _ = done.send(shared.commit(write));
            }
            Job::Append(entries, flushed) => {
                let (mut appends, mut callbacks) = (vec![entries], vec![flushed]);
                while let Ok(job) = jobs.try_recv() {
                    match job {
                        Job::Append(entries, flushed) => {
                            appends.push(entries);
                            callbacks.push(flushed);
                        }
                        other => {
                            next = Some(other);
                            break;
                        }
                    }
                }
                let result = shared.append(&appends);
                for flushed in callbacks {
                    report(flushed, &result);
                }
            }
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        // Pending entries first: one the writer drops from there after this look is in the file
        // by then, as it is written before it is dropped.
        let pending: Vec<Arc<Entry>> =
            self.shared.pending.lock().expect("pending lock").range(range.clone()).map(|(_, e)| e.clone()).collect();
        let file_end = pending.first().map_or(u64::MAX, |e| e.get_log_id().index);
        let r = self.shared.db.begin_read().map_err(read_err)?;
        let t = r.open_table(LOG).map_err(read_err)?;
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i + 1,
            Bound::Unbounded => 0,
        };
        let mut out = Vec::new();
        if start < file_end {
            for e in t.range(start..file_end).map_err(read_err)? {
                let (k, v) = e.map_err(read_err)?;
                if !range.contains(&k.value()) {
                    break;
                }
                out.push(bincode::deserialize(v.value()).map_err(read_err)?);
            }
        }
        out.extend(pending.iter().map(|e| (**e).clone()));
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId<NodeId>> = self.meta(LAST_PURGED)?;
        let last_pending =
            self.shared.pending.lock().expect("pending lock").last_key_value().map(|(_, e)| *e.get_log_id());
        let last_log_id = match last_pending {
            Some(id) => Some(id),
            None => self.last_entry_log_id()?.or(last_purged_log_id),
        };
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        // Raft's safety rests on the vote: durable before anyone hears of it.
        let vote = *vote;
        self.write_durably(Box::new(move |w| put_meta(w, VOTE, &vote))).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.meta(VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), StorageError> {
        // openraft calls this at every commit. It only saves re-applying after a restart (the
        // leader tells the commit index again), so it rides on the next write.
        *self.shared.committed.lock().expect("committed lock") = Some(committed);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError> {
        if let Some(committed) = *self.shared.committed.lock().expect("committed lock") {
            return Ok(committed);
        }
        Ok(self.meta::<Option<LogId<NodeId>>>(COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Arc<Entry>> = entries.into_iter().map(Arc::new).collect();
        let Some(writer) = &self.writer else {
            let result = self.shared.append(std::slice::from_ref(&entries));
            report(callback, &result);
            return result;
        };
        {
            let mut pending = self.shared.pending.lock().expect("pending lock");
            for e in &entries {
                pending.insert(e.get_log_id().index, e.clone());
            }
        }
        writer.send(Job::Append(entries, callback))
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError> {
        let index = log_id.index;
        self.shared.pending.lock().expect("pending lock").split_off(&index);
        self.write_durably(Box::new(move |w| {
            // Only the range removed is visited; `retain` would walk every entry kept too.
            w.open_table(LOG).map_err(write_err)?.retain_in::<u64, _>(index.., |_, _| false).map_err(write_err)
        }))
        .await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError> {
        let index = log_id.index;
        self.shared.pending.lock().expect("pending lock").retain(|&i, _| i > index);
        self.write_durably(Box::new(move |w| {
            put_meta(w, LAST_PURGED, &log_id)?;
            w.open_table(LOG).map_err(write_err)?.retain_in::<u64, _>(..=index, |_, _| false).map_err(write_err)
        }))
        .await
    }
}
