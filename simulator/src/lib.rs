//! Drive, break and check elchain clusters.
//!
//! ```text
//!  workload (seeded life cycles) ─► run (processes) | det (one process, simulated) | remote (routers)
//!     ├─ gateway: QUIC to the leaders, or the routers' REST API     schedule: rate or ramp
//!     └─ fault: kill, partition, slow net/disk, routers, chains, replicas (cluster, governance)
//!  ─► checker (receipts vs blocks, replicas, audits, rules) ─► report (JSON, HTML; series)
//!  scale: the run on 1, 2, 4 … chains ─► curve, CPU per tx (cpu), capacity projection
//! ```
//!
//! The workload generator and the local cluster also serve `elchain dev`, `elchain bench` and
//! the fault tests.

pub mod checker;
pub mod cluster;
pub mod cpu;
pub mod det;
pub mod fault;
pub mod gateway;
pub mod governance;
pub mod remote;
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
    use std::collections::BTreeMap;

    use elchain_shard::{Executor, LogPosition, MemState, Verifier};
    use elchain_types::codec::Encode;
    use elchain_types::ids::{ChainId, Timestamp};
    use elchain_types::profile::Profile;
    use elchain_types::reason::Outcome;

    use super::*;

    const T0: u64 = 1_800_000_000_000;

    /// Outcomes of `blocks` generated blocks of `size` transactions `step_ms` apart, executed in
    /// turn: (kind, "valid" or the reject code) → count.
    fn execute(
        mut w: Workload,
        blocks: u64,
        size: usize,
        step_ms: u64,
    ) -> BTreeMap<(&'static str, &'static str), usize> {
        let c = Profile::sample().into_dev_consortium().unwrap();
        let verifier = Verifier::new(ChainId(1), 2, 64);
        let mut state = MemState::default();
        let mut tip = elchain_shard::exec::genesis_header(ChainId(1), &c, Timestamp(T0));
        let mut seen = BTreeMap::new();
        for b in 0..blocks {
            let now = Timestamp(T0 + b * step_ms);
            let txs = w.batch(size, now);
            let checked = verifier.check(txs.iter().map(Encode::to_bytes).collect());
            let ex = Executor::new(&c, ChainId(1)).execute(&state, &tip, now, LogPosition::default(), checked);
            state.apply(&ex.writes);
            tip = ex.block.header;
            for (tx, o) in txs.iter().zip(&ex.block.outcomes) {
                let outcome = match o {
                    Outcome::Valid => "valid",
                    Outcome::Invalid(code) => code.as_str(),
                };
                *seen.entry((tx.body().payload.kind(), outcome)).or_default() += 1;
            }
        }
        seen
    }

    fn valid_share(seen: &BTreeMap<(&str, &str), usize>) -> (usize, usize) {
        let valid = seen.iter().filter(|((_, o), _)| *o == "valid").map(|(_, n)| n).sum();
        (valid, seen.values().sum())
    }

    #[test]
    fn generated_load_is_mostly_valid_and_covers_every_kind() {
        let c = Profile::sample().into_dev_consortium().unwrap();
        let seen = execute(Workload::new(c, ChainId(1), 7, 500), 20, 100, 1000);
        let (valid, total) = valid_share(&seen);
        assert!(valid * 10 >= total * 8, "{valid} of {total} valid: {seen:?}");
        for k in ["issue", "grant", "use", "revoke_grant", "suspend", "renew", "revoke"] {
            assert!(seen.keys().any(|(kind, _)| *kind == k), "no {k} generated");
        }
    }

    #[test]
    fn life_cycles_stay_mostly_valid_and_ended_grants_are_refused() {
        let c = Profile::sample().into_dev_consortium().unwrap();
        let mix = Mix { renew: 40, revoke: 10, short_grants: 0.2, ..Mix::default() };
        // 60 blocks 3 s apart: three minutes, past every short window.
        let seen = execute(Workload::new(c, ChainId(1), 21, 20_000).with_mix(mix), 60, 100, 3000);
        let (valid, total) = valid_share(&seen);
        assert!(valid * 4 >= total * 3, "{valid} of {total} valid: {seen:?}");
        let count = |kind: &str, outcome: &str| seen.get(&(kind, outcome)).copied().unwrap_or(0);
        assert!(count("use", "grant_expired") + count("use", "grant_exhausted") > 0, "{seen:?}");
        // Renewals and revocations are accepted, and what was revoked is seldom used again.
        for kind in ["renew", "revoke"] {
            let all: usize = seen.iter().filter(|((k, _), _)| *k == kind).map(|(_, n)| n).sum();
            assert!(count(kind, "valid") * 10 >= all * 9 && all > 0, "{kind}: {seen:?}");
        }
        let after_revocation = count("grant", "licence_revoked") + count("use", "licence_revoked");
        assert!(after_revocation * 50 < count("grant", "valid") + count("use", "valid"), "{seen:?}");
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
