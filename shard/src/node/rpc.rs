//! The messages nodes, routers and tools exchange over QUIC, encoded with bincode.
//!
//! Transactions inside travel as their canonical bytes; bincode only frames the envelope.

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use serde::{Deserialize, Serialize};

use crate::raft::{NodeId, TypeConfig};

/// A request to a node.
#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    /// Raft traffic between replicas of `chain`.
    Raft {
        /// The chain.
        chain: u32,
        /// The Raft RPC.
        rpc: RaftRpc,
    },
    /// Submit transactions and wait until each is committed or refused.
    Submit {
        /// The chain.
        chain: u32,
        /// Encoded signed transactions.
        #[serde(with = "crate::raft::tx_bytes")]
        txs: Vec<Vec<u8>>,
    },
    /// Where a transaction is, with an inclusion proof, the block header and its checkpoint.
    Receipt {
        /// The chain.
        chain: u32,
        /// The transaction id.
        tx_id: [u8; 32],
    },
    /// A stored block (canonical encoding).
    Block {
        /// The chain.
        chain: u32,
        /// Its height.
        height: u64,
    },
    /// This node's view of a chain.
    Status {
        /// The chain.
        chain: u32,
    },
    /// Add a replica: as a learner first (it catches up), then as a voter.
    AddReplica {
        /// The chain.
        chain: u32,
        /// The new replica's node id.
        node: NodeId,
        /// Its QUIC address.
        addr: String,
    },
    /// Remove a replica from the voters.
    RemoveReplica {
        /// The chain.
        chain: u32,
        /// The replica to remove.
        node: NodeId,
    },
    /// A replica's signature over a block header; the signer is the authenticated peer.
    Checkpoint {
        /// The chain.
        chain: u32,
        /// Block height.
        height: u64,
        /// The header hash signed.
        hash: [u8; 32],
        /// Ed25519 signature (64 bytes) by the peer's certificate key over the checkpoint message.
        sig: Vec<u8>,
    },
    /// Read the chain's state as this replica has applied it.
    Query {
        /// The chain.
        chain: u32,
        /// What to read.
        query: Query,
    },
    /// Propose transactions as a block without admission checks. Only honoured when the node's
    /// config sets `testing.allow_raw_propose`: it plays a faulty leader in fault tests.
    ProposeRaw {
        /// The chain.
        chain: u32,
        /// Encoded transactions, proposed as they are.
        #[serde(with = "crate::raft::tx_bytes")]
        txs: Vec<Vec<u8>>,
    },
}

impl Request {
    /// The chain the request is about.
    pub fn chain(&self) -> u32 {
        match self {
            Request::Raft { chain, .. }
            | Request::Submit { chain, .. }
            | Request::Receipt { chain, .. }
            | Request::Block { chain, .. }
            | Request::Status { chain }
            | Request::AddReplica { chain, .. }
            | Request::RemoveReplica { chain, .. }
            | Request::Checkpoint { chain, .. }
            | Request::Query { chain, .. }
            | Request::ProposeRaw { chain, .. } => *chain,
        }
    }
}

/// A read of a chain's state. Answers carry records in their canonical encoding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Query {
    /// A licence record.
    Licence([u8; 32]),
    /// A grant record.
    Grant([u8; 32]),
    /// The licences a holder has on this chain.
    HolderLicences([u8; 32]),
    /// A holder's traces on this chain, oldest first.
    HolderTraces([u8; 32]),
    /// The consortium governance this chain holds (the meta chain's shard map, chain directory,
    /// parameters and revocations; on any chain, its current consortium).
    Governance,
}

/// The answer to a [`Query`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer {
    /// One record, canonical encoding; none when absent.
    Record(Option<Vec<u8>>),
    /// Several records or ids, canonical encodings.
    Records(#[serde(with = "crate::raft::tx_bytes")] Vec<Vec<u8>>),
    /// Governance state.
    Governance(Governance),
}

/// Governance state as a chain holds it, canonical encodings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Governance {
    /// Height of the block it was read at, or of an earlier block: never past the state it
    /// carries, so a reader that sees a new height knows the state may have changed.
    pub height: u64,
    /// The current consortium.
    pub consortium: Vec<u8>,
    /// The shard map, once one is set.
    pub shard_map: Option<Vec<u8>>,
    /// The chain directory.
    pub chains: Vec<Vec<u8>>,
    /// Parameters.
    pub params: Vec<(String, u64)>,
    /// Serials of revoked certificates.
    pub revoked: Vec<Vec<u8>>,
}

/// Raft RPCs.
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftRpc {
    /// Append entries / heartbeat.
    Append(AppendEntriesRequest<TypeConfig>),
    /// Request a vote.
    Vote(VoteRequest<NodeId>),
    /// A snapshot chunk.
    Snapshot(InstallSnapshotRequest<TypeConfig>),
}

/// A node's answer.
#[derive(Debug, Serialize, Deserialize)]
pub enum Response {
    /// Answer to `RaftRpc::Append`.
    Append(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    /// Answer to `RaftRpc::Vote`.
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    /// Answer to `RaftRpc::Snapshot`.
    Snapshot(Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>),
    /// One receipt per submitted transaction, in order.
    Receipts(Vec<Receipt>),
    /// Answer to `Status`.
    Status(ChainStatus),
    /// Answer to `Receipt`: none when this replica has not applied the transaction.
    TxReceipt(Option<ProvenReceipt>),
    /// Answer to `Query`.
    Answer(Answer),
    /// Answer to `Block`: the block's canonical encoding, none when not stored here.
    Block(#[serde(with = "serde_bytes")] Option<Vec<u8>>),
    /// This node does not lead the chain; ask the leader, if one is known.
    NotLeader {
        /// The leader's node id and address.
        leader: Option<(NodeId, String)>,
    },
    /// Done (membership changes).
    Done,
    /// A checkpoint signature was taken; the answering replica's checkpoint for that height,
    /// encoded, when it has one (so a replica that missed the others' signatures gets them).
    CheckpointTaken(Option<Vec<u8>>),
    /// The request failed; the message says why.
    Error(String),
}

/// What became of one submitted transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The transaction id (or entry id of undecodable bytes).
    pub tx_id: [u8; 32],
    /// Committed or refused.
    pub status: ReceiptStatus,
}

/// Committed in a block, or refused before any block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReceiptStatus {
    /// In block `height` at `index`, with `outcome` (0 valid, else the reject code).
    Committed {
        /// Block height.
        height: u64,
        /// Position in the block.
        index: u32,
        /// 0 when the transaction took effect, else its reject code.
        outcome: u16,
    },
    /// Refused at admission (malformed, oversized, unsigned, bad signature, wrong chain): it is in
    /// no block and may be corrected and sent again.
    Rejected {
        /// The reject code.
        code: u16,
    },
}

/// A transaction's place in the chain, checkable without the node: the inclusion proof leads
/// to the header's transaction root, and the checkpoint carries the replicas' signatures over the
/// header.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvenReceipt {
    /// Block height.
    pub height: u64,
    /// The block header, canonical encoding.
    pub header: Vec<u8>,
    /// The inclusion proof (carries index and outcome), canonical encoding.
    pub proof: Vec<u8>,
    /// The block's checkpoint, canonical encoding, if gathered yet.
    pub checkpoint: Option<Vec<u8>>,
}

/// One node's view of a chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainStatus {
    /// The answering node.
    pub node: NodeId,
    /// The chain.
    pub chain: u32,
    /// Current leader, if known.
    pub leader: Option<NodeId>,
    /// Current term.
    pub term: u64,
    /// Last applied log index.
    pub applied_index: u64,
    /// Height of the last applied block.
    pub height: u64,
    /// Its header hash.
    pub tip_hash: [u8; 32],
    /// Voting replicas.
    pub voters: Vec<NodeId>,
    /// Learners.
    pub learners: Vec<NodeId>,
}

/// Largest message accepted: the frame limit of the transport.
pub const MAX_MESSAGE: u64 = crate::net::MAX_FRAME as u64;

fn options() -> impl bincode::Options {
    use bincode::Options;
    // A size limit so that a lying length prefix cannot make the decoder allocate without bound.
    bincode::DefaultOptions::new().with_limit(MAX_MESSAGE)
}

/// Encode a message.
pub fn encode<T: Serialize>(msg: &T) -> bytes::Bytes {
    use bincode::Options;
    options().serialize(msg).expect("in-memory messages serialize").into()
}

/// Decode a message, with a readable error.
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    use bincode::Options;
    options().deserialize(bytes).map_err(|e| format!("undecodable message: {e}"))
}
