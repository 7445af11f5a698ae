//! Parallel signature verification: raw bytes in, one verdict per transaction out.
//!
//! ```text
//!  raw txs ──one chunk per thread──► decode ─► shape checks ─► one batch verification per chunk
//!                                                              │ fails?
//!                                                              ▼
//!                                   halves batch-verified in turn, down to single transactions
//!                                   (finds the bad ones in O(bad · log n) batches)
//! ```
//!
//! The work runs on a dedicated rayon pool, never on async runtime workers. The verdict of each
//! transaction is the same whatever the chunk size or thread count, because batch and single
//! verification follow one rule ([`elchain_types::verify`]).

use elchain_types::block::{entry_hash, entry_id};
use elchain_types::ids::{ChainId, Hash32, TxId};
use elchain_types::reason::RejectCode;
use elchain_types::tx::SignedTx;
use elchain_types::verify::{verify_batch, verify_one, SigItem};
use rayon::prelude::*;

/// A transaction whose encoding, shape and signatures have been checked.
///
/// Only the verifier makes these, so a function that takes one cannot be handed an unchecked
/// transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedTx {
    tx: SignedTx,
    raw: Vec<u8>,
    entry: Hash32,
}

impl VerifiedTx {
    /// The transaction.
    pub fn tx(&self) -> &SignedTx {
        &self.tx
    }

    /// The bytes it arrived as (its canonical encoding).
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// Its id.
    pub fn id(&self) -> TxId {
        self.tx.id()
    }

    /// The hash of its exact bytes ([`entry_hash`]).
    pub fn entry(&self) -> Hash32 {
        self.entry
    }

    /// The bytes it arrived as, without copying them.
    pub fn into_raw(self) -> Vec<u8> {
        self.raw
    }
}

/// The stateless verdict on one proposed transaction.
// Nearly every entry is `Verified`; boxing it would cost an allocation per transaction.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckedTx {
    /// Passed every stateless check.
    Verified(VerifiedTx),
    /// Failed one; it stays in the block marked with `code`.
    Rejected {
        /// The bytes as proposed.
        raw: Vec<u8>,
        /// Its id (see [`entry_id`]).
        id: TxId,
        /// Why.
        code: RejectCode,
        /// The hash of its exact bytes ([`entry_hash`]).
        entry: Hash32,
    },
}

impl CheckedTx {
    /// The entry's id.
    pub fn id(&self) -> TxId {
        match self {
            CheckedTx::Verified(v) => v.id(),
            CheckedTx::Rejected { id, .. } => *id,
        }
    }

    /// The bytes as proposed.
    pub fn raw(&self) -> &[u8] {
        match self {
            CheckedTx::Verified(v) => v.raw(),
            CheckedTx::Rejected { raw, .. } => raw,
        }
    }

    /// The hash of the exact bytes ([`entry_hash`]): the block's Merkle leaf commits to it.
    pub fn entry(&self) -> Hash32 {
        match self {
            CheckedTx::Verified(v) => v.entry,
            CheckedTx::Rejected { entry, .. } => *entry,
        }
    }

    /// The bytes as proposed, without copying them.
    pub fn into_raw(self) -> Vec<u8> {
        match self {
            CheckedTx::Verified(v) => v.raw,
            CheckedTx::Rejected { raw, .. } => raw,
        }
    }
}

/// Default number of transactions below which a set is not split between threads.
///
/// Batch verification gets cheaper per signature as batches grow (one multi-scalar
/// multiplication; signatures by the same key, such as a department's, folded together): on the
/// reference machine 64 signatures cost 24.5 µs each, 256 cost 20.2 µs and 1,024 cost 14.7 µs
/// (`cargo bench --bench verify`). Where several replicas and chains share the cores, a larger
/// batch saves more CPU than splitting it gains in time.
pub const DEFAULT_BATCH: usize = 512;

/// Checks transactions for one chain on its own thread pool.
pub struct Verifier {
    chain: ChainId,
    batch: usize,
    pool: rayon::ThreadPool,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("chain", &self.chain)
            .field("batch", &self.batch)
            .field("threads", &self.pool.current_num_threads())
            .finish()
    }
}

impl Verifier {
    /// A verifier for `chain` with `threads` workers (0: one per core). A set of transactions is
    /// split into at most one chunk per worker, each of at least `batch` transactions, and each
    /// chunk is verified as one batch.
    pub fn new(chain: ChainId, threads: usize, batch: usize) -> Self {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(move |i| format!("verify-{}-{i}", chain.0))
            .start_handler(|_| crate::thread::lower_this_threads_priority(5))
            .build()
            .expect("a rayon pool starts");
        Self { chain, batch: batch.max(1), pool }
    }

    /// Check every transaction; the result has one entry per input, in order.
    pub fn check(&self, raws: Vec<Vec<u8>>) -> Vec<CheckedTx> {
        self.check_with(raws, None)
    }

    fn chunk(&self, n: usize) -> usize {
        let chunks = (n / self.batch).clamp(1, self.pool.current_num_threads().max(1));
        n.div_ceil(chunks).max(1)
    }

    fn check_with(&self, raws: Vec<Vec<u8>>, cache: Option<&VerdictCache>) -> Vec<CheckedTx> {
        let chain = self.chain;
        let chunk = self.chunk(raws.len());
        if raws.len() <= chunk {
            // One chunk: no need to hand it to the pool and wait.
            return check_chunk_with(chain, raws, cache);
        }
        self.pool.install(|| {
            raws.into_par_iter().chunks(chunk).flat_map_iter(move |c| check_chunk_with(chain, c, cache)).collect()
        })
    }

    /// [`Verifier::check`], skipping the signature check of transactions whose exact bytes
    /// this node already verified (and remembered in `cache`). The leader uses it at apply for the
    /// transactions it admitted; every other replica verifies them itself.
    pub fn check_cached(&self, raws: Vec<Vec<u8>>, cache: &VerdictCache) -> Vec<CheckedTx> {
        self.check_with(raws, Some(cache))
    }
}

/// Exact transaction bytes this node has verified, so it need not verify them again.
#[derive(Debug, Default)]
pub struct VerdictCache {
    good: std::sync::Mutex<std::collections::HashSet<[u8; 32]>>,
}

/// Entries kept at most; a node that lost leadership with admitted transactions unapplied
/// would otherwise keep them forever.
const VERDICT_CACHE_MAX: usize = 1 << 20;

impl VerdictCache {
    /// Remember that the exact bytes with these entry hashes ([`entry_hash`]) passed
    /// verification.
    pub fn remember(&self, entries: impl IntoIterator<Item = Hash32>) {
        let mut good = self.good.lock().expect("verdict cache");
        if good.len() > VERDICT_CACHE_MAX {
            good.clear();
        }
        good.extend(entries.into_iter().map(|e| e.0));
    }

    /// For each entry hash, true (once) when those exact bytes were verified here.
    fn take(&self, entries: &[Hash32]) -> Vec<bool> {
        let mut good = self.good.lock().expect("verdict cache");
        if good.is_empty() {
            return vec![false; entries.len()];
        }
        entries.iter().map(|e| good.remove(&e.0)).collect()
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.good.lock().expect("verdict cache").len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Check one chunk on the current thread: decode and shape-check each, batch-verify all the
/// signatures, and on failure find the bad transactions one signature at a time.
pub fn check_chunk(chain: ChainId, raws: Vec<Vec<u8>>) -> Vec<CheckedTx> {
    check_chunk_with(chain, raws, None)
}

#[allow(clippy::result_large_err)]
fn check_chunk_with(chain: ChainId, raws: Vec<Vec<u8>>, cache: Option<&VerdictCache>) -> Vec<CheckedTx> {
    let entries: Vec<Hash32> = raws.iter().map(|raw| entry_hash(raw)).collect();
    let mut decoded: Vec<Result<(SignedTx, Vec<u8>), CheckedTx>> = raws
        .into_iter()
        .zip(&entries)
        .map(|(raw, entry)| {
            match SignedTx::decode_wire(&raw).and_then(|tx| tx.check_shape(chain).map(|_| tx)) {
                Ok(tx) => Ok((tx, raw)),
                Err(code) => {
                    // A tx that decoded keeps its real id even when its shape is wrong.
                    let id = entry_id(&raw, SignedTx::decode_wire(&raw).ok().map(|t| t.id()));
                    Err(CheckedTx::Rejected { raw, id, code, entry: *entry })
                }
            }
        })
        .collect();

    let ids: Vec<Option<[u8; 32]>> = decoded.iter().map(|d| d.as_ref().ok().map(|(tx, _)| tx.id().0)).collect();
    let known: Vec<bool> = match cache {
        Some(c) => c.take(&entries).into_iter().zip(&decoded).map(|(k, d)| k && d.is_ok()).collect(),
        None => vec![false; decoded.len()],
    };
    // The transactions whose signatures are to be checked, with their signatures.
    let mut todo: Vec<(usize, Vec<SigItem<'_>>)> = Vec::new();
    for (i, ((d, id), known)) in decoded.iter().zip(&ids).zip(&known).enumerate() {
        if let (Ok((tx, _)), Some(id), false) = (d, id, known) {
            todo.push((i, tx.signatures().iter().map(|s| SigItem { key: &s.key, msg: id, sig: &s.sig }).collect()));
        }
    }
    let mut bad = vec![false; decoded.len()];
    find_bad(&todo, &mut bad);
    drop(todo);

    decoded
        .drain(..)
        .zip(&ids)
        .zip(bad)
        .zip(entries)
        .map(|(((d, id), bad), entry)| match d {
            Err(rejected) => rejected,
            Ok((tx, raw)) if !bad => CheckedTx::Verified(VerifiedTx { tx, raw, entry }),
            Ok((_, raw)) => {
                let id = id.as_ref().expect("decoded tx has an id");
                CheckedTx::Rejected { id: TxId(*id), raw, code: RejectCode::BadSignature, entry }
            }
        })
        .collect()
}

/// Mark in `bad` the transactions of `todo` with a signature that does not verify: the whole
/// set as one batch, and when that fails, each half in turn, down to single transactions.
fn find_bad(todo: &[(usize, Vec<SigItem<'_>>)], bad: &mut [bool]) {
    if todo.is_empty() {
        return;
    }
    if let [(i, sigs)] = todo {
        bad[*i] = !sigs.iter().all(|s| verify_one(*s));
        return;
    }
    let items: Vec<SigItem<'_>> = todo.iter().flat_map(|(_, sigs)| sigs.iter().copied()).collect();
    if verify_batch(&items) {
        return;
    }
    let (left, right) = todo.split_at(todo.len() / 2);
    find_bad(left, bad);
    find_bad(right, bad);
}

#[cfg(test)]
mod tests {
    use elchain_types::codec::Encode;
    use elchain_types::crypto::Keypair;
    use elchain_types::ids::{Hash32, Timestamp};
    use elchain_types::tx::{Attest, Payload, TxBody};

    use super::*;

    fn attest(i: u64, chain: u32) -> SignedTx {
        TxBody {
            chain: ChainId(chain),
            nonce: i,
            valid_until: Timestamp(100),
            payload: Payload::Attest(Attest { digest: Hash32([i as u8; 32]), kind: 1 }),
        }
        .seal()
        .sign(&Keypair::dev(&format!("signer-{}", i % 5)))
        .done()
    }

    fn codes(checked: &[CheckedTx]) -> Vec<Option<RejectCode>> {
        checked
            .iter()
            .map(|c| match c {
                CheckedTx::Verified(_) => None,
                CheckedTx::Rejected { code, .. } => Some(*code),
            })
            .collect()
    }

    fn mixed_input() -> Vec<Vec<u8>> {
        let mut raws: Vec<Vec<u8>> = (0..300).map(|i| attest(i, 1).to_bytes()).collect();
        let n = raws[10].len();
        raws[10][n - 3] ^= 1; // bad signature
        raws[77] = vec![1, 2, 3]; // malformed
        raws[150] = attest(150, 2).to_bytes(); // wrong chain
        raws[151] = TxBody {
            chain: ChainId(1),
            nonce: 1,
            valid_until: Timestamp(1),
            payload: Payload::Attest(Attest { digest: Hash32::default(), kind: 0 }),
        }
        .seal()
        .done()
        .to_bytes(); // unsigned
        raws[299] = vec![0; 70_000]; // oversized
        raws
    }

    #[test]
    fn each_bad_transaction_gets_its_own_code() {
        let out = Verifier::new(ChainId(1), 2, 64).check(mixed_input());
        let c = codes(&out);
        assert_eq!(c[10], Some(RejectCode::BadSignature));
        assert_eq!(c[77], Some(RejectCode::Malformed));
        assert_eq!(c[150], Some(RejectCode::WrongChain));
        assert_eq!(c[151], Some(RejectCode::Unsigned));
        assert_eq!(c[299], Some(RejectCode::Oversized));
        assert_eq!(c.iter().filter(|c| c.is_some()).count(), 5);
    }

    #[test]
    fn verdicts_do_not_depend_on_threads_or_batch_size() {
        let reference = codes(&Verifier::new(ChainId(1), 1, 1).check(mixed_input()));
        for (threads, batch) in [(1, 64), (2, 7), (2, 300), (3, 1000)] {
            let got = codes(&Verifier::new(ChainId(1), threads, batch).check(mixed_input()));
            assert_eq!(got, reference, "threads={threads} batch={batch}");
        }
    }

    #[test]
    fn several_bad_signatures_in_one_batch_are_each_found() {
        let mut raws: Vec<Vec<u8>> = (0..700).map(|i| attest(i, 1).to_bytes()).collect();
        let bad = [0usize, 1, 333, 334, 512, 698, 699];
        for &i in &bad {
            let n = raws[i].len();
            raws[i][n - 5] ^= 0x40;
        }
        for (threads, batch) in [(1, 1024), (2, 64), (2, 512)] {
            let out = codes(&Verifier::new(ChainId(1), threads, batch).check(raws.clone()));
            let found: Vec<usize> = out.iter().enumerate().filter(|(_, c)| c.is_some()).map(|(i, _)| i).collect();
            assert_eq!(found, bad, "threads={threads} batch={batch}");
            assert!(bad.iter().all(|&i| out[i] == Some(RejectCode::BadSignature)));
        }
    }

    #[test]
    fn cached_verdicts_skip_only_the_exact_bytes_verified_before() {
        let v = Verifier::new(ChainId(1), 2, 64);
        let cache = VerdictCache::default();
        let good = attest(1, 1).to_bytes();
        cache.remember([entry_hash(&good)]);
        // Same id, a forged signature: different bytes, so it is verified and refused.
        let mut forged = good.clone();
        let n = forged.len();
        forged[n - 2] ^= 1;
        let out = v.check_cached(vec![forged, good.clone()], &cache);
        assert_eq!(codes(&out), vec![Some(RejectCode::BadSignature), None]);
        assert!(cache.is_empty(), "a cached verdict is used once");
    }

    #[test]
    fn order_and_ids_are_kept() {
        let input = mixed_input();
        let out = Verifier::new(ChainId(1), 2, 16).check(input.clone());
        assert_eq!(out.len(), input.len());
        for (c, raw) in out.iter().zip(&input) {
            assert_eq!(c.raw(), &raw[..]);
        }
        assert_eq!(out[0].id(), attest(0, 1).id());
    }
}
