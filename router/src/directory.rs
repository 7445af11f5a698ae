//! Follow the meta chain: the consortium, the shard map and the chain directory, cached.
//!
//! ```text
//!  every refresh_ms: Query::Governance ──► meta chain (leader first)
//!    new height? decode ──► swap the cached view ──► teach the QUIC client each chain's replicas
//! ```
//!
//! The cache is the router's only state; a restarted router rebuilds it with one read.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use elchain_shard::node::client::Client;
use elchain_shard::node::rpc::{Answer, Query};
use elchain_types::codec::Decode;
use elchain_types::contract::Consortium;
use elchain_types::ids::ChainId;
use elchain_types::shardmap::{ChainInfo, ShardMap};
use tracing::{info, warn};

/// The meta chain.
pub const META: u32 = 0;

/// What the router knows of the consortium, as of one meta-chain height.
#[derive(Debug, Clone)]
pub struct View {
    /// Meta-chain height it was read at.
    pub height: u64,
    /// Members, contracts, items.
    pub consortium: Arc<Consortium>,
    /// Placement of new licences; none before the first shard-map transaction.
    pub shard_map: Option<ShardMap>,
    /// Chains and their replicas.
    pub chains: Vec<ChainInfo>,
    /// Consortium parameters.
    pub params: Vec<(String, u64)>,
    /// Revoked certificate serials.
    pub revoked: Vec<Vec<u8>>,
    /// When it was read.
    pub read_at: Instant,
}

impl View {
    /// The licence chains (every chain but the meta chain).
    pub fn licence_chains(&self) -> Vec<u32> {
        self.chains.iter().map(|c| c.id.0).filter(|c| *c != META).collect()
    }

    /// True when `chain` is the meta chain or in the directory.
    pub fn knows_chain(&self, chain: u32) -> bool {
        chain == META || self.chains.iter().any(|c| c.id == ChainId(chain))
    }
}

/// The cached view, refreshed from the meta chain.
#[derive(Clone)]
pub struct Directory {
    client: Client,
    view: Arc<RwLock<Option<Arc<View>>>>,
    timeout: Duration,
}

/// Why the meta chain could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// No meta replica answered.
    #[error("the meta chain did not answer: {0}")]
    Unavailable(String),
    /// It answered with something undecodable.
    #[error("the meta chain's governance state does not decode: {0}")]
    Corrupt(String),
}

impl Directory {
    /// A directory reading the meta chain through `client` (which knows the meta replicas).
    pub fn new(client: Client, timeout: Duration) -> Self {
        Self { client, view: Arc::default(), timeout }
    }

    /// The current view, if one was ever read.
    pub fn view(&self) -> Option<Arc<View>> {
        self.view.read().expect("directory view").clone()
    }

    /// Read the meta chain now and install what it says.
    pub async fn refresh(&self) -> Result<Arc<View>, DirectoryError> {
        let answer = self
            .client
            .query(META, Query::Governance, self.timeout)
            .await
            .map_err(|e| DirectoryError::Unavailable(e.to_string()))?;
        let Answer::Governance(g) = answer else {
            return Err(DirectoryError::Corrupt("not a governance answer".into()));
        };
        if let Some(v) = self.view() {
            if v.height == g.height {
                let fresh = Arc::new(View { read_at: Instant::now(), ..(*v).clone() });
                *self.view.write().expect("directory view") = Some(fresh.clone());
                return Ok(fresh);
            }
        }
        let corrupt = |e: elchain_types::codec::CodecError| DirectoryError::Corrupt(e.to_string());
        let consortium = Consortium::from_bytes(&g.consortium).map_err(corrupt)?;
        let shard_map = g.shard_map.as_deref().map(ShardMap::from_bytes).transpose().map_err(corrupt)?;
        let chains =
            g.chains.iter().map(|c| ChainInfo::from_bytes(c)).collect::<Result<Vec<_>, _>>().map_err(corrupt)?;
        for c in &chains {
            let mut ids = Vec::new();
            for r in &c.replicas {
                match r.addr.parse() {
                    Ok(addr) => {
                        self.client.add_node(r.node, addr);
                        ids.push(r.node);
                    }
                    Err(_) => warn!(chain = c.id.0, node = r.node, addr = %r.addr, "unusable replica address"),
                }
            }
            self.client.set_replicas(c.id.0, ids);
        }
        let old = self.view();
        if old.as_ref().map(|v| v.shard_map.as_ref().map(|m| m.version)) != Some(shard_map.as_ref().map(|m| m.version))
        {
            info!(
                meta_height = g.height,
                shard_map = shard_map.as_ref().map_or(0, |m| m.version),
                chains = chains.len(),
                "following the meta chain"
            );
        }
        let view = Arc::new(View {
            height: g.height,
            consortium: Arc::new(consortium),
            shard_map,
            chains,
            params: g.params,
            revoked: g.revoked,
            read_at: Instant::now(),
        });
        *self.view.write().expect("directory view") = Some(view.clone());
        Ok(view)
    }

    /// Refresh every `period` until the task is dropped.
    pub fn follow(self, period: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut failing = false;
            loop {
                match self.refresh().await {
                    Ok(_) => failing = false,
                    Err(e) if !failing => {
                        warn!(error = %e, "cannot read the meta chain; serving the last view");
                        failing = true;
                    }
                    Err(_) => {}
                }
                tokio::time::sleep(period).await;
            }
        })
    }
}
