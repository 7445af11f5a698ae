//! Replicated chains of real `elchain node` processes: faults, catch-up, membership, forgery.
//!
//! Each test keeps its load to seconds. Receipts are the acknowledgements; `check_history`
//! verifies them on every replica's store after the nodes stop.

use std::time::Duration;

use elchain_shard::ca;
use elchain_shard::net::{Identity, TlsFiles};
use elchain_shard::node::client::Client;
use elchain_shard::node::rpc::{ReceiptStatus, Request, Response};
use elchain_sim::cluster::{Cluster, CHAIN};
use elchain_sim::Workload;
use elchain_tests::history::{assert_verify_passes, check_history, start_cluster, store, Ack, Settings};
use elchain_types::codec::{Decode, Encode};
use elchain_types::ids::{ChainId, Timestamp};
use elchain_types::profile::Profile;
use elchain_types::reason::RejectCode;

const DEADLINE: Duration = Duration::from_secs(30);

fn workload(seed: u64) -> Workload {
    Workload::new(Profile::sample().into_dev_consortium().unwrap(), ChainId(CHAIN), seed, 2000)
}

fn now() -> Timestamp {
    Timestamp(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64)
}

/// Submit `batches` batches of `size` generated transactions; return the acknowledgements.
async fn load(client: &Client, w: &mut Workload, batches: usize, size: usize) -> Vec<Ack> {
    let mut acks = Vec::new();
    for _ in 0..batches {
        let txs: Vec<Vec<u8>> = w.batch(size, now()).iter().map(Encode::to_bytes).collect();
        let receipts = client.submit(CHAIN, txs, DEADLINE).await.expect("batch acknowledged");
        assert_eq!(receipts.len(), size);
        for r in receipts {
            assert!(matches!(r.status, ReceiptStatus::Committed { .. }), "generated tx refused: {r:?}");
            acks.push(Ack { receipt: r });
        }
    }
    acks
}

/// GET /metrics over plain HTTP/1.0.
fn scrape(addr: std::net::SocketAddr) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("metrics endpoint");
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.0 200") || out.starts_with("HTTP/1.1 200"), "{out}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_under_load_loses_nothing_acknowledged() {
    let mut cluster = start_cluster(3, Settings { metrics: true, ..Settings::default() });
    let client = cluster.client().await;
    let leader = client.wait_leader(CHAIN, DEADLINE).await.expect("a leader");
    let mut w = workload(1);
    let mut acks = load(&client, &mut w, 10, 50).await;

    // kill -9 the leader while load continues on the others.
    cluster.kill(leader);
    acks.extend(load(&client, &mut w, 10, 50).await);
    let new_leader = client.wait_leader(CHAIN, DEADLINE).await.expect("a new leader");
    assert_ne!(new_leader, leader);

    // The killed replica restarts from its own disk and catches up.
    cluster.spawn(leader);
    acks.extend(load(&client, &mut w, 5, 50).await);
    let height = cluster.wait_converged(&client, &[1, 2, 3], 1, DEADLINE).await;
    assert!(height >= 20, "height {height}");
    let metrics = scrape(cluster.nodes[&new_leader].metrics.unwrap());
    assert!(
        metrics.contains(&format!("elchain_applied_height{{node=\"{new_leader}\",chain=\"1\"}} {height}")),
        "{metrics}"
    );
    assert!(metrics.contains(&format!("elchain_is_leader{{node=\"{new_leader}\",chain=\"1\"}} 1")), "{metrics}");
    assert!(metrics.contains("elchain_log_fsync_seconds_total"), "{metrics}");
    client.close().await;
    cluster.stop_all();

    check_history(&cluster, &[1, 2, 3], &acks);
    for id in 1..=3 {
        assert_verify_passes(&cluster, id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_far_behind_catches_up_by_snapshot() {
    let mut cluster = start_cluster(3, Settings { snapshot_every: 10, keep_logs: 2, ..Settings::default() });
    let client = cluster.client().await;
    let leader = client.wait_leader(CHAIN, DEADLINE).await.expect("a leader");
    let lagging = (1..=3).find(|id| *id != leader).unwrap();
    let mut w = workload(2);
    let mut acks = load(&client, &mut w, 3, 20).await;
    cluster.stop(lagging);
    // Enough blocks that the log the lagging replica needs is purged behind a snapshot.
    acks.extend(load(&client, &mut w, 30, 20).await);
    cluster.spawn(lagging);
    cluster.wait_converged(&client, &[1, 2, 3], 30, DEADLINE).await;
    client.close().await;
    cluster.stop_all();
    assert!(cluster.log(lagging).contains("installed snapshot"), "no snapshot installed:\n{}", cluster.log(lagging));
    check_history(&cluster, &[1, 2, 3], &acks);
    assert_verify_passes(&cluster, lagging);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minority_partition_makes_no_progress_and_rejoins_without_divergence() {
    let mut cluster = start_cluster(3, Settings::default());
    let client = cluster.client().await;
    let leader = client.wait_leader(CHAIN, DEADLINE).await.expect("a leader");
    let mut w = workload(3);
    let mut acks = load(&client, &mut w, 3, 20).await;
    // Cut the leader off: it is the minority now.
    cluster.partition(leader, true);
    let before = client.status(leader, CHAIN).await.map(|s| s.height).unwrap_or(0);
    // The majority elects a new leader and goes on.
    let majority = client.fork();
    majority.forget_node(leader);
    let new_leader = majority.wait_leader(CHAIN, DEADLINE).await.expect("majority leader");
    assert_ne!(new_leader, leader);
    acks.extend(load(&majority, &mut w, 5, 20).await);
    // The cut-off node cannot commit anything alone.
    let alone = cluster.isolated_submit(leader, w.batch(5, now()).iter().map(Encode::to_bytes).collect()).await;
    assert!(alone.is_err(), "the minority committed: {alone:?}");
    cluster.partition(leader, false);
    let h = cluster.wait_converged(&client, &[1, 2, 3], before + 1, DEADLINE).await;
    assert!(h > before);
    client.close().await;
    cluster.stop_all();
    check_history(&cluster, &[1, 2, 3], &acks);
    for id in 1..=3 {
        assert_verify_passes(&cluster, id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_signature_proposed_by_the_leader_is_marked_invalid_everywhere() {
    let mut cluster = start_cluster(3, Settings { allow_raw_propose: true, ..Settings::default() });
    let client = cluster.client().await;
    client.wait_leader(CHAIN, DEADLINE).await.expect("a leader");
    let mut w = workload(4);
    let honest = w.batch(3, now());
    let mut forged = honest[1].to_bytes();
    let n = forged.len();
    forged[n - 10] ^= 0x55; // inside the last signature
    let txs = vec![honest[0].to_bytes(), forged, honest[2].to_bytes()];
    let resp = client.to_leader(Request::ProposeRaw { chain: CHAIN, txs }, DEADLINE).await.expect("proposed");
    let Response::Receipts(receipts) = resp else { panic!("unexpected {resp:?}") };
    let outcomes: Vec<u16> = receipts
        .iter()
        .map(|r| match r.status {
            ReceiptStatus::Committed { outcome, .. } => outcome,
            ReceiptStatus::Rejected { code } => code,
        })
        .collect();
    assert_eq!(outcomes[1], RejectCode::BadSignature.as_u16());
    let ReceiptStatus::Committed { height, .. } = receipts[1].status else { panic!() };
    cluster.wait_converged(&client, &[1, 2, 3], height, DEADLINE).await;

    // The mempool takes identical bytes once: both submissions share one position.
    let tx = w.batch(1, now()).remove(0).to_bytes();
    let twice = client.submit(CHAIN, vec![tx.clone(), tx], DEADLINE).await.unwrap();
    assert_eq!(twice[0], twice[1]);

    // Any replica answers a receipt query with proofs a light client checks offline.
    let leader = client.wait_leader(CHAIN, DEADLINE).await.unwrap();
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let Ok(Response::TxReceipt(Some(proven))) =
        client.request(follower, &Request::Receipt { chain: CHAIN, tx_id: receipts[0].tx_id }).await
    else {
        panic!("no receipt from node {follower}");
    };
    let header = elchain_types::BlockHeader::from_bytes(&proven.header).unwrap();
    let proof = elchain_types::InclusionProof::from_bytes(&proven.proof).unwrap();
    assert!(proof.verify(&header));
    assert_eq!(proof.tx_id.0, receipts[0].tx_id);
    client.close().await;
    cluster.stop_all();
    for id in 1..=3 {
        assert_verify_passes(&cluster, id);
        let block = store(&cluster, id).block(height).unwrap().unwrap();
        assert_eq!(block.outcomes[1].as_u16(), RejectCode::BadSignature.as_u16(), "node {id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_and_removing_replicas_under_load_loses_nothing() {
    let mut cluster = start_cluster(3, Settings::default());
    let client = cluster.client().await;
    client.wait_leader(CHAIN, DEADLINE).await.expect("a leader");
    let mut w = workload(5);
    let mut acks = load(&client, &mut w, 5, 30).await;

    cluster.prepare_node(4);
    cluster.write_config(4, &[1, 2, 3, 4], false);
    cluster.spawn(4);
    let addr = cluster.nodes[&4].public;
    client.add_node(4, addr);
    let add = Request::AddReplica { chain: CHAIN, node: 4, addr: addr.to_string() };
    let adding = {
        let c = client.clone();
        tokio::spawn(async move { c.to_leader(add, DEADLINE).await })
    };
    acks.extend(load(&client, &mut w, 5, 30).await);
    assert!(matches!(adding.await.unwrap(), Ok(Response::Done)), "add replica");

    // Remove a follower that is not the new node.
    let leader = client.wait_leader(CHAIN, DEADLINE).await.unwrap();
    let removed = (1..=3).find(|id| *id != leader).unwrap();
    let remove = Request::RemoveReplica { chain: CHAIN, node: removed };
    assert!(matches!(client.to_leader(remove, DEADLINE).await, Ok(Response::Done)));
    acks.extend(load(&client, &mut w, 5, 30).await);
    let remaining: Vec<u64> = (1..=4).filter(|id| *id != removed).collect();
    let status = client.status(leader, CHAIN).await.unwrap();
    assert_eq!(status.voters, remaining);
    cluster.wait_converged(&client, &remaining, 1, DEADLINE).await;
    client.close().await;
    cluster.stop_all();
    check_history(&cluster, &remaining, &acks);
    assert_verify_passes(&cluster, 4);
}

fn client_files(cluster: &Cluster, ca_dir: &std::path::Path, id: u64, trust: &std::path::Path) -> TlsFiles {
    let _ = cluster;
    TlsFiles {
        ca_cert: trust.to_path_buf(),
        cert: ca_dir.join(format!("certs/node-{id}.pem")),
        key: ca_dir.join(format!("certs/node-{id}.key")),
        crl: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_from_another_ca_or_revoked_are_refused() {
    let mut cluster = start_cluster(3, Settings::default());
    let trust = cluster.dir.path().join("ca/ca.pem");
    let nodes: std::collections::BTreeMap<u64, std::net::SocketAddr> =
        cluster.nodes.values().map(|n| (n.id, n.public)).collect();

    // A node certificate from another consortium's CA, presenting itself with our CA as trust.
    let other = cluster.dir.path().join("other");
    ca::init(&other.join("ca"), "another consortium").unwrap();
    ca::issue_node(&other.join("ca"), 901, "public-security", ca::Role::Replica, &other.join("certs"), false).unwrap();
    let foreign = Client::new(Identity::load(&client_files(&cluster, &other, 901, &trust)).unwrap(), nodes.clone())
        .await
        .unwrap();
    let refused = foreign.status(1, CHAIN).await;
    assert!(refused.is_err(), "foreign certificate accepted: {refused:?}");

    // A certificate of our CA, revoked: refused once the nodes load the new revocation list.
    let ours = cluster.dir.path().to_path_buf();
    let issued =
        ca::issue_node(&ours.join("ca"), 902, "public-security", ca::Role::Replica, &ours.join("certs"), false)
            .unwrap();
    ca::revoke(&ours.join("ca"), &issued.serial, ca::Reason::KeyCompromise).unwrap();
    cluster.stop_all();
    for id in 1..=3 {
        cluster.spawn(id);
    }
    let good = cluster.client().await;
    good.wait_leader(CHAIN, DEADLINE).await.expect("the cluster serves valid certificates");
    let revoked =
        Client::new(Identity::load(&client_files(&cluster, &ours, 902, &trust)).unwrap(), nodes).await.unwrap();
    let refused = revoked.status(1, CHAIN).await;
    assert!(refused.is_err(), "revoked certificate accepted: {refused:?}");
    assert!(cluster.log(1).contains("node started"));
    good.close().await;
    cluster.stop_all();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_serves_replicas_of_several_chains() {
    let mut cluster = start_cluster(3, Settings { chains: 2, ..Settings::default() });
    let client = cluster.client().await;
    let mut acks = std::collections::BTreeMap::new();
    for chain in [1u32, 2] {
        client.wait_leader(chain, DEADLINE).await.expect("a leader per chain");
        let mut w = Workload::new(Profile::sample().into_dev_consortium().unwrap(), ChainId(chain), chain as u64, 500);
        let txs: Vec<Vec<u8>> = w.batch(40, now()).iter().map(Encode::to_bytes).collect();
        let receipts = client.submit(chain, txs, DEADLINE).await.expect("committed");
        assert!(receipts.iter().all(|r| matches!(r.status, ReceiptStatus::Committed { .. })));
        acks.insert(chain, receipts);
    }
    // A transaction for chain 1 sent to chain 2 is refused there at admission.
    let mut w = workload(9);
    let stray = w.batch(1, now()).remove(0).to_bytes();
    let refused = client.submit(2, vec![stray], DEADLINE).await.unwrap();
    assert_eq!(refused[0].status, ReceiptStatus::Rejected { code: RejectCode::WrongChain.as_u16() });

    // Operators see the same through the admin command.
    let certs = cluster.dir.path().join("certs");
    let mut args: Vec<String> = vec![
        "admin".into(),
        "--ca-cert".into(),
        cluster.dir.path().join("ca/ca.pem").display().to_string(),
        "--cert".into(),
        certs.join("node-900.pem").display().to_string(),
        "--key".into(),
        certs.join("node-900.key").display().to_string(),
        "--chain".into(),
        "2".into(),
    ];
    for n in cluster.nodes.values() {
        args.push("--node".into());
        args.push(format!("{}={}", n.id, n.public));
    }
    args.push("status".into());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = elchain_tests::elchain(&argv);
    let text = elchain_tests::stdout(&out);
    assert!(out.status.success(), "{text}{}", elchain_tests::stderr(&out));
    assert_eq!(text.matches("chain 2 leader").count(), 3, "{text}");
    client.close().await;
    cluster.stop_all();
    for (chain, receipts) in acks {
        for id in 1..=3u64 {
            let s =
                elchain_shard::Store::open(&cluster.nodes[&id].data.join(format!("chain-{chain}/chain.redb"))).unwrap();
            assert_eq!(s.chain(), ChainId(chain));
            for r in &receipts {
                let ReceiptStatus::Committed { height, index, .. } = r.status else { unreachable!() };
                assert_eq!(
                    s.tx_location(&elchain_types::ids::TxId(r.tx_id)).unwrap(),
                    Some((height, index)),
                    "node {id} chain {chain}"
                );
            }
        }
    }
}
