//! The other pipeline stages: decode, the leader's mempool and batcher, Merkle root, Raft entry
//! encoding, durable redb writes, block commit, and a QUIC request round trip with mutual TLS.
#![allow(missing_docs)] // criterion_group! generates an undocumented public function

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use elchain_benches::{block_time, blocks, consortium, workload, CHAIN, T0};
use elchain_shard::net::{BoxFuture, Endpoint, Handler, Identity, PeerIdentity, TlsFiles};
use elchain_shard::node::mempool::{gather, BlockDraft};
use elchain_shard::raft::BlockProposal;
use elchain_shard::{ca, Ledger, LogPosition, Verifier};
use elchain_types::block::{entry_hash, leaf_hash, merkle_root};
use elchain_types::codec::Encode;
use elchain_types::ids::{Timestamp, TxId};
use elchain_types::reason::Outcome;
use elchain_types::tx::SignedTx;

fn decode(c: &mut Criterion) {
    let raws = blocks(7, 1, 2000).remove(0);
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(raws.len() as u64));
    g.bench_function("tx/mix/txs=2000", |b| {
        b.iter(|| raws.iter().map(|r| SignedTx::decode_wire(r).map(|t| t.id())).filter(Result::is_ok).count())
    });
    g.finish();
}

/// The leader's block building: 40 submissions of 50 transactions de-duplicated into one block
/// (all distinct, or half of them resent), and gathered from the admission channel.
fn mempool(c: &mut Criterion) {
    let raws = blocks(10, 1, 2000).remove(0);
    let submissions: Vec<Vec<Vec<u8>>> = raws.chunks(50).map(<[Vec<u8>]>::to_vec).collect();
    // Admission hands each transaction over with its entry hash (computed while verifying).
    let hashed = |subs: &[Vec<Vec<u8>>]| -> Vec<Vec<(Vec<u8>, elchain_types::ids::Hash32)>> {
        subs.iter().map(|s| s.iter().map(|r| (r.clone(), elchain_types::block::entry_hash(r))).collect()).collect()
    };
    let resent_raws: Vec<Vec<Vec<u8>>> = raws[..1000].chunks(25).map(|c| [c, c].concat()).collect();
    let (distinct, resent) = (hashed(&submissions), hashed(&resent_raws));
    let mut g = c.benchmark_group("mempool");
    g.throughput(Throughput::Elements(2000));
    for (name, input) in [("dedup/txs=2000", &distinct), ("dedup/txs=2000,resent=50%", &resent)] {
        g.bench_function(name, |b| {
            b.iter_batched(
                || input.clone(),
                |subs| {
                    let mut draft = BlockDraft::with_capacity(2000);
                    for (i, s) in subs.into_iter().enumerate() {
                        draft.add(s, i);
                    }
                    draft.into_parts()
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();

    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let mut g = c.benchmark_group("batcher");
    g.throughput(Throughput::Elements(2000));
    g.bench_function("gather/submissions=40,txs=2000", |b| {
        b.iter_batched(
            || {
                let (tx, rx) = tokio::sync::mpsc::channel(64);
                for s in &submissions[1..] {
                    tx.try_send(s.clone()).unwrap();
                }
                (tx, rx, submissions[0].clone())
            },
            |(_tx, mut rx, first)| rt.block_on(gather(&mut rx, first, Vec::len, 2000, Duration::from_millis(10))),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn merkle(c: &mut Criterion) {
    let raws = blocks(8, 1, 2000).remove(0);
    let mut g = c.benchmark_group("merkle");
    g.throughput(Throughput::Elements(raws.len() as u64));
    g.bench_function("root/leaves=2000", |b| {
        b.iter(|| {
            let leaves: Vec<_> =
                raws.iter().map(|r| leaf_hash(&TxId::default(), &entry_hash(r), Outcome::Valid)).collect();
            merkle_root(&leaves)
        })
    });
    g.finish();
}

fn raft_entry(c: &mut Criterion) {
    let proposal = BlockProposal { time: T0, txs: blocks(9, 1, 2000).remove(0) };
    let bytes = bincode::serialize(&proposal).unwrap();
    let mut g = c.benchmark_group("raft_entry");
    g.throughput(Throughput::Elements(2000));
    g.bench_function("encode/txs=2000", |b| b.iter(|| bincode::serialize(&proposal).unwrap()));
    g.bench_function("decode/txs=2000", |b| b.iter(|| bincode::deserialize::<BlockProposal>(&bytes).unwrap()));
    g.finish();
}

fn redb_writes(c: &mut Criterion) {
    const T: redb::TableDefinition<'static, u64, &[u8]> = redb::TableDefinition::new("log");
    let mut g = c.benchmark_group("redb");
    for size in [64 * 1024usize, 1 << 20] {
        let dir = tempfile::tempdir().unwrap();
        let db = redb::Database::create(dir.path().join("log.redb")).unwrap();
        let value = vec![7u8; size];
        let mut key = 0u64;
        g.throughput(Throughput::Bytes(size as u64));
        // What a Raft log append of one block costs: one durable (fsync) write transaction.
        g.bench_function(BenchmarkId::new("durable_append", format!("bytes={size}")), |b| {
            b.iter(|| {
                let mut w = db.begin_write().unwrap();
                w.set_durability(redb::Durability::Immediate);
                w.open_table(T).unwrap().insert(key, &value[..]).unwrap();
                w.commit().unwrap();
                key += 1;
            })
        });
    }
    // The state side: commit an executed block (block, tx index, state changes, tip), durably.
    let size = 1000usize;
    g.throughput(Throughput::Elements(size as u64));
    g.bench_function(BenchmarkId::new("block_commit", format!("block={size}")), |b| {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::create(&dir.path().join("s.redb"), CHAIN, consortium(), Timestamp(T0), 0).unwrap();
        let verifier = Verifier::new(CHAIN, 0, 64);
        let cons = consortium();
        let mut w = workload(10);
        let mut height = 0usize;
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let t = block_time(height);
                let raws: Vec<Vec<u8>> = w.batch(size, t).iter().map(Encode::to_bytes).collect();
                let tip = ledger.tip().unwrap();
                let view = ledger.store().view().unwrap();
                let ex = elchain_shard::Executor::new(&cons, CHAIN).execute(
                    &view,
                    &tip,
                    t,
                    LogPosition::default(),
                    verifier.check(raws),
                );
                drop(view);
                let start = Instant::now();
                ledger.store().commit(&ex).unwrap();
                spent += start.elapsed();
                height += 1;
            }
            spent
        })
    });
    g.finish();
}

struct Echo;

impl Handler for Echo {
    fn handle(&self, _peer: PeerIdentity, request: Bytes) -> BoxFuture<Result<Bytes, String>> {
        Box::pin(async move { Ok(request) })
    }
}

fn quic(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("ca");
    let certs = dir.path().join("certs");
    ca::init(&ca_dir, "bench").unwrap();
    for id in [1, 2] {
        ca::issue_node(&ca_dir, id, "public-security", ca::Role::Replica, &certs, false).unwrap();
    }
    let files = |id: u64| TlsFiles {
        ca_cert: ca_dir.join("ca.pem"),
        cert: certs.join(format!("node-{id}.pem")),
        key: certs.join(format!("node-{id}.key")),
        crl: Some(ca_dir.join("crl.pem")),
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (server, client) = rt.block_on(async {
        let local = ([127, 0, 0, 1], 0).into();
        let server = Endpoint::bind(local, Identity::load(&files(1)).unwrap(), Arc::new(Echo)).await.unwrap();
        let client = Endpoint::bind(local, Identity::load(&files(2)).unwrap(), Arc::new(Echo)).await.unwrap();
        (server, client)
    });
    let addr = server.local_addr();
    let mut g = c.benchmark_group("quic");
    for size in [256usize, 1 << 20] {
        let payload = Bytes::from(vec![1u8; size]);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(BenchmarkId::new("round_trip", format!("bytes={size}")), |b| {
            b.iter(|| rt.block_on(client.call(1, addr, payload.clone(), Duration::from_secs(10))).unwrap())
        });
    }
    g.finish();
    rt.block_on(async {
        client.close().await;
        server.close().await;
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(Duration::from_secs(3));
    targets = decode, mempool, merkle, raft_entry, redb_writes, quic
}
criterion_main!(benches);
