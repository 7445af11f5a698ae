//! Blocks, headers and Merkle inclusion proofs.
//!
//! ```text
//!  header = version ‖ chain ‖ height ‖ prev hash ‖ time ‖ tx count ‖ tx root ‖ state root
//!           ‖ raft term ‖ raft index
//!  leaf_i = H(0x00 ‖ tx_id_i ‖ H(raw_i) ‖ outcome_i)    node = H(0x01 ‖ left ‖ right)  (RFC 6962 shape)
//! ```
//!
//! A leaf commits to the transaction id, to the exact bytes proposed (signatures included) and to
//! the verdict, so a receipt with an inclusion proof shows both that a transaction is in the chain
//! and whether it took effect, and no stored byte of a block can change unnoticed.

use crate::codec::{CodecError, Decode, Encode, Reader, Writer};
use crate::crypto::{domain, hash};
use crate::ids::{ChainId, Hash32, Timestamp, TxId};
use crate::reason::Outcome;
use crate::tx::limits::MAX_TX_BYTES;

const HEADER_VERSION: u8 = 1;

/// Most transactions in one block.
pub const MAX_BLOCK_TXS: usize = 1 << 16;

/// The part of a block that replicas sign and light clients keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockHeader {
    /// The chain.
    pub chain: ChainId,
    /// Height; the genesis header has height 0.
    pub height: u64,
    /// Hash of the previous header (zero for genesis).
    pub prev: Hash32,
    /// Block time set by the proposer: the "now" of every transaction in the block.
    pub time: Timestamp,
    /// Number of transactions.
    pub tx_count: u32,
    /// Merkle root over (tx id, outcome).
    pub tx_root: Hash32,
    /// Digest of the whole state after this block: previous state root chained with this
    /// block's state changes.
    pub state_root: Hash32,
    /// Raft term of the log entry that carried the block (0 outside Raft).
    pub raft_term: u64,
    /// Raft index of that entry (0 outside Raft).
    pub raft_index: u64,
}

impl BlockHeader {
    /// The header hash: the block's name, and what the next header points to.
    pub fn hash(&self) -> Hash32 {
        Hash32(hash(&domain::HEADER, &[&self.to_bytes()]))
    }
}

impl Encode for BlockHeader {
    fn encode(&self, w: &mut Writer) {
        w.u8(HEADER_VERSION);
        w.put(&self.chain);
        w.u64(self.height);
        w.put(&self.prev);
        w.put(&self.time);
        w.u32(self.tx_count);
        w.put(&self.tx_root);
        w.put(&self.state_root);
        w.u64(self.raft_term);
        w.u64(self.raft_index);
    }
}

impl Decode for BlockHeader {
    fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        let v = r.u8("header version")?;
        if v != HEADER_VERSION {
            return Err(CodecError::UnknownTag { what: "header version", tag: v });
        }
        Ok(BlockHeader {
            chain: r.get()?,
            height: r.u64("height")?,
            prev: r.get()?,
            time: r.get()?,
            tx_count: r.u32("tx count")?,
            tx_root: r.get()?,
            state_root: r.get()?,
            raft_term: r.u64("raft term")?,
            raft_index: r.u64("raft index")?,
        })
    }
}

/// A block as stored: header, the raw transaction bytes as proposed, each one's id and outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    /// The header.
    pub header: BlockHeader,
    /// Transactions exactly as proposed (even malformed ones, which are marked invalid).
    pub txs: Vec<Vec<u8>>,
    /// Id of each transaction (see [`entry_id`]).
    pub ids: Vec<TxId>,
    /// Verdict on each transaction.
    pub outcomes: Vec<Outcome>,
}

/// The id of a proposed entry: its transaction id when it decodes, else a hash of the raw bytes
/// (so malformed entries still have a stable name).
pub fn entry_id(raw: &[u8], decoded: Option<TxId>) -> TxId {
    decoded.unwrap_or_else(|| TxId(hash(&domain::TX_ID, &[b"undecodable/", raw])))
}

impl Block {
    /// The Merkle leaves of this block.
    pub fn leaves(&self) -> Vec<Hash32> {
        self.ids
            .iter()
            .zip(&self.txs)
            .zip(&self.outcomes)
            .map(|((id, raw), o)| leaf_hash(id, &entry_hash(raw), *o))
            .collect()
    }

    /// Recompute the transaction root from the block's contents.
    pub fn compute_tx_root(&self) -> Hash32 {
        merkle_root(&self.leaves())
    }

    /// The transaction root, given the entry hash of each transaction (what
    /// [`Block::compute_tx_root`] computes from the bytes, for a builder that has them already).
    pub fn tx_root_from_entries(&self, entries: &[Hash32]) -> Hash32 {
        assert_eq!(entries.len(), self.ids.len(), "one entry hash per transaction");
        let leaves: Vec<Hash32> =
            self.ids.iter().zip(entries).zip(&self.outcomes).map(|((id, e), o)| leaf_hash(id, e, *o)).collect();
        merkle_root(&leaves)
    }
}

impl Encode for Block {
    fn encode(&self, w: &mut Writer) {
        w.put(&self.header);
        w.u32(self.txs.len() as u32);
        for ((raw, id), o) in self.txs.iter().zip(&self.ids).zip(&self.outcomes) {
            w.bytes(raw);
            w.put(id);
            w.put(o);
        }
    }
}

impl Decode for Block {
    fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        let header: BlockHeader = r.get()?;
        let n = r.len("block txs", MAX_BLOCK_TXS)?;
        let cap = n.min(r.remaining() / 40);
        let (mut txs, mut ids, mut outcomes) =
            (Vec::with_capacity(cap), Vec::with_capacity(cap), Vec::with_capacity(cap));
        for _ in 0..n {
            // A proposer may include oversized garbage; it is stored so the block hashes alike
            // everywhere, bounded by four times the transaction limit.
            txs.push(r.bytes("block tx", 4 * MAX_TX_BYTES)?.to_vec());
            ids.push(r.get()?);
            outcomes.push(r.get()?);
        }
        Ok(Block { header, txs, ids, outcomes })
    }
}

/// The hash of an entry's exact bytes as proposed.
pub fn entry_hash(raw: &[u8]) -> Hash32 {
    Hash32(hash(&domain::MERKLE, &[b"entry/", raw]))
}

/// The leaf hash of a transaction, its bytes and its outcome.
pub fn leaf_hash(id: &TxId, entry: &Hash32, outcome: Outcome) -> Hash32 {
    Hash32(hash(&domain::MERKLE, &[&[0u8], &id.0, &entry.0, &outcome.as_u16().to_le_bytes()]))
}

fn node_hash(left: &Hash32, right: &Hash32) -> Hash32 {
    Hash32(hash(&domain::MERKLE, &[&[1u8], &left.0, &right.0]))
}

/// The largest power of two strictly below `n` (n ≥ 2).
fn split(n: usize) -> usize {
    debug_assert!(n >= 2);
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// The Merkle root of `leaves` (RFC 6962 shape; the empty tree has a fixed root).
pub fn merkle_root(leaves: &[Hash32]) -> Hash32 {
    match leaves.len() {
        0 => Hash32(hash(&domain::MERKLE, &[b"empty"])),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&merkle_root(&leaves[..k]), &merkle_root(&leaves[k..]))
        }
    }
}

/// The audit path of leaf `index`: sibling hashes from the bottom up.
pub fn merkle_proof(leaves: &[Hash32], index: usize) -> Vec<Hash32> {
    assert!(index < leaves.len(), "leaf index out of range");
    let mut path = Vec::new();
    fn walk(leaves: &[Hash32], index: usize, path: &mut Vec<Hash32>) {
        if leaves.len() <= 1 {
            return;
        }
        let k = split(leaves.len());
        if index < k {
            walk(&leaves[..k], index, path);
            path.push(merkle_root(&leaves[k..]));
        } else {
            walk(&leaves[k..], index - k, path);
            path.push(merkle_root(&leaves[..k]));
        }
    }
    walk(leaves, index, &mut path);
    path
}

/// Proof that a transaction, with its outcome, is in a block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InclusionProof {
    /// The transaction.
    pub tx_id: TxId,
    /// Hash of its bytes as proposed ([`entry_hash`]).
    pub entry: Hash32,
    /// Its verdict.
    pub outcome: Outcome,
    /// Position in the block.
    pub index: u32,
    /// Number of transactions in the block.
    pub tx_count: u32,
    /// Audit path, bottom up.
    pub path: Vec<Hash32>,
}

impl InclusionProof {
    /// Build the proof for position `index` of `block`.
    pub fn for_block(block: &Block, index: usize) -> Self {
        let leaves = block.leaves();
        InclusionProof {
            tx_id: block.ids[index],
            entry: entry_hash(&block.txs[index]),
            outcome: block.outcomes[index],
            index: index as u32,
            tx_count: leaves.len() as u32,
            path: merkle_proof(&leaves, index),
        }
    }

    /// True when this proof leads to `header.tx_root`. Needs nothing but the header.
    pub fn verify(&self, header: &BlockHeader) -> bool {
        if self.tx_count != header.tx_count || self.index >= self.tx_count {
            return false;
        }
        fn climb(leaf: Hash32, index: usize, n: usize, path: &[Hash32]) -> Option<Hash32> {
            if n == 1 {
                return path.is_empty().then_some(leaf);
            }
            let (sibling, rest) = path.split_last()?;
            let k = split(n);
            Some(if index < k {
                node_hash(&climb(leaf, index, k, rest)?, sibling)
            } else {
                node_hash(sibling, &climb(leaf, index - k, n - k, rest)?)
            })
        }
        climb(
            leaf_hash(&self.tx_id, &self.entry, self.outcome),
            self.index as usize,
            self.tx_count as usize,
            &self.path,
        ) == Some(header.tx_root)
    }
}

impl Encode for InclusionProof {
    fn encode(&self, w: &mut Writer) {
        w.put(&self.tx_id);
        w.put(&self.entry);
        w.put(&self.outcome);
        w.u32(self.index);
        w.u32(self.tx_count);
        w.seq(&self.path);
    }
}

impl Decode for InclusionProof {
    fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(InclusionProof {
            tx_id: r.get()?,
            entry: r.get()?,
            outcome: r.get()?,
            index: r.u32("index")?,
            tx_count: r.u32("tx count")?,
            path: r.seq("path", 64)?,
        })
    }
}

/// One replica's signature over a block header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckpointSig {
    /// The replica's node id.
    pub node: u64,
    /// The Ed25519 key of its node certificate.
    pub key: crate::crypto::PublicKey,
    /// Signature over [`Checkpoint::message`].
    pub sig: [u8; 64],
}

/// Signatures of a quorum of a chain's replicas over one block header: what a light client
/// checks a header against, given the replicas' certificates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The chain.
    pub chain: ChainId,
    /// Block height.
    pub height: u64,
    /// The header hash signed.
    pub header_hash: Hash32,
    /// One signature per replica, by ascending node id.
    pub signatures: Vec<CheckpointSig>,
}

impl Checkpoint {
    /// What each replica signs for block `height` of `chain` with header hash `hash`.
    pub fn message(chain: ChainId, height: u64, header_hash: &Hash32) -> [u8; 32] {
        let (c, h) = (chain.0.to_le_bytes(), height.to_le_bytes());
        hash(&domain::CHECKPOINT, &[&c[..], &h[..], &header_hash.0[..]])
    }

    /// Does `sig` sign this checkpoint's header?
    pub fn signature_valid(&self, sig: &CheckpointSig) -> bool {
        let msg = Self::message(self.chain, self.height, &self.header_hash);
        crate::verify::verify_one(crate::verify::SigItem { key: &sig.key, msg: &msg, sig: &sig.sig })
    }

    /// True when `header` is the checkpointed header and at least `quorum` distinct replicas
    /// whose keys are in `trusted` (node id, key) signed it.
    pub fn verify(&self, header: &BlockHeader, trusted: &[(u64, crate::crypto::PublicKey)], quorum: usize) -> bool {
        if header.hash() != self.header_hash || header.height != self.height || header.chain != self.chain {
            return false;
        }
        let mut nodes: Vec<u64> = self
            .signatures
            .iter()
            .filter(|s| trusted.contains(&(s.node, s.key)) && self.signature_valid(s))
            .map(|s| s.node)
            .collect();
        nodes.sort_unstable();
        nodes.dedup();
        nodes.len() >= quorum
    }
}

impl Encode for Checkpoint {
    fn encode(&self, w: &mut Writer) {
        w.put(&self.chain);
        w.u64(self.height);
        w.put(&self.header_hash);
        w.u32(self.signatures.len() as u32);
        for s in &self.signatures {
            w.u64(s.node);
            w.put(&s.key);
            w.raw(&s.sig);
        }
    }
}

impl Decode for Checkpoint {
    fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        let chain = r.get()?;
        let height = r.u64("height")?;
        let header_hash = r.get()?;
        let n = r.len("checkpoint signatures", 1024)?;
        let mut signatures = Vec::with_capacity(n);
        for _ in 0..n {
            signatures.push(CheckpointSig { node: r.u64("node")?, key: r.get()?, sig: r.array("signature")? });
        }
        Ok(Checkpoint { chain, height, header_hash, signatures })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reason::RejectCode;

    fn block(n: usize) -> Block {
        let ids: Vec<TxId> = (0..n).map(|i| TxId(hash(&domain::TX_ID, &[&i.to_le_bytes()]))).collect();
        let outcomes: Vec<Outcome> =
            (0..n).map(|i| if i % 3 == 0 { Outcome::Invalid(RejectCode::Replay) } else { Outcome::Valid }).collect();
        let mut b = Block {
            header: BlockHeader {
                chain: ChainId(1),
                height: 1,
                prev: Hash32::default(),
                time: Timestamp(1),
                tx_count: n as u32,
                tx_root: Hash32::default(),
                state_root: Hash32::default(),
                raft_term: 0,
                raft_index: 0,
            },
            txs: (0..n).map(|i| vec![i as u8; 3]).collect(),
            ids,
            outcomes,
        };
        b.header.tx_root = b.compute_tx_root();
        b
    }

    #[test]
    fn every_leaf_of_every_tree_size_proves() {
        for n in 1..40 {
            let b = block(n);
            for i in 0..n {
                let p = InclusionProof::for_block(&b, i);
                assert!(p.verify(&b.header), "n={n} i={i}");
                assert_eq!(InclusionProof::from_bytes(&p.to_bytes()).unwrap(), p);
            }
        }
    }

    #[test]
    fn a_changed_byte_breaks_the_proof() {
        let b = block(13);
        let p = InclusionProof::for_block(&b, 6);
        assert_eq!(p.outcome, Outcome::Invalid(RejectCode::Replay));
        let bytes = p.to_bytes();
        for i in 0..bytes.len() {
            let mut t = bytes.clone();
            t[i] ^= 0x01;
            if let Ok(q) = InclusionProof::from_bytes(&t) {
                assert!(!q.verify(&b.header), "flipping byte {i} still verifies");
            }
        }
        // A different verdict for the same tx does not prove either.
        let mut q = p.clone();
        q.outcome = Outcome::Valid;
        assert!(!q.verify(&b.header));
        let mut h = b.header;
        h.tx_root.0[0] ^= 1;
        assert!(!p.verify(&h));
    }

    #[test]
    fn leaves_and_nodes_are_domain_separated() {
        // A two-leaf tree's root must not equal a leaf built from the same bytes.
        let b = block(2);
        let leaves = b.leaves();
        assert_ne!(merkle_root(&leaves), leaves[0]);
        assert_ne!(merkle_root(&[]), merkle_root(&leaves[..1]));
    }

    #[test]
    fn checkpoints_verify_with_a_quorum_of_trusted_signers() {
        let b = block(3);
        let keys: Vec<crate::crypto::Keypair> = (0..3).map(|i| crate::crypto::Keypair::dev(&format!("n{i}"))).collect();
        let msg = Checkpoint::message(b.header.chain, b.header.height, &b.header.hash());
        let mut cp = Checkpoint {
            chain: b.header.chain,
            height: b.header.height,
            header_hash: b.header.hash(),
            signatures: keys
                .iter()
                .enumerate()
                .take(2)
                .map(|(i, k)| CheckpointSig { node: i as u64 + 1, key: k.public(), sig: k.sign(&msg) })
                .collect(),
        };
        let trusted: Vec<(u64, crate::crypto::PublicKey)> =
            keys.iter().enumerate().map(|(i, k)| (i as u64 + 1, k.public())).collect();
        assert!(cp.verify(&b.header, &trusted, 2));
        assert!(!cp.verify(&b.header, &trusted, 3), "two signers are not three");
        assert!(!cp.verify(&b.header, &trusted[..1], 2), "an untrusted key does not count");
        assert_eq!(Checkpoint::from_bytes(&cp.to_bytes()).unwrap(), cp);
        let mut other = b.header;
        other.time = Timestamp(99);
        assert!(!cp.verify(&other, &trusted, 1), "another header");
        cp.signatures[1] = cp.signatures[0];
        assert!(!cp.verify(&b.header, &trusted, 2), "one signer counted twice");
    }

    #[test]
    fn block_and_header_round_trip() {
        let b = block(7);
        assert_eq!(Block::from_bytes(&b.to_bytes()).unwrap(), b);
        assert_eq!(BlockHeader::from_bytes(&b.header.to_bytes()).unwrap(), b.header);
    }
}
