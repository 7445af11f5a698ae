//! Run a node: one QUIC endpoint serving replicas of one or more chains.
//!
//! ```text
//!  elchain node --config node.toml
//!    load + check config ─► load TLS identity (CA, cert, CRL) ─► bind QUIC endpoint
//!    for each [[chains]]: open stores, start Raft, start the batcher
//!    serve: Raft RPCs (replicas only), Submit/Status/membership (any consortium peer)
//!    /metrics over HTTP (optional)
//! ```

pub mod admission;
pub mod client;
pub mod config;
pub mod mempool;
pub mod metrics;
pub mod network;
pub mod replica;
pub mod rpc;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use anyhow::Context;
use bytes::Bytes;
use tracing::info;

use elchain_types::contract::Consortium;
use elchain_types::crypto::Keypair;
use elchain_types::profile::Profile;

use crate::clock::Clock;
use crate::net::{BoxFuture, Endpoint, Handler, Identity, PeerIdentity, SimNet, TlsFiles, Wire};
use config::NodeConfig;
use replica::Replica;
use rpc::{decode, encode, Request, Response};

fn load_consortium(cfg: &NodeConfig) -> anyhow::Result<Arc<Consortium>> {
    let profile = if cfg.consortium.profile == "sample" {
        Profile::sample()
    } else {
        let text = std::fs::read_to_string(&cfg.consortium.profile)
            .with_context(|| format!("cannot read profile {}", cfg.consortium.profile))?;
        Profile::parse(&text)?
    };
    Ok(Arc::new(profile.into_dev_consortium()?))
}

/// A running node.
pub struct Node {
    id: u64,
    endpoint: Wire,
    replicas: Arc<HashMap<u32, Arc<Replica>>>,
    metrics_task: Option<tokio::task::JoinHandle<()>>,
}

struct NodeHandler {
    replicas: OnceLock<Arc<HashMap<u32, Arc<Replica>>>>,
}

impl Handler for NodeHandler {
    fn handle(&self, peer: PeerIdentity, request: Bytes) -> BoxFuture<Result<Bytes, String>> {
        let replicas = self.replicas.get().cloned();
        Box::pin(async move {
            let req: Request = decode(&request)?;
            let Some(replicas) = replicas else {
                return Ok(encode(&Response::Error("the node is starting".into())));
            };
            let chain = req.chain();
            let Some(replica) = replicas.get(&chain).cloned() else {
                return Ok(encode(&Response::Error(format!("this node does not serve chain {chain}"))));
            };
            let resp = match req {
                Request::Raft { rpc, .. } => {
                    // Only replicas take part in consensus; a router's or tool's certificate may
                    // submit and query, never vote or append.
                    if peer.role.as_deref() != Some("replica") {
                        return Err(format!("raft traffic from a {:?} certificate refused", peer.role));
                    }
                    replica.handle_raft(rpc).await
                }
                Request::Submit { txs, .. } => replica.submit(txs).await,
                Request::Status { .. } => Response::Status(replica.status()),
                Request::Receipt { tx_id, .. } => replica.receipt(tx_id),
                Request::Block { height, .. } => replica.block(height),
                Request::Query { query, .. } => replica.query(&query),
                Request::AddReplica { node, addr, .. } => replica.add_replica(node, addr).await,
                Request::RemoveReplica { node, .. } => replica.remove_replica(node).await,
                Request::ProposeRaw { txs, .. } => replica.propose_raw(txs).await,
                Request::Checkpoint { height, hash, sig, .. } => replica.on_checkpoint(&peer, height, hash, &sig),
            };
            Ok(encode(&resp))
        })
    }
}

impl Node {
    /// Start a node from a checked configuration: its TLS identity from the files the
    /// configuration names, its QUIC endpoint on `listen`.
    pub async fn start(cfg: NodeConfig) -> anyhow::Result<Node> {
        let consortium = load_consortium(&cfg)?;
        let identity = Identity::load(&TlsFiles {
            ca_cert: cfg.tls.ca_cert.clone(),
            cert: cfg.tls.cert.clone(),
            key: cfg.tls.key.clone(),
            crl: cfg.tls.crl.clone(),
        })?;
        let cert_id = identity.local().node_id;
        anyhow::ensure!(
            cert_id == Some(cfg.node_id),
            "the certificate {} is for node {:?}, the config says node {}",
            cfg.tls.cert.display(),
            cert_id,
            cfg.node_id
        );
        let signer = identity.signing_keypair();
        if signer.is_none() {
            tracing::warn!("the node key is not Ed25519: this node will not sign checkpoints");
        }
        let handler = Arc::new(NodeHandler { replicas: OnceLock::new() });
        let endpoint = Endpoint::bind(cfg.listen, identity, handler.clone())
            .await
            .with_context(|| format!("cannot listen on {}", cfg.listen))?;
        Self::serve(cfg, consortium, endpoint.into(), handler, signer, Clock::System).await
    }

    /// Start a node of the deterministic simulator: on `net` instead of QUIC (the `tls` and
    /// `listen` settings are not used), with `signer` as its checkpoint key and `clock` for block
    /// times. Everything else (stores, Raft, admission, batching) is what [`Node::start`] runs.
    pub async fn start_simulated(cfg: NodeConfig, net: &SimNet, signer: Keypair, clock: Clock) -> anyhow::Result<Node> {
        let consortium = load_consortium(&cfg)?;
        let handler = Arc::new(NodeHandler { replicas: OnceLock::new() });
        let identity = PeerIdentity {
            node_id: Some(cfg.node_id),
            member: None,
            role: Some("replica".into()),
            public_key: Some(signer.public().0),
        };
        let port = net.attach(cfg.node_id, identity, handler.clone());
        Self::serve(cfg, consortium, Wire::Sim(port), handler, Some(signer), clock).await
    }

    async fn serve(
        cfg: NodeConfig,
        consortium: Arc<Consortium>,
        endpoint: Wire,
        handler: Arc<NodeHandler>,
        signer: Option<Keypair>,
        clock: Clock,
    ) -> anyhow::Result<Node> {
        let mut replicas = HashMap::new();
        for chain in &cfg.chains {
            let r = Replica::start(&cfg, chain, consortium.clone(), endpoint.clone(), signer.clone(), clock)
                .await
                .with_context(|| format!("cannot start chain {}", chain.id))?;
            replicas.insert(chain.id, r);
        }
        let replicas = Arc::new(replicas);
        let _ = handler.replicas.set(replicas.clone());
        let metrics_task = match cfg.metrics_listen {
            Some(addr) => Some(metrics::serve(addr, cfg.node_id, replicas.clone()).await?),
            None => None,
        };
        info!(node = cfg.node_id, chains = ?cfg.chains.iter().map(|c| c.id).collect::<Vec<_>>(), "node started");
        Ok(Node { id: cfg.node_id, endpoint, replicas, metrics_task })
    }

    /// The node id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The replica of `chain`, if served here.
    pub fn replica(&self, chain: u32) -> Option<&Arc<Replica>> {
        self.replicas.get(&chain)
    }

    /// Stop Raft on every chain, then close the endpoint.
    pub async fn shutdown(self) {
        for r in self.replicas.values() {
            r.shutdown().await;
        }
        if let Some(t) = self.metrics_task {
            t.abort();
        }
        self.endpoint.close().await;
        info!(node = self.id, "node stopped");
    }
}
