//! The deterministic simulator's network: every node of a cluster in one process, each request
//! handed to the target node's [`Handler`] after a simulated delay.
//!
//! ```text
//!  SimPort(node 1).call(node 2, bytes) ─► link 1→2 up? ─no─► dropped: the caller waits out its timeout
//!        │ yes                              node 2 gone? ─► NetError::Closed after the delay
//!        ▼
//!  sleep(latency + jitter + slow(1) + slow(2))  (tokio time: simulated when the runtime is paused)
//!        ▼
//!  node 2's Handler::handle(identity of node 1, bytes)   in its own task, as a server would
//!        ▼
//!  link 2→1 still up? ─► sleep(delay back) ─► answer        (else dropped)
//! ```
//!
//! Built for a current-thread tokio runtime started with paused time: with no threads and no
//! real I/O, the order in which tasks run depends only on the order in which they were woken,
//! and every delay comes from one seeded random generator, so the same seed gives the same run.
//! It carries the same request and answer bytes as the QUIC endpoint; it does not model
//! bandwidth, reordering within a link or TLS (the peer identity is given at attach time).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{Handler, NetError, PeerIdentity, MAX_FRAME};

/// An in-memory network shared by the nodes of one simulated cluster. Clones share it.
#[derive(Clone)]
pub struct SimNet {
    inner: Arc<Mutex<Inner>>,
}

struct Attached {
    handler: Arc<dyn Handler>,
    identity: PeerIdentity,
}

struct Inner {
    nodes: BTreeMap<u64, Attached>,
    /// Nodes cut off from every other node.
    isolated: BTreeSet<u64>,
    /// Extra one-way delay added to every message to or from a node (a slow network).
    slow: BTreeMap<u64, Duration>,
    latency: Duration,
    jitter: Duration,
    rng: StdRng,
    delivered: u64,
    dropped: u64,
}

impl Inner {
    fn delay(&mut self, from: u64, to: u64) -> Duration {
        let jitter = match self.jitter.as_micros() as u64 {
            0 => Duration::ZERO,
            j => Duration::from_micros(self.rng.gen_range(0..=j)),
        };
        let slow = |n| self.slow.get(&n).copied().unwrap_or_default();
        self.latency + jitter + slow(from) + slow(to)
    }

    fn link_up(&self, from: u64, to: u64) -> bool {
        !self.isolated.contains(&from) && !self.isolated.contains(&to)
    }
}

impl std::fmt::Debug for SimNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let i = self.lock();
        f.debug_struct("SimNet")
            .field("nodes", &i.nodes.keys().collect::<Vec<_>>())
            .field("isolated", &i.isolated)
            .field("delivered", &i.delivered)
            .field("dropped", &i.dropped)
            .finish()
    }
}

impl SimNet {
    /// A network whose one-way delay is `latency` plus up to `jitter`, drawn from `seed`.
    pub fn new(seed: u64, latency: Duration, jitter: Duration) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                nodes: BTreeMap::new(),
                isolated: BTreeSet::new(),
                slow: BTreeMap::new(),
                latency,
                jitter,
                rng: StdRng::seed_from_u64(seed),
                delivered: 0,
                dropped: 0,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Put node `id` on the network: its peers see `identity`, its requests go to `handler`.
    /// Replaces an earlier attachment of the same id (a restarted node).
    pub fn attach(&self, id: u64, identity: PeerIdentity, handler: Arc<dyn Handler>) -> SimPort {
        self.lock().nodes.insert(id, Attached { handler, identity });
        SimPort { net: self.clone(), me: id }
    }

    /// Take node `id` off the network: calls to it fail as to a stopped process.
    pub fn detach(&self, id: u64) {
        self.lock().nodes.remove(&id);
    }

    /// Whether node `id` is attached.
    pub fn is_attached(&self, id: u64) -> bool {
        self.lock().nodes.contains_key(&id)
    }

    /// Cut node `id` off from every other node (`true`), or reconnect it.
    pub fn isolate(&self, id: u64, cut: bool) {
        let mut i = self.lock();
        if cut {
            i.isolated.insert(id);
        } else {
            i.isolated.remove(&id);
        }
    }

    /// Add `extra` to every message to or from node `id` (zero: back to normal).
    pub fn slow_down(&self, id: u64, extra: Duration) {
        let mut i = self.lock();
        if extra.is_zero() {
            i.slow.remove(&id);
        } else {
            i.slow.insert(id, extra);
        }
    }

    /// Messages sent over links that were up, and messages dropped on cut links, so far.
    pub fn counts(&self) -> (u64, u64) {
        let i = self.lock();
        (i.delivered, i.dropped)
    }
}

enum Arrival {
    Dropped,
    Gone,
    At(Arc<dyn Handler>),
}

impl SimNet {
    /// A message leaves `from` for `to`: its delay, or `None` when the link is cut (counted as
    /// dropped), and the sender's identity.
    fn depart(&self, from: u64, to: u64) -> (Option<Duration>, PeerIdentity) {
        let mut i = self.lock();
        let peer = i.nodes.get(&from).map(|a| a.identity.clone()).unwrap_or_default();
        if i.link_up(from, to) {
            i.delivered += 1;
            (Some(i.delay(from, to)), peer)
        } else {
            i.dropped += 1;
            (None, peer)
        }
    }

    /// The message reaches `to`: its handler, unless the link was cut meanwhile or `to` is gone.
    fn arrive(&self, from: u64, to: u64) -> Arrival {
        let mut i = self.lock();
        if !i.link_up(from, to) {
            i.dropped += 1;
            return Arrival::Dropped;
        }
        match i.nodes.get(&to) {
            Some(a) => Arrival::At(a.handler.clone()),
            None => Arrival::Gone,
        }
    }
}

/// One node's access to a [`SimNet`].
#[derive(Clone)]
pub struct SimPort {
    net: SimNet,
    me: u64,
}

impl std::fmt::Debug for SimPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimPort").field("node", &self.me).finish()
    }
}

impl SimPort {
    /// The node this port belongs to.
    pub fn node(&self) -> u64 {
        self.me
    }

    /// Send `request` to node `target` and wait for the answer, within `timeout`.
    pub async fn call(&self, target: u64, request: Bytes, timeout: Duration) -> Result<Bytes, NetError> {
        if request.len() > MAX_FRAME {
            return Err(NetError::FrameTooLarge { len: request.len(), max: MAX_FRAME });
        }
        match tokio::time::timeout(timeout, self.deliver(target, request)).await {
            Ok(r) => r,
            Err(_) => Err(NetError::Timeout(timeout)),
        }
    }

    async fn deliver(&self, target: u64, request: Bytes) -> Result<Bytes, NetError> {
        let me = self.me;
        let (there, peer) = self.net.depart(me, target);
        let Some(there) = there else { return std::future::pending().await };
        tokio::time::sleep(there).await;
        let handler = match self.net.arrive(me, target) {
            Arrival::Dropped => return std::future::pending().await,
            Arrival::Gone => return Err(NetError::Closed(format!("node {target} is not running"))),
            Arrival::At(h) => h,
        };
        // The server side runs on its own, as it would in another process: a caller that stops
        // waiting does not cancel work the target has begun.
        let answer = tokio::spawn(handler.handle(peer, request))
            .await
            .map_err(|e| NetError::Closed(format!("node {target} failed while answering: {e}")))?;
        let Some(back) = self.net.depart(target, me).0.filter(|_| self.net.is_attached(me)) else {
            return std::future::pending().await;
        };
        tokio::time::sleep(back).await;
        answer.map_err(NetError::Remote)
    }

    /// Leave the network.
    pub fn detach(&self) {
        self.net.detach(self.me);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::FnHandler;

    fn echo(net: &SimNet, id: u64) -> SimPort {
        let identity = PeerIdentity { node_id: Some(id), role: Some("replica".into()), ..PeerIdentity::default() };
        net.attach(
            id,
            identity,
            Arc::new(FnHandler(move |peer: PeerIdentity, req: Bytes| async move {
                Ok(Bytes::from(format!("{}:{}", peer.node_id.unwrap_or(0), req.len())))
            })),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_takes_the_simulated_delay_there_and_back() {
        let net = SimNet::new(1, Duration::from_millis(5), Duration::ZERO);
        let a = echo(&net, 1);
        echo(&net, 2);
        let t0 = tokio::time::Instant::now();
        let answer = a.call(2, Bytes::from_static(b"abc"), Duration::from_secs(1)).await.unwrap();
        assert_eq!(&answer[..], b"1:3", "the target sees the caller's identity");
        assert_eq!(t0.elapsed(), Duration::from_millis(10));
    }

    #[tokio::test(start_paused = true)]
    async fn an_isolated_node_is_unreachable_until_healed_and_a_stopped_one_fails_fast() {
        let net = SimNet::new(1, Duration::from_millis(1), Duration::from_millis(1));
        let a = echo(&net, 1);
        echo(&net, 2);
        net.isolate(2, true);
        let cut = a.call(2, Bytes::new(), Duration::from_millis(300)).await;
        assert!(matches!(cut, Err(NetError::Timeout(_))), "{cut:?}");
        net.isolate(2, false);
        assert!(a.call(2, Bytes::new(), Duration::from_millis(300)).await.is_ok());
        net.detach(2);
        let t0 = tokio::time::Instant::now();
        let gone = a.call(2, Bytes::new(), Duration::from_secs(5)).await;
        assert!(matches!(gone, Err(NetError::Closed(_))), "{gone:?}");
        assert!(t0.elapsed() < Duration::from_millis(10));
        assert_eq!(net.counts(), (3, 1), "two messages of the good call, one to the stopped node");
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_node_adds_its_delay_both_ways() {
        let net = SimNet::new(1, Duration::from_millis(1), Duration::ZERO);
        let a = echo(&net, 1);
        echo(&net, 2);
        net.slow_down(2, Duration::from_millis(100));
        let t0 = tokio::time::Instant::now();
        a.call(2, Bytes::new(), Duration::from_secs(1)).await.unwrap();
        assert_eq!(t0.elapsed(), Duration::from_millis(202));
    }
}
