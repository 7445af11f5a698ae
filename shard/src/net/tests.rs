//! Exercise the transport end to end: real QUIC endpoints on 127.0.0.1 with rcgen certificates.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use super::frame::{self, code, ReadFailure};
use super::test_pki::TestCa;
use super::{BoxFuture, Endpoint, FnHandler, Handler, Identity, NetError, PeerIdentity, TlsFiles, MAX_FRAME};

/// Generous for a call that should succeed; failures are expected well before it.
const T: Duration = Duration::from_secs(5);

/// Echoes requests as `n<me>:<request>`, fails on `fail:<message>`, never answers `hang`, and
/// records who called.
struct TestHandler {
    me: u64,
    calls: AtomicUsize,
    seen: Mutex<Vec<PeerIdentity>>,
}

impl Handler for Arc<TestHandler> {
    fn handle(&self, peer: PeerIdentity, request: Bytes) -> BoxFuture<Result<Bytes, String>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.seen.lock().unwrap().push(peer);
        let me = self.me;
        Box::pin(async move {
            if let Some(message) = request.strip_prefix(b"fail:") {
                return Err(String::from_utf8_lossy(message).into_owned());
            }
            if &request[..] == b"hang" {
                std::future::pending::<()>().await;
            }
            let mut answer = format!("n{me}:").into_bytes();
            answer.extend_from_slice(&request);
            Ok(Bytes::from(answer))
        })
    }
}

struct Node {
    endpoint: Endpoint,
    handler: Arc<TestHandler>,
    key: Option<[u8; 32]>,
}

impl Node {
    async fn start(me: u64, files: &TlsFiles) -> Node {
        let handler = Arc::new(TestHandler { me, calls: AtomicUsize::new(0), seen: Mutex::new(Vec::new()) });
        let identity = Identity::load(files).unwrap();
        let key = identity.local().public_key;
        let endpoint = Endpoint::bind(localhost(), identity, Arc::new(handler.clone())).await.unwrap();
        Node { endpoint, handler, key }
    }

    fn endpoint_identity_key(&self) -> Option<[u8; 32]> {
        self.key
    }

    fn addr(&self) -> SocketAddr {
        self.endpoint.local_addr()
    }

    fn calls(&self) -> usize {
        self.handler.calls.load(Ordering::SeqCst)
    }
}

fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn ca(dir: &Path) -> TestCa {
    TestCa::new(&dir.join("ca"), "elchain test CA")
}

#[tokio::test]
async fn two_nodes_call_each_other_and_share_one_connection() {
    let dir = tempdir();
    let ca = ca(dir.path());
    let a = Node::start(1, &ca.node(1, "TRN", "replica")).await;
    let b = Node::start(2, &ca.node(2, "HLT", "replica")).await;

    let calls: Vec<_> = (0..64)
        .map(|i| {
            let a = a.endpoint.clone();
            let addr = b.addr();
            tokio::spawn(async move { a.call(2, addr, Bytes::from(format!("req {i}")), T).await })
        })
        .collect();
    for (i, call) in calls.into_iter().enumerate() {
        assert_eq!(call.await.unwrap().unwrap(), format!("n2:req {i}").as_bytes());
    }
    assert_eq!(b.endpoint.call(1, a.addr(), Bytes::from_static(b"back"), T).await.unwrap(), &b"n1:back"[..]);

    // 64 concurrent calls one way and one the other way: one handshake, one connection each side.
    assert_eq!(a.endpoint.open_connections(), 1);
    assert_eq!(b.endpoint.open_connections(), 1);
    assert_eq!(b.calls(), 64);
    assert_eq!(a.calls(), 1);
}

#[tokio::test]
async fn the_handler_sees_the_callers_identity() {
    let dir = tempdir();
    let ca = ca(dir.path());
    let server = Node::start(1, &ca.node(1, "TRN", "replica")).await;
    let caller = Node::start(7, &ca.node(7, "HLT", "router")).await;

    caller.endpoint.call(1, server.addr(), Bytes::from_static(b"hi"), T).await.unwrap();
    let seen = server.handler.seen.lock().unwrap().clone();
    let key = caller.endpoint_identity_key();
    assert_eq!(
        seen,
        vec![PeerIdentity {
            node_id: Some(7),
            member: Some("HLT".into()),
            role: Some("router".into()),
            public_key: key
        }]
    );
    assert!(key.is_some(), "the caller's Ed25519 key is read from its certificate");
}

#[tokio::test]
async fn a_node_with_a_certificate_from_another_ca_is_refused() {
    let dir = tempdir();
    let ca = ca(dir.path());
    let rogue_ca = TestCa::new(&dir.path().join("rogue"), "elchain test CA");
    let server = Node::start(1, &ca.node(1, "TRN", "replica")).await;
    // It trusts the real CA, so only the server's check of its certificate can stop it.
    let rogue_files = TlsFiles { ca_cert: ca.ca_path(), ..rogue_ca.node(3, "TRN", "replica") };
    let rogue = Node::start(3, &rogue_files).await;

    let err = rogue.endpoint.call(1, server.addr(), Bytes::from_static(b"let me in"), T).await.unwrap_err();
    assert!(
        matches!(&err, NetError::Handshake { node_id: 1, reason, .. } if reason.contains("BadSignature")),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert_eq!(server.calls(), 0);

    // The other way round, the real node refuses the rogue as a server.
    let err = server.endpoint.call(3, rogue.addr(), Bytes::from_static(b"hello?"), T).await.unwrap_err();
    assert!(
        matches!(&err, NetError::Handshake { node_id: 3, reason, .. } if reason.contains("BadSignature")),
        "{err:?}"
    );
    assert_eq!(rogue.calls(), 0);
}

#[tokio::test]
async fn a_revoked_node_is_refused() {
    let dir = tempdir();
    let ca = ca(dir.path());
    let server_files = TlsFiles { crl: Some(ca.crl(&[3])), ..ca.node(1, "TRN", "replica") };
    let server = Node::start(1, &server_files).await;
    let good = Node::start(2, &ca.node(2, "HLT", "replica")).await;
    let revoked = Node::start(3, &ca.node(3, "EDU", "replica")).await;

    let err = revoked.endpoint.call(1, server.addr(), Bytes::from_static(b"still me"), T).await.unwrap_err();
    assert!(matches!(&err, NetError::Handshake { node_id: 1, reason, .. } if reason.contains("Revoked")), "{err:?}");
    assert_eq!(server.calls(), 0);

    assert_eq!(good.endpoint.call(1, server.addr(), Bytes::from_static(b"ok"), T).await.unwrap(), &b"n1:ok"[..]);
    assert_eq!(server.calls(), 1);

    // The server's CRL also applies when it dials: it will not talk to node 3 as a server.
    let err = server.endpoint.call(3, revoked.addr(), Bytes::from_static(b"x"), T).await.unwrap_err();
    assert!(matches!(&err, NetError::Handshake { node_id: 3, reason, .. } if reason.contains("Revoked")), "{err:?}");
}

#[tokio::test]
async fn calling_the_wrong_node_at_an_address_fails_on_the_server_name() {
    let dir = tempdir();
    let ca = ca(dir.path());
    let caller = Node::start(1, &ca.node(1, "TRN", "replica")).await;
    let two = Node::start(2, &ca.node(2, "HLT", "replica")).await;

    let err = caller.endpoint.call(3, two.addr(), Bytes::from_static(b"are you 3?"), T).await.unwrap_err();
    assert!(matches!(&err, NetError::Handshake { node_id: 3, reason, .. } if reason.contains("n3.elchain")), "{err:?}");
    assert!(!err.is_retryable());
    assert_eq!(two.calls(), 0);
    // The same address under its own node id works.
    assert_eq!(caller.endpoint.call(2, two.addr(), Bytes::from_static(b"2"), T).await.unwrap(), &b"n2:2"[..]);
}

#[tokio::test]
async fn oversized_and_broken_frames_are_refused_and_the_server_keeps_serving() {
    let dir = tempdir();
    let ca = ca(dir.path());
    let a = Node::start(1, &ca.node(1, "TRN", "replica")).await;
    let b = Node::start(2, &ca.node(2, "HLT", "replica")).await;
    assert_eq!(a.endpoint.call(2, b.addr(), Bytes::from_static(b"warm"), T).await.unwrap(), &b"n2:warm"[..]);

    // Refused before anything is sent.
    let err = a.endpoint.call(2, b.addr(), Bytes::from(vec![0; MAX_FRAME + 1]), T).await.unwrap_err();
    assert!(matches!(err, NetError::FrameTooLarge { len, max: MAX_FRAME } if len == MAX_FRAME + 1), "{err:?}");
    assert!(!err.is_retryable());

    // A peer that announces too much is refused from the header alone.
    let conn = a.endpoint.connection(2, b.addr()).await.unwrap();
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let header = ((MAX_FRAME + 1) as u32).to_le_bytes();
    send.write_all(&header).await.unwrap();
    send.write_all(b"some of it").await.unwrap();
    let failure = frame::read_answer(&mut recv, MAX_FRAME).await.unwrap_err();
    assert!(
        matches!(failure, ReadFailure::Stream(quinn::ReadError::Reset(c)) if c == code::FRAME_TOO_LARGE),
        "{failure:?}"
    );

    // A frame that ends before its announced length is refused too.
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&10u32.to_le_bytes()).await.unwrap();
    send.write_all(b"abc").await.unwrap();
    send.finish().unwrap();
    let failure = frame::read_answer(&mut recv, MAX_FRAME).await.unwrap_err();
    assert!(matches!(failure, ReadFailure::Stream(quinn::ReadError::Reset(c)) if c == code::BAD_FRAME), "{failure:?}");

    // Same connection, still serving; the handler never saw the bad frames.
    assert_eq!(a.endpoint.call(2, b.addr(), Bytes::from_static(b"after"), T).await.unwrap(), &b"n2:after"[..]);
    assert_eq!(a.endpoint.open_connections(), 1);
    assert_eq!(b.calls(), 2);
}

#[tokio::test]
async fn a_remote_handler_error_comes_back_as_remote() {
    let dir = tempdir();
    let ca = ca(dir.path());
    let a = Node::start(1, &ca.node(1, "TRN", "replica")).await;
    let b = Node::start(2, &ca.node(2, "HLT", "replica")).await;

    let err = a.endpoint.call(2, b.addr(), Bytes::from_static(b"fail:no chain 7 here"), T).await.unwrap_err();
    assert!(matches!(&err, NetError::Remote(m) if m == "no chain 7 here"), "{err:?}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn a_slow_handler_times_out_without_blocking_other_requests() {
    let dir = tempdir();
    let ca = ca(dir.path());
    let a = Node::start(1, &ca.node(1, "TRN", "replica")).await;
    let b = Node::start(2, &ca.node(2, "HLT", "replica")).await;

    let hung = {
        let a = a.endpoint.clone();
        let addr = b.addr();
        tokio::spawn(async move { a.call(2, addr, Bytes::from_static(b"hang"), Duration::from_millis(300)).await })
    };
    assert_eq!(a.endpoint.call(2, b.addr(), Bytes::from_static(b"quick"), T).await.unwrap(), &b"n2:quick"[..]);
    let err = hung.await.unwrap().unwrap_err();
    assert!(matches!(err, NetError::Timeout(d) if d == Duration::from_millis(300)), "{err:?}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn a_closed_connection_is_redialled() {
    let dir = tempdir();
    let ca = ca(dir.path());
    let a = Node::start(1, &ca.node(1, "TRN", "replica")).await;
    let b = Node::start(2, &ca.node(2, "HLT", "replica")).await;

    a.endpoint.call(2, b.addr(), Bytes::from_static(b"1"), T).await.unwrap();
    let first = a.endpoint.connection(2, b.addr()).await.unwrap();
    first.close(0u32.into(), b"test");
    assert_eq!(a.endpoint.call(2, b.addr(), Bytes::from_static(b"2"), T).await.unwrap(), &b"n2:2"[..]);
    let second = a.endpoint.connection(2, b.addr()).await.unwrap();
    assert_ne!(first.stable_id(), second.stable_id());
}

#[tokio::test]
async fn after_close_calls_fail_and_peers_see_a_retryable_error() {
    let dir = tempdir();
    let ca = ca(dir.path());
    let a = Node::start(1, &ca.node(1, "TRN", "replica")).await;
    let b = Node::start(2, &ca.node(2, "HLT", "replica")).await;
    a.endpoint.call(2, b.addr(), Bytes::from_static(b"1"), T).await.unwrap();

    b.endpoint.close().await;
    let err = b.endpoint.call(1, a.addr(), Bytes::from_static(b"x"), T).await.unwrap_err();
    assert!(matches!(err, NetError::Closed(_)), "{err:?}");
    let err = a.endpoint.call(2, b.addr(), Bytes::from_static(b"2"), Duration::from_millis(500)).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
}

#[tokio::test]
async fn a_closure_can_be_the_handler() {
    let dir = tempdir();
    let ca = ca(dir.path());
    let a = Node::start(1, &ca.node(1, "TRN", "replica")).await;
    let handler = FnHandler(|peer: PeerIdentity, request: Bytes| async move {
        Ok(Bytes::from(format!("{} from {:?}", request.len(), peer.node_id)))
    });
    let b = Endpoint::bind(localhost(), Identity::load(&ca.node(2, "HLT", "replica")).unwrap(), Arc::new(handler))
        .await
        .unwrap();
    assert_eq!(
        a.endpoint.call(2, b.local_addr(), Bytes::from_static(b"abc"), T).await.unwrap(),
        &b"3 from Some(1)"[..]
    );
}

#[test]
fn identity_load_names_the_file_at_fault() {
    let dir = tempdir();
    let ca = ca(dir.path());
    let files = ca.node(1, "TRN", "replica");

    let missing = TlsFiles { key: dir.path().join("absent.key"), ..files.clone() };
    assert!(matches!(Identity::load(&missing), Err(NetError::Config { path, .. }) if path == missing.key));

    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let bad_ca = TlsFiles { ca_cert: garbage.clone(), ..files.clone() };
    assert!(matches!(Identity::load(&bad_ca), Err(NetError::Config { path, .. }) if path == garbage));
    let bad_crl = TlsFiles { crl: Some(garbage.clone()), ..files.clone() };
    assert!(matches!(Identity::load(&bad_crl), Err(NetError::Config { path, .. }) if path == garbage));

    let identity = Identity::load(&files).unwrap();
    assert_eq!(
        identity.local(),
        &PeerIdentity {
            node_id: Some(1),
            member: Some("TRN".into()),
            role: Some("replica".into()),
            public_key: identity.local().public_key
        }
    );
    let signer = identity.signing_keypair().expect("an Ed25519 node key");
    assert_eq!(Some(signer.public().0), identity.local().public_key, "the signing key matches the certificate");
}

#[test]
fn a_certificate_naming_two_nodes_has_no_node_id() {
    let dir = tempdir();
    let ca = ca(dir.path());
    let files = ca.node_with_names(4, "TRN", "replica", vec!["n4.elchain".into(), "n5.elchain".into()]);
    assert_eq!(Identity::load(&files).unwrap().local().node_id, None);
    let files = ca.node_with_names(6, "TRN", "replica", vec!["n6.elchain".into(), "n6.elchain".into()]);
    assert_eq!(Identity::load(&files).unwrap().local().node_id, Some(6));
}

#[test]
fn retryable_errors_are_the_transient_ones() {
    let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
    assert!(NetError::Timeout(T).is_retryable());
    assert!(NetError::Connect { node_id: 1, addr, reason: String::new() }.is_retryable());
    assert!(NetError::Closed(String::new()).is_retryable());
    assert!(!NetError::Handshake { node_id: 1, addr, reason: String::new() }.is_retryable());
    assert!(!NetError::Config { path: "x".into(), reason: String::new() }.is_retryable());
    assert!(!NetError::Remote(String::new()).is_retryable());
    assert!(!NetError::FrameTooLarge { len: 2, max: 1 }.is_retryable());
}
