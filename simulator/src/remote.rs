//! A deployed cluster, reached only through its routers' REST API: what it serves (chains,
//! replicas, shard map), and the history check that needs nothing but that API.
//!
//! ```text
//!  --router URL… ─► Deployment::connect: /healthz, /v1/chains, /v1/shard-map, /v1/members
//!                   (the members must carry the sample profile's development keys)
//!  acks (committed receipts) ─► every one up to the check limit, else a seeded sample
//!    ─► GET /v1/transactions/{id}?chain=c, 8 at a time, round-robin over the routers
//!    ─► Proofs (pure): header hashes to its hash, inclusion proof of this tx leads to the
//!         header's tx root, at the acknowledged height/index with the acknowledged outcome,
//!         checkpoint: valid signatures of a quorum of the chain's replicas over the header
//!    ─► GET /v1/chains/{c}/blocks/{h} from every router for a few heights per chain: one
//!         hash per height across routers and receipts, each block naming the one below
//!    ─► Verdict
//! ```
//!
//! What it cannot see: the replicas one by one (a router reads from each chain's leader), every
//! block, or the stores' audits; run `elchain verify DATA_DIR` on each node for those.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use elchain_router::json::{BlockJson, ChainJson, MemberJson, ProofJson, ShardMapJson};
use elchain_router::rest::{wait_healthy, RestClient, RestError};
use elchain_shard::node::rpc::{Receipt, ReceiptStatus};
use elchain_types::block::{BlockHeader, Checkpoint, InclusionProof};
use elchain_types::codec::Decode;
use elchain_types::crypto::PublicKey;
use elchain_types::ids::{ChainId, Hash32, TxId};
use elchain_types::profile::Profile;
use elchain_types::reason::Outcome;
use elchain_types::shardmap::{Rule, ShardMap};
use rand::SeedableRng;
use serde::de::DeserializeOwned;

use crate::checker::{Ack, ChainVerdict, Verdict, Violation};
use crate::gateway::outcome_code;

/// Acknowledgements checked one by one by default; past it, a seeded sample of this many.
pub const DEFAULT_CHECK_LIMIT: usize = 20_000;

/// How long a router may take to answer `/healthz` with 200 when the run starts.
const HEALTH_DEADLINE: Duration = Duration::from_secs(10);

/// How long one HTTP request may take (the routers' own chain timeout is 10 s).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Requests in flight at once while checking.
const FETCHERS: usize = 8;

/// How long one item may be retried over the routers before it counts as unchecked.
const FETCH_DEADLINE: Duration = Duration::from_secs(30);

/// A "no such transaction/block" answer is believed after this many tries (a new leader may
/// not have applied everything yet).
const MISSING_TRIES: u32 = 3;

/// Acknowledged heights per chain whose block (and the blocks around it) every router serves.
const SAMPLED_HEIGHTS: usize = 3;

/// Why a deployed cluster cannot be driven.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// No router URL was given.
    #[error("no router URL given")]
    NoRouters,
    /// A router does not answer `/healthz` with 200.
    #[error(
        "router {url} is not healthy after {}s: {error}; is it running, and is the URL right (e.g. http://host:8080)?",
        HEALTH_DEADLINE.as_secs()
    )]
    Unhealthy {
        /// The router.
        url: String,
        /// Its last answer.
        error: RestError,
    },
    /// A router did not answer a read the run needs.
    #[error("router {url}: cannot read {path}: {error}")]
    Read {
        /// The router.
        url: String,
        /// The API path.
        path: String,
        /// What went wrong.
        error: RestError,
    },
    /// The deployment serves no licence chain (or its shard map places licences on none).
    #[error("router {url}: the deployment has no licence chain the shard map places licences on")]
    NoLicenceChains {
        /// The router.
        url: String,
    },
    /// The shard map cannot be used.
    #[error("router {url}: the deployment's shard map {problem}")]
    ShardMap {
        /// The router.
        url: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The deployment's consortium is not the sample profile with development keys.
    #[error(
        "router {url}: {problem}; the simulator signs with the development keys of the sample consortium, so the \
         deployment must run the sample profile with development keys (like `elchain dev`)"
    )]
    NotSampleProfile {
        /// The router.
        url: String,
        /// What differs.
        problem: String,
    },
    /// The sample consortium profile did not load.
    #[error("the sample consortium: {0}")]
    Profile(String),
}

/// A deployed cluster behind one or more routers.
pub struct Deployment {
    routers: Vec<RestClient>,
    /// Every chain in the directory (the meta chain 0 too) and its replicas' node ids.
    chains: Vec<(u32, Vec<u64>)>,
    shard_map: ShardMap,
}

impl std::fmt::Debug for Deployment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deployment")
            .field("routers", &self.urls())
            .field("chains", &self.licence_chains())
            .field("shard_map_version", &self.shard_map.version)
            .finish()
    }
}

/// The licence chains a run loads, and why they differ from what the scenario asked, if they do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChosenChains {
    /// Chain ids, ascending.
    pub ids: Vec<u32>,
    /// For people: how the choice differs from the scenario's `[cluster] chains`.
    pub note: Option<String>,
}

/// `host:port` or a URL, as a base URL without a trailing slash.
fn base_url(url: &str) -> String {
    let url = url.trim().trim_end_matches('/');
    if url.contains("://") {
        url.to_string()
    } else {
        format!("http://{url}")
    }
}

impl Deployment {
    /// Check that every router in `urls` is healthy, and read the deployment's chains, shard map
    /// and members from the first (the members must be the sample profile's, with development
    /// keys: the workload signs with those).
    pub fn connect(urls: &[String]) -> Result<Deployment, RemoteError> {
        if urls.is_empty() {
            return Err(RemoteError::NoRouters);
        }
        let mut routers = Vec::new();
        for url in urls {
            let rest = RestClient::new(&base_url(url), REQUEST_TIMEOUT);
            wait_healthy(&rest, HEALTH_DEADLINE)
                .map_err(|error| RemoteError::Unhealthy { url: rest.base().to_string(), error })?;
            routers.push(rest);
        }
        let first = &routers[0];
        let url = first.base().to_string();
        let read = |path: &str, error| RemoteError::Read { url: url.clone(), path: path.into(), error };
        let consortium = Profile::sample().into_dev_consortium().map_err(|e| RemoteError::Profile(e.to_string()))?;
        let members: Vec<MemberJson> = first.get_json("/v1/members").map_err(|e| read("/v1/members", e))?;
        for m in &consortium.members {
            let theirs = members.iter().find(|t| t.id == m.id.0);
            let problem = match theirs {
                None => format!("it has no member {} (`{}`)", m.id.0, m.code),
                Some(t) if t.code != m.code => format!("its member {} is `{}`, not `{}`", m.id.0, t.code, m.code),
                Some(t) if t.signing_key != m.signing_key.to_hex() => {
                    format!("member `{}` signs with key {}, not with its development key", m.code, t.signing_key)
                }
                Some(_) => continue,
            };
            return Err(RemoteError::NotSampleProfile { url, problem });
        }
        let chains: Vec<ChainJson> = first.get_json("/v1/chains").map_err(|e| read("/v1/chains", e))?;
        let map: ShardMapJson = first.get_json("/v1/shard-map").map_err(|e| read("/v1/shard-map", e))?;
        let mut rules = Vec::new();
        for r in &map.rules {
            let licence_type = match &r.licence_type {
                None => None,
                Some(code) => Some(consortium.licence_type_by_code(code).map(|t| t.id).ok_or_else(|| {
                    RemoteError::NotSampleProfile {
                        url: url.clone(),
                        problem: format!("its shard map names licence type `{code}`, which the sample profile lacks"),
                    }
                })?),
            };
            rules.push(Rule { licence_type, buckets: r.from..r.to, chain: ChainId(r.chain) });
        }
        let shard_map = ShardMap { version: map.version, buckets: map.buckets, rules };
        shard_map.validate().map_err(|e| RemoteError::ShardMap { url: url.clone(), problem: e.to_string() })?;
        let chains = chains.into_iter().map(|c| (c.id, c.replicas.iter().map(|r| r.node).collect())).collect();
        let d = Deployment { routers, chains, shard_map };
        if d.licence_chains().is_empty() {
            return Err(RemoteError::NoLicenceChains { url });
        }
        Ok(d)
    }

    /// The routers' base URLs.
    pub fn urls(&self) -> Vec<String> {
        self.routers.iter().map(|r| r.base().to_string()).collect()
    }

    /// The licence chains the deployment serves and its shard map places new licences on,
    /// ascending (a chain without buckets would get only misplaced issuance).
    pub fn licence_chains(&self) -> Vec<u32> {
        let placed = self.shard_map.chains();
        let mut ids: Vec<u32> =
            self.chains.iter().map(|c| c.0).filter(|&c| c != 0 && placed.contains(&ChainId(c))).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// The replicas (node ids) of `chain`, as the chain directory lists them.
    pub fn replicas(&self, chain: u32) -> Vec<u64> {
        self.chains.iter().filter(|c| c.0 == chain).flat_map(|c| c.1.iter().copied()).collect()
    }

    /// The shard map the routers place issuance by.
    pub fn shard_map(&self) -> &ShardMap {
        &self.shard_map
    }

    /// The chains to load for a scenario that asks for `wanted` licence chains: the
    /// deployment's first `wanted`, or all it has when that is fewer, saying so when the ids
    /// are not `1 ..= wanted`.
    pub fn choose_chains(&self, wanted: u32) -> ChosenChains {
        let have = self.licence_chains();
        let ids: Vec<u32> = have.iter().copied().take(wanted.max(1) as usize).collect();
        let asked: Vec<u32> = (1..=wanted).collect();
        let note = (ids != asked).then(|| {
            format!(
                "the scenario asks for {wanted} licence chain(s); the deployment places licences on {have:?}: \
                 loading {ids:?}"
            )
        });
        ChosenChains { ids, note }
    }

    /// Each of `chains`' height as the routers report it now (a chain whose leader did not
    /// answer is asked again for a few seconds, then counts as 0).
    pub fn heights(&self, chains: &[u32]) -> Result<BTreeMap<u32, u64>, RemoteError> {
        let start = Instant::now();
        let mut last = None;
        loop {
            for rest in &self.routers {
                match rest.get_json::<Vec<ChainJson>>("/v1/chains") {
                    Ok(all) => {
                        let heights: BTreeMap<u32, Option<u64>> = chains
                            .iter()
                            .map(|&c| (c, all.iter().find(|j| j.id == c).and_then(|j| j.height)))
                            .collect();
                        if heights.values().all(Option::is_some) || start.elapsed() > HEALTH_DEADLINE {
                            return Ok(heights.into_iter().map(|(c, h)| (c, h.unwrap_or(0))).collect());
                        }
                    }
                    Err(e) => last = Some((rest.base().to_string(), e)),
                }
            }
            if start.elapsed() > HEALTH_DEADLINE {
                let (url, error) = last.unwrap_or_else(|| (String::new(), RestError::Transport("no router".into())));
                return Err(RemoteError::Read { url, path: "/v1/chains".into(), error });
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// How many acknowledgements to check, and the seed of the sample past that.
#[derive(Clone, Copy, Debug)]
pub struct CheckSettings {
    /// Check every acknowledgement up to this many; past it, a seeded random sample of this many.
    pub limit: usize,
    /// Seed of the sample and of the sampled block heights.
    pub seed: u64,
}

/// What the remote check concluded.
#[derive(Clone, Debug, Default)]
pub struct Checked {
    /// The verdict; each chain's `acks` counts the acknowledgements checked against a proof
    /// (`txs` and `uses_checked` stay 0: the blocks are not all read).
    pub verdict: Verdict,
    /// Committed acknowledgements in all (of which `verdict`'s `acks` were checked).
    pub committed: u64,
    /// Things people should know that are not violations (e.g. blocks still without a
    /// checkpoint).
    pub notes: Vec<String>,
}

/// Where one header came from, and what it says.
#[derive(Clone, Debug)]
struct Seen {
    hash: Hash32,
    prev: Hash32,
    from: String,
}

/// An acknowledgement whose proof shows the transaction at another position: the block at the
/// acknowledged height says whether it is (also) there.
#[derive(Clone, Debug)]
struct Elsewhere {
    chain: u32,
    tx: [u8; 32],
    height: u64,
    index: u32,
    outcome: u16,
    /// Where the chain's receipt index puts it: height, index, outcome.
    found: (u64, u32, Outcome),
}

/// The pure core of the remote check: proven receipts and blocks go in, one at a time, with the
/// router each came from; violations come out. No I/O, so a forged receipt can be shown to fail
/// without a cluster.
#[derive(Debug, Default)]
pub struct Proofs {
    replicas: BTreeMap<u32, Vec<u64>>,
    headers: BTreeMap<(u32, u64), Seen>,
    forks: BTreeSet<(u32, u64)>,
    /// Replica key by node, and the first block whose checkpoint it signed with it.
    keys: BTreeMap<u64, (PublicKey, u32, u64)>,
    checkpoints: BTreeSet<(u32, u64)>,
    /// Blocks whose receipts carried no checkpoint yet, with a transaction in each.
    lacking: BTreeMap<(u32, u64), [u8; 32]>,
    elsewhere: Vec<Elsewhere>,
    checked: BTreeMap<u32, u64>,
    violations: Vec<Violation>,
}

fn decode_hex<T: Decode>(what: &str, s: &str) -> Result<T, String> {
    let bytes = hex::decode(s).map_err(|_| format!("the {what} is not hex"))?;
    T::from_bytes(&bytes).map_err(|e| format!("the {what} does not decode: {e}"))
}

fn hash_hex(what: &str, s: &str) -> Result<Hash32, String> {
    Hash32::from_hex(s).map_err(|_| format!("the {what} `{s}` is not 64 hex digits"))
}

impl Proofs {
    /// A check of chains whose replicas (node ids) `replicas` gives: a checkpoint needs valid
    /// signatures of a majority of them.
    pub fn new(replicas: BTreeMap<u32, Vec<u64>>) -> Proofs {
        Proofs { replicas, ..Proofs::default() }
    }

    /// Check the proven receipt `p` (from router `from`) of the acknowledgement `r` of `chain`.
    /// Receipts that are not committed are skipped.
    pub fn add_proof(&mut self, chain: u32, r: &Receipt, p: &ProofJson, from: &str) {
        let ReceiptStatus::Committed { height, index, outcome } = r.status else { return };
        let tx = TxId(r.tx_id).to_hex();
        match self.prove(chain, r.tx_id, p) {
            Err(problem) => self.violations.push(Violation::ProofInvalid { chain, tx, height, problem }),
            Ok((header, proof)) => {
                *self.checked.entry(chain).or_default() += 1;
                self.see(chain, header.height, header.hash(), header.prev, from);
                self.checkpoint(chain, &header, p.checkpoint.as_deref(), r.tx_id);
                if (header.height, proof.index) != (height, index) {
                    let found = (header.height, proof.index, proof.outcome);
                    self.elsewhere.push(Elsewhere { chain, tx: r.tx_id, height, index, outcome, found });
                } else if proof.outcome.as_u16() != outcome {
                    let stored = proof.outcome.as_u16();
                    self.violations.push(Violation::OutcomeDiffers { chain, tx, height, acked: outcome, stored });
                }
            }
        }
    }

    /// The header and inclusion proof of `p`, when they prove that `tx` is in that block of
    /// `chain` (at whatever position, with whatever outcome the proof says).
    fn prove(&self, chain: u32, tx: [u8; 32], p: &ProofJson) -> Result<(BlockHeader, InclusionProof), String> {
        let header: BlockHeader = decode_hex("block header", &p.header)?;
        let hash = header.hash();
        if hash.to_hex() != p.header_hash {
            return Err(format!("the block header hashes to {hash}, not to the stated {}", p.header_hash));
        }
        if header.chain.0 != chain || p.chain != chain {
            return Err(format!("the receipt is for chain {} (header: chain {})", p.chain, header.chain.0));
        }
        let proof: InclusionProof = decode_hex("inclusion proof", &p.proof)?;
        if proof.tx_id.0 != tx {
            return Err(format!("the inclusion proof is for tx {}", proof.tx_id));
        }
        if !proof.verify(&header) {
            return Err(format!(
                "the inclusion proof does not lead to the transaction root of block {} ({} transactions)",
                header.height, header.tx_count
            ));
        }
        if (p.height, p.index) != (header.height, proof.index)
            || outcome_code(&p.outcome) != Some(proof.outcome.as_u16())
        {
            return Err(format!(
                "the router says block {} position {} outcome {}; its header and proof say block {} position {} \
                 outcome {}",
                p.height,
                p.index,
                p.outcome,
                header.height,
                proof.index,
                proof.outcome.as_u16()
            ));
        }
        Ok((header, proof))
    }

    /// Note the header `hash` (naming `prev`) of block `height` of `chain`, from `from`: another
    /// hash seen at that height is a fork.
    fn see(&mut self, chain: u32, height: u64, hash: Hash32, prev: Hash32, from: &str) {
        match self.headers.get(&(chain, height)) {
            Some(s) if s.hash != hash => {
                if self.forks.insert((chain, height)) {
                    let problem = format!("{} served block hash {}, {from} served {hash}", s.from, s.hash);
                    self.violations.push(Violation::Fork { chain, height, problem });
                }
            }
            Some(_) => {}
            None => {
                self.headers.insert((chain, height), Seen { hash, prev, from: from.to_string() });
            }
        }
    }

    /// Check the checkpoint of `header` (once per block): it signs this header, with valid
    /// signatures of a majority of the chain's replicas, each replica always with the same key.
    fn checkpoint(&mut self, chain: u32, header: &BlockHeader, cp: Option<&str>, tx: [u8; 32]) {
        let at = (chain, header.height);
        if self.checkpoints.contains(&at) {
            return;
        }
        let Some(cp) = cp else {
            self.lacking.entry(at).or_insert(tx);
            return;
        };
        self.lacking.remove(&at);
        self.checkpoints.insert(at);
        let height = header.height;
        let cp: Checkpoint = match decode_hex("checkpoint", cp) {
            Ok(cp) => cp,
            Err(problem) => return self.violations.push(Violation::CheckpointInvalid { chain, height, problem }),
        };
        if cp.chain != header.chain || cp.height != header.height || cp.header_hash != header.hash() {
            let problem = format!(
                "it signs block {} of chain {} with hash {}, not this header ({})",
                cp.height,
                cp.chain.0,
                cp.header_hash,
                header.hash()
            );
            return self.violations.push(Violation::CheckpointInvalid { chain, height, problem });
        }
        let replicas = self.replicas.get(&chain).cloned().unwrap_or_default();
        let quorum = replicas.len() / 2 + 1;
        let mut nodes = BTreeSet::new();
        let mut refused = Vec::new();
        for s in &cp.signatures {
            if !replicas.contains(&s.node) {
                refused.push(format!("node {} is not a replica of the chain", s.node));
                continue;
            }
            if let Some((key, c, h)) = self.keys.get(&s.node) {
                if *key != s.key {
                    refused.push(format!(
                        "node {} signs with key {}, at block {h} of chain {c} with {}",
                        s.node,
                        s.key.to_hex(),
                        key.to_hex()
                    ));
                    continue;
                }
            }
            if !cp.signature_valid(s) {
                refused.push(format!("node {}: the signature does not verify", s.node));
                continue;
            }
            self.keys.entry(s.node).or_insert((s.key, chain, height));
            nodes.insert(s.node);
        }
        if nodes.len() < quorum || !refused.is_empty() {
            let why = if refused.is_empty() { String::new() } else { format!("; refused: {}", refused.join("; ")) };
            let problem = format!(
                "valid signatures of {} replica(s) {nodes:?}, {quorum} of {replicas:?} needed{why}",
                nodes.len()
            );
            self.violations.push(Violation::CheckpointInvalid { chain, height, problem });
        }
    }

    /// Blocks whose receipts carried no checkpoint yet: (chain, a transaction in the block).
    pub fn lacking_checkpoints(&self) -> Vec<(u32, [u8; 32])> {
        self.lacking.iter().map(|(&(chain, _), tx)| (chain, *tx)).collect()
    }

    /// A later proven receipt of a transaction in a block that lacked a checkpoint: check the
    /// checkpoint (and the header) only; the acknowledgement was checked already.
    pub fn add_checkpoint(&mut self, chain: u32, tx: [u8; 32], p: &ProofJson, from: &str) {
        if let Ok((header, _)) = self.prove(chain, tx, p) {
            self.see(chain, header.height, header.hash(), header.prev, from);
            self.checkpoint(chain, &header, p.checkpoint.as_deref(), tx);
        }
    }

    /// The heights of acknowledgements whose proof put the transaction elsewhere: their blocks
    /// must be read ([`Proofs::add_block`]).
    pub fn heights_to_read(&self) -> Vec<(u32, u64)> {
        let set: BTreeSet<(u32, u64)> = self.elsewhere.iter().map(|e| (e.chain, e.height)).collect();
        set.into_iter().collect()
    }

    /// Block `b` of `chain` as router `from` served it: its hash must be the one every other
    /// source gave for its height, and the acknowledgements their proofs put elsewhere are
    /// checked against its transactions.
    pub fn add_block(&mut self, chain: u32, b: &BlockJson, from: &str) {
        let (hash, prev) = match (hash_hex("block hash", &b.hash), hash_hex("parent hash", &b.prev)) {
            (Ok(h), Ok(p)) => (h, p),
            (Err(error), _) | (_, Err(error)) => {
                let what = format!("block {} (from {from})", b.height);
                return self.violations.push(Violation::Unchecked { chain, what, error });
            }
        };
        self.see(chain, b.height, hash, prev, from);
        let (here, rest): (Vec<Elsewhere>, Vec<Elsewhere>) =
            std::mem::take(&mut self.elsewhere).into_iter().partition(|e| e.chain == chain && e.height == b.height);
        self.elsewhere = rest;
        for e in here {
            let tx = TxId(e.tx).to_hex();
            let listed = b.txs.get(e.index as usize).filter(|t| t.id == tx);
            let Some(listed) = listed else {
                self.violations.push(Violation::Lost { chain, tx, height: e.height, index: e.index });
                continue;
            };
            let stored = outcome_code(&listed.outcome).unwrap_or(u16::MAX);
            let (fh, fi, fo) = e.found;
            if stored != e.outcome {
                self.violations.push(Violation::OutcomeDiffers {
                    chain,
                    tx,
                    height: e.height,
                    acked: e.outcome,
                    stored,
                });
            } else if e.outcome == Outcome::Valid.as_u16() {
                // Valid here, and the chain's index names another position: valid there too (it
                // prefers the occurrence that took effect), or the index is wrong.
                if fo.is_valid() {
                    self.violations.push(Violation::EffectCount { chain, tx, times: 2 });
                } else {
                    let problem = format!(
                        "the chain's receipt points at block {fh} position {fi} (outcome {}), not at the \
                         acknowledged valid occurrence",
                        fo.as_u16()
                    );
                    self.violations.push(Violation::ProofInvalid { chain, tx, height: e.height, problem });
                }
            } else if e.outcome == elchain_types::reason::RejectCode::Replay.as_u16() && !fo.is_valid() {
                // Acknowledged as a replay of an earlier commit, which the chain does not hold.
                self.violations.push(Violation::EffectCount { chain, tx, times: 0 });
            }
        }
    }

    /// The verdict's parts: acknowledgements checked per chain, and the violations (headers
    /// that do not link to the one below them included).
    pub fn finish(mut self) -> (BTreeMap<u32, u64>, Vec<Violation>) {
        let mut below: Option<(&(u32, u64), &Seen)> = None;
        for (at, s) in &self.headers {
            if let Some((b_at, b)) = below {
                if b_at.0 == at.0 && b_at.1 + 1 == at.1 && s.prev != b.hash && !self.forks.contains(at) {
                    let problem = format!(
                        "block {} (from {}) names {} as its parent; block {} (from {}) hashes to {}",
                        at.1, s.from, s.prev, b_at.1, b.from, b.hash
                    );
                    self.violations.push(Violation::Fork { chain: at.0, height: at.1, problem });
                }
            }
            below = Some((at, s));
        }
        for e in std::mem::take(&mut self.elsewhere) {
            self.violations.push(Violation::Unchecked {
                chain: e.chain,
                what: format!("tx {}", TxId(e.tx).to_hex()),
                error: format!(
                    "its proof puts it at block {} position {}, and block {} (acknowledged) could not be read",
                    e.found.0, e.found.1, e.height
                ),
            });
        }
        (self.checked, self.violations)
    }
}

/// What one request asks for.
#[derive(Clone, Debug)]
enum Job {
    /// The proven receipt of a transaction, from any router (starting with `first`).
    Proof { chain: u32, tx: [u8; 32], first: usize },
    /// A block, from router `router` only.
    Block { chain: u32, height: u64, router: usize },
}

/// What a request brought back.
#[derive(Debug)]
enum Fetched {
    Proof(Box<ProofJson>),
    Block(Box<BlockJson>),
    /// The routers say there is no such thing (after a few tries).
    Missing(String),
    /// No usable answer before the deadline.
    Failed(String),
}

/// Problem codes that mean "try again, here or at another router".
fn transient(e: &RestError) -> bool {
    match e {
        RestError::Transport(_) => true,
        RestError::Problem(p) => {
            p.retryable
                || matches!(p.status, 429 | 502 | 503 | 504)
                || matches!(p.code.as_str(), "rate_limited" | "unavailable" | "chain_error")
        }
        RestError::Unexpected { status, .. } => *status >= 500,
    }
}

/// GET `path` as `T`, from router `first` and then the others in turn (only `first` when
/// `pinned`); `missing` is the problem code that means "no such thing". The answer and the
/// router it came from.
fn fetch<T: DeserializeOwned>(
    routers: &[RestClient],
    first: usize,
    pinned: bool,
    path: &str,
    missing: &str,
) -> (Result<T, Fetched>, usize) {
    let start = Instant::now();
    let n = routers.len().max(1);
    let (mut turn, mut misses, mut tries) = (first, 0, 0);
    loop {
        let k = if pinned { first } else { turn % n };
        turn += 1;
        tries += 1;
        let e = match routers[k].get_json::<T>(path) {
            Ok(t) => return (Ok(t), k),
            Err(e) => e,
        };
        if e.code() == Some(missing) {
            misses += 1;
            if misses >= MISSING_TRIES {
                return (Err(Fetched::Missing(e.to_string())), k);
            }
            std::thread::sleep(Duration::from_millis(300));
        } else if !transient(&e) {
            return (Err(Fetched::Failed(e.to_string())), k);
        } else if start.elapsed() > FETCH_DEADLINE {
            return (Err(Fetched::Failed(format!("no answer within {FETCH_DEADLINE:?}: {e}"))), k);
        } else if pinned || tries % n == 0 {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn run_job(routers: &[RestClient], job: &Job) -> (Fetched, usize) {
    match *job {
        Job::Proof { chain, tx, first } => {
            let path = format!("/v1/transactions/{}?chain={chain}", TxId(tx).to_hex());
            let (r, k) = fetch::<ProofJson>(routers, first, false, &path, "unknown_transaction");
            (r.map_or_else(|e| e, |p| Fetched::Proof(Box::new(p))), k)
        }
        Job::Block { chain, height, router } => {
            let path = format!("/v1/chains/{chain}/blocks/{height}");
            let (r, k) = fetch::<BlockJson>(routers, router, true, &path, "unknown_block");
            (r.map_or_else(|e| e, |b| Fetched::Block(Box::new(b))), k)
        }
    }
}

/// Run `jobs`, [`FETCHERS`] at a time, calling `progress(done)` every 100 ms from this thread;
/// each job's answer and router, in the jobs' order.
fn fetch_all(routers: &[RestClient], jobs: &[Job], progress: &dyn Fn(usize)) -> Vec<(Fetched, usize)> {
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<(Fetched, usize)>>> = Mutex::new((0..jobs.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..FETCHERS.min(jobs.len()) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(job) = jobs.get(i) else { break };
                let answer = run_job(routers, job);
                results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(answer);
                done.fetch_add(1, Ordering::Relaxed);
            });
        }
        while done.load(Ordering::Relaxed) < jobs.len() {
            progress(done.load(Ordering::Relaxed));
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    progress(jobs.len());
    let results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    results.into_iter().map(|r| r.unwrap_or_else(|| (Fetched::Failed("not fetched".into()), 0))).collect()
}

/// Check the committed acknowledgements in `acks` of `chains` against `deployment`'s proven
/// receipts and blocks (every one up to `settings.limit`, else a seeded sample), calling
/// `progress(done, total)` as requests are answered.
pub fn check(
    deployment: &Deployment,
    chains: &[u32],
    acks: &[Ack],
    settings: CheckSettings,
    progress: &dyn Fn(usize, usize),
) -> Checked {
    let routers = &deployment.routers;
    let urls = deployment.urls();
    let committed: Vec<&Ack> = acks
        .iter()
        .filter(|a| chains.contains(&a.chain) && matches!(a.receipt.status, ReceiptStatus::Committed { .. }))
        .collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(settings.seed);
    let picked: Vec<&Ack> = if committed.len() <= settings.limit {
        committed.clone()
    } else {
        let mut idx = rand::seq::index::sample(&mut rng, committed.len(), settings.limit).into_vec();
        idx.sort_unstable();
        idx.into_iter().map(|i| committed[i]).collect()
    };
    let replicas = chains.iter().map(|&c| (c, deployment.replicas(c))).collect();
    let mut proofs = Proofs::new(replicas);
    let mut out = Checked { committed: committed.len() as u64, ..Checked::default() };

    // 1. Every picked acknowledgement's proven receipt, round-robin over the routers.
    let jobs: Vec<Job> = picked
        .iter()
        .enumerate()
        .map(|(i, a)| Job::Proof { chain: a.chain, tx: a.receipt.tx_id, first: i % routers.len().max(1) })
        .collect();
    let heights = deployment.heights(chains);
    // The blocks every router is asked for: each chain's first and last, and around a few
    // acknowledged heights (so that neighbouring headers can be linked).
    let mut sampled: BTreeSet<(u32, u64)> = BTreeSet::new();
    let tips = match &heights {
        Ok(h) => h.clone(),
        Err(e) => {
            out.notes.push(format!("cannot read the chains' heights, so no tip block was compared: {e}"));
            BTreeMap::new()
        }
    };
    for &c in chains {
        let tip = tips.get(&c).copied().unwrap_or(0);
        let acked: Vec<u64> = picked
            .iter()
            .filter(|a| a.chain == c)
            .filter_map(|a| match a.receipt.status {
                ReceiptStatus::Committed { height, .. } => Some(height),
                ReceiptStatus::Rejected { .. } => None,
            })
            .collect();
        let top = tip.max(acked.iter().copied().max().unwrap_or(0));
        let mut around: Vec<u64> = vec![1, tip];
        for _ in 0..SAMPLED_HEIGHTS.min(acked.len()) {
            let h = acked[rand::Rng::gen_range(&mut rng, 0..acked.len())];
            around.extend([h.saturating_sub(1), h, h + 1]);
        }
        sampled.extend(around.into_iter().filter(|h| (1..=top).contains(h)).map(|h| (c, h)));
    }
    let total = jobs.len() + sampled.len() * routers.len();
    let answers = fetch_all(routers, &jobs, &|done| progress(done, total));
    for ((answer, k), a) in answers.into_iter().zip(&picked) {
        let tx = TxId(a.receipt.tx_id).to_hex();
        match (answer, &a.receipt.status) {
            (Fetched::Proof(p), _) => proofs.add_proof(a.chain, &a.receipt, &p, &urls[k]),
            (Fetched::Missing(_), &ReceiptStatus::Committed { height, index, .. }) => {
                proofs.violations.push(Violation::Lost { chain: a.chain, tx, height, index })
            }
            (Fetched::Failed(error), _) | (Fetched::Missing(error), _) => {
                proofs.violations.push(Violation::Unchecked { chain: a.chain, what: format!("tx {tx}"), error })
            }
            (Fetched::Block(_), _) => {}
        }
    }

    // 2. Blocks: the sample and the acknowledged heights of transactions proven elsewhere, from
    //    every router.
    sampled.extend(proofs.heights_to_read());
    let blocks: Vec<Job> = sampled
        .iter()
        .flat_map(|&(chain, height)| (0..routers.len()).map(move |router| Job::Block { chain, height, router }))
        .collect();
    let total = jobs.len() + blocks.len();
    let answers = fetch_all(routers, &blocks, &|done| progress(jobs.len() + done, total));
    let mut tip_hash: BTreeMap<u32, String> = BTreeMap::new();
    for ((answer, k), job) in answers.into_iter().zip(&blocks) {
        let Job::Block { chain, height, .. } = *job else { continue };
        match answer {
            Fetched::Block(b) => {
                if tips.get(&chain) == Some(&height) {
                    tip_hash.entry(chain).or_insert_with(|| b.hash.clone());
                }
                proofs.add_block(chain, &b, &urls[k]);
            }
            Fetched::Missing(error) | Fetched::Failed(error) => {
                let what = format!("block {height} at {}", urls[k]);
                proofs.violations.push(Violation::Unchecked { chain, what, error });
            }
            Fetched::Proof(_) => {}
        }
    }

    // 3. Checkpoints gathered after the first look.
    let lacking = proofs.lacking_checkpoints();
    if !lacking.is_empty() {
        std::thread::sleep(Duration::from_secs(1));
        let jobs: Vec<Job> = lacking.iter().map(|&(chain, tx)| Job::Proof { chain, tx, first: 0 }).collect();
        for ((answer, k), (chain, tx)) in fetch_all(routers, &jobs, &|_| {}).into_iter().zip(&lacking) {
            if let Fetched::Proof(p) = answer {
                proofs.add_checkpoint(*chain, *tx, &p, &urls[k]);
            }
        }
        let still = proofs.lacking_checkpoints();
        if !still.is_empty() {
            out.notes.push(format!(
                "{} block(s) had no checkpoint yet when checked (their replicas' signatures were still being \
                 gathered); their headers and proofs were checked without one",
                still.len()
            ));
        }
    }

    let (checked, violations) = proofs.finish();
    out.verdict.violations = violations;
    for &chain in chains {
        let acked = committed.iter().filter(|a| a.chain == chain).count();
        if acked == 0 {
            out.verdict.violations.push(Violation::NothingCommitted { chain });
        }
        out.verdict.chains.push(ChainVerdict {
            chain,
            replicas: deployment.replicas(chain),
            height: tips.get(&chain).copied().unwrap_or(0),
            tip_hash: tip_hash.remove(&chain).unwrap_or_default(),
            txs: 0,
            acks: checked.get(&chain).copied().unwrap_or(0),
            uses_checked: 0,
        });
    }
    out.verdict.ok = out.verdict.violations.is_empty();
    out
}

#[cfg(test)]
mod tests {
    use elchain_shard::{Ledger, LogPosition};
    use elchain_types::block::{Block, CheckpointSig};
    use elchain_types::codec::Encode;
    use elchain_types::crypto::Keypair;
    use elchain_types::ids::Timestamp;

    use super::*;
    use crate::Workload;

    const T0: u64 = 1_800_000_000_000;

    /// Block 1 of chain 1 with `n` generated transactions (workload seed `seed`), as a real
    /// ledger executes it.
    fn block(seed: u64, n: usize) -> Block {
        let c = Profile::sample().into_dev_consortium().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::create(&dir.path().join("chain.redb"), ChainId(1), c.clone(), Timestamp(T0), 1).unwrap();
        let raws =
            Workload::new(c, ChainId(1), seed, 50).batch(n, Timestamp(T0)).iter().map(Encode::to_bytes).collect();
        ledger.append(raws, Timestamp(T0 + 1000), LogPosition::default()).unwrap().block
    }

    /// The router's proven receipt of position `i` of `b`, its checkpoint signed by `signers`.
    fn proven(b: &Block, i: usize, signers: &[u64]) -> ProofJson {
        let proof = InclusionProof::for_block(b, i);
        let hash = b.header.hash();
        let msg = Checkpoint::message(b.header.chain, b.header.height, &hash);
        let signatures = signers
            .iter()
            .map(|&node| {
                let k = Keypair::dev(&format!("node/{node}"));
                CheckpointSig { node, key: k.public(), sig: k.sign(&msg) }
            })
            .collect();
        let cp = Checkpoint { chain: b.header.chain, height: b.header.height, header_hash: hash, signatures };
        ProofJson {
            tx_id: b.ids[i].to_hex(),
            chain: 1,
            height: b.header.height,
            index: i as u32,
            outcome: elchain_router::json::outcome_name(proof.outcome.as_u16()),
            header_hash: hash.to_hex(),
            header: hex::encode(b.header.to_bytes()),
            proof: hex::encode(proof.to_bytes()),
            checkpoint: Some(hex::encode(cp.to_bytes())),
            signers: signers.to_vec(),
        }
    }

    /// The receipt the chain gave for position `i` of `b`.
    fn receipt(b: &Block, i: usize) -> Receipt {
        let status =
            ReceiptStatus::Committed { height: b.header.height, index: i as u32, outcome: b.outcomes[i].as_u16() };
        Receipt { tx_id: b.ids[i].0, status }
    }

    fn block_json(b: &Block) -> BlockJson {
        BlockJson::from_block(1, b)
    }

    fn three_replicas() -> Proofs {
        Proofs::new(BTreeMap::from([(1, vec![1, 2, 3])]))
    }

    /// Flip one bit of the byte at `at` of a hex string.
    fn tamper(hex_text: &str, at: usize) -> String {
        let mut bytes = hex::decode(hex_text).unwrap();
        bytes[at] ^= 1;
        hex::encode(bytes)
    }

    #[test]
    fn honest_proven_receipts_check_out() {
        let b = block(3, 12);
        let mut p = three_replicas();
        for i in 0..b.ids.len() {
            p.add_proof(1, &receipt(&b, i), &proven(&b, i, &[1, 2, 3]), "router-a");
        }
        p.add_block(1, &block_json(&b), "router-b");
        let (checked, violations) = p.finish();
        assert_eq!(violations, vec![]);
        assert_eq!(checked.get(&1), Some(&12));
    }

    #[test]
    fn a_forged_inclusion_proof_or_header_is_caught() {
        let b = block(3, 12);
        let mut p = three_replicas();
        // One bit of the entry hash (after the 32-byte tx id): the path no longer leads to the root.
        let mut forged = proven(&b, 4, &[1, 2, 3]);
        forged.proof = tamper(&forged.proof, 40);
        p.add_proof(1, &receipt(&b, 4), &forged, "router-a");
        // One bit of the header: it no longer hashes to the stated hash.
        let mut forged = proven(&b, 5, &[1, 2, 3]);
        forged.header = tamper(&forged.header, 20);
        p.add_proof(1, &receipt(&b, 5), &forged, "router-a");
        // Another transaction's proof for this one.
        p.add_proof(1, &receipt(&b, 6), &proven(&b, 7, &[1, 2, 3]), "router-a");
        let (checked, violations) = p.finish();
        let invalid: Vec<&str> = violations
            .iter()
            .filter_map(|v| match v {
                Violation::ProofInvalid { problem, .. } => Some(problem.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(invalid.len(), 3, "{violations:?}");
        assert!(invalid[0].contains("does not lead to the transaction root"), "{invalid:?}");
        assert!(invalid[1].contains("hashes to"), "{invalid:?}");
        assert!(invalid[2].contains("is for tx"), "{invalid:?}");
        assert_eq!(checked.get(&1), None, "a forged receipt proves nothing");
    }

    #[test]
    fn an_acknowledgement_at_another_position_or_outcome_is_caught() {
        let b = block(3, 12);
        let mut p = three_replicas();
        // Acknowledged at the next position: the proof puts it at its own, and the block's
        // listing has another transaction at the acknowledged one.
        let mut moved = receipt(&b, 2);
        moved.status = ReceiptStatus::Committed { height: 1, index: 3, outcome: b.outcomes[2].as_u16() };
        p.add_proof(1, &moved, &proven(&b, 2, &[1, 2, 3]), "router-a");
        assert_eq!(p.heights_to_read(), vec![(1, 1)]);
        // Acknowledged with another outcome.
        let mut changed = receipt(&b, 8);
        changed.status = ReceiptStatus::Committed { height: 1, index: 8, outcome: b.outcomes[8].as_u16() + 1 };
        p.add_proof(1, &changed, &proven(&b, 8, &[1, 2, 3]), "router-a");
        p.add_block(1, &block_json(&b), "router-a");
        let (_, violations) = p.finish();
        let tx = |i: usize| b.ids[i].to_hex();
        assert!(violations.contains(&Violation::Lost { chain: 1, tx: tx(2), height: 1, index: 3 }), "{violations:?}");
        assert!(
            violations.iter().any(|v| matches!(v, Violation::OutcomeDiffers { tx: t, .. } if *t == tx(8))),
            "{violations:?}"
        );
        assert_eq!(violations.len(), 2, "{violations:?}");
        // Without the block, the moved acknowledgement is reported unchecked, not passed.
        let mut p = three_replicas();
        p.add_proof(1, &moved, &proven(&b, 2, &[1, 2, 3]), "router-a");
        let (_, violations) = p.finish();
        assert!(matches!(violations.as_slice(), [Violation::Unchecked { .. }]), "{violations:?}");
    }

    #[test]
    fn a_checkpoint_without_a_quorum_or_with_a_forged_signature_is_caught() {
        let b = block(3, 4);
        let mut p = three_replicas();
        p.add_proof(1, &receipt(&b, 0), &proven(&b, 0, &[2]), "router-a");
        let (_, violations) = p.finish();
        assert!(
            matches!(violations.as_slice(), [Violation::CheckpointInvalid { height: 1, problem, .. }] if problem.contains("2 of")),
            "{violations:?}"
        );

        let mut p = three_replicas();
        let mut forged = proven(&b, 0, &[1, 2, 3]);
        // The last byte of the last signature.
        let cp = forged.checkpoint.as_deref().unwrap();
        let last = hex::decode(cp).unwrap().len() - 1;
        forged.checkpoint = Some(tamper(cp, last));
        p.add_proof(1, &receipt(&b, 0), &forged, "router-a");
        let (checked, violations) = p.finish();
        assert!(
            matches!(violations.as_slice(), [Violation::CheckpointInvalid { problem, .. }] if problem.contains("node 3")),
            "{violations:?}"
        );
        assert_eq!(checked.get(&1), Some(&1), "the receipt itself is proven");

        // No checkpoint yet: not a violation, but the block is listed for a second look.
        let mut p = three_replicas();
        let mut early = proven(&b, 1, &[1, 2, 3]);
        early.checkpoint = None;
        p.add_proof(1, &receipt(&b, 1), &early, "router-a");
        assert_eq!(p.lacking_checkpoints(), vec![(1, b.ids[1].0)]);
        p.add_checkpoint(1, b.ids[1].0, &proven(&b, 1, &[1, 2, 3]), "router-a");
        assert_eq!(p.lacking_checkpoints(), vec![]);
        assert_eq!(p.finish().1, vec![]);
    }

    #[test]
    fn two_routers_serving_different_blocks_at_one_height_is_a_fork() {
        let (a, b) = (block(3, 6), block(99, 6));
        assert_ne!(a.header.hash(), b.header.hash());
        let mut p = three_replicas();
        p.add_proof(1, &receipt(&a, 0), &proven(&a, 0, &[1, 2, 3]), "router-a");
        p.add_block(1, &block_json(&b), "router-b");
        p.add_block(1, &block_json(&b), "router-c");
        let (_, violations) = p.finish();
        assert!(
            matches!(violations.as_slice(), [Violation::Fork { height: 1, problem, .. }] if problem.contains("router-b")),
            "one fork, reported once: {violations:?}"
        );
    }

    #[test]
    fn a_router_url_without_a_scheme_is_taken_as_http() {
        assert_eq!(base_url("10.0.0.5:8080/"), "http://10.0.0.5:8080");
        assert_eq!(base_url("https://r.example:443"), "https://r.example:443");
    }
}
