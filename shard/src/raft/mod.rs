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
pub mod snapshot;
pub mod state_machine;

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
    #[serde(with = "tx_bytes")]
    pub txs: Vec<Vec<u8>>,
}

/// Lists of byte strings (transactions) as byte strings: bincode copies each one whole instead of going byte by byte
/// through serde's sequence (the same bytes on the wire and in the log either way).
pub(crate) mod tx_bytes {
    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(txs: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(txs.len()))?;
        for tx in txs {
            seq.serialize_element(serde_bytes::Bytes::new(tx))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        let txs = Vec::<serde_bytes::ByteBuf>::deserialize(d)?;
        Ok(txs.into_iter().map(serde_bytes::ByteBuf::into_vec).collect())
    }
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
        SnapshotData = snapshot::SnapshotFile,
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

    /// Builds stores whose log has a writer thread (`true`) or writes in place.
    struct Builder(bool);

    impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
        async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("raft-log.redb");
            let log = if self.0 { LogStore::open(&path) } else { LogStore::open_in_place(&path) }.unwrap();
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
        Suite::test_all(Builder(true)).unwrap();
    }

    #[test]
    fn openraft_storage_suite_passes_on_the_log_written_in_place() {
        Suite::test_all(Builder(false)).unwrap();
    }
}

#[cfg(test)]
mod encoding_tests {
    use super::BlockProposal;

    #[test]
    fn a_proposal_encodes_exactly_as_a_list_of_byte_lists_and_back() {
        #[derive(serde::Serialize)]
        struct Plain {
            time: u64,
            txs: Vec<Vec<u8>>,
        }
        let txs = vec![vec![1u8, 2, 3], Vec::new(), (0..=255).collect()];
        let p = BlockProposal { time: 7, txs: txs.clone() };
        let bytes = bincode::serialize(&p).unwrap();
        // Logs written before byte-string encoding read the same.
        assert_eq!(bytes, bincode::serialize(&Plain { time: 7, txs }).unwrap());
        assert_eq!(bincode::deserialize::<BlockProposal>(&bytes).unwrap(), p);
    }
}
