//! A chain's blocks and state in one redb file.
//!
//! One write transaction holds blocks, their state changes (the tx index among them) and the new
//! tip, so a crash leaves either all of them or none. [`Store::commit`] writes one block durably
//! (fsync) before it returns.
//!
//! A replica instead *stages* the blocks it applies ([`Store::stage`]): they are visible to every
//! read at once (blocks, state, tx index, tip) and are written to the file in one transaction by
//! the next [`Store::flush`], every `[raft] state_sync_ms`. Its Raft log is durable before a block
//! is applied, so a crash only rolls the store back to its last flush, and the replica applies the
//! log again from there. Writing seconds of blocks at once instead of block by block matters:
//! the B-trees copy every page they change on each commit, and random keys (transaction ids,
//! grants) change about one page each, so changes that share pages share their copies.

pub mod audit;
mod filter;
pub mod schema;

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use elchain_types::block::{Block, BlockHeader, Checkpoint, InclusionProof};
use elchain_types::codec::{Decode, Encode};
use elchain_types::contract::Consortium;
use elchain_types::ids::{ChainId, HolderId, LicenceId, Timestamp, TxId};
use redb::{Database, Durability, ReadableTable, ReadableTableMetadata};

use crate::exec::{genesis_header, Executed};
use crate::state::{Key, StateView, Table, TxEntry};
use schema::*;

/// Failures of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// redb failed (I/O, locking, corruption it detected).
    #[error("storage: {0}")]
    Redb(Box<redb::Error>),
    /// redb could not open or create the file (not a redb file, damaged, locked by another
    /// process, unreadable).
    #[error("cannot open {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// redb's complaint.
        #[source]
        source: redb::DatabaseError,
    },
    /// The file is not an elchain chain store.
    #[error("{path} is not an elchain chain store: {why}")]
    NotAStore {
        /// The file.
        path: PathBuf,
        /// What is missing.
        why: String,
    },
    /// The file was written by another schema version.
    #[error(
        "{path} has store schema version {found}, this build reads {expected}: it was written by \
         another elchain version, and this build has no migration from it. Run that version on \
         it, or start a development cluster over (`elchain dev --fresh`)"
    )]
    SchemaVersion {
        /// The file.
        path: PathBuf,
        /// Version in the file.
        found: u32,
        /// Version of this build.
        expected: u32,
    },
    /// A stored value does not decode.
    #[error("stored {what} does not decode: {why}")]
    Corrupt {
        /// Which value.
        what: String,
        /// The codec's complaint.
        why: String,
    },
    /// A block does not extend the tip.
    #[error("block {height} does not extend the tip {tip}")]
    NotNext {
        /// Height offered.
        height: u64,
        /// Current tip height.
        tip: u64,
    },
    /// A store already exists at the path.
    #[error("{0} already exists")]
    Exists(PathBuf),
    /// Reading or writing a file other than redb's own failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

macro_rules! redb_from {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Redb(Box::new(e.into()))
            }
        }
    )*};
}
redb_from!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// How a commit reaches the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Commit {
    /// Durable (fsync) before the call returns.
    Durable,
    /// Visible to readers at once, durable with the next durable commit or [`Store::flush`]; a
    /// crash before then rolls the store back to the last durable commit.
    Deferred,
}

impl Commit {
    fn durability(self) -> Durability {
        match self {
            Commit::Durable => Durability::Immediate,
            Commit::Deferred => Durability::None,
        }
    }
}

/// Bytes of the chain store file [`Store::write_back`] hands to the disk at a time: a few
/// milliseconds of the disk's time, which is what a Raft log fsync may wait behind.
const WRITE_BACK_CHUNK: u64 = 4 << 20;

/// Metadata values read with an export or a durable flush, in the order asked for.
pub type MetaValues = Vec<Option<Vec<u8>>>;

/// Where a transaction is and what became of it, with proof.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// Block height.
    pub height: u64,
    /// Header of that block.
    pub header: BlockHeader,
    /// Inclusion proof (carries index and outcome).
    pub proof: InclusionProof,
}

/// A chain store on disk.
pub struct Store {
    db: Database,
    path: PathBuf,
    chain: ChainId,
    /// Blocks applied but not written to the file yet, oldest first.
    staged: Mutex<Vec<Arc<Segment>>>,
    /// Held while staged segments are written out: one flush at a time.
    flushing: Mutex<()>,
    /// Checkpoints gathered since the last flush, by height; the next flush writes them. Storing
    /// one never waits for a flush in progress (redb has one writer at a time): checkpoints are
    /// gathered on the node's network tasks, which must not stop for the seconds a flush takes.
    checkpoints: Mutex<std::collections::BTreeMap<u64, Checkpoint>>,
    /// The file, opened again to start writeback of its pages (Linux).
    file: Option<std::fs::File>,
    /// A [`Commit::Deferred`] commit has not been made durable by a later durable one yet.
    unsynced: AtomicBool,
}

/// Blocks staged together, the state changes they made and metadata written with them.
#[derive(Debug)]
struct Segment {
    blocks: Vec<Block>,
    /// Transactions in `blocks`.
    txs: usize,
    writes: crate::state::Writes,
    /// The keys of `writes`, for reads of keys it does not hold (most of them).
    filter: filter::KeyFilter,
    meta: Vec<(String, Vec<u8>)>,
}

impl Segment {
    fn new(blocks: Vec<Block>, txs: usize, writes: crate::state::Writes, meta: Vec<(String, Vec<u8>)>) -> Self {
        let filter = filter::KeyFilter::of(writes.keys());
        Self { blocks, txs, writes, filter, meta }
    }

    /// Fold later blocks and their changes into this segment.
    fn extend(&mut self, blocks: Vec<Block>, txs: usize, writes: crate::state::Writes, meta: Vec<(String, Vec<u8>)>) {
        self.txs += txs;
        self.blocks.extend(blocks);
        for k in writes.keys() {
            self.filter.insert(k);
        }
        self.writes.extend(writes);
        if self.filter.is_crowded() {
            self.filter = filter::KeyFilter::of(self.writes.keys());
        }
        self.meta.extend(meta);
    }

    /// This segment's write of `key`: `Some(None)` for a removal, `None` when it has none.
    fn write(&self, key: &Key) -> Option<&Option<Vec<u8>>> {
        if !self.filter.may_contain(key) {
            return None;
        }
        self.writes.get(key)
    }

    fn block(&self, height: u64) -> Option<&Block> {
        let first = self.blocks.first()?.header.height;
        self.blocks.get(usize::try_from(height.checked_sub(first)?).ok()?)
    }

    fn meta(&self, key: &str) -> Option<&[u8]> {
        self.meta.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_slice())
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).field("chain", &self.chain).finish()
    }
}

fn corrupt(what: impl Into<String>, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt { what: what.into(), why: e.to_string() }
}

/// redb's page cache for a chain store, instead of its default of 1 GiB.
///
/// Most reads while executing are of staged state or miss (new ids), and a store write's pages go
/// to the file, so a large cache mostly filled, over a node's first minutes, with copies of pages
/// the kernel's page cache holds as well, each a first touch of fresh memory. On the VMs these
/// figures come from, a fresh page costs far more than a copy from the kernel's cache (the host
/// backs it anew): three replicas, 60 s, 140–148 µs of CPU per transaction at 1 GiB against
/// 133 µs at 128 MiB (64 and 256 MiB alike), with 1.6 GiB fewer pages touched fresh per run.
const CACHE_BYTES: usize = 128 << 20;

/// Open the redb file at `path` with a page cache of `cache_bytes`, or create it when `create`
/// says so (redb's `create` also opens an existing file); an error names the file.
pub(crate) fn open_database(path: &Path, cache_bytes: usize, create: bool) -> Result<Database, StoreError> {
    let mut builder = Database::builder();
    builder.set_cache_size(cache_bytes);
    let opened = if create { builder.create(path) } else { builder.open(path) };
    opened.map_err(|source| StoreError::Open { path: path.to_path_buf(), source })
}

impl Store {
    /// Create a new store at `path` with the genesis block of `chain` under `consortium`.
    pub fn create(path: &Path, chain: ChainId, consortium: &Consortium, time: Timestamp) -> Result<Self, StoreError> {
        if path.exists() {
            return Err(StoreError::Exists(path.to_path_buf()));
        }
        let db = open_database(path, CACHE_BYTES, true)?;
        let genesis = genesis_header(chain, consortium, time);
        let mut w = db.begin_write()?;
        w.set_durability(Durability::Immediate);
        {
            let mut meta = w.open_table(META)?;
            meta.insert(META_SCHEMA_VERSION, &SCHEMA_VERSION.to_le_bytes()[..])?;
            meta.insert(META_CHAIN, &chain.0.to_le_bytes()[..])?;
            meta.insert(META_CONSORTIUM, &consortium.to_bytes()[..])?;
            meta.insert(META_GENESIS, &genesis.to_bytes()[..])?;
            meta.insert(META_TIP, &genesis.to_bytes()[..])?;
            w.open_table(BLOCKS)?;
            w.open_table(CHECKPOINTS)?;
            for t in Table::ALL {
                w.open_table(state_table(t))?;
            }
        }
        w.commit()?;
        Ok(Self::with_db(db, path, chain))
    }

    fn with_db(db: Database, path: &Path, chain: ChainId) -> Self {
        let file = std::fs::File::open(path).ok();
        Self {
            db,
            path: path.to_path_buf(),
            chain,
            staged: Mutex::default(),
            flushing: Mutex::default(),
            checkpoints: Mutex::default(),
            file,
            unsynced: AtomicBool::new(false),
        }
    }

    /// True when something was committed without an fsync since the last durable commit (a
    /// crash now would lose it).
    pub fn unsynced(&self) -> bool {
        self.unsynced.load(Ordering::Acquire)
    }

    /// Begin a write transaction committed as `how` says.
    fn begin_write(&self, how: Commit) -> Result<redb::WriteTransaction, StoreError> {
        let mut w = self.db.begin_write()?;
        w.set_durability(how.durability());
        Ok(w)
    }

    /// Commit `w`, begun with [`Store::begin_write`] as `how`.
    fn commit_as(&self, w: redb::WriteTransaction, how: Commit) -> Result<(), StoreError> {
        if how == Commit::Durable {
            // While `w` is open no other commit can happen, and this one makes every earlier
            // one durable.
            self.unsynced.store(false, Ordering::Release);
        }
        let committed = w.commit();
        if how == Commit::Deferred || committed.is_err() {
            self.unsynced.store(true, Ordering::Release);
        }
        Ok(committed?)
    }

    /// Write the file's dirty pages to the disk (after a [`Commit::Deferred`] flush), a few MiB at
    /// a time, each waited for before the next is handed over. The disk's queue then never holds
    /// more than [`WRITE_BACK_CHUNK`] of this file, so a Raft log fsync behind it waits for that,
    /// not for a whole store write: handed over at once, a write's hundreds of MiB took the disk
    /// for a second or two, every replica's log fsync waited tens of milliseconds, and commits
    /// stalled. A durable commit after this finds little left to fsync. Blocks the calling
    /// thread until the pages are written. Linux only; elsewhere it does nothing.
    pub fn write_back(&self) {
        #[cfg(target_os = "linux")]
        if let Some(file) = &self.file {
            use std::os::fd::AsRawFd;
            let len = file.metadata().map_or(0, |m| m.len());
            let how =
                libc::SYNC_FILE_RANGE_WAIT_BEFORE | libc::SYNC_FILE_RANGE_WRITE | libc::SYNC_FILE_RANGE_WAIT_AFTER;
            for offset in (0..len).step_by(WRITE_BACK_CHUNK as usize) {
                // The one call outside safe Rust: no maintained crate wraps sync_file_range(2).
                // SAFETY: the descriptor is open for as long as `file` lives; the call only asks
                // the kernel to write the range's dirty pages and touches no memory of ours.
                #[allow(unsafe_code)]
                let r = unsafe { libc::sync_file_range(file.as_raw_fd(), offset as i64, WRITE_BACK_CHUNK as i64, how) };
                if r != 0 {
                    let e = std::io::Error::last_os_error();
                    tracing::debug!(path = %self.path.display(), error = %e, "cannot write back the chain store's pages");
                    return;
                }
            }
        }
    }

    /// The staged segments, oldest first.
    fn segments(&self) -> Vec<Arc<Segment>> {
        self.staged.lock().expect("staged lock").clone()
    }

    /// Open an existing store, checking that it is one and of this schema version.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if !path.is_file() {
            return Err(StoreError::NotAStore { path: path.to_path_buf(), why: "no such file".into() });
        }
        let db = open_database(path, CACHE_BYTES, false)?;
        let r = db.begin_read()?;
        let meta = r
            .open_table(META)
            .map_err(|e| StoreError::NotAStore { path: path.to_path_buf(), why: format!("no meta table ({e})") })?;
        let get_u32 = |key: &str| -> Result<u32, StoreError> {
            let v = meta
                .get(key)?
                .ok_or_else(|| StoreError::NotAStore { path: path.to_path_buf(), why: format!("no {key} entry") })?;
            let b: [u8; 4] = v.value().try_into().map_err(|_| corrupt(key, "not 4 bytes"))?;
            Ok(u32::from_le_bytes(b))
        };
        let version = get_u32(META_SCHEMA_VERSION)?;
        if version != SCHEMA_VERSION {
            return Err(StoreError::SchemaVersion {
                path: path.to_path_buf(),
                found: version,
                expected: SCHEMA_VERSION,
            });
        }
        let chain = ChainId(get_u32(META_CHAIN)?);
        drop(meta);
        drop(r);
        Ok(Self::with_db(db, path, chain))
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The chain this store holds.
    pub fn chain(&self) -> ChainId {
        self.chain
    }

    fn meta_value<T: Decode>(&self, key: &str) -> Result<T, StoreError> {
        let r = self.db.begin_read()?;
        let meta = r.open_table(META)?;
        let v = meta.get(key)?.ok_or_else(|| corrupt(key, "missing"))?;
        T::from_bytes(v.value()).map_err(|e| corrupt(key, e))
    }

    /// The last applied header (staged or written).
    pub fn tip(&self) -> Result<BlockHeader, StoreError> {
        let staged = self.staged.lock().expect("staged lock");
        if let Some(b) = staged.iter().rev().find_map(|s| s.blocks.last()) {
            return Ok(b.header);
        }
        drop(staged);
        self.meta_value(META_TIP)
    }

    /// The genesis header.
    pub fn genesis(&self) -> Result<BlockHeader, StoreError> {
        self.meta_value(META_GENESIS)
    }

    /// The consortium the chain was created under.
    pub fn consortium(&self) -> Result<Consortium, StoreError> {
        self.meta_value(META_CONSORTIUM)
    }

    /// A consistent read view of the state as of the last applied block.
    pub fn view(&self) -> Result<StoreView, StoreError> {
        // Segments first: one flushed after this point is still in the list taken here, and one
        // flushed before it is in the file the read transaction below sees.
        let segments = self.segments();
        let txn = self.db.begin_read()?;
        // Open every state table once: executing a block reads thousands of keys.
        let mut tables = Vec::with_capacity(Table::ALL.len());
        for t in Table::ALL {
            tables.push(txn.open_table(state_table(t))?);
        }
        Ok(StoreView { tables, segments })
    }

    /// Commit an executed block: block, state changes and tip, in one durable write.
    pub fn commit(&self, executed: &Executed) -> Result<(), StoreError> {
        self.commit_with(executed, &[], Commit::Durable)
    }

    /// [`Store::commit`], also writing `extra` metadata entries (such as the replication log
    /// position) in the same transaction, so they can never disagree with the blocks.
    pub fn commit_with(&self, executed: &Executed, extra: &[(&str, &[u8])], how: Commit) -> Result<(), StoreError> {
        self.stage(vec![executed.block.clone()], executed.writes.clone(), extra)?;
        self.flush(how)
    }

    /// Stage consecutive blocks following the tip, the state changes they made together and
    /// `extra` metadata entries: every read sees them from now on, and the next
    /// [`Store::flush`] writes them to the file in one transaction.
    pub fn stage(
        &self,
        blocks: Vec<Block>,
        writes: crate::state::Writes,
        extra: &[(&str, &[u8])],
    ) -> Result<(), StoreError> {
        let mut prev = self.tip()?;
        for b in &blocks {
            let header = &b.header;
            if header.height != prev.height + 1 || header.prev != prev.hash() {
                return Err(StoreError::NotNext { height: header.height, tip: prev.height });
            }
            prev = *header;
        }
        let meta = extra.iter().map(|(k, v)| (k.to_string(), v.to_vec())).collect();
        let txs = blocks.iter().map(|b| b.txs.len()).sum();
        let mut staged = self.staged.lock().expect("staged lock");
        // Fold into the last segment when nothing else holds it (no view, no flush in progress):
        // every read looks through each segment, so fewer is faster.
        if let Some(last) = staged.last_mut().and_then(Arc::get_mut) {
            last.extend(blocks, txs, writes, meta);
        } else {
            staged.push(Arc::new(Segment::new(blocks, txs, writes, meta)));
        }
        Ok(())
    }

    /// Blocks staged and not written to the file yet.
    pub fn staged_blocks(&self) -> usize {
        self.staged.lock().expect("staged lock").iter().map(|s| s.blocks.len()).sum()
    }

    /// Transactions in the blocks staged and not written to the file yet.
    pub fn staged_txs(&self) -> usize {
        self.staged.lock().expect("staged lock").iter().map(|s| s.txs).sum()
    }

    /// Write every staged block, state change and metadata entry to the file in one write
    /// transaction. With [`Commit::Durable`] it is fsynced before this returns, and so is
    /// every earlier commit. Nothing to write and nothing to make durable: nothing is done.
    pub fn flush(&self, how: Commit) -> Result<(), StoreError> {
        let _one_at_a_time = self.flushing.lock().expect("flush lock");
        self.flush_locked(how)
    }

    /// [`Store::flush`], with `flushing` held by the caller.
    fn flush_locked(&self, how: Commit) -> Result<(), StoreError> {
        // Checkpoints first: each is of a block staged before it, so the segments taken next hold
        // every block a written checkpoint is of.
        let checkpoints = self.checkpoints.lock().expect("checkpoints lock").clone();
        let segments = self.segments();
        if segments.is_empty() && checkpoints.is_empty() && (how == Commit::Deferred || !self.unsynced()) {
            return Ok(());
        }
        let w = self.begin_write(how)?;
        {
            let mut table = w.open_table(CHECKPOINTS)?;
            for (height, cp) in &checkpoints {
                table.insert(*height, &cp.to_bytes()[..])?;
            }
            drop(table);
            let mut table = w.open_table(BLOCKS)?;
            for b in segments.iter().flat_map(|s| &s.blocks) {
                table.insert(b.header.height, &b.to_bytes()[..])?;
            }
            drop(table);
            let mut tables: Vec<_> = Vec::with_capacity(Table::ALL.len());
            for t in Table::ALL {
                tables.push(w.open_table(state_table(t))?);
            }
            let mut put = |k: &Key, v: &Option<Vec<u8>>| -> Result<(), StoreError> {
                let t = &mut tables[k.table() as usize];
                let mut key = [0u8; Key::MAX_LEN];
                let len = k.write_to(&mut key);
                let key = &key[..len];
                match v {
                    Some(v) => t.insert(key, &v[..])?,
                    None => t.remove(key)?,
                };
                Ok(())
            };
            if let [one] = segments.as_slice() {
                for (k, v) in &one.writes {
                    put(k, v)?;
                }
            } else {
                // Later segments' writes replace earlier ones; the merge keeps keys in order.
                let mut merged: std::collections::BTreeMap<&Key, &Option<Vec<u8>>> = Default::default();
                for s in &segments {
                    merged.extend(s.writes.iter());
                }
                for (k, v) in merged {
                    put(k, v)?;
                }
            }
            drop(tables);
            let mut meta = w.open_table(META)?;
            if let Some(last) = segments.iter().rev().find_map(|s| s.blocks.last()) {
                meta.insert(META_TIP, &last.header.to_bytes()[..])?;
            }
            for (k, v) in segments.iter().flat_map(|s| &s.meta) {
                meta.insert(k.as_str(), &v[..])?;
            }
        }
        self.commit_as(w, how)?;
        // Only this flush removes segments, and staging only appends: the first ones are ours.
        self.staged.lock().expect("staged lock").drain(..segments.len());
        // A checkpoint that gained signatures meanwhile waits for the next flush.
        self.checkpoints.lock().expect("checkpoints lock").retain(|h, cp| checkpoints.get(h) != Some(cp));
        Ok(())
    }

    /// Write metadata entries durably (keys outside the schema's own, e.g. replication state).
    pub fn put_meta(&self, entries: &[(&str, &[u8])]) -> Result<(), StoreError> {
        self.stage(Vec::new(), Default::default(), entries)?;
        self.flush(Commit::Durable)
    }

    /// A metadata entry (staged or written).
    pub fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(v) = self.segments().iter().rev().find_map(|s| s.meta(key)) {
            return Ok(Some(v.to_vec()));
        }
        let r = self.db.begin_read()?;
        let meta = r.open_table(META)?;
        Ok(meta.get(key)?.map(|v| v.value().to_vec()))
    }

    /// Every table's contents as one byte string (staged blocks are written durably first): the
    /// format a snapshot carries, see [`Export`].
    pub fn export(&self) -> Result<Vec<u8>, StoreError> {
        self.flush(Commit::Durable)?;
        let mut out = Vec::new();
        self.begin_export()?.write_to(&mut out)?;
        Ok(out)
    }

    /// A consistent view of the file's contents as of now, to be written out with
    /// [`Export::write_to`]. Staged changes are not in it: what it holds is what the file held
    /// at this call, however long the writing takes and whatever is written meanwhile.
    pub fn begin_export(&self) -> Result<Export, StoreError> {
        Ok(Export { txn: self.db.begin_read()? })
    }

    /// Write everything staged to the file durably and read `keys` of the metadata as of that
    /// write, before any later write can land: values that stay true on disk whatever happens
    /// next, such as the log position a snapshot stands for.
    ///
    /// Written as a periodic write is: committed without an fsync, its pages written back a
    /// few MiB at a time ([`Store::write_back`]), then made durable by an empty durable commit
    /// ([`Store::sync`]), which makes this write durable with every other before it. A durable
    /// commit of the write itself fsyncs its hundreds of MiB at once, and every Raft log fsync
    /// on the disk waits behind them: that stalled commits for seconds at each snapshot.
    pub fn flush_durable_meta(&self, keys: &[&str]) -> Result<MetaValues, StoreError> {
        let values = {
            let _one_at_a_time = self.flushing.lock().expect("flush lock");
            self.flush_locked(Commit::Deferred)?;
            Export { txn: self.db.begin_read()? }.meta(keys)?
        };
        self.write_back();
        self.sync()?;
        Ok(values)
    }

    /// Make every commit so far durable, staging nothing new: an empty durable commit, whose
    /// fsync finds little left to write after [`Store::write_back`].
    pub fn sync(&self) -> Result<(), StoreError> {
        let _one_at_a_time = self.flushing.lock().expect("flush lock");
        if !self.unsynced() {
            return Ok(());
        }
        let w = self.begin_write(Commit::Durable)?;
        self.commit_as(w, Commit::Durable)
    }

    /// Build a store at `path` from an export ([`Store::export`], [`Export::write_to`]) read from
    /// `from` (streamed: a snapshot larger
    /// than memory imports), replacing any file there. The new file is written beside it and
    /// renamed into place, so a crash leaves the old or the new. An export that is cut short,
    /// has bytes after its end or does not decode is refused and the file at `path` kept.
    pub fn import_from(path: &Path, from: impl std::io::Read) -> Result<Store, StoreError> {
        let tmp = path.with_extension("redb.importing");
        let _ = std::fs::remove_file(&tmp);
        let written = Store::import_into(&tmp, from);
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        std::fs::rename(&tmp, path).map_err(|e| corrupt(format!("rename {}", tmp.display()), e))?;
        Store::open(path)
    }

    fn import_into(tmp: &Path, from: impl std::io::Read) -> Result<(), StoreError> {
        let mut r = ExportReader { from: std::io::BufReader::with_capacity(1 << 20, from), read: 0 };
        let db = open_database(tmp, CACHE_BYTES, true)?;
        let mut w = db.begin_write()?;
        w.set_durability(Durability::Immediate);
        {
            let mut meta = w.open_table(META)?;
            for _ in 0..r.u32("meta entries")? {
                let k = String::from_utf8(r.bytes("meta key")?).map_err(|e| corrupt("snapshot meta key", e))?;
                meta.insert(k.as_str(), &r.bytes("meta value")?[..])?;
            }
            let mut blocks = w.open_table(BLOCKS)?;
            for _ in 0..r.u32("blocks")? {
                let height = r.u64("block height")?;
                blocks.insert(height, &r.bytes("block")?[..])?;
            }
            let mut checkpoints = w.open_table(CHECKPOINTS)?;
            for _ in 0..r.u32("checkpoints")? {
                let height = r.u64("checkpoint height")?;
                checkpoints.insert(height, &r.bytes("checkpoint")?[..])?;
            }
            let tables = r.u32("tables")?;
            if tables as usize != Table::ALL.len() {
                return Err(corrupt("snapshot", format!("{tables} state tables, this build has {}", Table::ALL.len())));
            }
            for t in Table::ALL {
                let mut table = w.open_table(state_table(t))?;
                for _ in 0..r.u32("rows")? {
                    let k = r.bytes("key")?;
                    table.insert(&k[..], &r.bytes("value")?[..])?;
                }
            }
        }
        r.finish()?;
        w.commit()?;
        Ok(())
    }

    /// The block at `height` (genesis has none).
    pub fn block(&self, height: u64) -> Result<Option<Block>, StoreError> {
        if let Some(b) = self.segments().iter().find_map(|s| s.block(height).cloned()) {
            return Ok(Some(b));
        }
        let r = self.db.begin_read()?;
        let t = r.open_table(BLOCKS)?;
        let Some(v) = t.get(height)? else {
            return Ok(None);
        };
        Block::from_bytes(v.value()).map(Some).map_err(|e| corrupt(format!("block {height}"), e))
    }

    /// The header of the block at `height` (genesis has no block), without decoding the block.
    pub fn header(&self, height: u64) -> Result<Option<BlockHeader>, StoreError> {
        if let Some(h) = self.segments().iter().find_map(|s| s.block(height).map(|b| b.header)) {
            return Ok(Some(h));
        }
        let r = self.db.begin_read()?;
        let t = r.open_table(BLOCKS)?;
        let Some(v) = t.get(height)? else {
            return Ok(None);
        };
        // A stored block starts with its header.
        let mut reader = elchain_types::codec::Reader::new(v.value());
        reader.get().map(Some).map_err(|e| corrupt(format!("block {height}"), e))
    }

    /// Store a checkpoint beside its block (replacing one with fewer signatures). Every read sees
    /// it at once; the next [`Store::flush`] writes it to the file, as it does staged blocks.
    pub fn put_checkpoint(&self, cp: &Checkpoint) {
        self.checkpoints.lock().expect("checkpoints lock").insert(cp.height, cp.clone());
    }

    /// The checkpoint of block `height`, if one was gathered.
    pub fn checkpoint(&self, height: u64) -> Result<Option<Checkpoint>, StoreError> {
        if let Some(cp) = self.checkpoints.lock().expect("checkpoints lock").get(&height) {
            return Ok(Some(cp.clone()));
        }
        let r = self.db.begin_read()?;
        let t = r.open_table(CHECKPOINTS)?;
        let Some(v) = t.get(height)? else { return Ok(None) };
        Checkpoint::from_bytes(v.value()).map(Some).map_err(|e| corrupt(format!("checkpoint {height}"), e))
    }

    /// Heights that have a checkpoint.
    pub fn checkpoint_heights(&self) -> Result<Vec<u64>, StoreError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(CHECKPOINTS)?;
        let mut out = Vec::new();
        for e in t.iter()? {
            out.push(e?.0.value());
        }
        out.extend(self.checkpoints.lock().expect("checkpoints lock").keys());
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// Number of stored blocks (genesis excluded).
    pub fn block_count(&self) -> Result<u64, StoreError> {
        let r = self.db.begin_read()?;
        Ok(r.open_table(BLOCKS)?.len()?)
    }

    /// Where a transaction is recorded: height and position.
    pub fn tx_location(&self, id: &TxId) -> Result<Option<(u64, u32)>, StoreError> {
        Ok(self.tx_entry(id)?.map(|e| (e.height, e.index)))
    }

    /// The tx index entry of a transaction: where it is recorded and its outcome.
    pub fn tx_entry(&self, id: &TxId) -> Result<Option<TxEntry>, StoreError> {
        let Some(v) = self.view()?.get(&Key::Tx(*id)) else {
            return Ok(None);
        };
        TxEntry::from_bytes(&v).map(Some).ok_or_else(|| corrupt(format!("tx index of {id}"), "bad length"))
    }

    /// The receipt of a transaction: block header and inclusion proof.
    pub fn receipt(&self, id: &TxId) -> Result<Option<Receipt>, StoreError> {
        let Some((height, index)) = self.tx_location(id)? else {
            return Ok(None);
        };
        let block = self.block(height)?.ok_or_else(|| corrupt(format!("block {height}"), "indexed but missing"))?;
        if index as usize >= block.ids.len() {
            return Err(corrupt(format!("tx index of {id}"), "points past the block"));
        }
        Ok(Some(Receipt { height, header: block.header, proof: InclusionProof::for_block(&block, index as usize) }))
    }

    /// The licences a holder has on this chain.
    pub fn holder_licences(&self, holder: &HolderId) -> Result<Vec<LicenceId>, StoreError> {
        let (first, last) =
            (Key::HolderLicence(*holder, LicenceId([0; 32])), Key::HolderLicence(*holder, LicenceId([0xff; 32])));
        Ok(self
            .view()?
            .range(&first, &last)
            .into_iter()
            .filter_map(|(k, _)| match k {
                Key::HolderLicence(_, l) => Some(l),
                _ => None,
            })
            .collect())
    }

    pub(crate) fn db(&self) -> &Database {
        &self.db
    }
}

/// The contents of a chain store as of one read transaction: what a snapshot carries to a
/// replica too far behind to catch up from the log.
///
/// The format, every integer little-endian and every byte string a `u32` length and its bytes:
/// the metadata (a `u32` count, then key and value of each), the blocks and the checkpoints
/// (each a `u32` count, then a `u64` height and the encoded value of each), then a `u32` count
/// of state tables and each table's rows (a `u32` count, then key and value of each), in
/// [`Table::ALL`] order. It is written and read as a stream, never whole in memory.
pub struct Export {
    txn: redb::ReadTransaction,
}

impl Export {
    /// Values of `keys` in the exported metadata, in that order.
    pub fn meta(&self, keys: &[&str]) -> Result<MetaValues, StoreError> {
        let meta = self.txn.open_table(META)?;
        keys.iter().map(|k| Ok(meta.get(*k)?.map(|v| v.value().to_vec()))).collect()
    }

    /// Write the export to `out`; the bytes written.
    pub fn write_to(&self, out: &mut impl std::io::Write) -> Result<u64, StoreError> {
        let mut w = ExportWriter { out: std::io::BufWriter::with_capacity(1 << 20, out), written: 0 };
        let meta = self.txn.open_table(META)?;
        w.u32(meta.len()?)?;
        for e in meta.iter()? {
            let (k, v) = e?;
            w.bytes(k.value().as_bytes())?;
            w.bytes(v.value())?;
        }
        for table in [BLOCKS, CHECKPOINTS] {
            let t = self.txn.open_table(table)?;
            w.u32(t.len()?)?;
            for e in t.iter()? {
                let (k, v) = e?;
                w.u64(k.value())?;
                w.bytes(v.value())?;
            }
        }
        w.u32(Table::ALL.len() as u64)?;
        for t in Table::ALL {
            let t = self.txn.open_table(state_table(t))?;
            w.u32(t.len()?)?;
            for e in t.iter()? {
                let (k, v) = e?;
                w.bytes(k.value())?;
                w.bytes(v.value())?;
            }
        }
        w.out.flush().map_err(|e| io("write the export", e))?;
        Ok(w.written)
    }
}

fn io(what: &str, e: std::io::Error) -> StoreError {
    StoreError::Io { what: what.to_string(), source: e }
}

struct ExportWriter<W: std::io::Write> {
    out: std::io::BufWriter<W>,
    written: u64,
}

impl<W: std::io::Write> ExportWriter<W> {
    fn put(&mut self, b: &[u8]) -> Result<(), StoreError> {
        self.written += b.len() as u64;
        self.out.write_all(b).map_err(|e| io("write the export", e))
    }

    /// A count, which the format holds in a `u32`.
    fn u32(&mut self, n: u64) -> Result<(), StoreError> {
        let n = u32::try_from(n).map_err(|_| corrupt("export", format!("{n} entries do not fit a u32 count")))?;
        self.put(&n.to_le_bytes())
    }

    fn u64(&mut self, n: u64) -> Result<(), StoreError> {
        self.put(&n.to_le_bytes())
    }

    fn bytes(&mut self, b: &[u8]) -> Result<(), StoreError> {
        self.u32(b.len() as u64)?;
        self.put(b)
    }
}

/// Reads an [`Export`] back; every short read is a cut-off snapshot.
struct ExportReader<R: std::io::Read> {
    from: std::io::BufReader<R>,
    read: u64,
}

impl<R: std::io::Read> ExportReader<R> {
    /// Longest value taken: more than any block or state value this build writes.
    const MAX_VALUE: u64 = 1 << 30;

    fn fill(&mut self, what: &str, buf: &mut [u8]) -> Result<(), StoreError> {
        self.from.read_exact(buf).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => {
                corrupt("snapshot", format!("ends inside {what} at byte {}", self.read))
            }
            _ => io("read the snapshot", e),
        })?;
        self.read += buf.len() as u64;
        Ok(())
    }

    fn u32(&mut self, what: &str) -> Result<u32, StoreError> {
        let mut b = [0; 4];
        self.fill(what, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn u64(&mut self, what: &str) -> Result<u64, StoreError> {
        let mut b = [0; 8];
        self.fill(what, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn bytes(&mut self, what: &str) -> Result<Vec<u8>, StoreError> {
        let len = u64::from(self.u32(what)?);
        if len > Self::MAX_VALUE {
            return Err(corrupt("snapshot", format!("{what} of {len} bytes at byte {}", self.read)));
        }
        // Grown as bytes arrive, so a lying length costs no more memory than the bytes sent.
        let mut v = Vec::new();
        (&mut self.from).take(len).read_to_end(&mut v).map_err(|e| io("read the snapshot", e))?;
        if v.len() as u64 != len {
            return Err(corrupt("snapshot", format!("ends inside {what} at byte {}", self.read + v.len() as u64)));
        }
        self.read += len;
        Ok(v)
    }

    /// The export must end here.
    fn finish(&mut self) -> Result<(), StoreError> {
        let mut b = [0; 1];
        match self.from.read(&mut b).map_err(|e| io("read the snapshot", e))? {
            0 => Ok(()),
            _ => Err(corrupt("snapshot", format!("has bytes after its end at byte {}", self.read))),
        }
    }
}

/// A read view of the state: staged changes over one read transaction of the file.
pub struct StoreView {
    /// The state tables, in [`Table::ALL`] order, all of one read transaction.
    tables: Vec<redb::ReadOnlyTable<&'static [u8], &'static [u8]>>,
    /// Staged segments as of the view, oldest first.
    segments: Vec<Arc<Segment>>,
}

impl StateView for StoreView {
    fn range(&self, first: &Key, last: &Key) -> Vec<(Key, Vec<u8>)> {
        let table = first.table();
        let t = &self.tables[table as usize];
        let (lo, hi) = (first.bytes(), last.bytes());
        let kind = std::mem::discriminant(first);
        let mut base = Vec::new();
        for e in t.range(&lo[..]..=&hi[..]).expect("state read") {
            let (k, v) = e.expect("state read");
            if let Some(key) = Key::from_parts(table, k.value()).filter(|k| std::mem::discriminant(k) == kind) {
                base.push((key, v.value().to_vec()));
            }
        }
        crate::state::merge_range(base, self.segments.iter().map(|s| &s.writes), first, last)
    }

    fn get(&self, key: &Key) -> Option<Vec<u8>> {
        if let Some(v) = self.segments.iter().rev().find_map(|s| s.write(key)) {
            return v.clone();
        }
        // A failing read of committed state is an I/O fault the replica cannot reason past.
        let t = &self.tables[key.table() as usize];
        let mut k = [0u8; Key::MAX_LEN];
        let len = key.write_to(&mut k);
        t.get(&k[..len]).expect("state read").map(|v| v.value().to_vec())
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
