//! The Raft log and vote of one chain, in their own redb file.
//!
//! redb has one writer per database, so the log does not share a file with the chain store:
//! appends (fsynced before openraft is told they are durable) never wait behind block commits.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogId, Vote};
use redb::{Database, Durability, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{io_error, Entry, NodeId, StorageError, TypeConfig};

/// Log index → bincode-encoded entry.
const LOG: TableDefinition<'static, u64, &[u8]> = TableDefinition::new("raft_log");
/// Vote, last purged log id, committed log id.
const RAFT_META: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("raft_meta");

const VOTE: &str = "vote";
const LAST_PURGED: &str = "last_purged";
const COMMITTED: &str = "committed";

/// Durable-append figures, exported as metrics.
#[derive(Debug, Default)]
pub struct LogMetrics {
    /// Appends made durable.
    pub appends: std::sync::atomic::AtomicU64,
    /// Microseconds spent in them (write and fsync).
    pub append_micros: std::sync::atomic::AtomicU64,
}

/// A chain's Raft log on redb. Cloning shares the database (log readers are clones).
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
    metrics: Arc<LogMetrics>,
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

impl LogStore {
    /// Open (or create) the log at `path`.
    pub fn open(path: &Path) -> Result<Self, crate::store::StoreError> {
        let db = Database::create(path)?;
        let w = db.begin_write()?;
        w.open_table(LOG)?;
        w.open_table(RAFT_META)?;
        w.commit()?;
        Ok(Self { db: Arc::new(db), metrics: Arc::default() })
    }

    /// The append figures of this log.
    pub fn metrics(&self) -> Arc<LogMetrics> {
        self.metrics.clone()
    }

    fn meta<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StorageError> {
        let r = self.db.begin_read().map_err(read_err)?;
        let t = r.open_table(RAFT_META).map_err(read_err)?;
        match t.get(key).map_err(read_err)? {
            None => Ok(None),
            Some(v) => bincode::deserialize(v.value()).map(Some).map_err(read_err),
        }
    }

    fn put_meta<T: Serialize>(&self, key: &str, value: &T, durability: Durability) -> Result<(), StorageError> {
        let bytes = bincode::serialize(value).map_err(write_err)?;
        let mut w = self.db.begin_write().map_err(write_err)?;
        w.set_durability(durability);
        w.open_table(RAFT_META).map_err(write_err)?.insert(key, &bytes[..]).map_err(write_err)?;
        w.commit().map_err(write_err)
    }

    fn last_entry_log_id(&self) -> Result<Option<LogId<NodeId>>, StorageError> {
        let r = self.db.begin_read().map_err(read_err)?;
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
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let r = self.db.begin_read().map_err(read_err)?;
        let t = r.open_table(LOG).map_err(read_err)?;
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i + 1,
            Bound::Unbounded => 0,
        };
        let mut out = Vec::new();
        for e in t.range(start..).map_err(read_err)? {
            let (k, v) = e.map_err(read_err)?;
            if !range.contains(&k.value()) {
                break;
            }
            out.push(bincode::deserialize(v.value()).map_err(read_err)?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId<NodeId>> = self.meta(LAST_PURGED)?;
        let last_log_id = self.last_entry_log_id()?.or(last_purged_log_id);
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        // Raft's safety rests on the vote: durable before anyone hears of it.
        self.put_meta(VOTE, vote, Durability::Immediate)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.meta(VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), StorageError> {
        // openraft calls this at every commit. It only saves re-applying after a restart (the
        // leader tells the commit index again), so it rides on the next durable append.
        self.put_meta(COMMITTED, &committed, Durability::None)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError> {
        Ok(self.meta::<Option<LogId<NodeId>>>(COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let started = std::time::Instant::now();
        let mut w = self.db.begin_write().map_err(write_err)?;
        w.set_durability(Durability::Immediate);
        {
            let mut t = w.open_table(LOG).map_err(write_err)?;
            for e in entries {
                let bytes = bincode::serialize(&e).map_err(write_err)?;
                t.insert(e.get_log_id().index, &bytes[..]).map_err(write_err)?;
            }
        }
        w.commit().map_err(write_err)?;
        // The commit above returned after fsync: the entries are durable now.
        use std::sync::atomic::Ordering::Relaxed;
        self.metrics.appends.fetch_add(1, Relaxed);
        self.metrics.append_micros.fetch_add(started.elapsed().as_micros() as u64, Relaxed);
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError> {
        let mut w = self.db.begin_write().map_err(write_err)?;
        w.set_durability(Durability::Immediate);
        w.open_table(LOG).map_err(write_err)?.retain(|k, _| k < log_id.index).map_err(write_err)?;
        w.commit().map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError> {
        let bytes = bincode::serialize(&log_id).map_err(write_err)?;
        let mut w = self.db.begin_write().map_err(write_err)?;
        w.set_durability(Durability::Immediate);
        w.open_table(RAFT_META).map_err(write_err)?.insert(LAST_PURGED, &bytes[..]).map_err(write_err)?;
        w.open_table(LOG).map_err(write_err)?.retain(|k, _| k > log_id.index).map_err(write_err)?;
        w.commit().map_err(write_err)
    }
}
