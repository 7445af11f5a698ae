//! One replica's ledger: verifier, executor and store wired together.

use std::path::Path;

use elchain_types::block::BlockHeader;
use elchain_types::contract::Consortium;
use elchain_types::ids::{ChainId, Timestamp};

use crate::exec::{Executed, Executor, LogPosition};
use crate::store::{Store, StoreError};
use crate::verifier::{Verifier, DEFAULT_BATCH};

/// A chain's ledger on disk.
#[derive(Debug)]
pub struct Ledger {
    store: Store,
    consortium: Consortium,
    verifier: Verifier,
}

impl Ledger {
    /// Create a new chain store at `path`; `threads` verification workers (0: one per core).
    pub fn create(
        path: &Path,
        chain: ChainId,
        consortium: Consortium,
        genesis_time: Timestamp,
        threads: usize,
    ) -> Result<Self, StoreError> {
        let store = Store::create(path, chain, &consortium, genesis_time)?;
        Ok(Self { verifier: Verifier::new(chain, threads, DEFAULT_BATCH), store, consortium })
    }

    /// Open an existing chain store.
    pub fn open(path: &Path, threads: usize) -> Result<Self, StoreError> {
        let store = Store::open(path)?;
        let consortium = store.consortium()?;
        Ok(Self { verifier: Verifier::new(store.chain(), threads, DEFAULT_BATCH), store, consortium })
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The consortium.
    pub fn consortium(&self) -> &Consortium {
        &self.consortium
    }

    /// The last committed header.
    pub fn tip(&self) -> Result<BlockHeader, StoreError> {
        self.store.tip()
    }

    /// Verify, execute and durably commit `raws` as the next block at `time`.
    pub fn append(&self, raws: Vec<Vec<u8>>, time: Timestamp, log: LogPosition) -> Result<Executed, StoreError> {
        let checked = self.verifier.check(raws);
        let tip = self.store.tip()?;
        let view = self.store.view()?;
        let executed = Executor::new(&self.consortium, self.store.chain()).execute(&view, &tip, time, log, checked);
        drop(view);
        self.store.commit(&executed)?;
        Ok(executed)
    }
}
