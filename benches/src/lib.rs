//! Shared fixtures of elchain's criterion benchmarks: pre-signed, realistic transactions.
//!
//! Everything here runs before a timed region; the benchmarks time only the stage they name.

use elchain_sim::Workload;
use elchain_types::codec::Encode;
use elchain_types::contract::Consortium;
use elchain_types::ids::{ChainId, Timestamp};
use elchain_types::profile::Profile;

/// The chain every benchmark uses.
pub const CHAIN: ChainId = ChainId(1);

/// Block time of the first generated block.
pub const T0: u64 = 1_800_000_000_000;

/// The sample consortium with development keys.
pub fn consortium() -> Consortium {
    Profile::sample().into_dev_consortium().expect("sample profile")
}

/// A workload over the sample consortium.
pub fn workload(seed: u64) -> Workload {
    Workload::new(consortium(), CHAIN, seed, 100_000)
}

/// `blocks` blocks of `size` encoded transactions, block `i` valid at `T0 + i` seconds.
pub fn blocks(seed: u64, blocks: usize, size: usize) -> Vec<Vec<Vec<u8>>> {
    let mut w = workload(seed);
    (0..blocks).map(|i| w.batch(size, block_time(i)).iter().map(Encode::to_bytes).collect()).collect()
}

/// The block time of block `i` in [`blocks`].
pub fn block_time(i: usize) -> Timestamp {
    Timestamp(T0 + i as u64 * 1000)
}
