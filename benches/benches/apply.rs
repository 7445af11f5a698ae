//! Block apply: the pure executor alone (txs/s on one core) and its state-root hashing, verify +
//! execute + durable redb commit of whole blocks, and a replica's periodic chain-store write into
//! a grown state.
#![allow(missing_docs)] // criterion_group! generates an undocumented public function

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use elchain_benches::{block_time, blocks, consortium, workload, CHAIN, T0};
use elchain_shard::exec::{genesis_header, next_state_root};
use elchain_shard::store::Commit;
use elchain_shard::{Executed, Executor, Ledger, LogPosition, MemState, Store, Verifier};
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
        // The part of executing that folds the block's writes into the state root.
        let writes =
            Executor::new(&cons, CHAIN).execute(&state, &tip, block_time(20), LogPosition::default(), checked).writes;
        g.bench_function(BenchmarkId::new("state_root", format!("block={size}")), |b| {
            b.iter(|| next_state_root(&tip.state_root, &writes))
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

/// Transactions in the state a store write lands in, and in the write itself.
const GROWN_STATE_TXS: usize = 300_000;
const WRITE_TXS: usize = 100_000;

/// What a replica's periodic chain-store write costs once the state has grown: `WRITE_TXS`
/// transactions of applied blocks (staged, as a replica stages them) written in one redb
/// transaction, without fsync (as the writes between fsyncs are), into a store that already
/// holds `GROWN_STATE_TXS`. Each iteration starts from a copy of the same grown store and writes
/// the same blocks, so every iteration does the same work; only the write is timed. Its cost
/// follows the size of the hash-keyed tables it lands in (BENCHMARKS.md).
fn store_write(c: &mut Criterion) {
    const BLOCK: usize = 2000;
    let dir = tempfile::tempdir().unwrap();
    let grown = dir.path().join("grown.redb");
    let template = dir.path().join("template.redb");
    let cons = consortium();
    let verifier = Verifier::new(CHAIN, 0, 512);
    let mut w = workload(5);
    let mut execute = |store: &Store, i: usize| -> Executed {
        let t = block_time(i);
        let raws: Vec<Vec<u8>> = w.batch(BLOCK, t).iter().map(Encode::to_bytes).collect();
        let view = store.view().unwrap();
        let tip = store.tip().unwrap();
        Executor::new(&cons, CHAIN).execute(&view, &tip, t, LogPosition::default(), verifier.check(raws))
    };
    let base_blocks = GROWN_STATE_TXS / BLOCK;
    {
        let store = Store::create(&grown, CHAIN, &cons, Timestamp(T0)).unwrap();
        for i in 0..base_blocks {
            let ex = execute(&store, i);
            store.stage(vec![ex.block], ex.writes, &[]).unwrap();
            if (i + 1) % 50 == 0 {
                store.flush(Commit::Durable).unwrap();
            }
        }
        store.flush(Commit::Durable).unwrap();
    }
    // Closed, so that the copies open without recovery.
    std::fs::copy(&grown, &template).unwrap();
    let write: Vec<Executed> = {
        // Executed against the grown state and staged there only to execute the next block
        // against them; this store is never written again.
        let store = Store::open(&grown).unwrap();
        (base_blocks..base_blocks + WRITE_TXS / BLOCK)
            .map(|i| {
                let ex = execute(&store, i);
                store.stage(vec![ex.block.clone()], ex.writes.clone(), &[]).unwrap();
                ex
            })
            .collect()
    };
    let mut g = c.benchmark_group("store");
    g.throughput(Throughput::Elements(WRITE_TXS as u64));
    g.bench_function(BenchmarkId::new("write", format!("state={GROWN_STATE_TXS},txs={WRITE_TXS}")), |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let path = dir.path().join("work.redb");
                std::fs::copy(&template, &path).unwrap();
                let store = Store::open(&path).unwrap();
                for ex in &write {
                    store.stage(vec![ex.block.clone()], ex.writes.clone(), &[]).unwrap();
                }
                let start = Instant::now();
                store.flush(Commit::Deferred).unwrap();
                spent += start.elapsed();
                drop(store);
                std::fs::remove_file(&path).unwrap();
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
criterion_group! {
    name = store;
    config = Criterion::default().sample_size(10).measurement_time(std::time::Duration::from_secs(30));
    targets = store_write
}
criterion_main!(benches, store);
