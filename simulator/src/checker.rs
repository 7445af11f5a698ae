//! The history checker: after a run, prove from the replicas' stores that nothing acknowledged
//! was lost.
//!
//! ```text
//!  acks (receipts the load generator got) ─┐
//!  every replica's chain-<c>/chain.redb ───┴─► same tip and block hashes on every replica
//!                                              every ack at its height/index, same outcome
//!                                              every tx took effect at most once (exactly once
//!                                                when acked valid or `replay`)
//!                                              every valid tx keeps the rules (crate::rules:
//!                                                no use after revocation, outside the window,
//!                                                beyond uses or fields, of a dead licence …)
//!                                              audit: hash chain, Merkle roots, index, checkpoints
//! ```
//!
//! The core ([`History`]) is pure: it indexes blocks and checks receipts against them, so a
//! planted loss or duplicate can be shown to fail without a cluster.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use elchain_shard::node::rpc::{Receipt, ReceiptStatus};
use elchain_shard::store::audit::audit;
use elchain_shard::{Store, StoreError};
use elchain_types::block::Block;
use elchain_types::ids::TxId;
use elchain_types::reason::{Outcome, RejectCode};
use serde::Serialize;

use crate::cluster::Cluster;
use crate::rules::Rules;

/// One acknowledgement: a chain's receipt for a transaction the load generator submitted.
#[derive(Clone, Debug)]
pub struct Ack {
    /// The chain it was submitted to.
    pub chain: u32,
    /// What the chain answered.
    pub receipt: Receipt,
}

/// One thing the checker found wrong.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Violation {
    /// A replica's store could not be opened or read.
    Unreadable {
        /// Chain.
        chain: u32,
        /// Replica.
        node: u64,
        /// The store's error.
        error: String,
    },
    /// A replica ends at another height or tip than the longest replica.
    TipDiffers {
        /// Chain.
        chain: u32,
        /// Replica.
        node: u64,
        /// Its tip height.
        height: u64,
        /// The longest replica's tip height.
        expected: u64,
    },
    /// A replica's block at a height differs from (or is missing beside) the longest replica's.
    BlockDiffers {
        /// Chain.
        chain: u32,
        /// Replica.
        node: u64,
        /// Height.
        height: u64,
    },
    /// An acknowledged transaction is not at the position its receipt gave.
    Lost {
        /// Chain.
        chain: u32,
        /// Transaction id (hex).
        tx: String,
        /// Acknowledged height.
        height: u64,
        /// Acknowledged index in the block.
        index: u32,
    },
    /// An acknowledged transaction is there with another outcome than acknowledged.
    OutcomeDiffers {
        /// Chain.
        chain: u32,
        /// Transaction id (hex).
        tx: String,
        /// Height.
        height: u64,
        /// Outcome in the receipt.
        acked: u16,
        /// Outcome in the block.
        stored: u16,
    },
    /// A transaction took effect a wrong number of times: more than once, or never although its
    /// receipt said it did.
    EffectCount {
        /// Chain.
        chain: u32,
        /// Transaction id (hex).
        tx: String,
        /// How often it is in a block with outcome valid.
        times: usize,
    },
    /// A replica's store fails its audit (hash chain, Merkle roots, index or checkpoints).
    AuditFailed {
        /// Chain.
        chain: u32,
        /// Replica.
        node: u64,
        /// First bad height.
        height: u64,
        /// What is wrong.
        problem: String,
    },
    /// A transaction the chain marked valid breaks an authorisation or life-cycle rule (as the
    /// checker's own model of the rules sees it, in [`crate::rules`]).
    RuleBroken {
        /// Chain.
        chain: u32,
        /// Height of its block.
        height: u64,
        /// Transaction id (hex).
        tx: String,
        /// The rule.
        rule: String,
    },
    /// Nothing submitted to the chain was acknowledged, so the run shows nothing about it.
    NothingCommitted {
        /// Chain.
        chain: u32,
    },
    /// A deployed cluster's proven receipt for an acknowledged transaction does not prove it:
    /// undecodable, a header that does not hash to its stated hash, or an inclusion proof of
    /// another transaction or one that does not lead to the header's transaction root.
    ProofInvalid {
        /// Chain.
        chain: u32,
        /// Transaction id (hex).
        tx: String,
        /// Acknowledged height.
        height: u64,
        /// What is wrong.
        problem: String,
    },
    /// A block's checkpoint does not carry valid signatures of a quorum of the chain's replicas
    /// over its header, or a replica signed with another key than it did elsewhere.
    CheckpointInvalid {
        /// Chain.
        chain: u32,
        /// Height.
        height: u64,
        /// What is wrong.
        problem: String,
    },
    /// Two different blocks were served at one height (by different routers, or in different
    /// receipts), or a block does not follow the one served below it.
    Fork {
        /// Chain.
        chain: u32,
        /// Height.
        height: u64,
        /// What differs, and where each came from.
        problem: String,
    },
    /// Something the checker had to read from a deployed cluster could not be read, so it went
    /// unchecked.
    Unchecked {
        /// Chain.
        chain: u32,
        /// What, e.g. `tx 1f…` or `block 7`.
        what: String,
        /// The last error.
        error: String,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Unreadable { chain, node, error } => write!(f, "chain {chain} node {node}: unreadable: {error}"),
            Violation::TipDiffers { chain, node, height, expected } => {
                write!(f, "chain {chain} node {node}: ends at height {height}, the longest replica at {expected}")
            }
            Violation::BlockDiffers { chain, node, height } => {
                write!(f, "chain {chain} node {node}: block {height} differs from the longest replica's")
            }
            Violation::Lost { chain, tx, height, index } => {
                write!(f, "chain {chain}: acknowledged tx {tx} is not at {height}/{index}: LOST")
            }
            Violation::OutcomeDiffers { chain, tx, height, acked, stored } => {
                write!(f, "chain {chain}: tx {tx} at height {height} was acknowledged {acked}, stored {stored}")
            }
            Violation::EffectCount { chain, tx, times } => {
                write!(f, "chain {chain}: tx {tx} took effect {times} times")
            }
            Violation::AuditFailed { chain, node, height, problem } => {
                write!(f, "chain {chain} node {node}: audit fails at block {height}: {problem}")
            }
            Violation::RuleBroken { chain, height, tx, rule } => {
                write!(f, "chain {chain}: tx {tx} at height {height} broke a rule: {rule}")
            }
            Violation::NothingCommitted { chain } => write!(f, "chain {chain}: nothing was acknowledged"),
            Violation::ProofInvalid { chain, tx, height, problem } => {
                write!(f, "chain {chain}: the proven receipt of tx {tx} (acknowledged at height {height}) is invalid: {problem}")
            }
            Violation::CheckpointInvalid { chain, height, problem } => {
                write!(f, "chain {chain}: the checkpoint of block {height} is invalid: {problem}")
            }
            Violation::Fork { chain, height, problem } => {
                write!(f, "chain {chain}: FORK at height {height}: {problem}")
            }
            Violation::Unchecked { chain, what, error } => write!(f, "chain {chain}: could not check {what}: {error}"),
        }
    }
}

/// What the checker concluded about one chain.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ChainVerdict {
    /// Chain.
    pub chain: u32,
    /// Replicas whose stores were read.
    pub replicas: Vec<u64>,
    /// The tip height of its longest replica.
    pub height: u64,
    /// The hash of that replica's tip header (hex).
    pub tip_hash: String,
    /// Transactions in its blocks.
    pub txs: u64,
    /// Acknowledgements checked.
    pub acks: u64,
    /// Valid uses whose grant, window, uses, fields and licence the rule model checked.
    pub uses_checked: u64,
}

/// The checker's verdict on a run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Verdict {
    /// True when no violation was found.
    pub ok: bool,
    /// Per chain.
    pub chains: Vec<ChainVerdict>,
    /// Everything found wrong.
    pub violations: Vec<Violation>,
}

/// Where each transaction id occurs in a chain, and with what outcome.
#[derive(Debug, Default)]
pub struct History {
    chain: u32,
    /// Per tx id: (height, index, outcome) of each occurrence.
    seen: HashMap<[u8; 32], Vec<(u64, u32, Outcome)>>,
    txs: u64,
}

impl History {
    /// An empty history of `chain`.
    pub fn new(chain: u32) -> History {
        History { chain, ..History::default() }
    }

    /// Index the block at `height`.
    pub fn add_block(&mut self, height: u64, block: &Block) {
        for (i, (id, o)) in block.ids.iter().zip(&block.outcomes).enumerate() {
            self.seen.entry(id.0).or_default().push((height, i as u32, *o));
            self.txs += 1;
        }
    }

    /// Transactions indexed.
    pub fn txs(&self) -> u64 {
        self.txs
    }

    /// Check receipts against the indexed blocks: each committed receipt's transaction is at its
    /// height and index with its outcome; a transaction acknowledged as valid or `replay` took
    /// effect exactly once, any other at most once. Refusals at admission are not checked (the
    /// transaction is in no block, by definition).
    pub fn check(&self, receipts: &[&Receipt]) -> Vec<Violation> {
        let chain = self.chain;
        let mut out = Vec::new();
        let valid_times =
            |id: &[u8; 32]| self.seen.get(id).map_or(0, |occ| occ.iter().filter(|(_, _, o)| o.is_valid()).count());
        for r in receipts {
            let ReceiptStatus::Committed { height, index, outcome } = r.status else { continue };
            let tx = TxId(r.tx_id).to_hex();
            let at = self.seen.get(&r.tx_id).and_then(|occ| occ.iter().find(|(h, i, _)| *h == height && *i == index));
            match at {
                None => out.push(Violation::Lost { chain, tx: tx.clone(), height, index }),
                Some((_, _, stored)) if stored.as_u16() != outcome => out.push(Violation::OutcomeDiffers {
                    chain,
                    tx: tx.clone(),
                    height,
                    acked: outcome,
                    stored: stored.as_u16(),
                }),
                Some(_) => {}
            }
            let took_effect = outcome == Outcome::Valid.as_u16() || outcome == RejectCode::Replay.as_u16();
            let times = valid_times(&r.tx_id);
            // A lost transaction that took effect nowhere is reported once, as lost.
            if times > 1 || (took_effect && times == 0 && at.is_some()) {
                out.push(Violation::EffectCount { chain, tx, times });
            }
        }
        // A transaction that took effect twice is a violation whether or not it was acknowledged.
        for (id, occ) in &self.seen {
            let times = occ.iter().filter(|(_, _, o)| o.is_valid()).count();
            let tx = TxId(*id).to_hex();
            if times > 1 && !out.iter().any(|v| matches!(v, Violation::EffectCount { tx: t, .. } if *t == tx)) {
                out.push(Violation::EffectCount { chain, tx, times });
            }
        }
        out
    }
}

/// Check one chain's replicas (`(node id, store)`, all stopped) against its receipts.
pub fn check_chain(chain: u32, replicas: &[(u64, Store)], receipts: &[&Receipt]) -> (ChainVerdict, Vec<Violation>) {
    let mut verdict = ChainVerdict {
        chain,
        replicas: replicas.iter().map(|(id, _)| *id).collect(),
        acks: receipts.len() as u64,
        ..ChainVerdict::default()
    };
    let mut out = Vec::new();
    let unreadable = |node: u64, e: StoreError| Violation::Unreadable { chain, node, error: e.to_string() };
    // The replica with the longest chain is the reference: a lagging replica is reported as such,
    // and the acknowledgements are checked against everything any replica committed.
    let mut tips = Vec::new();
    for (id, s) in replicas {
        match s.tip() {
            Ok(t) => tips.push((*id, s, t)),
            Err(e) => out.push(unreadable(*id, e)),
        }
    }
    let Some(best) = (0..tips.len()).max_by_key(|i| (tips[*i].2.height, std::cmp::Reverse(*i))) else {
        return (verdict, out);
    };
    let (first_id, first, tip) = (tips[best].0, tips[best].1, tips[best].2);
    verdict.height = tip.height;
    verdict.tip_hash = tip.hash().to_hex();
    for (id, _, t) in &tips {
        if *t != tip {
            out.push(Violation::TipDiffers { chain, node: *id, height: t.height, expected: tip.height });
        }
    }
    let others: Vec<(u64, &Store, u64)> =
        tips.iter().filter(|(id, _, _)| *id != first_id).map(|(id, s, t)| (*id, *s, t.height)).collect();
    let mut history = History::new(chain);
    let mut rules = Rules::new();
    for h in 1..=tip.height {
        let block = match first.block(h) {
            Ok(Some(b)) => b,
            Ok(None) => {
                out.push(Violation::BlockDiffers { chain, node: first_id, height: h });
                continue;
            }
            Err(e) => {
                out.push(unreadable(first_id, e));
                return (verdict, out);
            }
        };
        let hash = block.header.hash();
        // Heights past a lagging replica's tip are covered by its `TipDiffers`.
        for (id, s, _) in others.iter().filter(|(_, _, top)| h <= *top) {
            if !matches!(s.block(h), Ok(Some(b)) if b.header.hash() == hash) {
                out.push(Violation::BlockDiffers { chain, node: *id, height: h });
            }
        }
        history.add_block(h, &block);
        out.extend(rules.add_block(h, &block).into_iter().map(|b| Violation::RuleBroken {
            chain,
            height: b.height,
            tx: b.tx,
            rule: b.rule,
        }));
    }
    verdict.uses_checked = rules.uses_checked();
    verdict.txs = history.txs();
    out.extend(history.check(receipts));
    for (id, s) in replicas {
        match audit(s, |_| {}) {
            Ok(r) => {
                if let Some(f) = r.first_bad {
                    out.push(Violation::AuditFailed { chain, node: *id, height: f.height, problem: f.problem });
                }
            }
            Err(e) => out.push(unreadable(*id, e)),
        }
    }
    (verdict, out)
}

/// Open node `id`'s store of `chain` in a cluster's data directory.
pub fn open_store(data: &Path, chain: u32) -> Result<Store, StoreError> {
    Store::open(&data.join(format!("chain-{chain}/chain.redb")))
}

/// Check every chain of a stopped cluster against the acknowledgements of a run.
pub fn check_cluster(cluster: &Cluster, acks: &[Ack]) -> Verdict {
    let replicas = |chain: u32| -> Vec<(u64, PathBuf)> {
        cluster.nodes.values().filter(|n| n.chains.contains(&chain)).map(|n| (n.id, n.data.clone())).collect()
    };
    check_stores(&cluster.chains(), replicas, acks)
}

/// Check `chains`, whose replicas (node id, data directory; all stopped) `replicas` names,
/// against the acknowledgements of a run.
pub fn check_stores(chains: &[u32], replicas: impl Fn(u32) -> Vec<(u64, PathBuf)>, acks: &[Ack]) -> Verdict {
    let mut verdict = Verdict::default();
    for &chain in chains {
        let mut stores = Vec::new();
        for (id, data) in replicas(chain) {
            match open_store(&data, chain) {
                Ok(s) => stores.push((id, s)),
                Err(e) => verdict.violations.push(Violation::Unreadable { chain, node: id, error: e.to_string() }),
            }
        }
        let receipts: Vec<&Receipt> = acks.iter().filter(|a| a.chain == chain).map(|a| &a.receipt).collect();
        let committed = receipts.iter().filter(|r| matches!(r.status, ReceiptStatus::Committed { .. })).count();
        let (v, found) = check_chain(chain, &stores, &receipts);
        verdict.chains.push(v);
        verdict.violations.extend(found);
        if committed == 0 {
            verdict.violations.push(Violation::NothingCommitted { chain });
        }
    }
    verdict.ok = verdict.violations.is_empty();
    verdict
}

#[cfg(test)]
mod tests {
    use elchain_shard::{Ledger, LogPosition};
    use elchain_types::codec::Encode;
    use elchain_types::ids::{ChainId, Timestamp};
    use elchain_types::profile::Profile;

    use super::*;
    use crate::Workload;

    const T0: u64 = 1_800_000_000_000;

    /// `replicas` identical stores of chain 1 with three blocks of generated load, and the
    /// receipts their blocks imply.
    fn replicas(dir: &Path, n: u64) -> (Vec<(u64, Store)>, Vec<Receipt>) {
        let c = Profile::sample().into_dev_consortium().unwrap();
        let mut w = Workload::new(c.clone(), ChainId(1), 11, 50);
        let blocks: Vec<Vec<Vec<u8>>> =
            (0..3).map(|_| w.batch(20, Timestamp(T0)).iter().map(Encode::to_bytes).collect()).collect();
        let mut receipts = Vec::new();
        let mut stores = Vec::new();
        for id in 1..=n {
            let path = dir.join(format!("node-{id}.redb"));
            let ledger = Ledger::create(&path, ChainId(1), c.clone(), Timestamp(T0), 1).unwrap();
            for (i, raws) in blocks.iter().enumerate() {
                let ex = ledger.append(raws.clone(), Timestamp(T0 + 1000 * (i as u64 + 1)), LogPosition::default());
                let ex = ex.unwrap();
                if id == 1 {
                    for (j, (tx, o)) in ex.block.ids.iter().zip(&ex.block.outcomes).enumerate() {
                        receipts.push(Receipt {
                            tx_id: tx.0,
                            status: ReceiptStatus::Committed {
                                height: ex.block.header.height,
                                index: j as u32,
                                outcome: o.as_u16(),
                            },
                        });
                    }
                }
            }
            drop(ledger);
            stores.push((id, Store::open(&path).unwrap()));
        }
        (stores, receipts)
    }

    #[test]
    fn an_intact_history_passes() {
        let dir = tempfile::tempdir().unwrap();
        let (stores, receipts) = replicas(dir.path(), 2);
        let refs: Vec<&Receipt> = receipts.iter().collect();
        let (v, found) = check_chain(1, &stores, &refs);
        assert_eq!(found, vec![], "violations in an intact history");
        assert_eq!((v.height, v.txs, v.acks), (3, 60, 60));
    }

    #[test]
    fn an_acknowledged_transaction_missing_from_the_chain_is_reported_lost() {
        let dir = tempfile::tempdir().unwrap();
        let (stores, mut receipts) = replicas(dir.path(), 2);
        // A receipt the cluster gave for a transaction no block holds.
        receipts.push(Receipt { tx_id: [7; 32], status: ReceiptStatus::Committed { height: 2, index: 3, outcome: 0 } });
        // And one whose outcome was acknowledged differently from what was stored.
        let ReceiptStatus::Committed { height, index, outcome } = receipts[0].status else { unreachable!() };
        receipts[0].status = ReceiptStatus::Committed { height, index, outcome: outcome + 1 };
        let refs: Vec<&Receipt> = receipts.iter().collect();
        let (_, found) = check_chain(1, &stores, &refs);
        assert!(found.contains(&Violation::Lost { chain: 1, tx: TxId([7; 32]).to_hex(), height: 2, index: 3 }));
        assert!(found.iter().any(|v| matches!(v, Violation::OutcomeDiffers { height: 1, .. })), "{found:?}");
    }

    #[test]
    fn a_transaction_that_took_effect_twice_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let (stores, receipts) = replicas(dir.path(), 1);
        let mut history = History::new(1);
        let block = stores[0].1.block(1).unwrap().unwrap();
        history.add_block(1, &block);
        // The same block again at a later height: every valid transaction in it now took effect twice.
        history.add_block(4, &block);
        let first_block: Vec<&Receipt> = receipts.iter().take(block.ids.len()).collect();
        let found = history.check(&first_block);
        let valid = block.outcomes.iter().filter(|o| o.is_valid()).count();
        let twice = found.iter().filter(|v| matches!(v, Violation::EffectCount { times: 2, .. })).count();
        assert!(valid > 0);
        assert_eq!(twice, valid, "{found:?}");
    }

    #[test]
    fn replicas_that_diverge_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let (mut stores, receipts) = replicas(dir.path(), 2);
        // A third replica with other transactions in its blocks.
        let c = Profile::sample().into_dev_consortium().unwrap();
        let path = dir.path().join("other.redb");
        let ledger = Ledger::create(&path, ChainId(1), c.clone(), Timestamp(T0), 1).unwrap();
        let mut w = Workload::new(c, ChainId(1), 99, 50);
        for i in 1..=3u64 {
            let raws = w.batch(20, Timestamp(T0)).iter().map(Encode::to_bytes).collect();
            ledger.append(raws, Timestamp(T0 + 1000 * i), LogPosition::default()).unwrap();
        }
        drop(ledger);
        stores.push((3, Store::open(&path).unwrap()));
        let refs: Vec<&Receipt> = receipts.iter().collect();
        let (_, found) = check_chain(1, &stores, &refs);
        assert!(found.iter().any(|v| matches!(v, Violation::TipDiffers { node: 3, .. })), "{found:?}");
        assert!(found.contains(&Violation::BlockDiffers { chain: 1, node: 3, height: 1 }), "{found:?}");
    }
}
