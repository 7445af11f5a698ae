//! Carry byte requests between consortium nodes over one mutually authenticated QUIC connection per peer.
//!
//! ```text
//!  caller ── Endpoint::call(node 2, addr, bytes) ──┐
//!                                                  │ cached connection to (2, addr), dialled once
//!                                                  │ TLS 1.3, ALPN "elchain/1", server name "n2.elchain"
//!                                                  ▼
//!   one bidirectional stream per request:  u32-LE len ‖ payload ── finish ──►
//!                                                  │
//!                 node 2: accept loop ─► task per connection ─► task per stream
//!                         client cert chained to the CA, not in the CRL ─► PeerIdentity
//!                                                  │
//!                                                  ▼
//!                         Handler::handle(peer, bytes) ─► Ok(answer) | Err(message)
//!   ◄── u8 status (0 ok, 1 remote error) ‖ u32-LE len ‖ payload ── finish
//! ```
//!
//! - [`tls`]: certificate files, the rustls configurations built from them, and the
//!   [`PeerIdentity`] read from a verified certificate.
//! - [`frame`]: the length-prefixed request and answer frames and their size limit.
//! - [`endpoint`]: the QUIC endpoint: serving, the connection cache, calls.
//!
//! Every chain two nodes share travels over the same connection: a connection costs a handshake
//! and keep-alive traffic, a stream costs nothing. A connection a peer dialled to us is reused
//! for our calls to that peer when it came from the address we would dial, so two nodes that
//! call each other usually hold one connection between them, not two.

pub mod endpoint;
pub mod frame;
pub mod sim;
pub mod tls;

#[cfg(test)]
pub(crate) mod test_pki;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;

pub use endpoint::Endpoint;
pub use sim::{SimNet, SimPort};
pub use tls::{Identity, PeerIdentity, TlsFiles};

/// Largest request or answer payload, in bytes; snapshot chunks travel as requests too.
pub const MAX_FRAME: usize = 64 * 1024 * 1024;

/// The one application protocol both sides must agree on during the handshake.
pub const ALPN: &[u8] = b"elchain/1";

/// A boxed future that can move between threads, as returned by [`Handler::handle`].
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Answers the requests that peers send to this node.
///
/// Boxed futures keep the trait dyn-compatible, so an [`Endpoint`] takes an `Arc<dyn Handler>`
/// and the Raft and client layers can sit behind one dispatching handler.
pub trait Handler: Send + Sync + 'static {
    /// Answer one request from `peer`. `Err` is sent back as a remote error.
    fn handle(&self, peer: PeerIdentity, request: Bytes) -> BoxFuture<Result<Bytes, String>>;
}

/// A [`Handler`] made from an async closure: `FnHandler(|peer, request| async move { .. })`.
pub struct FnHandler<F>(pub F);

impl<F, Fut> Handler for FnHandler<F>
where
    F: Fn(PeerIdentity, Bytes) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Bytes, String>> + Send + 'static,
{
    fn handle(&self, peer: PeerIdentity, request: Bytes) -> BoxFuture<Result<Bytes, String>> {
        Box::pin((self.0)(peer, request))
    }
}

/// How a node or client reaches its peers: QUIC with mutual TLS in every real deployment, or
/// the deterministic simulator's in-memory network ([`sim`]). Clones share the connection.
#[derive(Clone, Debug)]
pub enum Wire {
    /// A QUIC endpoint.
    Quic(Endpoint),
    /// A port on a simulated network.
    Sim(SimPort),
}

impl Wire {
    /// Send one request to node `node_id` (at `addr`, for QUIC) and wait for its answer, within
    /// `timeout`.
    pub async fn call(
        &self,
        node_id: u64,
        addr: SocketAddr,
        request: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, NetError> {
        match self {
            Wire::Quic(e) => e.call(node_id, addr, request, timeout).await,
            Wire::Sim(p) => p.call(node_id, request, timeout).await,
        }
    }

    /// Stop serving and calling.
    pub async fn close(&self) {
        match self {
            Wire::Quic(e) => e.close().await,
            Wire::Sim(p) => p.detach(),
        }
    }

    /// True on the simulated network.
    pub fn is_simulated(&self) -> bool {
        matches!(self, Wire::Sim(_))
    }
}

impl From<Endpoint> for Wire {
    fn from(e: Endpoint) -> Wire {
        Wire::Quic(e)
    }
}

/// What can go wrong loading an identity or calling a peer.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A certificate, key or CRL file could not be read or parsed.
    #[error("cannot load {path}: {reason}")]
    Config {
        /// The file at fault.
        path: PathBuf,
        /// Why it was refused.
        reason: String,
    },
    /// The loaded material does not make a valid TLS or QUIC configuration.
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// The handshake with a peer failed on a certificate: one side did not accept the other's
    /// (another CA, revoked, or not the node that was dialled).
    #[error("TLS handshake with node {node_id} at {addr} refused: {reason}")]
    Handshake {
        /// The node that was dialled.
        node_id: u64,
        /// The address that was dialled.
        addr: SocketAddr,
        /// The TLS failure, as reported by either side.
        reason: String,
    },
    /// The peer could not be reached or the connection could not be set up.
    #[error("cannot connect to node {node_id} at {addr}: {reason}")]
    Connect {
        /// The node that was dialled.
        node_id: u64,
        /// The address that was dialled.
        addr: SocketAddr,
        /// What went wrong.
        reason: String,
    },
    /// No answer came within the caller's time limit.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// A frame is larger than [`MAX_FRAME`]; refused before it was read or sent.
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes")]
    FrameTooLarge {
        /// Size of the refused payload.
        len: usize,
        /// The limit it broke.
        max: usize,
    },
    /// The peer's handler answered with an error.
    #[error("remote error: {0}")]
    Remote(String),
    /// The connection or stream closed before the answer arrived, or this endpoint is closed.
    #[error("connection closed: {0}")]
    Closed(String),
    /// The peer answered with bytes that do not follow the framing.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// A local socket operation failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl NetError {
    /// Whether the same call may succeed if tried again later: true for timeouts, unreachable
    /// peers and closed connections; false for configuration, certificate, framing and remote
    /// handler errors, which would fail the same way again.
    pub fn is_retryable(&self) -> bool {
        match self {
            NetError::Connect { .. } | NetError::Timeout(_) | NetError::Closed(_) => true,
            NetError::Config { .. }
            | NetError::Tls(_)
            | NetError::Handshake { .. }
            | NetError::FrameTooLarge { .. }
            | NetError::Remote(_)
            | NetError::Protocol(_)
            | NetError::Io(_) => false,
        }
    }
}
