//! Where the load generator's batches go: straight to the chains' replicas over QUIC, or through
//! the routers' REST batch endpoint, round-robin, failing over to the next router when one does
//! not answer.
//!
//! ```text
//!  batch ─► Gateway::Quic ─► Client::submit (follows the leader) ─► receipts
//!        └► Gateway::Routers ─► POST /v1/transactions/batch to router k   (ureq, spawn_blocking)
//!               no HTTP answer, 429/503 ─► the same batch to router k+1, …
//!               receipt `unavailable` ─► that transaction again, to the next router
//!           ─► the routers' JSON receipts as chain receipts (height, index, outcome)
//! ```
//!
//! The routers are a local cluster's ([`Gateway::routers`]) or a deployed cluster's, given by
//! URL ([`Gateway::router_urls`]).
//!
//! Sending a transaction again is safe: a chain accepts a transaction id once, so a batch sent
//! again after a router died mid-request either commits or comes back as `replay`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use elchain_router::json::{BatchResponse, ReceiptJson};
use elchain_router::rest::{RestClient, RestError};
use elchain_shard::node::client::Client;
use elchain_shard::node::rpc::{Receipt, ReceiptStatus};
use elchain_types::reason::RejectCode;
use tokio::time::Instant;

use crate::cluster::Cluster;

/// How long one HTTP request may take: the routers' own chain timeout (10 s) and some.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// After a round in which no router answered, wait this long before the next.
const ROUND_PAUSE: Duration = Duration::from_millis(100);

/// Where the batches go.
#[derive(Clone)]
pub enum Gateway {
    /// To the chains' leaders over QUIC.
    Quic(Client),
    /// Through the routers' REST API.
    Routers(Routers),
}

/// The routers' REST clients, taken in turn.
#[derive(Clone)]
pub struct Routers {
    routers: Arc<Vec<(u64, RestClient)>>,
    next: Arc<AtomicUsize>,
}

/// What became of some of a batch's transactions.
#[derive(Debug)]
pub struct Reply {
    /// The transactions concerned.
    pub ids: Vec<[u8; 32]>,
    /// Their receipts (one each), or why none came.
    pub result: Result<Vec<Receipt>, String>,
}

/// How one router receipt reads.
#[derive(Debug, PartialEq, Eq)]
enum Read {
    /// A chain's answer.
    Receipt(ReceiptStatus),
    /// No answer yet: send it again.
    Again(String),
    /// Refused by the router itself (not a ledger code), e.g. `misplaced`: no chain saw it.
    RouterRefused(String),
}

/// A ledger outcome by its API name: `valid` is 0, else a reject code (or `code_N`).
pub(crate) fn outcome_code(name: &str) -> Option<u16> {
    match name {
        "valid" => Some(0),
        _ => RejectCode::from_name(name)
            .map(RejectCode::as_u16)
            .or_else(|| name.strip_prefix("code_").and_then(|n| n.parse().ok())),
    }
}

/// Router problem codes that mean "not now": the request may succeed later or elsewhere.
fn retryable(code: &str) -> bool {
    matches!(code, "rate_limited" | "unavailable" | "unknown_chain" | "chain_error")
}

/// Read one router receipt.
fn read(r: &ReceiptJson) -> Read {
    let outcome = r.outcome.as_deref().unwrap_or_default();
    match r.status.as_str() {
        "committed" => match (r.height, r.index, outcome_code(outcome)) {
            (Some(height), Some(index), Some(outcome)) => {
                Read::Receipt(ReceiptStatus::Committed { height, index, outcome })
            }
            _ => Read::Again(format!("a committed receipt without height, index or known outcome: {r:?}")),
        },
        "rejected" => match outcome_code(outcome) {
            Some(code) if code != 0 => Read::Receipt(ReceiptStatus::Rejected { code }),
            _ if retryable(outcome) => Read::Again(format!("router: {outcome}")),
            _ => Read::RouterRefused(format!("refused by the router: {outcome}")),
        },
        other => Read::Again(format!("no receipt in time (`{other}`)")),
    }
}

impl Gateway {
    /// Through `cluster`'s routers, in turn.
    pub fn routers(cluster: &Cluster) -> Gateway {
        let routers =
            cluster.routers.values().map(|r| (r.id, RestClient::new(&format!("http://{}", r.http), REQUEST_TIMEOUT)));
        Gateway::Routers(Routers { routers: Arc::new(routers.collect()), next: Arc::new(AtomicUsize::new(0)) })
    }

    /// Through the routers of a deployed cluster at `urls` (e.g. `http://host:8080`), in turn;
    /// router `i` of the list is called router `i + 1` in errors.
    pub fn router_urls(urls: &[String]) -> Gateway {
        let routers = urls.iter().enumerate().map(|(i, u)| (i as u64 + 1, RestClient::new(u, REQUEST_TIMEOUT)));
        Gateway::Routers(Routers { routers: Arc::new(routers.collect()), next: Arc::new(AtomicUsize::new(0)) })
    }

    /// Submit one batch for `chain` (`ids[i]` is the id of `raws[i]`) and wait for its receipts,
    /// at most `deadline`: one or more replies that cover every transaction once.
    pub async fn submit(&self, chain: u32, ids: Vec<[u8; 32]>, raws: Vec<Vec<u8>>, deadline: Duration) -> Vec<Reply> {
        match self {
            Gateway::Quic(client) => {
                let result = client.submit(chain, raws, deadline).await.map_err(|e| e.to_string());
                vec![Reply { ids, result }]
            }
            Gateway::Routers(r) => r.submit(ids, raws, deadline).await,
        }
    }
}

impl Routers {
    async fn submit(&self, ids: Vec<[u8; 32]>, raws: Vec<Vec<u8>>, deadline: Duration) -> Vec<Reply> {
        let start = Instant::now();
        let n = self.routers.len().max(1);
        let mut turn = self.next.fetch_add(1, Ordering::Relaxed);
        let mut pending: Vec<usize> = (0..ids.len()).collect();
        let mut receipts = Vec::new();
        let mut refused: BTreeMap<String, Vec<[u8; 32]>> = BTreeMap::new();
        let mut last = String::from("no router to send to");
        let mut misses = 0;
        while !pending.is_empty() && start.elapsed() < deadline && !self.routers.is_empty() {
            let (id, rest) = self.routers[turn % n].clone();
            turn += 1;
            let txs: Vec<String> = pending.iter().map(|&i| hex::encode(&raws[i])).collect();
            let body = serde_json::json!({ "txs": txs, "wait": true }).to_string();
            let answer = tokio::task::spawn_blocking(move || {
                rest.post("/v1/transactions/batch", &body).and_then(|a| a.json::<BatchResponse>())
            })
            .await;
            let mut progressed = false;
            match answer {
                Ok(Ok(batch)) if batch.receipts.len() == pending.len() => {
                    let mut again = Vec::new();
                    for (&i, r) in pending.iter().zip(&batch.receipts) {
                        match read(r) {
                            Read::Receipt(status) => {
                                receipts.push(Receipt { tx_id: ids[i], status });
                                progressed = true;
                            }
                            Read::Again(why) => {
                                last = format!("router {id}: {why}");
                                again.push(i);
                            }
                            Read::RouterRefused(why) => {
                                refused.entry(why).or_default().push(ids[i]);
                                progressed = true;
                            }
                        }
                    }
                    pending = again;
                }
                Ok(Ok(batch)) => {
                    last = format!("router {id}: {} receipts for {} transactions", batch.receipts.len(), pending.len());
                }
                Ok(Err(RestError::Problem(p))) if !(p.retryable || retryable(&p.code)) => {
                    // The request itself is refused (too large, malformed): no router will take it.
                    let why = format!("refused by router {id}: {} {}", p.status, p.code);
                    refused.entry(why).or_default().extend(pending.drain(..).map(|i| ids[i]));
                    progressed = true;
                }
                Ok(Err(e)) => last = format!("router {id}: {e}"),
                Err(e) => last = format!("router {id}: the request failed: {e}"),
            }
            misses = if progressed { 0 } else { misses + 1 };
            if !pending.is_empty() && (progressed || misses % n == 0) {
                // Every router tried without an answer, or some transactions wait for their
                // chain: give the cluster a moment.
                tokio::time::sleep(ROUND_PAUSE).await;
            }
        }
        let mut replies = Vec::new();
        if !receipts.is_empty() {
            replies.push(Reply { ids: receipts.iter().map(|r| r.tx_id).collect(), result: Ok(receipts) });
        }
        for (why, ids) in refused {
            replies.push(Reply { ids, result: Err(why) });
        }
        if !pending.is_empty() {
            let waited = start.elapsed();
            let ids = pending.into_iter().map(|i| ids[i]).collect();
            replies.push(Reply { ids, result: Err(format!("no receipt within {waited:?}: {last}")) });
        }
        replies
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt(status: &str, outcome: Option<&str>, at: Option<(u64, u32)>) -> ReceiptJson {
        ReceiptJson {
            tx_id: "00".repeat(32),
            chain: 1,
            status: status.into(),
            outcome: outcome.map(str::to_string),
            height: at.map(|a| a.0),
            index: at.map(|a| a.1),
        }
    }

    #[test]
    fn router_receipts_read_as_chain_receipts() {
        let replay = RejectCode::Replay.as_u16();
        let committed = |o| read(&receipt("committed", Some(o), Some((7, 3))));
        assert_eq!(committed("valid"), Read::Receipt(ReceiptStatus::Committed { height: 7, index: 3, outcome: 0 }));
        assert_eq!(
            committed("replay"),
            Read::Receipt(ReceiptStatus::Committed { height: 7, index: 3, outcome: replay })
        );
        assert_eq!(
            committed("code_999"),
            Read::Receipt(ReceiptStatus::Committed { height: 7, index: 3, outcome: 999 })
        );
        assert!(matches!(committed("no_such_outcome"), Read::Again(_)));
        assert!(matches!(read(&receipt("committed", Some("valid"), None)), Read::Again(_)));

        let rejected = |o| read(&receipt("rejected", Some(o), None));
        assert_eq!(rejected("bad_signature"), Read::Receipt(ReceiptStatus::Rejected { code: 4 }));
        assert!(matches!(rejected("misplaced"), Read::RouterRefused(w) if w.contains("misplaced")));
        assert!(matches!(rejected("rate_limited"), Read::Again(_)), "the router's own limits pass");
        assert!(matches!(read(&receipt("unavailable", None, None)), Read::Again(_)));
        assert!(matches!(read(&receipt("pending", None, None)), Read::Again(_)));
    }

    #[tokio::test]
    async fn with_no_router_answering_every_transaction_is_unanswered_once() {
        let dead = crate::cluster::free_tcp();
        let rest = RestClient::new(&format!("http://{dead}"), Duration::from_secs(1));
        let routers = Routers { routers: Arc::new(vec![(901, rest.clone()), (902, rest)]), next: Arc::default() };
        let ids = vec![[1; 32], [2; 32]];
        let replies = routers.submit(ids.clone(), vec![vec![0], vec![1]], Duration::from_millis(300)).await;
        assert_eq!(replies.len(), 1, "{replies:?}");
        assert_eq!(replies[0].ids, ids);
        let why = replies[0].result.as_ref().unwrap_err();
        assert!(why.contains("router 90"), "{why}");
    }
}
