//! A seeded generator of a service centre's signed transactions, from a consortium profile.
//!
//! It plays every party with development keys and follows each licence and grant through its
//! life cycle:
//!
//! ```text
//!  issue ─┬─► grant (an item's fields, to a department) ─► use … use ─► expired | used up | revoked
//!         ├─► suspend ⇄ reinstate
//!         ├─► renew (issuer + endorsers: a full term from now, before or after it lapses)
//!         └─► revoke (for good, rare)
//! ```
//!
//! - **Who.** Persons and enterprises numbered `0 .. population`, up to millions. Holder `n`'s
//!   keys are derived from `n` when it is first met, so a population costs nothing up front and
//!   memory grows only with the holders touched ([`Workload::holders_touched`]). Holders are
//!   picked log-uniformly (Zipf, s = 1): a few are much busier than the rest.
//! - **What.** Issuance of every licence type with full field sets and endorsements; grants of
//!   the fields a service item allows for the licence's type, the item picked by a Zipf law
//!   (s = 1.1) over a popularity rank that is the profile's, the same in every stream (a few
//!   items are most of the traffic); uses at service windows; grant revocations; suspensions and
//!   reinstatements; renewals of renewable types; rare revocations. [`Mix`] weighs them. Half the
//!   uses are of one of the newest grants: a grant made at a service window is used there.
//! - **Expiry.** A share [`Mix::short_grants`] of grants run out soon: a window of 10–60 s, or
//!   1–3 uses. The same share of licences of types with a maximum validity are issued 10–60 s
//!   before their end (a licence brought over late in its term); renewals take those first.
//! - **Staying valid.** The generator assumes what it sent was committed and keeps its own view
//!   of every licence and grant, so later transactions mostly stay valid: no grant or use on a
//!   licence it suspended, revoked or saw lapse, no use of a grant it revoked, saw expire or used
//!   up. A small deliberate share ([`STALE_SHARE`]) of grants and uses goes to those anyway, each
//!   way of ending alike, so that the chain's refusals (`grant_expired`, `grant_exhausted`,
//!   `grant_revoked`, `licence_revoked`, `licence_expired`) show in every run. A refusal it did
//!   not plan only makes later transactions that depend on it fail too, with the chain's codes.
//! - **Time.** Each batch is generated at the `now` it is given and counts on its windows only
//!   until shortly before they end. The deterministic simulator generates each batch when it
//!   sends it, at simulated time, so windows run out as in life. A generator given the same
//!   `now` batch after batch is signing ahead (pre-signed runs) and cannot know when its
//!   transactions will arrive: from then on it leaves out what depends on the clock (short
//!   windows, licences near their end), and its short grants run out by uses instead.
//! - **When.** Arrival curves (issuance waves, a service-centre day) are the scenario's `[load]
//!   ramp` (`scenarios/issuance-wave.toml`, `scenarios/service-centre-day-curve.toml`), not the
//!   generator's.
//!
//! Given a shard map ([`Workload::with_placement`]), it issues licences only to holders the map
//! places on its chain, as a department system asking the router's placement would, so that a
//! router does not refuse the issuance as misplaced.

use std::collections::{HashMap, VecDeque};

use elchain_shard::state::LicenceStatus;
use elchain_types::client::{self, GrantTerms, TxContext};
use elchain_types::contract::{Consortium, LicenceType};
use elchain_types::crypto::{DataKey, Keypair};
use elchain_types::ids::{ChainId, GrantId, HolderId, ItemId, LicenceId, LicenceTypeId, MemberId, Timestamp};
use elchain_types::profile::dev_member_keypair;
use elchain_types::shardmap::ShardMap;
use elchain_types::tx::{Payload, Renew, RevokeGrant, SignedTx, StatusChange, TxBody};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Share of grants and uses deliberately sent to a licence or grant the generator knows has
/// ended (revoked, lapsed, expired, used up), so that the chain's refusals show in every run.
pub const STALE_SHARE: f64 = 0.02;

/// Exponent of the Zipf law over service items: weight of the item of rank r ∝ 1 / r^s.
const ITEM_ZIPF_S: f64 = 1.1;

/// A short grant window, or the time left to a licence issued near its end: 10–60 s.
const SHORT_MS: std::ops::RangeInclusive<u64> = 10_000..=60_000;

/// The generator stops counting on a window this long before it ends: a block's time is a little
/// after the `now` its transactions were generated at.
const MARGIN_MS: u64 = 1_000;

/// A renewal's new end lies this far inside the type's maximum validity, so that a block time a
/// little behind the generator's clock does not find the term too long.
const RENEW_SLACK_MS: u64 = 60 * 60 * 1000;

/// Random picks before giving up on finding a licence or grant that fits.
const TRIES: usize = 16;

/// Ended grants remembered, per way of ending, for the deliberate share of refused uses.
const ENDED_KEPT: usize = 64;

/// Share of uses that go to one of the last [`RECENT`] grants: a grant made at a service window
/// is mostly used there and then.
const RECENT_SHARE: f64 = 0.5;

/// How many of the newest grants count as recent.
const RECENT: usize = 32;

/// Relative weights of the operations the generator picks from, and the share of short grants.
#[derive(Clone, Copy, Debug, PartialEq)]
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
    /// Renewals of licences of renewable types (issuer and endorsers sign).
    pub renew: u32,
    /// Licence revocations, for good.
    pub revoke: u32,
    /// Not a weight: the share (0 ..= 1) of grants that run out soon (10–60 s windows, or 1–3
    /// uses) and of issuances, of types with a maximum validity, 10–60 s before their end.
    pub short_grants: f64,
}

impl Mix {
    /// The weights, in the order [`Workload::next`] draws them.
    fn weights(&self) -> [u32; 7] {
        [self.issue, self.grant, self.use_, self.revoke_grant, self.status, self.renew, self.revoke]
    }

    /// The sum of the weights; 0 leaves nothing to pick but issuance.
    pub fn total(&self) -> u64 {
        self.weights().iter().map(|&w| u64::from(w)).sum()
    }
}

impl Default for Mix {
    /// The service-centre pattern, per thousand transactions: mostly uses and grants, some
    /// issuance, a few grant revocations, suspensions and renewals, rare revocations; one grant
    /// in twenty short.
    fn default() -> Self {
        Mix {
            issue: 150,
            grant: 250,
            use_: 540,
            revoke_grant: 30,
            status: 15,
            renew: 12,
            revoke: 3,
            short_grants: 0.05,
        }
    }
}

struct Licence {
    id: LicenceId,
    ty: LicenceTypeId,
    holder: u32,
    data_key: DataKey,
    status: LicenceStatus,
    /// 0: no expiry.
    valid_to: Timestamp,
}

impl Licence {
    /// Whether a grant or use of it sent at `now` will find it active and unexpired.
    fn usable(&self, now: Timestamp) -> bool {
        self.status == LicenceStatus::Active && !self.lapsed(now.plus_ms(MARGIN_MS))
    }

    fn lapsed(&self, now: Timestamp) -> bool {
        self.valid_to.0 != 0 && now > self.valid_to
    }
}

#[derive(Clone)]
struct Grant {
    id: GrantId,
    /// Index into the generator's licences.
    licence: usize,
    grantee: MemberId,
    fields: u64,
    holder: u32,
    not_after: Timestamp,
    max_uses: u32,
    /// Uses sent so far.
    uses: u32,
}

impl Grant {
    /// Whether its window will have closed by the time a use sent at `now` arrives.
    fn closing(&self, now: Timestamp) -> bool {
        now.plus_ms(MARGIN_MS) >= self.not_after
    }
}

/// How a grant the generator no longer counts on ended: what a use of it is refused for.
#[derive(Clone, Copy)]
enum End {
    /// `grant_revoked`.
    Revoked,
    /// `grant_expired`.
    Expired,
    /// `grant_exhausted`.
    UsedUp,
    /// `licence_revoked` or `licence_expired`.
    Licence,
}

/// The service items of one licence type with their cumulative popularity (Zipf weights).
struct Items {
    ids: Vec<ItemId>,
    cdf: Vec<f64>,
}

impl Items {
    fn pick(&self, rng: &mut StdRng) -> ItemId {
        let total = self.cdf.last().copied().unwrap_or(0.0);
        let u = rng.gen_range(0.0..1.0) * total;
        self.ids[self.cdf.partition_point(|&c| c <= u).min(self.ids.len() - 1)]
    }
}

/// Per licence type, its items with Zipf weights by one popularity rank over all items. The rank
/// is the order of the items' code hashes: fixed by the profile, the same in every stream, as a
/// service centre's busiest items are.
fn items_by_type(consortium: &Consortium) -> HashMap<LicenceTypeId, Items> {
    let mut ranked: Vec<([u8; 32], ItemId)> =
        consortium.items.iter().map(|i| (*blake3::hash(i.code.as_bytes()).as_bytes(), i.id)).collect();
    ranked.sort_unstable();
    let weight: HashMap<ItemId, f64> =
        ranked.iter().enumerate().map(|(r, (_, id))| (*id, 1.0 / ((r + 1) as f64).powf(ITEM_ZIPF_S))).collect();
    let mut out: HashMap<LicenceTypeId, Items> = HashMap::new();
    for item in &consortium.items {
        for (t, _) in &item.needs {
            let items = out.entry(*t).or_insert_with(|| Items { ids: Vec::new(), cdf: Vec::new() });
            items.cdf.push(items.cdf.last().copied().unwrap_or(0.0) + weight[&item.id]);
            items.ids.push(item.id);
        }
    }
    out
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
    /// Keys of the holders met so far.
    holders: HashMap<u32, Keypair>,
    licences: Vec<Licence>,
    suspended: Vec<usize>,
    revoked: Vec<usize>,
    /// Licences issued near their end and not renewed since.
    closing: Vec<usize>,
    /// Grants the generator counts on.
    grants: Vec<Grant>,
    /// Grants it knows have ended, by [`End`], newest last.
    ended: [VecDeque<Grant>; 4],
    /// Copies of the grants with short windows, until their window closes.
    windows: Vec<Grant>,
    items_by_type: HashMap<LicenceTypeId, Items>,
    tx_window_ms: u64,
    placement: Option<ShardMap>,
    /// The `now` of the last batch.
    last_batch: Option<Timestamp>,
    /// Batches come with a `now` that does not move: signing ahead.
    clock_still: bool,
}

impl std::fmt::Debug for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workload")
            .field("chain", &self.chain)
            .field("population", &self.population)
            .field("holders_touched", &self.holders.len())
            .field("licences", &self.licences.len())
            .field("grants", &self.grants.len())
            .finish_non_exhaustive()
    }
}

impl Workload {
    /// A generator for `chain` over `population` holders; the consortium must use development
    /// keys ([`elchain_types::profile::Profile::into_dev_consortium`]). Nothing is derived per
    /// holder until it is met, so a population of millions costs nothing up front.
    pub fn new(consortium: Consortium, chain: ChainId, seed: u64, population: u32) -> Self {
        let members = consortium.members.iter().map(|m| dev_member_keypair(&m.code)).collect();
        let items_by_type = items_by_type(&consortium);
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
            revoked: Vec::new(),
            closing: Vec::new(),
            grants: Vec::new(),
            ended: Default::default(),
            windows: Vec::new(),
            items_by_type,
            tx_window_ms: 5 * 60 * 1000,
            placement: None,
            last_batch: None,
            clock_still: false,
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

    /// Holders whose keys have been derived so far: what the population costs in memory.
    pub fn holders_touched(&self) -> usize {
        self.holders.len()
    }

    /// `n` transactions, valid from `now`. A `now` no later than the previous batch's means the
    /// caller signs ahead: see the module docs.
    pub fn batch(&mut self, n: usize, now: Timestamp) -> Vec<SignedTx> {
        self.clock_still = self.last_batch.is_some_and(|t| now <= t);
        self.last_batch = Some(now);
        self.close_windows(now);
        (0..n).map(|_| self.next(now)).collect()
    }

    /// The next transaction.
    pub fn next(&mut self, now: Timestamp) -> SignedTx {
        let mut pick = self.rng.gen_range(0..self.mix.total().max(1));
        let op = self
            .mix
            .weights()
            .iter()
            .position(|&w| {
                let hit = pick < u64::from(w);
                pick = pick.saturating_sub(u64::from(w));
                hit
            })
            .unwrap_or(0);
        let tx = match op {
            _ if self.licences.is_empty() => None,
            0 => None,
            1 => self.grant(now),
            2 => self.use_grant(now),
            3 => self.revoke_grant(now),
            4 => self.status(now),
            5 => self.renew(now),
            _ => self.revoke(now),
        };
        if let Some(tx) = tx {
            return tx;
        }
        // Nothing fits (no grant to use, no licence to renew): a grant, or else an issuance.
        if op > 1 && !self.licences.is_empty() {
            if let Some(tx) = self.grant(now) {
                return tx;
            }
        }
        self.issue(now)
    }

    fn ctx(&mut self, now: Timestamp) -> TxContext {
        self.nonce += 1;
        TxContext { chain: self.chain, nonce: self.nonce, valid_until: now.plus_ms(self.tx_window_ms) }
    }

    fn body(&mut self, now: Timestamp, payload: Payload) -> TxBody {
        let ctx = self.ctx(now);
        TxBody { chain: ctx.chain, nonce: ctx.nonce, valid_until: ctx.valid_until, payload }
    }

    fn holder(&mut self, n: u32) -> Keypair {
        self.holders.entry(n).or_insert_with(|| Self::holder_key(n)).clone()
    }

    /// Holder `n`'s id, without keeping its keys.
    fn holder_id(&self, n: u32) -> HolderId {
        self.holders.get(&n).map_or_else(|| Self::holder_key(n).holder_id(), Keypair::holder_id)
    }

    fn member_key(&self, id: MemberId) -> &Keypair {
        &self.members[id.0 as usize - 1]
    }

    fn licence_type(&self, id: LicenceTypeId) -> LicenceType {
        self.consortium.licence_type(id).expect("the generator only issues the profile's types").clone()
    }

    /// The share of short grants and near-end issuances, made safe for `gen_bool`.
    fn short_share(&self) -> f64 {
        let s = self.mix.short_grants;
        if s.is_finite() {
            s.clamp(0.0, 1.0)
        } else {
            0.0
        }
    }

    /// Zipf-like skew (log-uniform, s = 1): a few holders are much busier than the rest.
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
            if map.place(ty, &self.holder_id(n)) == self.chain {
                break;
            }
            n = self.pick_holder();
        }
        self.placement = Some(map);
        n
    }

    /// A random licence that `fits`, in a few tries.
    fn pick_licence(&mut self, fits: impl Fn(&Licence, &LicenceType) -> bool) -> Option<usize> {
        for _ in 0..TRIES {
            let li = self.rng.gen_range(0..self.licences.len());
            let l = &self.licences[li];
            if self.consortium.licence_type(l.ty).is_some_and(|t| fits(l, t)) {
                return Some(li);
            }
        }
        None
    }

    /// Sign `body` as `issuer` with `ty.endorse_k` endorsers of the type.
    fn sign_endorsed(&mut self, body: TxBody, ty: &LicenceType, issuer: MemberId) -> SignedTx {
        let mut signing = body.seal().sign(self.member_key(issuer));
        let start = self.rng.gen_range(0..ty.endorsers.len().max(1));
        for i in 0..ty.endorse_k as usize {
            let e = ty.endorsers[(start + i) % ty.endorsers.len()];
            if e != issuer {
                signing = signing.sign(self.member_key(e));
            }
        }
        signing.done()
    }

    fn issue(&mut self, now: Timestamp) -> SignedTx {
        let ty = self.consortium.licence_types[self.rng.gen_range(0..self.consortium.licence_types.len())].clone();
        let n = self.pick_placed_holder(ty.id);
        let holder = self.holder(n);
        let values: Vec<(String, Vec<u8>)> = ty
            .fields
            .iter()
            .map(|f| (f.name.clone(), format!("{}#{n}#{}", f.name, self.rng.gen::<u32>()).into_bytes()))
            .collect();
        let refs: Vec<(&str, &[u8])> = values.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
        let max_ms = u64::from(ty.max_validity_days) * Timestamp::DAY_MS;
        // Now and then a licence late in its term: its full term, ending in 10–60 s.
        let closing = max_ms > 0 && !self.clock_still && self.rng.gen_bool(self.short_share());
        let (valid_from, valid_to) = if max_ms == 0 {
            (now, Timestamp(0))
        } else if closing {
            let left = self.rng.gen_range(SHORT_MS);
            (Timestamp(now.0.saturating_sub(max_ms - left)), now.plus_ms(left))
        } else {
            (now, now.plus_ms(max_ms / 2))
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
            (valid_from, valid_to),
            &mut self.rng,
        )
        .expect("profile field names are valid");
        let tx = self.sign_endorsed(draft.body, &ty, issuer);
        if closing {
            self.closing.push(self.licences.len());
        }
        self.licences.push(Licence {
            id: draft.licence,
            ty: ty.id,
            holder: n,
            data_key: draft.data_key,
            status: LicenceStatus::Active,
            valid_to,
        });
        tx
    }

    /// A holder grants the fields a (Zipf-popular) item allows to a department: mostly for a
    /// week, a share [`Mix::short_grants`] short.
    fn grant(&mut self, now: Timestamp) -> Option<SignedTx> {
        let stale = if self.rng.gen_bool(STALE_SHARE) { self.ended_licence(now) } else { None };
        let li = match stale {
            Some(li) => li,
            None => self.pick_licence(|l, _| l.usable(now))?,
        };
        let (licence, ty, holder_n) = (self.licences[li].id, self.licences[li].ty, self.licences[li].holder);
        let item_id = self.items_by_type.get(&ty).filter(|i| !i.ids.is_empty())?.pick(&mut self.rng);
        let allowed = self.consortium.item(item_id).expect("item exists").allowed_fields(ty);
        let grantee = MemberId(self.rng.gen_range(1..=self.members.len() as u16));
        let week = now.plus_ms(7 * Timestamp::DAY_MS);
        let (not_after, max_uses) = if !self.rng.gen_bool(self.short_share()) {
            (week, if self.rng.gen_bool(0.5) { 0 } else { self.rng.gen_range(1..20) })
        } else if !self.clock_still && self.rng.gen_bool(0.5) {
            (now.plus_ms(self.rng.gen_range(SHORT_MS)), 0)
        } else {
            (week, self.rng.gen_range(1..=3))
        };
        let terms = GrantTerms { grantee, item: item_id, fields: allowed, not_before: now, not_after, max_uses };
        let recipient = self.member_key(grantee).encryption_public();
        let ctx = self.ctx(now);
        let body = client::grant(ctx, licence, &self.licences[li].data_key, terms, &recipient, &mut self.rng);
        let holder = self.holder(holder_n);
        let tx = body.seal().sign(&holder).done();
        if stale.is_none() {
            let g = Grant {
                id: GrantId::from(tx.id()),
                licence: li,
                grantee,
                fields: allowed,
                holder: holder_n,
                not_after,
                max_uses,
                uses: 0,
            };
            if not_after < week {
                self.windows.push(g.clone());
            }
            self.grants.push(g);
        }
        Some(tx)
    }

    /// A revoked or lapsed licence, for the deliberate share of refused grants.
    fn ended_licence(&mut self, now: Timestamp) -> Option<usize> {
        let n = self.revoked.len() + self.closing.len();
        if n == 0 {
            return None;
        }
        let k = self.rng.gen_range(0..n);
        let li = if k < self.revoked.len() { self.revoked[k] } else { self.closing[k - self.revoked.len()] };
        let l = &self.licences[li];
        (l.status == LicenceStatus::Revoked || l.lapsed(now)).then_some(li)
    }

    /// A department uses a grant it counts on, mostly one just made ([`RECENT_SHARE`]); now and
    /// then ([`STALE_SHARE`]) one that has ended, each way of ending alike.
    fn use_grant(&mut self, now: Timestamp) -> Option<SignedTx> {
        let ways: Vec<usize> = (0..self.ended.len()).filter(|&e| !self.ended[e].is_empty()).collect();
        if !ways.is_empty() && self.rng.gen_bool(STALE_SHARE) {
            let pool = &self.ended[ways[self.rng.gen_range(0..ways.len())]];
            let g = &pool[self.rng.gen_range(0..pool.len())];
            let (id, grantee, fields) = (g.id, g.grantee, g.fields);
            return Some(self.use_tx(now, id, grantee, fields));
        }
        for _ in 0..TRIES {
            let n = self.grants.len();
            if n == 0 {
                return None;
            }
            let gi = match self.rng.gen_bool(RECENT_SHARE) {
                true => n - 1 - self.rng.gen_range(0..n.min(RECENT)),
                false => self.rng.gen_range(0..n),
            };
            let g = &self.grants[gi];
            let l = &self.licences[g.licence];
            if g.closing(now) {
                // Only short windows close during a run; `close_windows` remembers them.
                self.grants.swap_remove(gi);
                continue;
            }
            if l.status == LicenceStatus::Revoked || l.lapsed(now.plus_ms(MARGIN_MS)) {
                let g = self.grants.swap_remove(gi);
                self.remember_ended(End::Licence, g);
                continue;
            }
            if !l.usable(now) {
                continue; // suspended: wait for the reinstatement
            }
            let (id, grantee, fields) = (g.id, g.grantee, g.fields);
            self.grants[gi].uses += 1;
            if self.grants[gi].uses == self.grants[gi].max_uses {
                let g = self.grants.swap_remove(gi);
                self.remember_ended(End::UsedUp, g);
            }
            return Some(self.use_tx(now, id, grantee, fields));
        }
        None
    }

    fn use_tx(&mut self, now: Timestamp, grant: GrantId, grantee: MemberId, granted: u64) -> SignedTx {
        // Read all granted fields, or just the lowest one.
        let fields = if self.rng.gen_bool(0.7) { granted } else { granted & granted.wrapping_neg() };
        let ctx = self.ctx(now);
        client::use_fields(ctx, grant, fields).seal().sign(self.member_key(grantee)).done()
    }

    fn remember_ended(&mut self, end: End, g: Grant) {
        let pool = &mut self.ended[end as usize];
        if pool.len() == ENDED_KEPT {
            pool.pop_front();
        }
        pool.push_back(g);
    }

    /// Remember the short windows closed at `now` as expired grants (those still counted on
    /// are dropped when a use next picks them).
    fn close_windows(&mut self, now: Timestamp) {
        let mut i = 0;
        while i < self.windows.len() {
            if self.windows[i].not_after < now {
                let g = self.windows.swap_remove(i);
                self.remember_ended(End::Expired, g);
            } else {
                i += 1;
            }
        }
    }

    fn revoke_grant(&mut self, now: Timestamp) -> Option<SignedTx> {
        if self.grants.is_empty() {
            return None;
        }
        let g = self.grants.swap_remove(self.rng.gen_range(0..self.grants.len()));
        let body = self.body(now, Payload::RevokeGrant(RevokeGrant { grant: g.id }));
        let holder = self.holder(g.holder);
        let tx = body.seal().sign(&holder).done();
        self.remember_ended(End::Revoked, g);
        Some(tx)
    }

    /// Suspend a licence, or (more often, when some are suspended) reinstate one: suspensions
    /// are short, as in practice.
    fn status(&mut self, now: Timestamp) -> Option<SignedTx> {
        let li = match self.suspended.len() {
            n if n > 0 && self.rng.gen_bool(0.8) => self.suspended.swap_remove(self.rng.gen_range(0..n)),
            _ => self.pick_licence(|l, _| l.status != LicenceStatus::Revoked)?,
        };
        let l = &mut self.licences[li];
        let change = StatusChange { licence: l.id, reason: 1 };
        let payload = if l.status == LicenceStatus::Suspended {
            l.status = LicenceStatus::Active;
            self.suspended.retain(|&s| s != li);
            Payload::Reinstate(change)
        } else {
            l.status = LicenceStatus::Suspended;
            self.suspended.push(li);
            Payload::Suspend(change)
        };
        let ty = self.licence_type(self.licences[li].ty);
        let issuer = ty.issuers[self.rng.gen_range(0..ty.issuers.len())];
        let body = self.body(now, payload);
        Some(body.seal().sign(self.member_key(issuer)).done())
    }

    /// The new end of a licence of a type with `max_ms` of validity renewed at `now`.
    fn renewed_to(now: Timestamp, max_ms: u64) -> Timestamp {
        now.plus_ms(max_ms.saturating_sub(RENEW_SLACK_MS))
    }

    /// An issuer and endorsers extend an active licence of a renewable type to a full term from
    /// now: first those issued near their end (lapsed or not), else any that a renewal extends.
    fn renew(&mut self, now: Timestamp) -> Option<SignedTx> {
        let renewable = |l: &Licence, t: &LicenceType| {
            let max_ms = u64::from(t.max_validity_days) * Timestamp::DAY_MS;
            t.renewable
                && max_ms > RENEW_SLACK_MS
                && l.status == LicenceStatus::Active
                && l.valid_to.0 != 0
                && l.valid_to < Self::renewed_to(now, max_ms)
        };
        let closing = match self.closing.len() {
            0 => None,
            n => Some(self.rng.gen_range(0..n)),
        };
        let li = match closing.map(|k| (k, self.closing[k])) {
            Some((k, li))
                if self
                    .consortium
                    .licence_type(self.licences[li].ty)
                    .is_some_and(|t| renewable(&self.licences[li], t)) =>
            {
                self.closing.swap_remove(k);
                li
            }
            _ => self.pick_licence(renewable)?,
        };
        let ty = self.licence_type(self.licences[li].ty);
        let valid_to = Self::renewed_to(now, u64::from(ty.max_validity_days) * Timestamp::DAY_MS);
        self.licences[li].valid_to = valid_to;
        self.closing.retain(|&c| c != li);
        let issuer = ty.issuers[self.rng.gen_range(0..ty.issuers.len())];
        let body = self.body(now, Payload::Renew(Renew { licence: self.licences[li].id, valid_to }));
        Some(self.sign_endorsed(body, &ty, issuer))
    }

    /// An issuer revokes a licence for good; the generator grants and uses it no more (but for
    /// the deliberate share of refusals).
    fn revoke(&mut self, now: Timestamp) -> Option<SignedTx> {
        let li = self.pick_licence(|l, _| l.status != LicenceStatus::Revoked)?;
        self.licences[li].status = LicenceStatus::Revoked;
        self.suspended.retain(|&s| s != li);
        self.closing.retain(|&c| c != li);
        self.revoked.push(li);
        let ty = self.licence_type(self.licences[li].ty);
        let issuer = ty.issuers[self.rng.gen_range(0..ty.issuers.len())];
        let body = self.body(now, Payload::Revoke(StatusChange { licence: self.licences[li].id, reason: 2 }));
        Some(body.seal().sign(self.member_key(issuer)).done())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashMap};

    use elchain_types::profile::Profile;
    use elchain_types::shardmap::DEFAULT_BUCKETS;
    use elchain_types::tx::Payload;

    use super::*;

    const T0: u64 = 1_800_000_000_000;

    /// Every weight 0, no short grants.
    fn nothing() -> Mix {
        Mix { issue: 0, grant: 0, use_: 0, revoke_grant: 0, status: 0, renew: 0, revoke: 0, short_grants: 0.0 }
    }

    fn consortium() -> Consortium {
        Profile::sample().into_dev_consortium().unwrap()
    }

    #[test]
    fn with_a_placement_every_issuance_goes_to_a_holder_placed_on_the_chain() {
        let c = consortium();
        let map = ShardMap::even(&[ChainId(1), ChainId(2)], DEFAULT_BUCKETS).unwrap();
        let only_issue = Mix { issue: 1, ..nothing() };
        for chain in [ChainId(1), ChainId(2)] {
            let mut w = Workload::new(c.clone(), chain, 5, 300).with_mix(only_issue).with_placement(map.clone());
            for tx in w.batch(60, Timestamp(T0)) {
                let Payload::Issue(p) = &tx.body().payload else { panic!("not an issuance") };
                assert_eq!(map.place(p.licence_type, &p.holder), chain);
            }
            // Holders tried and placed elsewhere are not kept.
            assert!(w.holders_touched() <= 60, "{} holders kept", w.holders_touched());
        }
        // Without a placement the holders fall on both chains.
        let mut w = Workload::new(c, ChainId(1), 5, 300).with_mix(only_issue);
        let chains: BTreeSet<ChainId> = w
            .batch(60, Timestamp(T0))
            .iter()
            .filter_map(|tx| match &tx.body().payload {
                Payload::Issue(p) => Some(map.place(p.licence_type, &p.holder)),
                _ => None,
            })
            .collect();
        assert_eq!(chains.len(), 2);
    }

    #[test]
    fn every_kind_is_generated_under_a_mix_that_weighs_it() {
        let c = consortium();
        let ops: [(&str, Mix); 7] = [
            ("issue", Mix { issue: 1, ..nothing() }),
            ("grant", Mix { issue: 1, grant: 3, ..nothing() }),
            ("use", Mix { issue: 1, grant: 1, use_: 3, ..nothing() }),
            ("revoke_grant", Mix { issue: 1, grant: 1, revoke_grant: 3, ..nothing() }),
            ("suspend", Mix { issue: 1, status: 3, ..nothing() }),
            ("renew", Mix { issue: 1, renew: 3, ..nothing() }),
            ("revoke", Mix { issue: 1, revoke: 3, ..nothing() }),
        ];
        for (kind, mix) in ops {
            let mut w = Workload::new(c.clone(), ChainId(1), 9, 1000).with_mix(mix);
            let n = (0..10u64)
                .flat_map(|b| w.batch(30, Timestamp(T0 + b * 1000)))
                .filter(|t| t.body().payload.kind() == kind)
                .count();
            assert!(n >= 30, "{n} {kind} of 300 under {mix:?}");
        }
    }

    #[test]
    fn service_items_are_picked_by_a_zipf_law() {
        let c = consortium();
        let mut w = Workload::new(c.clone(), ChainId(1), 4, 5000).with_mix(Mix { issue: 1, grant: 3, ..nothing() });
        let mut per_item: HashMap<ItemId, usize> = HashMap::new();
        for b in 0..40u64 {
            for tx in w.batch(100, Timestamp(T0 + b * 1000)) {
                if let Payload::Grant(g) = &tx.body().payload {
                    *per_item.entry(g.item).or_default() += 1;
                }
            }
        }
        let grants: usize = per_item.values().sum();
        let mut counts: Vec<usize> = per_item.into_values().collect();
        counts.sort_unstable_by(|a, b| b.cmp(a));
        let top: usize = counts.iter().take(c.items.len() / 10).sum();
        assert!(grants > 2500, "{grants} grants");
        assert!(top * 100 > grants * 40, "the top tenth of {} items got {top} of {grants} grants", c.items.len());
    }

    #[test]
    fn a_population_of_millions_costs_only_the_holders_met() {
        let mut w = Workload::new(consortium(), ChainId(1), 2, 5_000_000);
        assert_eq!(w.holders_touched(), 0);
        let txs: Vec<SignedTx> = (0..10u64).flat_map(|b| w.batch(100, Timestamp(T0 + b * 1000))).collect();
        assert_eq!(txs.len(), 1000);
        let issued: BTreeSet<HolderId> = txs
            .iter()
            .filter_map(|t| match &t.body().payload {
                Payload::Issue(p) => Some(p.holder),
                _ => None,
            })
            .collect();
        // Keys are kept for the holders that got a licence, no others.
        assert_eq!(w.holders_touched(), issued.len());
        // And they come from all over the population, not just its start.
        assert!(w.holders.keys().any(|&n| n > 1_000_000), "{:?}", w.holders.keys().max());
    }

    /// (grant windows, in ms after `now`, and max uses; issuances' ms of validity left).
    fn terms(txs: &[SignedTx], now: Timestamp) -> (Vec<(u64, u32)>, Vec<u64>) {
        let (mut grants, mut issued) = (Vec::new(), Vec::new());
        for tx in txs {
            match &tx.body().payload {
                Payload::Grant(g) => grants.push((g.not_after.0 - now.0, g.max_uses)),
                Payload::Issue(p) if p.valid_to.0 != 0 => issued.push(p.valid_to.0 - now.0),
                _ => {}
            }
        }
        (grants, issued)
    }

    #[test]
    fn short_grants_and_licences_near_their_end_follow_the_share_and_the_clock() {
        let mix = Mix { issue: 1, grant: 1, short_grants: 0.5, ..nothing() };
        let short = |ms: u64| SHORT_MS.contains(&ms);
        // A moving clock: short windows and licences 10-60 s from their end.
        let mut w = Workload::new(consortium(), ChainId(1), 3, 1000).with_mix(mix);
        let mut txs = Vec::new();
        for b in 0..4u64 {
            let now = Timestamp(T0 + b * 1000);
            let (grants, issued) = terms(&w.batch(100, now), now);
            txs.push((grants, issued));
        }
        let grants: Vec<(u64, u32)> = txs.iter().flat_map(|t| t.0.clone()).collect();
        let issued: Vec<u64> = txs.iter().flat_map(|t| t.1.clone()).collect();
        assert!(grants.iter().any(|&(ms, _)| short(ms)), "no short window");
        assert!(grants.iter().any(|&(ms, uses)| !short(ms) && (1..=3).contains(&uses)), "no grant of 1-3 uses");
        assert!(issued.iter().any(|&ms| short(ms)), "no licence near its end");
        // A clock that stands still (signing ahead): after the first batch, nothing that the
        // wall clock would end; short grants end by uses.
        let mut w = Workload::new(consortium(), ChainId(1), 3, 1000).with_mix(mix);
        let now = Timestamp(T0);
        w.batch(100, now);
        let later: Vec<SignedTx> = (0..4).flat_map(|_| w.batch(100, now)).collect();
        let (grants, issued) = terms(&later, now);
        assert!(grants.iter().all(|&(ms, _)| ms == 7 * Timestamp::DAY_MS), "{grants:?}");
        assert!(grants.iter().filter(|&&(_, uses)| (1..=3).contains(&uses)).count() > grants.len() / 4);
        assert!(issued.iter().all(|&ms| ms > Timestamp::DAY_MS), "{issued:?}");
    }

    #[test]
    fn the_same_seed_generates_the_same_life_cycles() {
        let mix = Mix { renew: 50, revoke: 20, short_grants: 0.2, ..Mix::default() };
        let run = || {
            let mut w = Workload::new(consortium(), ChainId(1), 8, 100_000).with_mix(mix);
            (0..10u64).flat_map(|b| w.batch(50, Timestamp(T0 + b * 5000))).map(|t| t.id()).collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
    }
}
