//! Block apply: the pure executor alone (txs/s on one core), and verify + execute + durable redb
//! commit of whole blocks.
#![allow(missing_docs)] // criterion_group! generates an undocumented public function

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use elchain_benches::{block_time, blocks, consortium, workload, CHAIN, T0};
use elchain_shard::exec::genesis_header;
use elchain_shard::{Executor, Ledger, LogPosition, MemState, Verifier};
use elchain_types::codec::Encode;
use elchain_types::ids::Timestamp;

fn execute(c: &mut Criterion) {
    let cons = consortium();
    let verifier = Verifier::new(CHAIN, 0, 64);
    let mut g = c.benchmark_group("apply");
    for size in [500usize, 2000] {
        // Build up state with 20 blocks, then time executing the 21st against it, over and over:
        // execution only reads the state, so every iteration does the same work.
        let all = blocks(3, 21, size);
        let mut state = MemState::default();
        let mut tip = genesis_header(CHAIN, &cons, Timestamp(T0));
        for (i, b) in all[..20].iter().enumerate() {
            let ex = Executor::new(&cons, CHAIN).execute(
                &state,
                &tip,
                block_time(i),
                LogPosition::default(),
                verifier.check(b.clone()),
            );
            state.apply(&ex.writes);
            tip = ex.block.header;
        }
        let checked = verifier.check(all[20].clone());
        g.throughput(Throughput::Elements(size as u64));
        g.bench_function(BenchmarkId::new("execute", format!("block={size}")), |b| {
            b.iter(|| {
                Executor::new(&cons, CHAIN).execute(
                    &state,
                    &tip,
                    block_time(20),
                    LogPosition::default(),
                    checked.clone(),
                )
            })
        });
    }
    g.finish();
}

fn append(c: &mut Criterion) {
    let mut g = c.benchmark_group("apply");
    let size = 1000usize;
    g.throughput(Throughput::Elements(size as u64));
    g.bench_function(BenchmarkId::new("verify_execute_commit", format!("block={size}/redb")), |b| {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::create(&dir.path().join("bench.redb"), CHAIN, consortium(), Timestamp(T0), 0).unwrap();
        let mut w = workload(4);
        let mut height = 0usize;
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let t = block_time(height);
                let raws: Vec<Vec<u8>> = w.batch(size, t).iter().map(Encode::to_bytes).collect();
                let start = Instant::now();
                ledger.append(raws, t, LogPosition::default()).unwrap();
                spent += start.elapsed();
                height += 1;
            }
            spent
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(std::time::Duration::from_secs(5));
    targets = execute, append
}
criterion_main!(benches);
