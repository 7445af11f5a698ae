//! Serve peers' requests and call peers over QUIC, keeping one connection per peer.
//!
//! ```text
//!  bind ─► quinn endpoint (server config + default client config) ─► accept loop
//!            accept loop ─► task per connection: handshake ─► PeerIdentity ─► adopt ─► serve
//!            serve ─► task per stream: read request ─► Handler (own task) ─► write answer
//!
//!  call(node, addr) ─► slot (node, addr): live connection? ─ yes ─► reuse
//!                                                         └ no ─► dial "n<node>.elchain" (one
//!                                                                 dialler, the others wait) ─► serve
//!                   ─► open stream ─► request, finish ─► answer
//! ```
//!
//! Streams on a connection are served whoever dialled it, and a connection a peer dialled to
//! us fills the slot we would dial it in: two nodes calling each other share one connection.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{Connection, ConnectionError, ReadError, RecvStream, SendStream, VarInt, WriteError};
use tracing::{debug, error, warn};

use super::frame::{self, code, ReadFailure, Status};
use super::tls::{self, Identity, PeerIdentity};
use super::{Handler, NetError, MAX_FRAME};

/// Interval of keep-alive packets on an idle connection, well below [`IDLE_TIMEOUT`] so that a
/// live peer never looks dead.
pub const KEEP_ALIVE: Duration = Duration::from_secs(2);
/// A connection with nothing heard from the peer for this long is closed; the next call redials.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests one peer may have in flight on a connection at once; more wait for a free stream.
pub const MAX_CONCURRENT_REQUESTS: u32 = 1024;

/// QUIC application code on connections this endpoint closes when it shuts down.
const SHUTDOWN: VarInt = VarInt::from_u32(0);
/// QUIC application code on a connection whose peer certificate could not be read.
const BAD_IDENTITY: VarInt = VarInt::from_u32(1);
/// How long `close` waits for peers to learn that the connections are closed.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// One dialled-or-adopted connection per (node, address); the async lock makes concurrent
/// callers wait for one dial instead of each starting its own.
type Slot = Arc<tokio::sync::Mutex<Option<Connection>>>;

/// A node's QUIC endpoint: serves requests with its [`Handler`] and calls other nodes.
///
/// Cloning gives another handle to the same endpoint. It serves until [`Endpoint::close`] is
/// called, even when every handle has been dropped.
#[derive(Clone)]
pub struct Endpoint {
    quic: quinn::Endpoint,
    shared: Arc<Shared>,
    local_addr: SocketAddr,
}

struct Shared {
    handler: Arc<dyn Handler>,
    peers: Mutex<HashMap<(u64, SocketAddr), Slot>>,
    closed: AtomicBool,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint").field("local_addr", &self.local_addr).finish_non_exhaustive()
    }
}

impl Endpoint {
    /// Bind a UDP socket, serve incoming requests with `handler`, and be ready to call out.
    pub async fn bind(addr: SocketAddr, identity: Identity, handler: Arc<dyn Handler>) -> Result<Self, NetError> {
        let transport = Arc::new(transport_config());
        let server_crypto = QuicServerConfig::try_from(identity.server_config().clone())
            .map_err(|e| NetError::Tls(format!("server configuration unusable for QUIC: {e}")))?;
        let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(server_crypto));
        server_config.transport_config(transport.clone());
        let client_crypto = QuicClientConfig::try_from(identity.client_config().clone())
            .map_err(|e| NetError::Tls(format!("client configuration unusable for QUIC: {e}")))?;
        let mut client_config = quinn::ClientConfig::new(Arc::new(client_crypto));
        client_config.transport_config(transport);

        let mut quic = quinn::Endpoint::server(server_config, addr)?;
        quic.set_default_client_config(client_config);
        let local_addr = quic.local_addr()?;
        let shared = Arc::new(Shared { handler, peers: Mutex::new(HashMap::new()), closed: AtomicBool::new(false) });
        tokio::spawn(accept_loop(quic.clone(), shared.clone()));
        Ok(Endpoint { quic, shared, local_addr })
    }

    /// The address the endpoint is bound to (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Connections open on this endpoint, dialled and accepted.
    pub fn open_connections(&self) -> usize {
        self.quic.open_connections()
    }

    /// Send one request to node `node_id` at `addr` and wait for its answer, within `timeout`.
    /// Reuses the one connection to that peer (re-dials when it has closed).
    ///
    /// The peer must present a certificate for `n<node_id>.elchain`. A request larger than
    /// [`MAX_FRAME`] fails with [`NetError::FrameTooLarge`] before anything is sent.
    pub async fn call(
        &self,
        node_id: u64,
        addr: SocketAddr,
        request: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, NetError> {
        let header = frame::request_header(request.len(), MAX_FRAME)?;
        let addr = canonical(addr);
        match tokio::time::timeout(timeout, self.call_once(node_id, addr, header, request)).await {
            Ok(result) => result,
            Err(_) => Err(NetError::Timeout(timeout)),
        }
    }

    async fn call_once(
        &self,
        node_id: u64,
        addr: SocketAddr,
        header: [u8; frame::REQUEST_HEADER_LEN],
        request: Bytes,
    ) -> Result<Bytes, NetError> {
        let len = request.len();
        let conn = self.connection(node_id, addr).await?;
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| lost(node_id, addr, e))?;
        frame::write_request(&mut send, header, request).await.map_err(|e| write_error(node_id, addr, len, e))?;
        let (status, payload) =
            frame::read_answer(&mut recv, MAX_FRAME).await.map_err(|f| read_error(node_id, addr, len, f))?;
        match status {
            Status::Ok => Ok(payload),
            Status::RemoteError => Err(NetError::Remote(String::from_utf8_lossy(&payload).into_owned())),
        }
    }

    /// The live connection to `node_id` at `addr`, dialled if there is none.
    pub(crate) async fn connection(&self, node_id: u64, addr: SocketAddr) -> Result<Connection, NetError> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(NetError::Closed("endpoint closed".into()));
        }
        let slot = self.shared.slot((node_id, addr));
        let mut held = slot.lock().await;
        if let Some(conn) = held.as_ref() {
            if conn.close_reason().is_none() {
                return Ok(conn.clone());
            }
        }
        *held = None;
        let connecting = self.quic.connect(addr, &tls::server_name(node_id)).map_err(|e| match e {
            quinn::ConnectError::EndpointStopping => NetError::Closed("endpoint closed".into()),
            e => NetError::Connect { node_id, addr, reason: e.to_string() },
        })?;
        let conn = connecting.await.map_err(|e| dial_error(node_id, addr, e))?;
        // The verifier matched the server name, so the certificate is node_id's; reading it
        // again only fills in member and role for the handler.
        let peer = tls::peer_identity(&conn).unwrap_or_else(|e| {
            warn!(node_id, %addr, error = %e, "cannot read the certificate of a verified peer");
            PeerIdentity { node_id: Some(node_id), ..PeerIdentity::default() }
        });
        debug!(node_id, %addr, "dialled");
        *held = Some(conn.clone());
        tokio::spawn(serve_connection(conn.clone(), peer, self.shared.handler.clone()));
        Ok(conn)
    }

    /// Close all connections and stop serving.
    pub async fn close(&self) {
        self.shared.closed.store(true, Ordering::Release);
        self.quic.close(SHUTDOWN, b"endpoint closed");
        self.shared.peers.lock().unwrap_or_else(|e| e.into_inner()).clear();
        // Waiting lets the close reach peers, which then fail fast instead of after IDLE_TIMEOUT.
        let _ = tokio::time::timeout(CLOSE_GRACE, self.quic.wait_idle()).await;
    }
}

impl Shared {
    fn slot(&self, key: (u64, SocketAddr)) -> Slot {
        self.peers.lock().unwrap_or_else(|e| e.into_inner()).entry(key).or_default().clone()
    }

    /// Use a connection `peer` dialled to us for our calls to it, unless we hold a live one or
    /// are dialling it right now (then both stay open, and ours is used).
    fn adopt(&self, conn: &Connection, peer: &PeerIdentity) {
        let Some(node_id) = peer.node_id else { return };
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        let slot = self.slot((node_id, canonical(conn.remote_address())));
        let Ok(mut held) = slot.try_lock() else { return };
        if held.as_ref().is_none_or(|c| c.close_reason().is_some()) {
            *held = Some(conn.clone());
        }
    }
}

fn transport_config() -> quinn::TransportConfig {
    let mut transport = quinn::TransportConfig::default();
    // Blocks travel as megabyte frames: let path MTU discovery go past the default 1,452 bytes
    // where the path allows (jumbo frames, loopback), so they take fewer, larger datagrams. It
    // probes and falls back, so an ordinary 1,500-byte path keeps working as before.
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    mtu.upper_bound(MTU_UPPER_BOUND);
    transport.mtu_discovery_config(Some(mtu));
    transport
        .keep_alive_interval(Some(KEEP_ALIVE))
        .max_idle_timeout(Some(VarInt::from_u32(IDLE_TIMEOUT.as_millis() as u32).into()))
        .max_concurrent_bidi_streams(VarInt::from_u32(MAX_CONCURRENT_REQUESTS))
        .max_concurrent_uni_streams(VarInt::from_u32(0));
    transport
}

/// The largest UDP payload path MTU discovery tries.
const MTU_UPPER_BOUND: u16 = 16_384;

/// The same peer reached over IPv4 or IPv4-mapped IPv6 is one peer.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

async fn accept_loop(quic: quinn::Endpoint, shared: Arc<Shared>) {
    while let Some(incoming) = quic.accept().await {
        let shared = shared.clone();
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            let conn = match incoming.await {
                Ok(conn) => conn,
                Err(e) if is_tls(&e) => {
                    warn!(%remote, error = %e, "refused a peer in the handshake");
                    return;
                }
                Err(e) => {
                    debug!(%remote, error = %e, "incoming handshake failed");
                    return;
                }
            };
            let peer = match tls::peer_identity(&conn) {
                Ok(peer) => peer,
                Err(e) => {
                    warn!(%remote, error = %e, "closing a connection whose certificate cannot be read");
                    conn.close(BAD_IDENTITY, b"unreadable certificate");
                    return;
                }
            };
            debug!(%remote, node_id = ?peer.node_id, member = ?peer.member, "accepted");
            shared.adopt(&conn, &peer);
            serve_connection(conn, peer, shared.handler.clone()).await;
        });
    }
}

async fn serve_connection(conn: Connection, peer: PeerIdentity, handler: Arc<dyn Handler>) {
    loop {
        match conn.accept_bi().await {
            Ok((send, recv)) => {
                tokio::spawn(serve_stream(send, recv, peer.clone(), handler.clone()));
            }
            Err(e) => {
                debug!(node_id = ?peer.node_id, remote = %conn.remote_address(), error = %e, "connection ended");
                return;
            }
        }
    }
}

async fn serve_stream(mut send: SendStream, mut recv: RecvStream, peer: PeerIdentity, handler: Arc<dyn Handler>) {
    let request = match frame::read_request(&mut recv, MAX_FRAME).await {
        Ok(request) => request,
        Err(failure) => {
            let code = match &failure {
                ReadFailure::Frame(NetError::FrameTooLarge { .. }) => code::FRAME_TOO_LARGE,
                ReadFailure::Frame(_) | ReadFailure::Truncated { .. } => code::BAD_FRAME,
                ReadFailure::Stream(_) => code::CANCELLED,
            };
            debug!(node_id = ?peer.node_id, ?failure, "refused a request frame");
            let _ = recv.stop(code);
            let _ = send.reset(code);
            return;
        }
    };
    let node_id = peer.node_id;
    // Its own task, so that a panicking handler becomes a remote error instead of a silent stream.
    let answer = match tokio::spawn(handler.handle(peer, request)).await {
        Ok(answer) => answer,
        Err(e) => {
            error!(?node_id, error = %e, "request handler failed");
            Err(if e.is_panic() { "handler panicked" } else { "handler cancelled" }.to_owned())
        }
    };
    let (status, payload) = match answer {
        Ok(payload) if payload.len() <= MAX_FRAME => (Status::Ok, payload),
        Ok(payload) => {
            error!(?node_id, len = payload.len(), "answer too large to send");
            (Status::RemoteError, Bytes::from(format!("answer of {} bytes exceeds {MAX_FRAME}", payload.len())))
        }
        Err(mut message) => {
            if message.len() > MAX_FRAME {
                let mut end = MAX_FRAME;
                while !message.is_char_boundary(end) {
                    end -= 1;
                }
                message.truncate(end);
            }
            (Status::RemoteError, Bytes::from(message))
        }
    };
    let header = match frame::answer_header(status, payload.len(), MAX_FRAME) {
        Ok(header) => header,
        Err(e) => {
            error!(?node_id, error = %e, "cannot frame an answer");
            let _ = send.reset(code::BAD_FRAME);
            return;
        }
    };
    if let Err(e) = frame::write_answer(&mut send, header, payload).await {
        debug!(?node_id, error = %e, "answer not delivered");
    }
}

/// Whether a connection failed on a TLS alert: QUIC carries them as codes 0x100..=0x1ff.
fn is_tls(e: &ConnectionError) -> bool {
    let code = match e {
        ConnectionError::TransportError(t) => t.code,
        ConnectionError::ConnectionClosed(c) => c.error_code,
        _ => return false,
    };
    (0x100..0x200).contains(&u64::from(code))
}

fn dial_error(node_id: u64, addr: SocketAddr, e: ConnectionError) -> NetError {
    match e {
        e if is_tls(&e) => NetError::Handshake { node_id, addr, reason: e.to_string() },
        ConnectionError::LocallyClosed => NetError::Closed("endpoint closed".into()),
        e => NetError::Connect { node_id, addr, reason: e.to_string() },
    }
}

/// An established connection failed. TLS codes still mean the handshake: in TLS 1.3 the
/// client finishes before the server has judged its certificate, so a refusal arrives later.
fn lost(node_id: u64, addr: SocketAddr, e: ConnectionError) -> NetError {
    match e {
        e if is_tls(&e) => NetError::Handshake { node_id, addr, reason: e.to_string() },
        ConnectionError::LocallyClosed => NetError::Closed("endpoint closed".into()),
        e => NetError::Closed(format!("connection to node {node_id} at {addr}: {e}")),
    }
}

/// What a stream code from the peer says about our request of `len` bytes.
fn refused(node_id: u64, code: VarInt, len: usize) -> NetError {
    if code == code::FRAME_TOO_LARGE {
        NetError::FrameTooLarge { len, max: MAX_FRAME }
    } else if code == code::BAD_FRAME {
        NetError::Protocol(format!("node {node_id} refused the request frame"))
    } else {
        NetError::Closed(format!("node {node_id} reset the stream (code {code})"))
    }
}

fn write_error(node_id: u64, addr: SocketAddr, len: usize, e: WriteError) -> NetError {
    match e {
        WriteError::Stopped(code) => refused(node_id, code, len),
        WriteError::ConnectionLost(e) => lost(node_id, addr, e),
        e => NetError::Closed(format!("request stream to node {node_id}: {e}")),
    }
}

fn read_error(node_id: u64, addr: SocketAddr, len: usize, failure: ReadFailure) -> NetError {
    match failure {
        ReadFailure::Frame(e) => e,
        ReadFailure::Truncated { expected, got } => {
            NetError::Closed(format!("answer from node {node_id} ended after {got} of {expected} bytes"))
        }
        ReadFailure::Stream(ReadError::Reset(code)) => refused(node_id, code, len),
        ReadFailure::Stream(ReadError::ConnectionLost(e)) => lost(node_id, addr, e),
        ReadFailure::Stream(e) => NetError::Closed(format!("answer stream from node {node_id}: {e}")),
    }
}
