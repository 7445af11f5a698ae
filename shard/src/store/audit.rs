//! Re-hash a stored chain and report the first block that does not check out.
//!
//! For every height: the block decodes; its header extends the previous header's hash; every
//! transaction's id is recomputed from its bytes; the Merkle root is recomputed over ids and
//! outcomes; every transaction has a tx index entry, which points at this position with this
//! outcome or at the one that took effect (or was mentioned first); and every index entry points
//! at a block position holding that id. The tip in the metadata must be the last block's header.

use elchain_types::block::{entry_id, Block, BlockHeader, Checkpoint};
use elchain_types::codec::Decode;
use elchain_types::tx::SignedTx;
use redb::{ReadableTable, ReadableTableMetadata};

use super::schema::{BLOCKS, CHECKPOINTS, TX_INDEX};
use super::{Store, StoreError};
use crate::state::TxEntry;

/// What an audit found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditReport {
    /// Blocks checked (genesis excluded).
    pub blocks: u64,
    /// Transactions checked.
    pub txs: u64,
    /// Tx-index entries checked.
    pub index_entries: u64,
    /// Checkpoints checked (header hash and every signature).
    pub checkpoints: u64,
    /// The first problem, if any.
    pub first_bad: Option<Finding>,
}

/// One problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The block at fault (for tx index problems, the block holding the transaction the entry
    /// misplaces, or the tip when an entry names a position that does not hold its id).
    pub height: u64,
    /// What is wrong.
    pub problem: String,
}

impl AuditReport {
    /// True when nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.first_bad.is_none()
    }
}

/// Audit `store`, calling `progress(height)` after each block.
pub fn audit(store: &Store, mut progress: impl FnMut(u64)) -> Result<AuditReport, StoreError> {
    let mut report = AuditReport { blocks: 0, txs: 0, index_entries: 0, checkpoints: 0, first_bad: None };
    let tip = store.tip()?;
    let mut prev: BlockHeader = store.genesis()?;
    let r = store.db().begin_read()?;
    let blocks = r.open_table(BLOCKS)?;
    let index = r.open_table(TX_INDEX)?;
    // Header hashes by height, for the checkpoints; index entries found at their own position.
    let mut hashes = vec![prev.hash()];
    let mut indexed_here = 0u64;
    let bad = |height: u64, problem: String| Some(Finding { height, problem });
    for (expected_height, entry) in (1u64..).zip(blocks.iter()?) {
        let (k, v) = entry?;
        let height = k.value();
        if height != expected_height {
            report.first_bad = bad(expected_height, format!("block {expected_height} is missing"));
            return Ok(report);
        }
        let block = match Block::from_bytes(v.value()) {
            Ok(b) => b,
            Err(e) => {
                report.first_bad = bad(height, format!("does not decode: {e}"));
                return Ok(report);
            }
        };
        if let Some(problem) = check_block(&block, &prev, height) {
            report.first_bad = bad(height, problem);
            return Ok(report);
        }
        for (i, (id, outcome)) in block.ids.iter().zip(&block.outcomes).enumerate() {
            let entry = index.get(&id.0[..])?.map(|v| TxEntry::from_bytes(v.value()));
            let problem = match entry {
                None => Some(format!("transaction {i} ({id}) has no tx index entry")),
                Some(None) => Some(format!("the tx index entry of {id} is malformed")),
                Some(Some(e)) if (e.height, e.index) == (height, i as u32) => {
                    indexed_here += 1;
                    (e.outcome != outcome.as_u16())
                        .then(|| format!("the tx index records outcome {} for {id}, the block {outcome:?}", e.outcome))
                }
                Some(Some(_)) if outcome.is_valid() => {
                    Some(format!("transaction {i} ({id}) took effect, the tx index points elsewhere"))
                }
                Some(Some(_)) => None,
            };
            if let Some(problem) = problem {
                report.first_bad = bad(height, problem);
                return Ok(report);
            }
        }
        report.blocks += 1;
        report.txs += block.txs.len() as u64;
        hashes.push(block.header.hash());
        prev = block.header;
        progress(height);
    }
    if prev != tip {
        report.first_bad =
            bad(tip.height, format!("metadata tip is height {}, the chain ends at {}", tip.height, prev.height));
        return Ok(report);
    }
    for entry in r.open_table(CHECKPOINTS)?.iter()? {
        let (k, v) = entry?;
        let height = k.value();
        let cp = match Checkpoint::from_bytes(v.value()) {
            Ok(cp) => cp,
            Err(e) => {
                report.first_bad = bad(height, format!("checkpoint does not decode: {e}"));
                return Ok(report);
            }
        };
        let Some(hash) = usize::try_from(height).ok().filter(|h| *h > 0).and_then(|h| hashes.get(h)) else {
            report.first_bad = bad(height, "checkpoint for a block that is not stored".into());
            return Ok(report);
        };
        if cp.header_hash != *hash || cp.height != height {
            report.first_bad =
                bad(height, format!("checkpoint signs {}, the block hashes to {}", cp.header_hash, hash));
            return Ok(report);
        }
        if let Some(s) = cp.signatures.iter().find(|s| !cp.signature_valid(s)) {
            report.first_bad = bad(height, format!("checkpoint signature of node {} does not verify", s.node));
            return Ok(report);
        }
        report.checkpoints += 1;
    }
    // Every entry was found at the position it names: none points at a position without its id.
    report.index_entries = index.len()?;
    if indexed_here != report.index_entries {
        report.first_bad = bad(
            tip.height,
            format!(
                "the tx index holds {} entries, {indexed_here} of them point at a block position holding their id",
                report.index_entries
            ),
        );
        return Ok(report);
    }
    Ok(report)
}

fn check_block(block: &Block, prev: &BlockHeader, height: u64) -> Option<String> {
    let h = &block.header;
    if h.height != height {
        return Some(format!("header says height {}", h.height));
    }
    if h.chain != prev.chain {
        return Some(format!("header names chain {}, the store holds chain {}", h.chain, prev.chain));
    }
    if h.prev != prev.hash() {
        return Some(format!("previous-hash {} does not match block {}'s hash {}", h.prev, prev.height, prev.hash()));
    }
    if h.time < prev.time {
        return Some("block time goes backwards".into());
    }
    let n = block.txs.len();
    if h.tx_count as usize != n || block.ids.len() != n || block.outcomes.len() != n {
        return Some(format!("header counts {} transactions, the body holds {n}", h.tx_count));
    }
    for (i, (raw, id)) in block.txs.iter().zip(&block.ids).enumerate() {
        let recomputed = entry_id(raw, SignedTx::decode_wire(raw).ok().map(|t| t.id()));
        if recomputed != *id {
            return Some(format!("transaction {i} hashes to {recomputed}, recorded as {id}"));
        }
    }
    let root = block.compute_tx_root();
    if root != h.tx_root {
        return Some(format!("transaction root {root} does not match the header's {}", h.tx_root));
    }
    None
}

/// Re-execute every block from genesis in memory (verifying every signature again) and check
/// that each stored header is exactly the one execution produces: outcomes, transaction root,
/// state root and links. This is what no re-hashing can show: that the recorded verdicts and
/// state follow from the transactions. Calls `progress(height)` after each block.
pub fn replay(store: &Store, mut progress: impl FnMut(u64)) -> Result<Option<Finding>, StoreError> {
    let consortium = store.consortium()?;
    let chain = store.chain();
    let verifier = crate::verifier::Verifier::new(chain, 0, crate::verifier::DEFAULT_BATCH);
    let executor = crate::exec::Executor::new(&consortium, chain);
    let mut state = crate::state::MemState::default();
    let mut prev = store.genesis()?;
    if prev != crate::exec::genesis_header(chain, &consortium, prev.time) {
        return Ok(Some(Finding { height: 0, problem: "genesis header does not match the stored consortium".into() }));
    }
    let tip = store.tip()?;
    for height in 1..=tip.height {
        let Some(block) = store.block(height)? else {
            return Ok(Some(Finding { height, problem: "block is missing".into() }));
        };
        let pos = crate::exec::LogPosition { term: block.header.raft_term, index: block.header.raft_index };
        let executed = executor.execute(&state, &prev, block.header.time, pos, verifier.check(block.txs.clone()));
        if executed.block.outcomes != block.outcomes {
            let i = executed.block.outcomes.iter().zip(&block.outcomes).position(|(a, b)| a != b).unwrap_or(0);
            return Ok(Some(Finding {
                height,
                problem: format!(
                    "transaction {i} re-executes to {:?}, the block records {:?}",
                    executed.block.outcomes.get(i),
                    block.outcomes.get(i)
                ),
            }));
        }
        if executed.block.header != block.header {
            return Ok(Some(Finding {
                height,
                problem: format!(
                    "re-execution gives state root {}, the header records {}",
                    executed.block.header.state_root, block.header.state_root
                ),
            }));
        }
        state.apply(&executed.writes);
        prev = block.header;
        progress(height);
    }
    Ok(None)
}
