//! The leader's block building: gather submissions into a block, de-duplicate their bytes.
//!
//! ```text
//!  Submit ─► admission ─► mpsc ─► gather: first submission, then more until max_txs or max_wait
//!                                    │
//!                                    ▼
//!                        BlockDraft: identical bytes once, each submission told where its
//!                                    transactions sit ─► one BlockProposal
//! ```
//!
//! De-duplication covers what arrives for the same block (a client retrying, two routers
//! forwarding the same transaction); a duplicate that arrives for a later block is refused by the
//! executor as a `replay`.

use std::collections::HashMap;
use std::time::Duration;

use elchain_types::ids::Hash32;
use tokio::sync::mpsc;

/// Where a submission's transactions sit in the block, and its reply.
pub type Placed<R> = (Vec<usize>, R);

/// One block's transactions, and for each submission the positions of its transactions.
#[derive(Debug)]
pub struct BlockDraft<R> {
    txs: Vec<Vec<u8>>,
    seen: HashMap<Hash32, usize>,
    replies: Vec<Placed<R>>,
}

impl<R> BlockDraft<R> {
    /// An empty draft with room for `txs` transactions.
    pub fn with_capacity(txs: usize) -> Self {
        Self { txs: Vec::with_capacity(txs), seen: HashMap::with_capacity(txs), replies: Vec::new() }
    }

    /// Add one submission, each transaction with its entry hash ([`entry_hash`]); `reply` is
    /// handed back with its transactions' positions.
    ///
    /// [`entry_hash`]: elchain_types::block::entry_hash
    pub fn add(&mut self, txs: Vec<(Vec<u8>, Hash32)>, reply: R) {
        let mut at = Vec::with_capacity(txs.len());
        for (raw, h) in txs {
            let next = self.txs.len();
            let pos = *self.seen.entry(h).or_insert(next);
            if pos == next {
                self.txs.push(raw);
            }
            at.push(pos);
        }
        self.replies.push((at, reply));
    }

    /// Distinct transactions so far.
    pub fn len(&self) -> usize {
        self.txs.len()
    }

    /// True when nothing was added.
    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    /// The block's transactions, and each submission's positions with its reply.
    pub fn into_parts(self) -> (Vec<Vec<u8>>, Vec<Placed<R>>) {
        (self.txs, self.replies)
    }
}

/// Gather one block's worth of submissions: `first`, then whatever arrives until the
/// transactions (`size` of each submission) reach `max_txs` or `max_wait` has passed since
/// `first`. Returns the submissions and their transaction count.
pub async fn gather<T>(
    rx: &mut mpsc::Receiver<T>,
    first: T,
    size: impl Fn(&T) -> usize,
    max_txs: usize,
    max_wait: Duration,
) -> (Vec<T>, usize) {
    let mut count = size(&first);
    let mut batch = vec![first];
    let deadline = tokio::time::Instant::now() + max_wait;
    while count < max_txs {
        // What is already queued is taken without touching the timer.
        let next = match rx.try_recv() {
            Ok(p) => Some(p),
            Err(mpsc::error::TryRecvError::Disconnected) => None,
            Err(mpsc::error::TryRecvError::Empty) => {
                tokio::select! {
                    // A fixed order, so that the simulator replays runs exactly.
                    biased;
                    next = rx.recv() => next,
                    _ = tokio::time::sleep_until(deadline) => None,
                }
            }
        };
        match next {
            Some(p) => {
                count += size(&p);
                batch.push(p);
            }
            None => break,
        }
    }
    (batch, count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_bytes_go_in_once_and_share_their_position() {
        let with_hash = |raws: &[&[u8]]| -> Vec<(Vec<u8>, Hash32)> {
            raws.iter().map(|r| (r.to_vec(), elchain_types::block::entry_hash(r))).collect()
        };
        let mut d = BlockDraft::with_capacity(4);
        d.add(with_hash(&[b"a", b"b"]), 1);
        d.add(with_hash(&[b"b", b"c", b"a"]), 2);
        let (txs, replies) = d.into_parts();
        assert_eq!(txs, [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
        assert_eq!(replies, [(vec![0, 1], 1), (vec![1, 2, 0], 2)]);
    }

    #[tokio::test(start_paused = true)]
    async fn gathering_stops_at_the_size_or_the_deadline() {
        let (tx, mut rx) = mpsc::channel(16);
        for n in [3usize, 3, 3, 3] {
            tx.send(n).await.unwrap();
        }
        let (batch, count) = gather(&mut rx, 3, |n| *n, 10, Duration::from_millis(10)).await;
        assert_eq!((batch.len(), count), (4, 12), "stops once 10 is reached");
        let t0 = tokio::time::Instant::now();
        let (batch, count) = gather(&mut rx, 3, |n| *n, 10, Duration::from_millis(10)).await;
        assert_eq!((batch.len(), count), (2, 6));
        assert_eq!(t0.elapsed(), Duration::from_millis(10), "waited out the deadline for more");
    }
}
