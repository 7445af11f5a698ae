//! Placement: which chain a new licence goes to, as a pure function of the shard map, and the
//! chain directory the meta chain keeps.
//!
//! ```text
//!  holder id (a hash) ──first 4 bytes mod buckets──► bucket
//!  (licence type, bucket) ──shard map rules (type-specific first, then any-type)──► chain
//!  an existing licence ──its id's first 4 bytes──► its chain, whatever the map says now
//! ```
//!
//! Adding a chain is a new shard-map version that hands it some buckets (or whole licence
//! types): new issuance for those holders flows there, while licences issued earlier stay on the
//! chain their id names and keep working.
//!
//! The meta chain (chain 0) holds the current map and the directory of chains ([`ChainInfo`]),
//! both set by governance transactions; both have a canonical encoding for that reason.

use std::ops::Range;

use crate::codec::{CodecError, Decode, Encode, Reader, Writer};
use crate::ids::{ChainId, HolderId, LicenceId, LicenceTypeId};

/// Buckets a holder id space is cut into by default.
pub const DEFAULT_BUCKETS: u32 = 4096;
/// Most rules in one shard map (what fits one governance transaction).
pub const MAX_RULES: usize = 4096;
/// Most replicas of one chain in the directory.
pub const MAX_REPLICAS: usize = 16;
/// Longest replica address (`ip:port` of the node's QUIC endpoint), in bytes.
pub const MAX_ADDR: usize = 64;

/// One placement rule: holders in `buckets` get licences of `licence_type` (or of any type) on
/// `chain`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// The licence type, or `None` for every type without a rule of its own.
    pub licence_type: Option<LicenceTypeId>,
    /// Bucket range, half open.
    pub buckets: Range<u32>,
    /// Target chain (never the meta chain 0).
    pub chain: ChainId,
}

/// A versioned shard map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardMap {
    /// Increases with every change; routers keep the newest they have seen.
    pub version: u64,
    /// Number of buckets.
    pub buckets: u32,
    /// The rules.
    pub rules: Vec<Rule>,
}

/// Why a shard map cannot be used, or a licence cannot be placed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// A map needs at least one bucket and one chain.
    #[error("a shard map needs at least one bucket and one chain")]
    Empty,
    /// A rule names chain 0, which holds only consortium data.
    #[error("rule {rule} places licences on the meta chain 0")]
    MetaChain {
        /// Rule position.
        rule: usize,
    },
    /// A rule's buckets are empty or beyond the map's bucket count.
    #[error("rule {rule} has buckets {start}..{end}, outside 0..{buckets} or empty")]
    BadRange {
        /// Rule position.
        rule: usize,
        /// Range start.
        start: u32,
        /// Range end.
        end: u32,
        /// Bucket count.
        buckets: u32,
    },
    /// Two rules for the same type (or both any-type) cover one bucket.
    #[error("rules {a} and {b} both cover bucket {bucket}")]
    Overlap {
        /// First rule.
        a: usize,
        /// Second rule.
        b: usize,
        /// A bucket both cover.
        bucket: u32,
    },
    /// Some bucket has no any-type rule, so some licence would have no chain.
    #[error("bucket {bucket} has no rule for licences of every type")]
    Gap {
        /// The uncovered bucket.
        bucket: u32,
    },
    /// A scale-out names buckets the map does not have.
    #[error("buckets {start}..{end} are not within 0..{buckets}")]
    OutOfRange {
        /// Range start.
        start: u32,
        /// Range end.
        end: u32,
        /// Bucket count.
        buckets: u32,
    },
}

/// The bucket of a holder.
pub fn bucket(holder: &HolderId, buckets: u32) -> u32 {
    // Holder ids are hashes of public keys, so their leading bytes are uniform.
    let mut b = [0u8; 4];
    b.copy_from_slice(&holder.0[..4]);
    u32::from_le_bytes(b) % buckets.max(1)
}

/// The chain of an existing licence: named in its id, independent of any shard map.
pub fn licence_chain(id: &LicenceId) -> ChainId {
    id.chain()
}

impl ShardMap {
    /// Version 1: `buckets` buckets split as evenly as possible over `chains`, every type alike.
    pub fn even(chains: &[ChainId], buckets: u32) -> Result<ShardMap, PlacementError> {
        if chains.is_empty() || buckets == 0 || buckets < chains.len() as u32 {
            return Err(PlacementError::Empty);
        }
        let n = chains.len() as u32;
        let rules = chains
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let i = i as u32;
                Rule { licence_type: None, buckets: (i * buckets / n)..((i + 1) * buckets / n), chain: *c }
            })
            .collect();
        let map = ShardMap { version: 1, buckets, rules };
        map.validate()?;
        Ok(map)
    }

    /// Check that every bucket has exactly one any-type rule and no bucket is covered twice for
    /// the same type.
    pub fn validate(&self) -> Result<(), PlacementError> {
        if self.buckets == 0 || self.rules.is_empty() {
            return Err(PlacementError::Empty);
        }
        for (i, r) in self.rules.iter().enumerate() {
            if r.chain.0 == 0 {
                return Err(PlacementError::MetaChain { rule: i });
            }
            if r.buckets.start >= r.buckets.end || r.buckets.end > self.buckets {
                return Err(PlacementError::BadRange {
                    rule: i,
                    start: r.buckets.start,
                    end: r.buckets.end,
                    buckets: self.buckets,
                });
            }
            for (j, o) in self.rules.iter().enumerate().skip(i + 1) {
                let start = r.buckets.start.max(o.buckets.start);
                if o.licence_type == r.licence_type && start < r.buckets.end.min(o.buckets.end) {
                    return Err(PlacementError::Overlap { a: i, b: j, bucket: start });
                }
            }
        }
        let mut covered: Vec<Range<u32>> =
            self.rules.iter().filter(|r| r.licence_type.is_none()).map(|r| r.buckets.clone()).collect();
        covered.sort_by_key(|r| r.start);
        let mut next = 0;
        for r in covered {
            if r.start > next {
                return Err(PlacementError::Gap { bucket: next });
            }
            next = next.max(r.end);
        }
        if next < self.buckets {
            return Err(PlacementError::Gap { bucket: next });
        }
        Ok(())
    }

    /// Every chain the rules name, ascending, each once.
    pub fn chains(&self) -> Vec<ChainId> {
        let mut out: Vec<ChainId> = self.rules.iter().map(|r| r.chain).collect();
        out.sort();
        out.dedup();
        out
    }

    /// The chain a new licence of `licence_type` for `holder` is issued on.
    pub fn place(&self, licence_type: LicenceTypeId, holder: &HolderId) -> ChainId {
        let b = bucket(holder, self.buckets);
        let matching = |typed: bool| {
            self.rules.iter().find(|r| {
                r.buckets.contains(&b)
                    && if typed { r.licence_type == Some(licence_type) } else { r.licence_type.is_none() }
            })
        };
        matching(true).or_else(|| matching(false)).map(|r| r.chain).expect("a validated map covers every bucket")
    }

    /// The next version, with `buckets` (for `licence_type`, or for every type) moved to
    /// `chain`. Rules that covered those buckets are cut around them.
    pub fn reassign(
        &self,
        licence_type: Option<LicenceTypeId>,
        buckets: Range<u32>,
        chain: ChainId,
    ) -> Result<ShardMap, PlacementError> {
        if buckets.start >= buckets.end || buckets.end > self.buckets {
            return Err(PlacementError::OutOfRange { start: buckets.start, end: buckets.end, buckets: self.buckets });
        }
        let mut rules = Vec::with_capacity(self.rules.len() + 2);
        for r in &self.rules {
            if r.licence_type != licence_type || r.buckets.end <= buckets.start || r.buckets.start >= buckets.end {
                rules.push(r.clone());
                continue;
            }
            if r.buckets.start < buckets.start {
                rules.push(Rule { buckets: r.buckets.start..buckets.start, ..r.clone() });
            }
            if r.buckets.end > buckets.end {
                rules.push(Rule { buckets: buckets.end..r.buckets.end, ..r.clone() });
            }
        }
        rules.push(Rule { licence_type, buckets, chain });
        let map = ShardMap { version: self.version + 1, buckets: self.buckets, rules };
        map.validate()?;
        Ok(map)
    }
}

/// A chain in the meta chain's directory: its id and the replicas that serve it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainInfo {
    /// The chain (0 describes the meta chain itself).
    pub id: ChainId,
    /// Its replicas, by strictly ascending node id; 1 to [`MAX_REPLICAS`].
    pub replicas: Vec<ReplicaInfo>,
}

/// One replica of a chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaInfo {
    /// The node id (the `n<id>.elchain` name of its certificate).
    pub node: u64,
    /// `ip:port` of the node's QUIC endpoint, at most [`MAX_ADDR`] bytes.
    pub addr: String,
}

/// Why a directory entry cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChainInfoError {
    /// A chain needs at least one replica.
    #[error("chain {0} lists no replica")]
    NoReplicas(ChainId),
    /// A replica's address is not `ip:port`.
    #[error("replica {node} has address `{addr}`, not ip:port")]
    BadAddr {
        /// The replica's node id.
        node: u64,
        /// The address given.
        addr: String,
    },
}

impl ChainInfo {
    /// Check what the encoding cannot: at least one replica, and every address `ip:port`.
    pub fn check(&self) -> Result<(), ChainInfoError> {
        if self.replicas.is_empty() {
            return Err(ChainInfoError::NoReplicas(self.id));
        }
        for r in &self.replicas {
            if r.addr.parse::<std::net::SocketAddr>().is_err() {
                return Err(ChainInfoError::BadAddr { node: r.node, addr: r.addr.clone() });
            }
        }
        Ok(())
    }
}

impl Encode for Rule {
    fn encode(&self, w: &mut Writer) {
        match self.licence_type {
            None => w.u8(0),
            Some(t) => {
                w.u8(1);
                w.put(&t);
            }
        }
        w.u32(self.buckets.start);
        w.u32(self.buckets.end);
        w.put(&self.chain);
    }
}

impl Decode for Rule {
    fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        let licence_type = match r.u8("rule type flag")? {
            0 => None,
            1 => Some(r.get()?),
            tag => return Err(CodecError::UnknownTag { what: "rule type flag", tag }),
        };
        let start = r.u32("bucket start")?;
        let end = r.u32("bucket end")?;
        Ok(Rule { licence_type, buckets: start..end, chain: r.get()? })
    }
}

impl Encode for ShardMap {
    fn encode(&self, w: &mut Writer) {
        w.u64(self.version);
        w.u32(self.buckets);
        w.seq(&self.rules);
    }
}

impl Decode for ShardMap {
    /// Reads the map as written; whether it places every licence is [`ShardMap::validate`]'s
    /// question, not the codec's.
    fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(ShardMap {
            version: r.u64("shard map version")?,
            buckets: r.u32("buckets")?,
            rules: r.seq("rules", MAX_RULES)?,
        })
    }
}

impl Encode for ReplicaInfo {
    fn encode(&self, w: &mut Writer) {
        w.u64(self.node);
        w.bytes(self.addr.as_bytes());
    }
}

impl Decode for ReplicaInfo {
    fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        let node = r.u64("replica node")?;
        let addr = String::from_utf8(r.bytes("replica address", MAX_ADDR)?.to_vec())
            .map_err(|_| CodecError::NonCanonical { what: "replica address", why: "not UTF-8" })?;
        Ok(ReplicaInfo { node, addr })
    }
}

impl Encode for ChainInfo {
    fn encode(&self, w: &mut Writer) {
        w.put(&self.id);
        w.seq(&self.replicas);
    }
}

impl Decode for ChainInfo {
    fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        let id = r.get()?;
        let replicas: Vec<ReplicaInfo> = r.seq("replicas", MAX_REPLICAS)?;
        if replicas.windows(2).any(|p| p[0].node >= p[1].node) {
            return Err(CodecError::NonCanonical { what: "replicas", why: "node ids must ascend" });
        }
        Ok(ChainInfo { id, replicas })
    }
}

#[cfg(test)]
mod tests {
    use crate::crypto::Keypair;
    use crate::ids::MemberId;
    use proptest::prelude::*;

    use super::*;

    fn holder(n: u32) -> HolderId {
        Keypair::dev(&format!("holder/{n}")).holder_id()
    }

    #[test]
    fn an_even_map_spreads_holders_over_every_chain() {
        let chains = [ChainId(1), ChainId(2), ChainId(3), ChainId(4)];
        let map = ShardMap::even(&chains, DEFAULT_BUCKETS).unwrap();
        let mut counts = [0u32; 4];
        for n in 0..4000 {
            counts[map.place(LicenceTypeId(1), &holder(n)).0 as usize - 1] += 1;
        }
        assert!(counts.iter().all(|c| (800..1200).contains(c)), "{counts:?}");
    }

    #[test]
    fn scale_out_moves_only_the_reassigned_buckets_and_old_licences_keep_their_chain() {
        let map = ShardMap::even(&[ChainId(1), ChainId(2)], 64).unwrap();
        let grown = map.reassign(None, 0..16, ChainId(3)).unwrap();
        assert_eq!(grown.version, 2);
        for n in 0..500 {
            let h = holder(n);
            let (before, after) = (map.place(LicenceTypeId(2), &h), grown.place(LicenceTypeId(2), &h));
            if bucket(&h, 64) < 16 {
                assert_eq!(after, ChainId(3));
            } else {
                assert_eq!(after, before);
            }
            // A licence issued before the change names its chain in its id.
            let id =
                LicenceId::derive(before, crate::ids::Timestamp(n as u64), MemberId(1), LicenceTypeId(2), &h, n as u64);
            assert_eq!(licence_chain(&id), before);
        }
    }

    #[test]
    fn a_type_of_its_own_goes_to_its_chain() {
        let map =
            ShardMap::even(&[ChainId(1)], 16).unwrap().reassign(Some(LicenceTypeId(5)), 0..16, ChainId(9)).unwrap();
        assert_eq!(map.place(LicenceTypeId(5), &holder(1)), ChainId(9));
        assert_eq!(map.place(LicenceTypeId(4), &holder(1)), ChainId(1));
    }

    #[test]
    fn broken_maps_are_refused_with_the_reason() {
        let gap = ShardMap {
            version: 1,
            buckets: 8,
            rules: vec![Rule { licence_type: None, buckets: 0..4, chain: ChainId(1) }],
        };
        assert_eq!(gap.validate(), Err(PlacementError::Gap { bucket: 4 }));
        let overlap = ShardMap {
            version: 1,
            buckets: 8,
            rules: vec![
                Rule { licence_type: None, buckets: 0..5, chain: ChainId(1) },
                Rule { licence_type: None, buckets: 4..8, chain: ChainId(2) },
            ],
        };
        assert_eq!(overlap.validate(), Err(PlacementError::Overlap { a: 0, b: 1, bucket: 4 }));
        let meta = ShardMap {
            version: 1,
            buckets: 8,
            rules: vec![Rule { licence_type: None, buckets: 0..8, chain: ChainId(0) }],
        };
        assert_eq!(meta.validate(), Err(PlacementError::MetaChain { rule: 0 }));
        assert!(ShardMap::even(&[], 8).is_err());
        let map = ShardMap::even(&[ChainId(1)], 8).unwrap();
        assert!(matches!(map.reassign(None, 4..9, ChainId(2)), Err(PlacementError::OutOfRange { .. })));
    }

    #[test]
    fn maps_and_directory_entries_round_trip_and_refuse_non_canonical_bytes() {
        let map = ShardMap::even(&[ChainId(1), ChainId(2)], 64)
            .unwrap()
            .reassign(Some(LicenceTypeId(3)), 8..16, ChainId(7))
            .unwrap();
        let bytes = map.to_bytes();
        assert_eq!(ShardMap::from_bytes(&bytes).unwrap(), map);
        assert_eq!(map.chains(), [ChainId(1), ChainId(2), ChainId(7)]);
        // Golden bytes of one rule: flag, type, start, end, chain.
        let rule = Rule { licence_type: Some(LicenceTypeId(3)), buckets: 8..16, chain: ChainId(7) };
        assert_eq!(hex::encode(rule.to_bytes()), "010300080000001000000007000000");
        let mut bad_flag = rule.to_bytes();
        bad_flag[0] = 2;
        assert!(matches!(Rule::from_bytes(&bad_flag), Err(CodecError::UnknownTag { .. })));

        let info = ChainInfo {
            id: ChainId(2),
            replicas: vec![
                ReplicaInfo { node: 1, addr: "10.0.0.1:7000".into() },
                ReplicaInfo { node: 4, addr: "[::1]:7000".into() },
            ],
        };
        assert_eq!(ChainInfo::from_bytes(&info.to_bytes()).unwrap(), info);
        assert_eq!(info.check(), Ok(()));
        let mut unsorted = info.clone();
        unsorted.replicas.reverse();
        assert!(matches!(ChainInfo::from_bytes(&unsorted.to_bytes()), Err(CodecError::NonCanonical { .. })));
        let mut long = info.clone();
        long.replicas[0].addr = "1".repeat(MAX_ADDR + 1);
        assert!(matches!(ChainInfo::from_bytes(&long.to_bytes()), Err(CodecError::TooLong { .. })));
        let many = ChainInfo {
            id: ChainId(3),
            replicas: (0..=MAX_REPLICAS as u64).map(|n| ReplicaInfo { node: n, addr: "1.2.3.4:5".into() }).collect(),
        };
        assert!(matches!(ChainInfo::from_bytes(&many.to_bytes()), Err(CodecError::TooLong { .. })));
        let mut host = info.clone();
        host.replicas[1].addr = "n4.elchain:7000".into();
        assert!(matches!(host.check(), Err(ChainInfoError::BadAddr { node: 4, .. })));
        assert_eq!(ChainInfo { id: ChainId(5), replicas: vec![] }.check(), Err(ChainInfoError::NoReplicas(ChainId(5))));
    }

    #[test]
    fn the_largest_map_fits_one_transaction() {
        let rules: Vec<Rule> = (0..MAX_RULES as u32)
            .map(|i| Rule { licence_type: Some(LicenceTypeId(1)), buckets: i..i + 1, chain: ChainId(1) })
            .collect();
        let map = ShardMap { version: 1, buckets: MAX_RULES as u32, rules };
        assert!(map.to_bytes().len() + 1024 < crate::tx::limits::MAX_TX_BYTES);
        let mut too_many = map.clone();
        too_many.rules.push(Rule { licence_type: None, buckets: 0..1, chain: ChainId(1) });
        assert!(matches!(ShardMap::from_bytes(&too_many.to_bytes()), Err(CodecError::TooLong { .. })));
    }

    proptest! {
        #[test]
        fn any_sequence_of_reassignments_keeps_the_map_total(
            moves in proptest::collection::vec((0u32..32, 1u32..8, 1u32..6, proptest::option::of(1u16..8)), 0..12),
            seed in 0u32..1000,
        ) {
            let mut map = ShardMap::even(&[ChainId(1), ChainId(2)], 32).unwrap();
            for (start, len, chain, ty) in moves {
                let end = (start + len).min(32);
                if start < end {
                    map = map.reassign(ty.map(LicenceTypeId), start..end, ChainId(chain)).unwrap();
                }
            }
            prop_assert!(map.validate().is_ok());
            for t in 1..8u16 {
                let c = map.place(LicenceTypeId(t), &holder(seed));
                prop_assert!(c.0 >= 1);
            }
            prop_assert_eq!(ShardMap::from_bytes(&map.to_bytes()).unwrap(), map);
        }
    }
}
