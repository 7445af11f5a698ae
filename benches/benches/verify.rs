//! Signature verification: one at a time, in batches, and over all cores with rayon.

#![allow(missing_docs)] // criterion_group! generates an undocumented public function
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use elchain_benches::{blocks, CHAIN};
use elchain_shard::Verifier;
use elchain_types::codec::Decode;
use elchain_types::crypto::PublicKey;
use elchain_types::tx::SignedTx;
use elchain_types::verify::{verify_batch, verify_one, SigItem};

/// (key, message, signature) triples taken from realistic transactions.
fn signatures(n: usize) -> Vec<(PublicKey, [u8; 32], [u8; 64])> {
    let mut out = Vec::with_capacity(n);
    for raw in blocks(1, 1, n).remove(0) {
        let tx = SignedTx::from_bytes(&raw).unwrap();
        for s in tx.signatures() {
            out.push((s.key, tx.id().0, s.sig));
        }
    }
    out.truncate(n);
    out
}

fn bench(c: &mut Criterion) {
    let sigs = signatures(4096);
    let items: Vec<SigItem<'_>> = sigs.iter().map(|(k, m, s)| SigItem { key: k, msg: m, sig: s }).collect();

    let mut g = c.benchmark_group("verify");
    g.throughput(Throughput::Elements(1));
    g.bench_function("single", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % items.len();
            assert!(verify_one(items[i]));
        })
    });
    for size in [16usize, 64, 256, 1024] {
        g.throughput(Throughput::Elements(size as u64));
        g.bench_with_input(BenchmarkId::new("batch", format!("size={size}")), &size, |b, &size| {
            let mut at = 0;
            b.iter(|| {
                at = (at + size) % (items.len() - size);
                assert!(verify_batch(&items[at..at + size]));
            })
        });
    }
    // Whole transactions through the parallel verifier (decode, shape, batches of 64, rayon).
    let raws = blocks(2, 1, 2048).remove(0);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    for threads in [1, cores] {
        let v = Verifier::new(CHAIN, threads, 64);
        g.throughput(Throughput::Elements(raws.len() as u64));
        g.bench_function(BenchmarkId::new("rayon", format!("threads={threads}/txs=2048")), |b| {
            b.iter(|| v.check(raws.clone()))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(4));
    targets = bench
}
criterion_main!(benches);
