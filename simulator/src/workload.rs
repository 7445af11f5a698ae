//! A seeded generator of realistic signed transactions from a consortium profile.
//!
//! It plays every party with development keys: issuers and endorsers issue licences of every
//! type with full field sets, holders grant the fields a service item needs to a department,
//! departments use their grants, holders sometimes revoke grants and issuers suspend or reinstate
//! licences. The generator assumes what it sent was committed; a refusal only makes later
//! transactions that depend on it fail too, which the chain reports with its reason codes.
//!
//! Given a shard map ([`Workload::with_placement`]), it issues licences only to holders the map
//! places on its chain, as a department system asking the router's placement would, so that a
//! router does not refuse the issuance as misplaced.

use std::collections::HashMap;

use elchain_types::client::{self, GrantTerms, TxContext};
use elchain_types::contract::{Consortium, LicenceType};
use elchain_types::crypto::{DataKey, Keypair};
use elchain_types::ids::{ChainId, GrantId, ItemId, LicenceId, LicenceTypeId, MemberId, Timestamp};
use elchain_types::profile::dev_member_keypair;
use elchain_types::shardmap::ShardMap;
use elchain_types::tx::{Payload, RevokeGrant, SignedTx, StatusChange, TxBody};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Relative weights of the operations the generator picks from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mix {
    /// Licence issuance.
    pub issue: u32,
    /// Grants by holders.
    pub grant: u32,
    /// Uses by departments.
    pub use_: u32,
    /// Grant revocations.
    pub revoke_grant: u32,
    /// Suspensions and reinstatements.
    pub status: u32,
}

impl Default for Mix {
    /// Mostly uses and grants, some issuance: the service-centre pattern.
    fn default() -> Self {
        Mix { issue: 15, grant: 25, use_: 55, revoke_grant: 3, status: 2 }
    }
}

struct Licence {
    id: LicenceId,
    ty: LicenceTypeId,
    holder: u32,
    data_key: DataKey,
    suspended: bool,
}

struct Grant {
    id: GrantId,
    grantee: MemberId,
    fields: u64,
    holder: u32,
}

/// Generates signed transactions for one chain.
pub struct Workload {
    consortium: Consortium,
    chain: ChainId,
    rng: StdRng,
    nonce: u64,
    population: u32,
    mix: Mix,
    members: Vec<Keypair>,
    holders: HashMap<u32, Keypair>,
    licences: Vec<Licence>,
    suspended: Vec<usize>,
    grants: Vec<Grant>,
    items_by_type: HashMap<LicenceTypeId, Vec<ItemId>>,
    tx_window_ms: u64,
    placement: Option<ShardMap>,
}

impl std::fmt::Debug for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workload")
            .field("chain", &self.chain)
            .field("population", &self.population)
            .field("licences", &self.licences.len())
            .field("grants", &self.grants.len())
            .finish_non_exhaustive()
    }
}

impl Workload {
    /// A generator for `chain` over `population` holders; the consortium must use development
    /// keys ([`elchain_types::profile::Profile::into_dev_consortium`]).
    pub fn new(consortium: Consortium, chain: ChainId, seed: u64, population: u32) -> Self {
        let members = consortium.members.iter().map(|m| dev_member_keypair(&m.code)).collect();
        let mut items_by_type: HashMap<LicenceTypeId, Vec<ItemId>> = HashMap::new();
        for item in &consortium.items {
            for (t, _) in &item.needs {
                items_by_type.entry(*t).or_default().push(item.id);
            }
        }
        Self {
            consortium,
            chain,
            rng: StdRng::seed_from_u64(seed),
            nonce: seed.wrapping_mul(1 << 32),
            population: population.max(1),
            mix: Mix::default(),
            members,
            holders: HashMap::new(),
            licences: Vec::new(),
            suspended: Vec::new(),
            grants: Vec::new(),
            items_by_type,
            tx_window_ms: 5 * 60 * 1000,
            placement: None,
        }
    }

    /// Issue licences only to holders `map` places on this generator's chain (for load through
    /// a router, which refuses misplaced issuance).
    pub fn with_placement(mut self, map: ShardMap) -> Self {
        self.placement = Some(map);
        self
    }

    /// Use another operation mix.
    pub fn with_mix(mut self, mix: Mix) -> Self {
        self.mix = mix;
        self
    }

    /// The holder key of person or enterprise `n` of the population.
    pub fn holder_key(n: u32) -> Keypair {
        Keypair::dev(&format!("holder/{n}"))
    }

    /// Licences issued so far.
    pub fn licences(&self) -> usize {
        self.licences.len()
    }

    /// `n` transactions, valid from `now`.
    pub fn batch(&mut self, n: usize, now: Timestamp) -> Vec<SignedTx> {
        (0..n).map(|_| self.next(now)).collect()
    }

    /// The next transaction.
    pub fn next(&mut self, now: Timestamp) -> SignedTx {
        let m = self.mix;
        let total = m.issue + m.grant + m.use_ + m.revoke_grant + m.status;
        let mut pick = self.rng.gen_range(0..total.max(1));
        let mut choose = |w: u32| {
            let hit = pick < w;
            pick = pick.saturating_sub(w);
            hit
        };
        let (issue, grant, use_, revoke) = (choose(m.issue), choose(m.grant), choose(m.use_), choose(m.revoke_grant));
        if issue || self.licences.is_empty() {
            self.issue(now)
        } else if grant || self.grants.is_empty() {
            self.grant(now)
        } else if use_ {
            self.use_grant(now)
        } else if revoke {
            self.revoke_grant(now)
        } else {
            self.status(now)
        }
    }

    fn ctx(&mut self, now: Timestamp) -> TxContext {
        self.nonce += 1;
        TxContext { chain: self.chain, nonce: self.nonce, valid_until: now.plus_ms(self.tx_window_ms) }
    }

    fn holder(&mut self, n: u32) -> Keypair {
        self.holders.entry(n).or_insert_with(|| Self::holder_key(n)).clone()
    }

    fn member_key(&self, id: MemberId) -> &Keypair {
        &self.members[id.0 as usize - 1]
    }

    /// Zipf-like skew: a few holders are much busier than the rest.
    fn pick_holder(&mut self) -> u32 {
        let u: f64 = self.rng.gen_range(0.0..1.0);
        ((self.population as f64).powf(u) as u32).saturating_sub(1).min(self.population - 1)
    }

    /// A holder for a new licence of type `ty`: with a placement, one it puts on this chain (a
    /// few hundred tries; a population too small to have one gets a misplaced issuance).
    fn pick_placed_holder(&mut self, ty: LicenceTypeId) -> u32 {
        let Some(map) = self.placement.take() else { return self.pick_holder() };
        let mut n = self.pick_holder();
        for _ in 0..256 {
            if map.place(ty, &self.holder(n).holder_id()) == self.chain {
                break;
            }
            n = self.pick_holder();
        }
        self.placement = Some(map);
        n
    }

    fn issue(&mut self, now: Timestamp) -> SignedTx {
        let ty: LicenceType =
            self.consortium.licence_types[self.rng.gen_range(0..self.consortium.licence_types.len())].clone();
        let n = self.pick_placed_holder(ty.id);
        let holder = self.holder(n);
        let values: Vec<(String, Vec<u8>)> = ty
            .fields
            .iter()
            .map(|f| (f.name.clone(), format!("{}#{n}#{}", f.name, self.rng.gen::<u32>()).into_bytes()))
            .collect();
        let refs: Vec<(&str, &[u8])> = values.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
        let valid_to = match ty.max_validity_days {
            0 => Timestamp(0),
            days => now.plus_ms(days as u64 * Timestamp::DAY_MS / 2),
        };
        let issuer = ty.issuers[self.rng.gen_range(0..ty.issuers.len())];
        let ctx = self.ctx(now);
        let draft = client::issue(
            ctx,
            &ty,
            issuer,
            holder.holder_id(),
            &holder.encryption_public(),
            &refs,
            (now, valid_to),
            &mut self.rng,
        )
        .expect("profile field names are valid");
        let mut signing = draft.body.seal().sign(self.member_key(issuer));
        let k = ty.endorse_k as usize;
        let start = self.rng.gen_range(0..ty.endorsers.len().max(1));
        for i in 0..k {
            let e = ty.endorsers[(start + i) % ty.endorsers.len()];
            if e != issuer {
                signing = signing.sign(self.member_key(e));
            }
        }
        self.licences.push(Licence {
            id: draft.licence,
            ty: ty.id,
            holder: n,
            data_key: draft.data_key,
            suspended: false,
        });
        signing.done()
    }

    fn grant(&mut self, now: Timestamp) -> SignedTx {
        let li = self.rng.gen_range(0..self.licences.len());
        let (licence, ty, holder_n) = (self.licences[li].id, self.licences[li].ty, self.licences[li].holder);
        let items = &self.items_by_type[&ty];
        let item_id = items[self.rng.gen_range(0..items.len())];
        let allowed = self.consortium.item(item_id).expect("item exists").allowed_fields(ty);
        let grantee = MemberId(self.rng.gen_range(1..=self.members.len() as u16));
        let terms = GrantTerms {
            grantee,
            item: item_id,
            fields: allowed,
            not_before: now,
            not_after: now.plus_ms(7 * Timestamp::DAY_MS),
            max_uses: if self.rng.gen_bool(0.5) { 0 } else { self.rng.gen_range(1..20) },
        };
        let recipient = self.member_key(grantee).encryption_public();
        let ctx = self.ctx(now);
        let body = client::grant(ctx, licence, &self.licences[li].data_key, terms, &recipient, &mut self.rng);
        let holder = self.holder(holder_n);
        let tx = body.seal().sign(&holder).done();
        self.grants.push(Grant { id: GrantId::from(tx.id()), grantee, fields: allowed, holder: holder_n });
        tx
    }

    fn use_grant(&mut self, now: Timestamp) -> SignedTx {
        let g = &self.grants[self.rng.gen_range(0..self.grants.len())];
        let (id, grantee, granted) = (g.id, g.grantee, g.fields);
        // Read all granted fields, or just the lowest one.
        let fields = if self.rng.gen_bool(0.7) { granted } else { granted & granted.wrapping_neg() };
        let ctx = self.ctx(now);
        client::use_fields(ctx, id, fields).seal().sign(self.member_key(grantee)).done()
    }

    fn revoke_grant(&mut self, now: Timestamp) -> SignedTx {
        let gi = self.rng.gen_range(0..self.grants.len());
        let g = self.grants.swap_remove(gi);
        let ctx = self.ctx(now);
        let body = TxBody {
            chain: ctx.chain,
            nonce: ctx.nonce,
            valid_until: ctx.valid_until,
            payload: Payload::RevokeGrant(RevokeGrant { grant: g.id }),
        };
        let holder = self.holder(g.holder);
        body.seal().sign(&holder).done()
    }

    /// Suspend a licence, or (more often, when some are suspended) reinstate one: suspensions
    /// are short, as in practice.
    fn status(&mut self, now: Timestamp) -> SignedTx {
        let li = match self.suspended.len() {
            n if n > 0 && self.rng.gen_bool(0.8) => self.suspended.swap_remove(self.rng.gen_range(0..n)),
            _ => self.rng.gen_range(0..self.licences.len()),
        };
        let l = &mut self.licences[li];
        let change = StatusChange { licence: l.id, reason: 1 };
        let payload = if l.suspended { Payload::Reinstate(change) } else { Payload::Suspend(change) };
        l.suspended = !l.suspended;
        if l.suspended {
            self.suspended.push(li);
        } else {
            self.suspended.retain(|&s| s != li);
        }
        let ty = l.ty;
        let issuer = self.consortium.licence_type(ty).expect("type exists").issuers[0];
        let ctx = self.ctx(now);
        TxBody { chain: ctx.chain, nonce: ctx.nonce, valid_until: ctx.valid_until, payload }
            .seal()
            .sign(self.member_key(issuer))
            .done()
    }
}

#[cfg(test)]
mod tests {
    use elchain_types::profile::Profile;
    use elchain_types::shardmap::DEFAULT_BUCKETS;
    use elchain_types::tx::Payload;

    use super::*;

    #[test]
    fn with_a_placement_every_issuance_goes_to_a_holder_placed_on_the_chain() {
        let c = Profile::sample().into_dev_consortium().unwrap();
        let map = ShardMap::even(&[ChainId(1), ChainId(2)], DEFAULT_BUCKETS).unwrap();
        let only_issue = Mix { issue: 1, grant: 0, use_: 0, revoke_grant: 0, status: 0 };
        for chain in [ChainId(1), ChainId(2)] {
            let mut w = Workload::new(c.clone(), chain, 5, 300).with_mix(only_issue).with_placement(map.clone());
            for tx in w.batch(60, Timestamp(1_800_000_000_000)) {
                let Payload::Issue(p) = &tx.body().payload else { panic!("not an issuance") };
                assert_eq!(map.place(p.licence_type, &p.holder), chain);
            }
        }
        // Without a placement the holders fall on both chains.
        let mut w = Workload::new(c, ChainId(1), 5, 300).with_mix(only_issue);
        let chains: std::collections::BTreeSet<ChainId> = w
            .batch(60, Timestamp(1_800_000_000_000))
            .iter()
            .filter_map(|tx| match &tx.body().payload {
                Payload::Issue(p) => Some(map.place(p.licence_type, &p.holder)),
                _ => None,
            })
            .collect();
        assert_eq!(chains.len(), 2);
    }
}
