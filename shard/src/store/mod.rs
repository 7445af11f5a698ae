//! A chain's blocks and state in one redb file.
//!
//! One write transaction per block holds the block, its tx-index entries, its state changes and
//! the new tip, so a crash leaves either the whole block or none of it. Commits are durable
//! (fsync) before [`Store::commit`] returns.

pub mod audit;
pub mod schema;

use std::path::{Path, PathBuf};

use elchain_types::block::{Block, BlockHeader, Checkpoint, InclusionProof};
use elchain_types::codec::{Decode, Encode};
use elchain_types::contract::Consortium;
use elchain_types::ids::{ChainId, HolderId, LicenceId, Timestamp, TxId};
use redb::{Database, Durability, ReadableTable, ReadableTableMetadata};

use crate::exec::{genesis_header, Executed};
use crate::state::{Key, StateView, Table};
use schema::*;

/// Failures of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// redb failed (I/O, locking, corruption it detected).
    #[error("storage: {0}")]
    Redb(Box<redb::Error>),
    /// The file is not an elchain chain store.
    #[error("{path} is not an elchain chain store: {why}")]
    NotAStore {
        /// The file.
        path: PathBuf,
        /// What is missing.
        why: String,
    },
    /// The file was written by another schema version.
    #[error("store schema version {found}, this build reads {expected}")]
    SchemaVersion {
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

/// Metadata values read alongside an export, in the order asked for.
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
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).field("chain", &self.chain).finish()
    }
}

fn corrupt(what: impl Into<String>, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt { what: what.into(), why: e.to_string() }
}

impl Store {
    /// Create a new store at `path` with the genesis block of `chain` under `consortium`.
    pub fn create(path: &Path, chain: ChainId, consortium: &Consortium, time: Timestamp) -> Result<Self, StoreError> {
        if path.exists() {
            return Err(StoreError::Exists(path.to_path_buf()));
        }
        let db = Database::create(path)?;
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
            w.open_table(TX_INDEX)?;
            w.open_table(CHECKPOINTS)?;
            for t in Table::ALL {
                w.open_table(state_table(t))?;
            }
        }
        w.commit()?;
        Ok(Self { db, path: path.to_path_buf(), chain })
    }

    /// Open an existing store, checking that it is one and of this schema version.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if !path.is_file() {
            return Err(StoreError::NotAStore { path: path.to_path_buf(), why: "no such file".into() });
        }
        let db = Database::open(path)?;
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
            return Err(StoreError::SchemaVersion { found: version, expected: SCHEMA_VERSION });
        }
        let chain = ChainId(get_u32(META_CHAIN)?);
        drop(meta);
        drop(r);
        Ok(Self { db, path: path.to_path_buf(), chain })
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

    /// The last committed header.
    pub fn tip(&self) -> Result<BlockHeader, StoreError> {
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

    /// A consistent read view of the state as of the last commit.
    pub fn view(&self) -> Result<StoreView, StoreError> {
        let txn = self.db.begin_read()?;
        // Open every state table once: executing a block reads thousands of keys.
        let mut tables = Vec::with_capacity(Table::ALL.len());
        for t in Table::ALL {
            tables.push(txn.open_table(state_table(t))?);
        }
        Ok(StoreView { tables })
    }

    /// Commit an executed block: block, tx index, state changes and tip, in one durable write.
    pub fn commit(&self, executed: &Executed) -> Result<(), StoreError> {
        self.commit_with(executed, &[])
    }

    /// [`Store::commit`], also writing `extra` metadata entries (such as the replication log
    /// position) in the same transaction, so they can never disagree with the blocks.
    pub fn commit_with(&self, executed: &Executed, extra: &[(&str, &[u8])]) -> Result<(), StoreError> {
        let header = &executed.block.header;
        let tip = self.tip()?;
        if header.height != tip.height + 1 || header.prev != tip.hash() {
            return Err(StoreError::NotNext { height: header.height, tip: tip.height });
        }
        let mut w = self.db.begin_write()?;
        w.set_durability(Durability::Immediate);
        {
            let mut blocks = w.open_table(BLOCKS)?;
            blocks.insert(header.height, &executed.block.to_bytes()[..])?;
            let mut index = w.open_table(TX_INDEX)?;
            for (i, (id, outcome)) in executed.block.ids.iter().zip(&executed.block.outcomes).enumerate() {
                // Only the transaction that took effect (or, failing that, the first mention)
                // is indexed: a rejected replay must not hide the original.
                if outcome.is_valid() || index.get(&id.0[..])?.is_none() {
                    index.insert(&id.0[..], &tx_location(header.height, i as u32)[..])?;
                }
            }
            let mut tables: Vec<_> = Vec::with_capacity(Table::ALL.len());
            for t in Table::ALL {
                tables.push(w.open_table(state_table(t))?);
            }
            for (k, v) in &executed.writes {
                let t = &mut tables[k.table() as usize];
                match v {
                    Some(v) => t.insert(&k.bytes()[..], &v[..])?,
                    None => t.remove(&k.bytes()[..])?,
                };
            }
            drop(tables);
            let mut meta = w.open_table(META)?;
            meta.insert(META_TIP, &header.to_bytes()[..])?;
            for (k, v) in extra {
                meta.insert(*k, *v)?;
            }
        }
        w.commit()?;
        Ok(())
    }

    /// Write metadata entries durably (keys outside the schema's own, e.g. replication state).
    pub fn put_meta(&self, entries: &[(&str, &[u8])]) -> Result<(), StoreError> {
        let mut w = self.db.begin_write()?;
        w.set_durability(Durability::Immediate);
        {
            let mut meta = w.open_table(META)?;
            for (k, v) in entries {
                meta.insert(*k, *v)?;
            }
        }
        w.commit()?;
        Ok(())
    }

    /// A metadata entry.
    pub fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let r = self.db.begin_read()?;
        let meta = r.open_table(META)?;
        Ok(meta.get(key)?.map(|v| v.value().to_vec()))
    }

    /// Every table's contents as one byte string: what a snapshot carries to a replica that is
    /// too far behind to catch up from the log.
    pub fn export(&self) -> Result<Vec<u8>, StoreError> {
        Ok(self.export_with_meta(&[])?.0)
    }

    /// [`Store::export`], plus the values of `keys` in the metadata as of the same moment.
    pub fn export_with_meta(&self, keys: &[&str]) -> Result<(Vec<u8>, MetaValues), StoreError> {
        let r = self.db.begin_read()?;
        let mut values = Vec::with_capacity(keys.len());
        {
            let meta = r.open_table(META)?;
            for k in keys {
                values.push(meta.get(*k)?.map(|v| v.value().to_vec()));
            }
        }
        let mut dump = Dump::default();
        for e in r.open_table(META)?.iter()? {
            let (k, v) = e?;
            dump.meta.push((k.value().to_string(), v.value().to_vec()));
        }
        for e in r.open_table(BLOCKS)?.iter()? {
            let (k, v) = e?;
            dump.blocks.push((k.value(), v.value().to_vec()));
        }
        for e in r.open_table(CHECKPOINTS)?.iter()? {
            let (k, v) = e?;
            dump.checkpoints.push((k.value(), v.value().to_vec()));
        }
        for e in r.open_table(TX_INDEX)?.iter()? {
            let (k, v) = e?;
            dump.tx_index.push((k.value().to_vec(), v.value().to_vec()));
        }
        for t in Table::ALL {
            let mut rows = Vec::new();
            for e in r.open_table(state_table(t))?.iter()? {
                let (k, v) = e?;
                rows.push((k.value().to_vec(), v.value().to_vec()));
            }
            dump.state.push(rows);
        }
        Ok((dump.encode(), values))
    }

    /// Build a store at `path` from [`Store::export`] bytes, replacing any file there. The new
    /// file is written beside it and renamed into place, so a crash leaves the old or the new.
    pub fn import(path: &Path, bytes: &[u8]) -> Result<Store, StoreError> {
        let dump = Dump::decode(bytes).ok_or_else(|| corrupt("snapshot", "does not decode"))?;
        let tmp = path.with_extension("redb.importing");
        let _ = std::fs::remove_file(&tmp);
        {
            let db = Database::create(&tmp)?;
            let mut w = db.begin_write()?;
            w.set_durability(Durability::Immediate);
            {
                let mut meta = w.open_table(META)?;
                for (k, v) in &dump.meta {
                    meta.insert(k.as_str(), &v[..])?;
                }
                let mut blocks = w.open_table(BLOCKS)?;
                for (k, v) in &dump.blocks {
                    blocks.insert(*k, &v[..])?;
                }
                let mut checkpoints = w.open_table(CHECKPOINTS)?;
                for (k, v) in &dump.checkpoints {
                    checkpoints.insert(*k, &v[..])?;
                }
                let mut index = w.open_table(TX_INDEX)?;
                for (k, v) in &dump.tx_index {
                    index.insert(&k[..], &v[..])?;
                }
                for (t, rows) in Table::ALL.iter().zip(&dump.state) {
                    let mut table = w.open_table(state_table(*t))?;
                    for (k, v) in rows {
                        table.insert(&k[..], &v[..])?;
                    }
                }
            }
            w.commit()?;
        }
        std::fs::rename(&tmp, path).map_err(|e| corrupt(format!("rename {}", tmp.display()), e))?;
        Store::open(path)
    }

    /// The block at `height` (genesis has none).
    pub fn block(&self, height: u64) -> Result<Option<Block>, StoreError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(BLOCKS)?;
        let Some(v) = t.get(height)? else {
            return Ok(None);
        };
        Block::from_bytes(v.value()).map(Some).map_err(|e| corrupt(format!("block {height}"), e))
    }

    /// Store a checkpoint beside its block (replacing one with fewer signatures).
    pub fn put_checkpoint(&self, cp: &Checkpoint) -> Result<(), StoreError> {
        let mut w = self.db.begin_write()?;
        w.set_durability(Durability::Immediate);
        w.open_table(CHECKPOINTS)?.insert(cp.height, &cp.to_bytes()[..])?;
        w.commit()?;
        Ok(())
    }

    /// The checkpoint of block `height`, if one was gathered.
    pub fn checkpoint(&self, height: u64) -> Result<Option<Checkpoint>, StoreError> {
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
        Ok(out)
    }

    /// Number of stored blocks (genesis excluded).
    pub fn block_count(&self) -> Result<u64, StoreError> {
        let r = self.db.begin_read()?;
        Ok(r.open_table(BLOCKS)?.len()?)
    }

    /// Where a transaction is recorded.
    pub fn tx_location(&self, id: &TxId) -> Result<Option<(u64, u32)>, StoreError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(TX_INDEX)?;
        let Some(v) = t.get(&id.0[..])? else {
            return Ok(None);
        };
        parse_tx_location(v.value()).map(Some).ok_or_else(|| corrupt(format!("tx index of {id}"), "bad length"))
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
        let r = self.db.begin_read()?;
        let t = r.open_table(state_table(Table::HolderLicences))?;
        let mut lo = holder.0.to_vec();
        lo.extend_from_slice(&[0u8; 32]);
        let mut hi = holder.0.to_vec();
        hi.extend_from_slice(&[0xffu8; 32]);
        let mut out = Vec::new();
        for entry in t.range(&lo[..]..=&hi[..])? {
            let (k, _) = entry?;
            if let Some(Key::HolderLicence(_, l)) = Key::from_parts(Table::HolderLicences, k.value()) {
                out.push(l);
            }
        }
        Ok(out)
    }

    pub(crate) fn db(&self) -> &Database {
        &self.db
    }
}

/// The contents of a store, table by table.
#[derive(Default)]
struct Dump {
    meta: Vec<(String, Vec<u8>)>,
    blocks: Vec<(u64, Vec<u8>)>,
    checkpoints: Vec<(u64, Vec<u8>)>,
    tx_index: Vec<(Vec<u8>, Vec<u8>)>,
    state: Vec<Vec<(Vec<u8>, Vec<u8>)>>,
}

impl Dump {
    fn encode(&self) -> Vec<u8> {
        use elchain_types::codec::Writer;
        let mut w = Writer::new();
        w.u32(self.meta.len() as u32);
        for (k, v) in &self.meta {
            w.bytes(k.as_bytes());
            w.bytes(v);
        }
        for list in [&self.blocks, &self.checkpoints] {
            w.u32(list.len() as u32);
            for (k, v) in list {
                w.u64(*k);
                w.bytes(v);
            }
        }
        let pairs = |w: &mut Writer, rows: &[(Vec<u8>, Vec<u8>)]| {
            w.u32(rows.len() as u32);
            for (k, v) in rows {
                w.bytes(k);
                w.bytes(v);
            }
        };
        pairs(&mut w, &self.tx_index);
        w.u32(self.state.len() as u32);
        for rows in &self.state {
            pairs(&mut w, rows);
        }
        w.into_bytes()
    }

    fn decode(bytes: &[u8]) -> Option<Dump> {
        use elchain_types::codec::Reader;
        const BIG: usize = 1 << 31;
        let mut r = Reader::new(bytes);
        let mut d = Dump::default();
        for _ in 0..r.len("meta", BIG).ok()? {
            let k = String::from_utf8(r.bytes("key", BIG).ok()?.to_vec()).ok()?;
            d.meta.push((k, r.bytes("value", BIG).ok()?.to_vec()));
        }
        for _ in 0..r.len("blocks", BIG).ok()? {
            d.blocks.push((r.u64("height").ok()?, r.bytes("block", BIG).ok()?.to_vec()));
        }
        for _ in 0..r.len("checkpoints", BIG).ok()? {
            d.checkpoints.push((r.u64("height").ok()?, r.bytes("checkpoint", BIG).ok()?.to_vec()));
        }
        let pairs = |r: &mut Reader<'_>| -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
            let n = r.len("rows", BIG).ok()?;
            let mut rows = Vec::with_capacity(n.min(r.remaining()));
            for _ in 0..n {
                rows.push((r.bytes("key", BIG).ok()?.to_vec(), r.bytes("value", BIG).ok()?.to_vec()));
            }
            Some(rows)
        };
        d.tx_index = pairs(&mut r)?;
        let tables = r.len("tables", Table::ALL.len()).ok()?;
        if tables != Table::ALL.len() {
            return None;
        }
        for _ in 0..tables {
            d.state.push(pairs(&mut r)?);
        }
        r.finish().ok()?;
        Some(d)
    }
}

/// A read transaction over the state, usable by the executor.
pub struct StoreView {
    /// The state tables, in [`Table::ALL`] order, all of one read transaction.
    tables: Vec<redb::ReadOnlyTable<&'static [u8], &'static [u8]>>,
}

impl StateView for StoreView {
    fn get(&self, key: &Key) -> Option<Vec<u8>> {
        // A failing read of committed state is an I/O fault the replica cannot reason past.
        let t = &self.tables[key.table() as usize];
        t.get(&key.bytes()[..]).expect("state read").map(|v| v.value().to_vec())
    }

    fn replay_expired(&self, now: Timestamp) -> Vec<(Timestamp, TxId)> {
        let t = &self.tables[Table::ReplayExpiry as usize];
        let hi = now.0.to_be_bytes();
        t.range(..&hi[..])
            .expect("state read")
            .map(|e| {
                let (k, _) = e.expect("state read");
                match Key::from_parts(Table::ReplayExpiry, k.value()) {
                    Some(Key::ReplayExpiry(t, id)) => (t, id),
                    _ => panic!("replay_expiry key of {} bytes", k.value().len()),
                }
            })
            .collect()
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
