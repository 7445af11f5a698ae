//! Replicate a chain's blocks with openraft: one Raft entry carries one block.
//!
//! ```text
//!  leader: batcher ─► Raft::client_write(BlockProposal { time, txs }) ─► log (redb, fsync)
//!                                    │ replicated to a quorum, committed
//!                                    ▼
//!  every replica: StateMachine::apply ─► Verifier (re-check every signature) ─► Executor
//!                 ─► Store::commit_with(block, last applied, membership)  (one redb write)
//! ```
//!
//! The log and vote live in their own redb file ([`log_store::LogStore`]); the chain store holds
//! the blocks, the state and the last applied log position, written together so they agree.

// openraft's traits fix the error type (`StorageError`); its size is not ours to choose.
#![allow(clippy::result_large_err)]

pub mod log_store;
pub mod state_machine;

use std::io::Cursor;

use serde::{Deserialize, Serialize};

use elchain_types::ids::{Hash32, TxId};
use elchain_types::reason::Outcome;

/// Raft node ids are the node ids of the consortium's certificates.
pub type NodeId = u64;

/// What the leader proposes: one block's transactions and its time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockProposal {
    /// Block time, milliseconds since the Unix epoch, chosen by the leader.
    pub time: u64,
    /// The transactions, as submitted.
    pub txs: Vec<Vec<u8>>,
}

/// What applying a proposal produced, handed back to the leader's waiting clients.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockApplied {
    /// Height of the new block (0 for entries that carry no block).
    pub height: u64,
    /// Hash of its header.
    pub hash: [u8; 32],
    /// Id and outcome of each transaction, in block order.
    pub results: Vec<([u8; 32], u16)>,
}

impl BlockApplied {
    /// The header hash.
    pub fn header_hash(&self) -> Hash32 {
        Hash32(self.hash)
    }

    /// Results as typed values.
    pub fn outcomes(&self) -> impl Iterator<Item = (TxId, Outcome)> + '_ {
        self.results.iter().map(|(id, code)| {
            let outcome = match elchain_types::reason::RejectCode::from_u16(*code) {
                Some(c) => Outcome::Invalid(c),
                None => Outcome::Valid,
            };
            (TxId(*id), outcome)
        })
    }
}

openraft::declare_raft_types!(
    /// openraft's type configuration for an elchain chain.
    pub TypeConfig:
        D = BlockProposal,
        R = BlockApplied,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        SnapshotData = Cursor<Vec<u8>>,
);

/// A chain's Raft handle.
pub type ChainRaft = openraft::Raft<TypeConfig>;

/// Storage errors as openraft expects them.
pub type StorageError = openraft::StorageError<NodeId>;

/// Log entries of an elchain chain.
pub type Entry = openraft::Entry<TypeConfig>;

fn io_error<E: std::fmt::Display>(
    subject: openraft::ErrorSubject<NodeId>,
    verb: openraft::ErrorVerb,
    e: E,
) -> StorageError {
    openraft::StorageIOError::new(subject, verb, openraft::AnyError::error(e.to_string())).into()
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, RwLock};

    use elchain_types::ids::{ChainId, Timestamp};
    use elchain_types::profile::Profile;
    use openraft::testing::{StoreBuilder, Suite};

    use super::log_store::LogStore;
    use super::state_machine::StateMachine;
    use super::*;
    use crate::store::Store;
    use crate::verifier::Verifier;

    struct Builder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
        async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
            let dir = tempfile::tempdir().unwrap();
            let log = LogStore::open(&dir.path().join("raft-log.redb")).unwrap();
            let consortium = Profile::sample().into_dev_consortium().unwrap();
            let store = Store::create(&dir.path().join("chain.redb"), ChainId(1), &consortium, Timestamp(0)).unwrap();
            let sm = StateMachine::new(
                Arc::new(RwLock::new(Arc::new(store))),
                Arc::new(consortium),
                Arc::new(Verifier::new(ChainId(1), 1, 64)),
            );
            Ok((dir, log, sm))
        }
    }

    #[test]
    fn openraft_storage_suite_passes_on_the_redb_log_and_chain_store() {
        Suite::test_all(Builder).unwrap();
    }
}
