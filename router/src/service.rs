//! Run a router: follow the meta chain, serve the REST API.
//!
//! ```text
//!  elchain router --config router.toml
//!    load identity ─► QUIC client (meta replicas) ─► read the meta chain ─► serve HTTP
//!    every refresh_ms: re-read the meta chain (new chains, shard map versions)
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use elchain_shard::net::{Identity, TlsFiles};
use elchain_shard::node::client::Client;
use elchain_types::crypto::Keypair;
use tokio::sync::oneshot;
use tracing::info;

use crate::api::{App, Metrics};
use crate::config::RouterConfig;
use crate::directory::{Directory, META};
use crate::guard::{Challenges, RateLimiter};

/// The development authorisation-service key's name (public knowledge; never in production).
pub const DEV_SERVICE_KEY: &str = "authorisation-service";

/// Why a router cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// TLS material.
    #[error("cannot load the router's TLS identity: {0}")]
    Identity(String),
    /// The authorisation key.
    #[error("cannot load the authorisation key: {0}")]
    ServiceKey(String),
    /// The QUIC endpoint.
    #[error("cannot open the QUIC endpoint: {0}")]
    Quic(String),
    /// The HTTP port.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A running router.
pub struct Running {
    addr: SocketAddr,
    directory: Directory,
    client: Client,
    stop: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    follower: tokio::task::JoinHandle<()>,
}

/// Start a router from its configuration.
pub async fn start(cfg: RouterConfig) -> Result<Running, StartError> {
    let identity = Identity::load(&TlsFiles {
        ca_cert: cfg.tls.ca_cert.clone(),
        cert: cfg.tls.cert.clone(),
        key: cfg.tls.key.clone(),
        crl: None,
    })
    .map_err(|e| StartError::Identity(e.to_string()))?;
    let service = if cfg.authorisation_key == "dev" {
        Keypair::dev(DEV_SERVICE_KEY)
    } else {
        crate::keyfile::load(std::path::Path::new(&cfg.authorisation_key))
            .map_err(|e| StartError::ServiceKey(e.to_string()))?
    };
    let meta = cfg.meta.iter().map(|p| (p.id, p.addr)).collect();
    let client = Client::new(identity, meta).await.map_err(|e| StartError::Quic(e.to_string()))?;
    client.set_replicas(META, cfg.meta.iter().map(|p| p.id).collect());
    let timeout = Duration::from_millis(cfg.chain_timeout_ms);
    let directory = Directory::new(client.clone(), timeout);
    let follower = directory.clone().follow(Duration::from_millis(cfg.refresh_ms));
    let l = &cfg.limits;
    let app = Arc::new(App {
        client: client.clone(),
        directory: directory.clone(),
        service,
        clients: RateLimiter::new(l.requests_per_second, l.burst),
        signers: RateLimiter::new(l.txs_per_second_per_signer, l.txs_per_second_per_signer.saturating_mul(2)),
        limits: cfg.limits.clone(),
        challenges: Challenges::default(),
        timeout,
        metrics: Metrics::default(),
    });
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| StartError::Listen { addr: cfg.listen, source })?;
    let addr = listener.local_addr().map_err(|source| StartError::Listen { addr: cfg.listen, source })?;
    let (stop, stopped) = oneshot::channel::<()>();
    let service = crate::api::router(app).into_make_service_with_connect_info::<SocketAddr>();
    let server = tokio::spawn(async move {
        axum::serve(listener, service)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    info!(%addr, "router serving the REST API");
    Ok(Running { addr, directory, client, stop: Some(stop), server, follower })
}

impl Running {
    /// The HTTP address it serves on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The meta-chain view.
    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    /// Wait until the meta chain has been read once, or `deadline` passes.
    pub async fn wait_ready(&self, deadline: Duration) -> bool {
        let start = std::time::Instant::now();
        while start.elapsed() < deadline {
            if self.directory.view().is_some() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// Finish the requests in flight and stop.
    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut self.server).await;
        self.follower.abort();
        self.client.close().await;
        info!("router stopped");
    }
}
