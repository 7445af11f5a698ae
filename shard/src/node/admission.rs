//! The leader's admission stage: verify submissions several at a time.
//!
//! ```text
//!  Submit ─► queue ─► one verification at a time: everything queued meanwhile, as one set
//!                      (decode, shape, signatures in batches on the rayon pool)
//!                  ─► each submission gets its own verdicts back
//! ```
//!
//! Batch verification costs less per signature the larger the batch (see
//! [`crate::verifier::DEFAULT_BATCH`]). Clients submit a few hundred transactions at a time;
//! verifying what arrived while the previous set was being verified as one set gives the leader
//! large batches under load, and at low load a submission is verified as soon as it arrives.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::verifier::{CheckedTx, Verifier};

/// Transactions verified as one set at most.
const MAX_SET: usize = 4096;

struct Job {
    txs: Vec<Vec<u8>>,
    reply: oneshot::Sender<Vec<CheckedTx>>,
}

/// Handle to a replica's admission stage; the stage stops when every handle is dropped.
#[derive(Clone)]
pub struct Admission {
    jobs: mpsc::UnboundedSender<Job>,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Admission")
    }
}

impl Admission {
    /// Start the stage. With `in_place`, verification runs on the stage's own task instead of
    /// a blocking thread (the deterministic simulator: its single thread must do all the work).
    pub fn start(verifier: Arc<Verifier>, in_place: bool) -> Self {
        let (jobs, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(verifier, rx, in_place));
        Self { jobs }
    }

    /// Verify `txs`: one verdict per transaction, in order; `None` when the stage has stopped.
    pub async fn check(&self, txs: Vec<Vec<u8>>) -> Option<Vec<CheckedTx>> {
        let (reply, verdicts) = oneshot::channel();
        self.jobs.send(Job { txs, reply }).ok()?;
        verdicts.await.ok()
    }
}

async fn run(verifier: Arc<Verifier>, mut rx: mpsc::UnboundedReceiver<Job>, in_place: bool) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        let mut count = jobs[0].txs.len();
        while count < MAX_SET {
            match rx.try_recv() {
                Ok(job) => {
                    count += job.txs.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let mut sizes = Vec::with_capacity(jobs.len());
        let mut all = Vec::with_capacity(count);
        let mut replies = Vec::with_capacity(jobs.len());
        for job in jobs {
            sizes.push(job.txs.len());
            all.extend(job.txs);
            replies.push(job.reply);
        }
        let checked = if in_place {
            verifier.check(all)
        } else {
            let v = verifier.clone();
            match tokio::task::spawn_blocking(move || v.check(all)).await {
                Ok(c) => c,
                // A panic while verifying: drop the replies, the submitters see the stage gone.
                Err(_) => continue,
            }
        };
        let mut checked = checked.into_iter();
        for (n, reply) in sizes.into_iter().zip(replies) {
            let _ = reply.send(checked.by_ref().take(n).collect());
        }
    }
}

#[cfg(test)]
mod tests {
    use elchain_types::codec::Encode;
    use elchain_types::crypto::Keypair;
    use elchain_types::ids::{ChainId, Hash32, Timestamp};
    use elchain_types::reason::RejectCode;
    use elchain_types::tx::{Attest, Payload, TxBody};

    use super::*;

    fn attest(i: u64) -> Vec<u8> {
        TxBody {
            chain: ChainId(1),
            nonce: i,
            valid_until: Timestamp(100),
            payload: Payload::Attest(Attest { digest: Hash32([i as u8; 32]), kind: 1 }),
        }
        .seal()
        .sign(&Keypair::dev("signer"))
        .done()
        .to_bytes()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_submissions_each_get_their_own_verdicts() {
        let admission = Admission::start(Arc::new(Verifier::new(ChainId(1), 2, 64)), false);
        let subs: Vec<Vec<Vec<u8>>> = (0..6u64).map(|s| (0..40).map(|i| attest(s * 100 + i)).collect()).collect();
        let mut bad = subs.clone();
        bad[3][7] = vec![9, 9, 9];
        // All at once: later ones queue while the first set is verified and go together.
        let tasks: Vec<_> = bad
            .iter()
            .map(|s| {
                let (a, s) = (admission.clone(), s.clone());
                tokio::spawn(async move { a.check(s).await })
            })
            .collect();
        for (s, (sub, task)) in bad.iter().zip(tasks).enumerate() {
            let answer = task.await.unwrap().expect("stage running");
            assert_eq!(answer.len(), sub.len());
            for (i, (raw, c)) in sub.iter().zip(&answer).enumerate() {
                assert_eq!(c.raw(), &raw[..], "submission {s}, tx {i} in its place");
                let malformed = matches!(c, CheckedTx::Rejected { code: RejectCode::Malformed, .. });
                assert_eq!(malformed, (s, i) == (3, 7));
            }
        }
    }
}
