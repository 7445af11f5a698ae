//! Drive, break and check elchain clusters.
//!
//! Today this crate holds the workload generator that `elchain dev`, the benchmarks and the
//! tests use to produce realistic signed transactions from the sample consortium profile, and
//! the local cluster (real node processes behind fault-injecting relays) that the fault tests
//! and `elchain bench` run. The load driver, fault injector and history checker build on them.
//!
//! ```text
//!  Consortium (dev keys) ──► Workload::next(now) ──► SignedTx (issue | grant | use | revoke | status)
//! ```

pub mod checker;
pub mod cluster;
pub mod cpu;
pub mod det;
pub mod fault;
pub mod gateway;
pub mod governance;
pub mod report;
pub mod rules;
pub mod run;
pub mod scale;
pub mod scenario;
pub mod schedule;
pub mod series;
pub mod workload;

pub use workload::{Mix, Workload};

#[cfg(test)]
mod tests {
    use elchain_shard::{Executor, LogPosition, MemState, Verifier};
    use elchain_types::codec::Encode;
    use elchain_types::ids::{ChainId, Timestamp};
    use elchain_types::profile::Profile;
    use elchain_types::reason::Outcome;

    use super::*;

    #[test]
    fn generated_load_is_mostly_valid_and_covers_every_kind() {
        let c = Profile::sample().into_dev_consortium().unwrap();
        let mut w = Workload::new(c.clone(), ChainId(1), 7, 500);
        let verifier = Verifier::new(ChainId(1), 2, 64);
        let mut state = MemState::default();
        let mut tip = elchain_shard::exec::genesis_header(ChainId(1), &c, Timestamp(1_800_000_000_000));
        let (mut valid, mut total) = (0, 0);
        let mut kinds = std::collections::BTreeSet::new();
        for b in 0..20u64 {
            let now = Timestamp(1_800_000_000_000 + b * 1000);
            let txs = w.batch(100, now);
            kinds.extend(txs.iter().map(|t| t.body().payload.kind()));
            let checked = verifier.check(txs.iter().map(Encode::to_bytes).collect());
            let ex = Executor::new(&c, ChainId(1)).execute(&state, &tip, now, LogPosition::default(), checked);
            state.apply(&ex.writes);
            tip = ex.block.header;
            total += ex.block.outcomes.len();
            valid += ex.block.outcomes.iter().filter(|o| **o == Outcome::Valid).count();
        }
        assert!(valid * 10 >= total * 8, "{valid} of {total} valid");
        for k in ["issue", "grant", "use", "revoke_grant", "suspend"] {
            assert!(kinds.contains(k), "no {k} generated");
        }
    }

    #[test]
    fn the_same_seed_generates_the_same_transactions() {
        let c = Profile::sample().into_dev_consortium().unwrap();
        let a: Vec<_> =
            Workload::new(c.clone(), ChainId(1), 3, 50).batch(50, Timestamp(5)).iter().map(|t| t.id()).collect();
        let b: Vec<_> = Workload::new(c, ChainId(1), 3, 50).batch(50, Timestamp(5)).iter().map(|t| t.id()).collect();
        assert_eq!(a, b);
    }
}
