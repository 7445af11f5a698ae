//! The state machine's rules: every reject code has a test of its own, plus whole life cycles,
//! field privacy at the data-model level and determinism.

use elchain_types::block::BlockHeader;
use elchain_types::client::{self, GrantTerms, IssueDraft, TxContext};
use elchain_types::codec::{Decode, Encode};
use elchain_types::contract::{Consortium, LicenceType};
use elchain_types::crypto::{FieldKeys, Keypair};
use elchain_types::ids::{ChainId, GrantId, Hash32, ItemId, LicenceId, LicenceTypeId, MemberId, Timestamp};
use elchain_types::profile::{dev_member_keypair, Profile};
use elchain_types::reason::{Outcome, RejectCode};
use elchain_types::shardmap::{ChainInfo, ReplicaInfo, Rule, ShardMap, DEFAULT_BUCKETS};
use elchain_types::tx::{limits, Amend, Attest, Govern, Payload, Renew, RevokeGrant, SignedTx, StatusChange, TxBody};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::*;
use crate::state::{MemState, StateReads};
use crate::verifier::check_chunk;

const CHAIN: ChainId = ChainId(1);
const T0: u64 = 1_800_000_000_000;
/// P001 "Enrol a child in primary school": resident ID card full_name and id_number.
const ITEM: ItemId = ItemId(254);

pub(crate) struct Fx {
    pub c: Consortium,
    pub chain: ChainId,
    pub state: MemState,
    pub tip: BlockHeader,
    pub now: Timestamp,
    rng: StdRng,
    nonce: u64,
}

impl Fx {
    pub fn new(seed: u64) -> Self {
        Self::on(CHAIN, seed)
    }

    /// A fixture for the meta chain.
    pub fn meta(seed: u64) -> Self {
        Self::on(ChainId::META, seed)
    }

    fn on(chain: ChainId, seed: u64) -> Self {
        let c = Profile::sample().into_dev_consortium().unwrap();
        let tip = genesis_header(chain, &c, Timestamp(T0));
        let rng = StdRng::seed_from_u64(seed);
        Fx { c, chain, state: MemState::default(), tip, now: Timestamp(T0), rng, nonce: 0 }
    }

    fn ty(&self, code: &str) -> LicenceType {
        self.c.licence_type_by_code(code).unwrap().clone()
    }

    fn member_id(&self, code: &str) -> MemberId {
        self.c.member_by_code(code).unwrap().id
    }

    fn ctx(&mut self) -> TxContext {
        self.nonce += 1;
        TxContext { chain: self.chain, nonce: self.nonce, valid_until: self.now.plus_ms(60_000) }
    }

    /// Run raw entries as one block; the clock moves on by one second.
    pub fn run_raw(&mut self, raws: Vec<Vec<u8>>) -> Vec<Outcome> {
        let checked = check_chunk(self.chain, raws);
        let ex = Executor::new(&self.c, self.chain).execute(
            &self.state,
            &self.tip,
            self.now,
            LogPosition::default(),
            checked,
        );
        self.state.apply(&ex.writes);
        self.tip = ex.block.header;
        self.now = self.now.plus_ms(1000);
        ex.block.outcomes
    }

    pub fn run(&mut self, txs: &[SignedTx]) -> Vec<Outcome> {
        self.run_raw(txs.iter().map(Encode::to_bytes).collect())
    }

    fn run1(&mut self, tx: &SignedTx) -> Outcome {
        self.run(std::slice::from_ref(tx))[0]
    }

    fn expect(&mut self, tx: &SignedTx, code: RejectCode) {
        assert_eq!(self.run1(tx), Outcome::Invalid(code));
    }

    /// An issuance of `code` to `holder` with every field filled.
    fn draft(&mut self, code: &str, holder: &Keypair) -> IssueDraft {
        let ty = self.ty(code);
        let values: Vec<(String, Vec<u8>)> = ty
            .fields
            .iter()
            .map(|f| (f.name.clone(), format!("{}-{}", f.name, holder.public().to_hex()).into_bytes()))
            .collect();
        let refs: Vec<(&str, &[u8])> = values.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect();
        let to = if ty.max_validity_days == 0 { Timestamp(0) } else { self.now.plus_ms(365 * Timestamp::DAY_MS) };
        let ctx = self.ctx();
        client::issue(
            ctx,
            &ty,
            self.issuer_id(code),
            holder.holder_id(),
            &holder.encryption_public(),
            &refs,
            (self.now, to),
            &mut self.rng,
        )
        .unwrap()
    }

    fn issuer_id(&self, code: &str) -> MemberId {
        self.ty(code).issuers[0]
    }

    /// Sign as the type's issuer plus exactly `endorse_k` endorsers.
    fn sign_as_issuer(&self, code: &str, body: TxBody) -> SignedTx {
        let ty = self.ty(code);
        let mut tx = body.seal().sign(&self.member_key(ty.issuers[0]));
        for e in ty.endorsers.iter().take(ty.endorse_k as usize) {
            tx = tx.sign(&self.member_key(*e));
        }
        tx.done()
    }

    fn member_key(&self, id: MemberId) -> Keypair {
        dev_member_keypair(&self.c.member(id).unwrap().code)
    }

    fn issued(&mut self, code: &str, holder: &Keypair) -> (LicenceId, elchain_types::crypto::DataKey) {
        let d = self.draft(code, holder);
        let tx = self.sign_as_issuer(code, d.body);
        assert_eq!(self.run1(&tx), Outcome::Valid);
        (d.licence, d.data_key)
    }

    fn id_card(&mut self, holder: &Keypair) -> LicenceId {
        self.issued("resident_id_card", holder).0
    }

    fn grant_body(&mut self, licence: LicenceId, terms: GrantTerms) -> TxBody {
        let ctx = self.ctx();
        let dk = elchain_types::crypto::DataKey([0; 32]);
        let enc = self.c.member(terms.grantee).map_or([9; 32], |m| m.encryption_key);
        client::grant(ctx, licence, &dk, terms, &enc, &mut self.rng)
    }

    fn terms(&self, fields: &[&str]) -> GrantTerms {
        GrantTerms {
            grantee: self.member_id("education"),
            item: ITEM,
            fields: client::mask(&self.ty("resident_id_card"), fields).unwrap(),
            not_before: self.now,
            not_after: self.now.plus_ms(30 * Timestamp::DAY_MS),
            max_uses: 0,
        }
    }

    fn granted(&mut self, licence: LicenceId, holder: &Keypair, terms: GrantTerms) -> GrantId {
        let tx = self.grant_body(licence, terms).seal().sign(holder).done();
        assert_eq!(self.run1(&tx), Outcome::Valid);
        GrantId::from(tx.id())
    }

    fn use_tx(&mut self, grant: GrantId, fields: u64, signer: &str) -> SignedTx {
        let ctx = self.ctx();
        client::use_fields(ctx, grant, fields).seal().sign(&dev_member_keypair(signer)).done()
    }

    fn status_tx(&mut self, licence: LicenceId, kind: fn(StatusChange) -> Payload, signer: &str) -> SignedTx {
        let ctx = self.ctx();
        TxBody {
            chain: ctx.chain,
            nonce: ctx.nonce,
            valid_until: ctx.valid_until,
            payload: kind(StatusChange { licence, reason: 7 }),
        }
        .seal()
        .sign(&dev_member_keypair(signer))
        .done()
    }

    fn body(&mut self, payload: Payload) -> TxBody {
        let ctx = self.ctx();
        TxBody { chain: ctx.chain, nonce: ctx.nonce, valid_until: ctx.valid_until, payload }
    }

    /// Development keys of the genesis consortium's first `n` admins.
    fn admin_keys(&self, n: usize) -> Vec<Keypair> {
        self.c.admins().take(n).map(|m| dev_member_keypair(&m.code)).collect()
    }

    /// A governance transaction signed by `signers`, in order.
    fn gov(&mut self, action: Govern, signers: &[Keypair]) -> SignedTx {
        let ctx = self.ctx();
        signers.iter().fold(client::govern(ctx, action).seal(), |tx, k| tx.sign(k)).done()
    }

    /// Run `action` signed by exactly `admin_k` genesis admins.
    fn govern(&mut self, action: Govern) -> Outcome {
        let keys = self.admin_keys(self.c.admin_k as usize);
        let tx = self.gov(action, &keys);
        self.run1(&tx)
    }

    /// The consortium that governs the meta chain now.
    fn current(&self) -> Consortium {
        self.state.governed_consortium().unwrap_or_else(|| self.c.clone())
    }
}

fn chain_info(id: u32, nodes: &[u64]) -> ChainInfo {
    let replicas = nodes.iter().map(|n| ReplicaInfo { node: *n, addr: format!("10.0.{id}.{n}:7000") }).collect();
    ChainInfo { id: ChainId(id), replicas }
}

fn person(n: u32) -> Keypair {
    Keypair::dev(&format!("person-{n}"))
}

fn name_and_id(fx: &Fx) -> u64 {
    client::mask(&fx.ty("resident_id_card"), &["full_name", "id_number"]).unwrap()
}

// ---- stateless codes, through verifier and executor together ----

#[test]
fn malformed_bytes_stay_in_the_block_marked_malformed() {
    let mut fx = Fx::new(1);
    assert_eq!(fx.run_raw(vec![vec![0xde, 0xad]]), vec![Outcome::Invalid(RejectCode::Malformed)]);
}

#[test]
fn oversized_transaction_is_refused() {
    let mut fx = Fx::new(1);
    assert_eq!(fx.run_raw(vec![vec![0; limits::MAX_TX_BYTES + 1]]), vec![Outcome::Invalid(RejectCode::Oversized)]);
}

#[test]
fn unsigned_transaction_is_refused() {
    let mut fx = Fx::new(1);
    let d = fx.draft("resident_id_card", &person(1));
    fx.expect(&d.body.seal().done(), RejectCode::Unsigned);
}

#[test]
fn bad_signature_is_refused() {
    let mut fx = Fx::new(1);
    let d = fx.draft("resident_id_card", &person(1));
    let good = fx.sign_as_issuer("resident_id_card", d.body);
    let mut raw = good.to_bytes();
    let n = raw.len();
    raw[n - 1] ^= 0x40;
    assert_eq!(fx.run_raw(vec![raw]), vec![Outcome::Invalid(RejectCode::BadSignature)]);
    assert!(fx.state.licence(&d.licence).is_none());
}

#[test]
fn transaction_for_another_chain_is_refused() {
    let mut fx = Fx::new(1);
    let mut body = fx.body(Payload::Attest(Attest { digest: Hash32([1; 32]), kind: 1 }));
    body.chain = ChainId(2);
    fx.expect(&body.seal().sign(&dev_member_keypair("justice")).done(), RejectCode::WrongChain);
}

// ---- window and replay ----

#[test]
fn expired_window_is_refused() {
    let mut fx = Fx::new(1);
    let mut body = fx.body(Payload::Attest(Attest { digest: Hash32([1; 32]), kind: 1 }));
    body.valid_until = Timestamp(fx.now.0 - 1);
    fx.expect(&body.seal().sign(&dev_member_keypair("justice")).done(), RejectCode::Expired);
}

#[test]
fn window_further_ahead_than_allowed_is_refused() {
    let mut fx = Fx::new(1);
    let mut body = fx.body(Payload::Attest(Attest { digest: Hash32([1; 32]), kind: 1 }));
    body.valid_until = fx.now.plus_ms(limits::MAX_TX_WINDOW_MS + 1);
    fx.expect(&body.seal().sign(&dev_member_keypair("justice")).done(), RejectCode::WindowTooLong);
}

#[test]
fn replayed_transaction_is_refused_and_expired_after_its_window() {
    let mut fx = Fx::new(1);
    let body = fx.body(Payload::Attest(Attest { digest: Hash32([1; 32]), kind: 1 }));
    let tx = body.seal().sign(&dev_member_keypair("justice")).done();
    assert_eq!(fx.run1(&tx), Outcome::Valid);
    fx.expect(&tx, RejectCode::Replay);
    // Within one block as well.
    let body = fx.body(Payload::Attest(Attest { digest: Hash32([2; 32]), kind: 1 }));
    let tx2 = body.seal().sign(&dev_member_keypair("justice")).done();
    assert_eq!(fx.run(&[tx2.clone(), tx2]), vec![Outcome::Valid, Outcome::Invalid(RejectCode::Replay)]);
    // Once its window has passed, the same transaction is refused as expired: ids that took
    // effect are kept in the tx index for good, nothing has to be pruned.
    fx.now = fx.now.plus_ms(limits::MAX_TX_WINDOW_MS + 1);
    fx.expect(&tx, RejectCode::Expired);
    let entry = fx.state.tx_entry(&tx.id()).expect("indexed");
    assert!(entry.took_effect(), "{entry:?}");
}

// ---- issuance ----

#[test]
fn issue_by_a_member_that_may_not_issue_the_type_is_refused() {
    let mut fx = Fx::new(1);
    let d = fx.draft("resident_id_card", &person(1));
    fx.expect(&d.body.seal().sign(&dev_member_keypair("civil-affairs")).done(), RejectCode::WrongIssuer);
}

#[test]
fn issue_without_the_required_endorsement_is_refused() {
    let mut fx = Fx::new(1);
    let d = fx.draft("business_licence", &person(2));
    // The issuer alone; the business licence needs one district's endorsement.
    let tx = d.body.clone().seal().sign(&dev_member_keypair("market-regulation")).done();
    fx.expect(&tx, RejectCode::EndorsementMissing);
    // A refused transaction does not consume its id: the same body, now endorsed, goes through
    // below. A signature by a member that is not an endorser does not count.
    let tx = d.body.seal().sign(&dev_member_keypair("market-regulation")).sign(&dev_member_keypair("justice")).done();
    fx.expect(&tx, RejectCode::EndorsementMissing);
}

#[test]
fn issue_with_endorsement_succeeds_and_two_of_n_is_enforced() {
    let mut fx = Fx::new(1);
    fx.issued("business_licence", &person(2));
    let ty = fx.ty("household_register");
    assert_eq!(ty.endorse_k, 2);
    let d = fx.draft("household_register", &person(2));
    let one = d.body.clone().seal().sign(&fx.member_key(ty.issuers[0])).sign(&fx.member_key(ty.endorsers[0])).done();
    fx.expect(&one, RejectCode::EndorsementMissing);
    let two = d
        .body
        .seal()
        .sign(&fx.member_key(ty.issuers[0]))
        .sign(&fx.member_key(ty.endorsers[0]))
        .sign(&fx.member_key(ty.endorsers[1]))
        .done();
    assert_eq!(fx.run1(&two), Outcome::Valid);
}

#[test]
fn unknown_licence_type_or_contract_version_is_refused() {
    let mut fx = Fx::new(1);
    let d = fx.draft("resident_id_card", &person(1));
    let mut body = d.body.clone();
    if let Payload::Issue(p) = &mut body.payload {
        p.contract_version = 2;
    }
    fx.expect(&fx.sign_as_issuer("resident_id_card", body), RejectCode::UnknownLicenceType);
    let mut body = d.body;
    if let Payload::Issue(p) = &mut body.payload {
        p.licence_type = LicenceTypeId(99);
    }
    fx.expect(&fx.sign_as_issuer("resident_id_card", body), RejectCode::UnknownLicenceType);
}

#[test]
fn missing_required_field_is_a_schema_violation() {
    let mut fx = Fx::new(1);
    let d = fx.draft("resident_id_card", &person(1));
    let mut body = d.body;
    if let Payload::Issue(p) = &mut body.payload {
        p.fields.remove(0);
    }
    fx.expect(&fx.sign_as_issuer("resident_id_card", body), RejectCode::SchemaViolation);
}

#[test]
fn issuing_the_same_licence_id_twice_is_refused() {
    let mut fx = Fx::new(1);
    let d = fx.draft("resident_id_card", &person(1));
    let first = fx.sign_as_issuer("resident_id_card", d.body.clone());
    assert_eq!(fx.run1(&first), Outcome::Valid);
    let mut again = d.body;
    if let Payload::Issue(p) = &mut again.payload {
        p.valid_to = p.valid_to.plus_ms(1); // a new tx id, the same licence id
    }
    fx.expect(&fx.sign_as_issuer("resident_id_card", again), RejectCode::LicenceExists);
}

#[test]
fn licence_id_not_derived_from_the_issuance_is_refused() {
    let mut fx = Fx::new(1);
    let d = fx.draft("resident_id_card", &person(1));
    let (chain, nonce, until) = (d.body.chain, d.body.nonce, d.body.valid_until);
    let issuer = fx.issuer_id("resident_id_card");
    // The id derived with one input changed at a time: chain, valid-until, issuer, nonce.
    let wrong = [
        (ChainId(9), until, issuer, nonce),
        (chain, until.plus_ms(1), issuer, nonce),
        (chain, until, MemberId(issuer.0 + 1), nonce),
        (chain, until, issuer, nonce + 1),
    ];
    for (c, t, m, n) in wrong {
        let mut body = d.body.clone();
        if let Payload::Issue(p) = &mut body.payload {
            p.licence = LicenceId::derive(c, t, m, p.licence_type, &p.holder, n);
        }
        fx.expect(&fx.sign_as_issuer("resident_id_card", body), RejectCode::BadLicenceId);
    }
    assert_eq!(fx.run1(&fx.sign_as_issuer("resident_id_card", d.body)), Outcome::Valid, "the draft's own id is right");
}

#[test]
fn validity_beyond_the_contract_is_refused() {
    let mut fx = Fx::new(1);
    let d = fx.draft("resident_id_card", &person(1));
    let mut body = d.body;
    if let Payload::Issue(p) = &mut body.payload {
        p.valid_to = p.valid_from.plus_ms(7301 * Timestamp::DAY_MS);
    }
    fx.expect(&fx.sign_as_issuer("resident_id_card", body), RejectCode::BadValidity);
}

// ---- licence life cycle ----

#[test]
fn operations_on_an_unknown_licence_are_refused() {
    let mut fx = Fx::new(1);
    let tx = fx.status_tx(LicenceId([3; 32]), Payload::Suspend, "public-security");
    fx.expect(&tx, RejectCode::UnknownLicence);
}

#[test]
fn suspend_reinstate_revoke_follow_the_status_rules() {
    let mut fx = Fx::new(1);
    let lic = fx.id_card(&person(1));
    let reinstate_active = fx.status_tx(lic, Payload::Reinstate, "public-security");
    fx.expect(&reinstate_active, RejectCode::InvalidTransition);
    let by_other = fx.status_tx(lic, Payload::Suspend, "civil-affairs");
    fx.expect(&by_other, RejectCode::WrongIssuer);
    let s = fx.status_tx(lic, Payload::Suspend, "public-security");
    assert_eq!(fx.run1(&s), Outcome::Valid);
    assert_eq!(fx.state.licence(&lic).unwrap().status, LicenceStatus::Suspended);
    let r = fx.status_tx(lic, Payload::Reinstate, "public-security");
    assert_eq!(fx.run1(&r), Outcome::Valid);
    let v = fx.status_tx(lic, Payload::Revoke, "public-security");
    assert_eq!(fx.run1(&v), Outcome::Valid);
    let again = fx.status_tx(lic, Payload::Reinstate, "public-security");
    fx.expect(&again, RejectCode::LicenceRevoked);
}

#[test]
fn renewal_extends_validity_only_where_the_contract_allows() {
    let mut fx = Fx::new(1);
    let lic = fx.id_card(&person(1));
    let old = fx.state.licence(&lic).unwrap().valid_to;
    let new_to = old.plus_ms(10 * Timestamp::DAY_MS);
    let body = fx.body(Payload::Renew(Renew { licence: lic, valid_to: new_to }));
    assert_eq!(fx.run1(&fx.sign_as_issuer("resident_id_card", body)), Outcome::Valid);
    assert_eq!(fx.state.licence(&lic).unwrap().valid_to, new_to);
    let (biz, _) = fx.issued("business_licence", &person(2));
    let body = fx.body(Payload::Renew(Renew { licence: biz, valid_to: new_to }));
    fx.expect(&fx.sign_as_issuer("business_licence", body), RejectCode::NotRenewable);
}

#[test]
fn amend_replaces_only_the_named_fields() {
    let mut fx = Fx::new(1);
    let holder = person(1);
    let (lic, dk) = fx.issued("resident_id_card", &holder);
    let before = fx.state.licence(&lic).unwrap();
    let mut rng = StdRng::seed_from_u64(5);
    let addr = fx.ty("resident_id_card").field_index("address").unwrap();
    let f = elchain_types::crypto::SealedField::seal(&dk, &lic, addr, b"New Street 1", &mut rng);
    let body = fx.body(Payload::Amend(Amend { licence: lic, fields: vec![f.clone()] }));
    assert_eq!(fx.run1(&fx.sign_as_issuer("resident_id_card", body)), Outcome::Valid);
    let after = fx.state.licence(&lic).unwrap();
    assert_eq!(after.fields.len(), before.fields.len());
    for (a, b) in after.fields.iter().zip(&before.fields) {
        if a.index == addr {
            assert_eq!(a, &f);
        } else {
            assert_eq!(a, b);
        }
    }
    assert_eq!(after.fields[addr as usize].open(&lic, &dk.field_key(&lic, addr)).unwrap().value, b"New Street 1");
}

// ---- grants ----

#[test]
fn grant_not_signed_by_the_holder_is_refused() {
    let mut fx = Fx::new(1);
    let lic = fx.id_card(&person(1));
    let terms = fx.terms(&["full_name"]);
    let tx = fx.grant_body(lic, terms).seal().sign(&person(2)).done();
    fx.expect(&tx, RejectCode::NotHolder);
}

#[test]
fn grant_for_an_unknown_item_is_refused() {
    let mut fx = Fx::new(1);
    let holder = person(1);
    let lic = fx.id_card(&holder);
    let mut terms = fx.terms(&["full_name"]);
    terms.item = ItemId(5000);
    let tx = fx.grant_body(lic, terms).seal().sign(&holder).done();
    fx.expect(&tx, RejectCode::UnknownItem);
}

#[test]
fn grant_of_a_field_the_item_may_not_request_is_refused() {
    let mut fx = Fx::new(1);
    let holder = person(1);
    let lic = fx.id_card(&holder);
    // P001 may read full_name and id_number, not the address.
    let terms = fx.terms(&["full_name", "address"]);
    let tx = fx.grant_body(lic, terms).seal().sign(&holder).done();
    fx.expect(&tx, RejectCode::FieldNotAllowed);
}

#[test]
fn grant_window_must_be_open_and_bounded() {
    let mut fx = Fx::new(1);
    let holder = person(1);
    let lic = fx.id_card(&holder);
    let mut terms = fx.terms(&["full_name"]);
    terms.not_after = terms.not_before;
    let tx = fx.grant_body(lic, terms).seal().sign(&holder).done();
    fx.expect(&tx, RejectCode::BadGrantWindow);
    let mut terms = fx.terms(&["full_name"]);
    terms.not_after = terms.not_before.plus_ms(limits::MAX_GRANT_WINDOW_MS + 1);
    let tx = fx.grant_body(lic, terms).seal().sign(&holder).done();
    fx.expect(&tx, RejectCode::BadGrantWindow);
}

#[test]
fn grant_to_an_unknown_member_is_refused() {
    let mut fx = Fx::new(1);
    let holder = person(1);
    let lic = fx.id_card(&holder);
    let mut terms = fx.terms(&["full_name"]);
    terms.grantee = MemberId(999);
    let tx = fx.grant_body(lic, terms).seal().sign(&holder).done();
    fx.expect(&tx, RejectCode::UnknownMember);
}

#[test]
fn grant_on_a_revoked_licence_is_refused() {
    let mut fx = Fx::new(1);
    let holder = person(1);
    let lic = fx.id_card(&holder);
    let v = fx.status_tx(lic, Payload::Revoke, "public-security");
    assert_eq!(fx.run1(&v), Outcome::Valid);
    let terms = fx.terms(&["full_name"]);
    let tx = fx.grant_body(lic, terms).seal().sign(&holder).done();
    fx.expect(&tx, RejectCode::LicenceRevoked);
}

#[test]
fn revoking_an_unknown_or_revoked_grant_is_refused() {
    let mut fx = Fx::new(1);
    let holder = person(1);
    let body = fx.body(Payload::RevokeGrant(RevokeGrant { grant: GrantId([1; 32]) }));
    fx.expect(&body.seal().sign(&holder).done(), RejectCode::UnknownGrant);
    let lic = fx.id_card(&holder);
    let terms = fx.terms(&["full_name"]);
    let g = fx.granted(lic, &holder, terms);
    let body = fx.body(Payload::RevokeGrant(RevokeGrant { grant: g }));
    fx.expect(&body.seal().sign(&person(2)).done(), RejectCode::NotHolder);
    let body = fx.body(Payload::RevokeGrant(RevokeGrant { grant: g }));
    assert_eq!(fx.run1(&body.seal().sign(&holder).done()), Outcome::Valid);
    let body = fx.body(Payload::RevokeGrant(RevokeGrant { grant: g }));
    fx.expect(&body.seal().sign(&holder).done(), RejectCode::GrantRevoked);
}

// ---- uses ----

#[test]
fn use_after_grant_revocation_is_refused() {
    let mut fx = Fx::new(1);
    let holder = person(1);
    let lic = fx.id_card(&holder);
    let terms = fx.terms(&["full_name", "id_number"]);
    let g = fx.granted(lic, &holder, terms);
    let mask = name_and_id(&fx);
    let u = fx.use_tx(g, mask, "education");
    assert_eq!(fx.run1(&u), Outcome::Valid);
    let body = fx.body(Payload::RevokeGrant(RevokeGrant { grant: g }));
    assert_eq!(fx.run1(&body.seal().sign(&holder).done()), Outcome::Valid);
    let u = fx.use_tx(g, mask, "education");
    fx.expect(&u, RejectCode::GrantRevoked);
    assert_eq!(fx.state.traces(&holder.holder_id()).len(), 1, "the refused use left no trace");
}

#[test]
fn use_of_a_suspended_licence_is_refused() {
    let mut fx = Fx::new(1);
    let holder = person(1);
    let lic = fx.id_card(&holder);
    let terms = fx.terms(&["full_name"]);
    let g = fx.granted(lic, &holder, terms);
    let s = fx.status_tx(lic, Payload::Suspend, "public-security");
    assert_eq!(fx.run1(&s), Outcome::Valid);
    let mask = client::mask(&fx.ty("resident_id_card"), &["full_name"]).unwrap();
    let u = fx.use_tx(g, mask, "education");
    fx.expect(&u, RejectCode::LicenceSuspended);
}

#[test]
fn use_of_an_expired_licence_is_refused() {
    let mut fx = Fx::new(1);
    let holder = person(1);
    let lic = fx.id_card(&holder);
    let mut terms = fx.terms(&["full_name"]);
    terms.not_after = fx.now.plus_ms(365 * Timestamp::DAY_MS);
    let g = fx.granted(lic, &holder, terms);
    // The card was issued for a year; jump past it but stay inside the grant window.
    fx.now = fx.state.licence(&lic).unwrap().valid_to.plus_ms(1);
    let mask = client::mask(&fx.ty("resident_id_card"), &["full_name"]).unwrap();
    let u = fx.use_tx(g, mask, "education");
    fx.expect(&u, RejectCode::LicenceExpired);
}

#[test]
fn use_of_an_unknown_grant_is_refused() {
    let mut fx = Fx::new(1);
    let u = fx.use_tx(GrantId([4; 32]), 1, "education");
    fx.expect(&u, RejectCode::UnknownGrant);
}

#[test]
fn use_outside_the_grant_window_is_refused() {
    let mut fx = Fx::new(1);
    let holder = person(1);
    let lic = fx.id_card(&holder);
    let terms = fx.terms(&["full_name"]);
    let g = fx.granted(lic, &holder, terms);
    fx.now = terms.not_after.plus_ms(1);
    let u = fx.use_tx(g, terms.fields, "education");
    fx.expect(&u, RejectCode::GrantExpired);
}

#[test]
fn use_beyond_max_uses_is_refused() {
    let mut fx = Fx::new(1);
    let holder = person(1);
    let lic = fx.id_card(&holder);
    let mut terms = fx.terms(&["full_name"]);
    terms.max_uses = 1;
    let g = fx.granted(lic, &holder, terms);
    let u = fx.use_tx(g, terms.fields, "education");
    assert_eq!(fx.run1(&u), Outcome::Valid);
    let u = fx.use_tx(g, terms.fields, "education");
    fx.expect(&u, RejectCode::GrantExhausted);
}

#[test]
fn a_use_keeps_its_trace_in_its_tx_index_entry_linked_to_the_previous_use() {
    use crate::state::StateReads;
    let mut fx = Fx::new(1);
    let holder = person(1);
    let lic = fx.id_card(&holder);
    let mut terms = fx.terms(&["full_name"]);
    terms.max_uses = 2;
    let g = fx.granted(lic, &holder, terms);
    let (first, second, third) = (
        fx.use_tx(g, terms.fields, "education"),
        fx.use_tx(g, terms.fields, "education"),
        fx.use_tx(g, terms.fields, "education"),
    );
    assert_eq!(
        fx.run(&[first.clone(), second.clone(), third.clone()]),
        [Outcome::Valid, Outcome::Valid, Outcome::Invalid(RejectCode::GrantExhausted)]
    );
    let entry = |tx: &SignedTx| fx.state.tx_entry(&tx.id()).expect("indexed");
    let (a, b) = (entry(&first).trace.expect("a use's trace"), entry(&second).trace.expect("a use's trace"));
    assert_eq!((a.grant, a.fields, a.prev), (g, terms.fields, None));
    assert_eq!((b.grant, b.prev), (g, Some(first.id())));
    assert_eq!(entry(&third).trace, None, "a refused use leaves no trace");
    let traces = fx.state.grant_traces(&g);
    assert_eq!(traces.iter().map(|t| t.tx).collect::<Vec<_>>(), [first.id(), second.id()]);
}

#[test]
fn use_by_a_member_other_than_the_grantee_is_refused() {
    let mut fx = Fx::new(1);
    let holder = person(1);
    let lic = fx.id_card(&holder);
    let terms = fx.terms(&["full_name"]);
    let g = fx.granted(lic, &holder, terms);
    let u = fx.use_tx(g, terms.fields, "taxation");
    fx.expect(&u, RejectCode::NotGrantee);
}

#[test]
fn use_of_a_field_not_granted_is_refused() {
    let mut fx = Fx::new(1);
    let holder = person(1);
    let lic = fx.id_card(&holder);
    let terms = fx.terms(&["full_name"]);
    let g = fx.granted(lic, &holder, terms);
    let mask = name_and_id(&fx);
    let u = fx.use_tx(g, mask, "education");
    fx.expect(&u, RejectCode::FieldNotGranted);
}

#[test]
fn attesting_a_digest_twice_is_refused_and_outsiders_cannot_attest() {
    let mut fx = Fx::new(1);
    let body = fx.body(Payload::Attest(Attest { digest: Hash32([1; 32]), kind: 1 }));
    assert_eq!(fx.run1(&body.seal().sign(&dev_member_keypair("justice")).done()), Outcome::Valid);
    let body = fx.body(Payload::Attest(Attest { digest: Hash32([1; 32]), kind: 2 }));
    fx.expect(&body.seal().sign(&dev_member_keypair("archives")).done(), RejectCode::AttestationExists);
    let body = fx.body(Payload::Attest(Attest { digest: Hash32([2; 32]), kind: 1 }));
    fx.expect(&body.seal().sign(&person(1)).done(), RejectCode::UnknownMember);
}

// ---- the meta chain and governance ----

#[test]
fn governance_registers_chains_and_scales_out_the_shard_map() {
    let mut fx = Fx::meta(1);
    assert_eq!(fx.c.admin_k, 3);
    // Registered out of order; the directory is kept by chain id.
    assert_eq!(fx.govern(Govern::Chain(chain_info(2, &[4, 5, 6]))), Outcome::Valid);
    assert_eq!(fx.govern(Govern::Chain(chain_info(1, &[1, 2, 3]))), Outcome::Valid);
    assert_eq!(fx.state.chains(), [chain_info(1, &[1, 2, 3]), chain_info(2, &[4, 5, 6])]);
    let v1 = ShardMap::even(&[ChainId(1), ChainId(2)], DEFAULT_BUCKETS).unwrap();
    assert_eq!(fx.govern(Govern::ShardMap(v1.clone())), Outcome::Valid);
    assert_eq!(fx.state.shard_map(), Some(v1.clone()));
    // Scale out: register chain 3, then hand it a quarter of the buckets.
    assert_eq!(fx.govern(Govern::Chain(chain_info(3, &[7, 8, 9]))), Outcome::Valid);
    let v2 = v1.reassign(None, 0..DEFAULT_BUCKETS / 4, ChainId(3)).unwrap();
    assert_eq!(v2.version, 2);
    assert_eq!(fx.govern(Govern::ShardMap(v2.clone())), Outcome::Valid);
    assert_eq!(fx.state.shard_map(), Some(v2));
    // Replacing a chain's replicas keeps one entry per chain; the meta chain may describe itself.
    assert_eq!(fx.govern(Govern::Chain(chain_info(2, &[4, 10]))), Outcome::Valid);
    assert_eq!(fx.govern(Govern::Chain(chain_info(0, &[1, 4, 7]))), Outcome::Valid);
    let ids: Vec<u32> = fx.state.chains().iter().map(|c| c.id.0).collect();
    assert_eq!(ids, [0, 1, 2, 3]);
    assert_eq!(fx.state.chains()[2], chain_info(2, &[4, 10]));
    // None of this touched the consortium: the genesis one still governs.
    assert_eq!(fx.state.governed_consortium(), None);
    // A chain with no replica or an address that is not ip:port is refused.
    fx.govern(Govern::Chain(ChainInfo { id: ChainId(4), replicas: vec![] }));
    let mut bad = chain_info(4, &[1]);
    bad.replicas[0].addr = "n1.elchain:7000".into();
    let tx = fx.gov(Govern::Chain(bad), &fx.admin_keys(3));
    fx.expect(&tx, RejectCode::InvalidGovernance);
    assert_eq!(fx.state.chains().len(), 4);
}

#[test]
fn governance_on_a_licence_chain_is_refused() {
    let mut fx = Fx::new(1);
    let tx = fx.gov(Govern::Chain(chain_info(1, &[1])), &fx.admin_keys(5));
    fx.expect(&tx, RejectCode::MetaChainOnly);
    assert!(fx.state.chains().is_empty());
}

#[test]
fn licence_transactions_on_the_meta_chain_are_refused() {
    let mut fx = Fx::meta(1);
    let d = fx.draft("resident_id_card", &person(1));
    fx.expect(&fx.sign_as_issuer("resident_id_card", d.body), RejectCode::NotOnMetaChain);
    let body = fx.body(Payload::Attest(Attest { digest: Hash32([1; 32]), kind: 1 }));
    fx.expect(&body.seal().sign(&dev_member_keypair("justice")).done(), RejectCode::NotOnMetaChain);
    let u = fx.use_tx(GrantId([4; 32]), 1, "education");
    fx.expect(&u, RejectCode::NotOnMetaChain);
    // Nothing took effect: the tx index records where each refused transaction is, no more.
    for (k, v) in fx.state.iter() {
        let crate::state::Key::Tx(_) = k else { panic!("{k:?} was written") };
        assert!(!crate::state::TxEntry::from_bytes(v).unwrap().took_effect());
    }
}

#[test]
fn admin_quorum_counts_distinct_admin_members_only() {
    let mut fx = Fx::meta(1);
    let action = Govern::Param { name: "max_block_txs".into(), value: 5000 };
    let admins = fx.admin_keys(5);
    // Two admins and three members that are not admins, plus a holder: two of three.
    let mut signers = admins[..2].to_vec();
    signers.extend(["education", "taxation", "archives"].map(dev_member_keypair));
    signers.push(person(1));
    let tx = fx.gov(action.clone(), &signers);
    fx.expect(&tx, RejectCode::AdminQuorum);
    // The same admin three times counts once. On the wire a key that signs twice does not even
    // decode, so the count is checked on the transaction itself.
    let body = fx.body(Payload::Govern(action.clone()));
    let thrice = body.seal().sign(&admins[0]).sign(&admins[0]).sign(&admins[0]).done();
    assert_eq!(admin_quorum(&fx.c, &thrice), Err(RejectCode::AdminQuorum));
    assert_eq!(fx.run1(&thrice), Outcome::Invalid(RejectCode::Malformed));
    let body = fx.body(Payload::Govern(action.clone()));
    let twice_and_one = body.seal().sign(&admins[0]).sign(&admins[1]).sign(&admins[0]).done();
    assert_eq!(admin_quorum(&fx.c, &twice_and_one), Err(RejectCode::AdminQuorum));
    // Three distinct admins, in any order and among other signers, pass.
    let signers = [dev_member_keypair("education"), admins[4].clone(), admins[2].clone(), admins[0].clone()];
    let tx = fx.gov(action, &signers);
    assert_eq!(fx.run1(&tx), Outcome::Valid);
    assert_eq!(fx.state.param("max_block_txs"), Some(5000));
}

#[test]
fn stale_shard_map_and_licence_type_versions_are_refused() {
    let mut fx = Fx::meta(1);
    for id in [1, 2] {
        assert_eq!(fx.govern(Govern::Chain(chain_info(id, &[1]))), Outcome::Valid);
    }
    let mut v2 = ShardMap::even(&[ChainId(1), ChainId(2)], 64).unwrap();
    v2.version = 2;
    let tx = fx.gov(Govern::ShardMap(v2.clone()), &fx.admin_keys(3));
    fx.expect(&tx, RejectCode::StaleVersion); // the first map is version 1
    v2.version = 1;
    assert_eq!(fx.govern(Govern::ShardMap(v2.clone())), Outcome::Valid);
    let tx = fx.gov(Govern::ShardMap(v2.clone()), &fx.admin_keys(3));
    fx.expect(&tx, RejectCode::StaleVersion); // version 1 again
    v2.version = 3;
    let tx = fx.gov(Govern::ShardMap(v2), &fx.admin_keys(3));
    fx.expect(&tx, RejectCode::StaleVersion); // skips 2
    let mut ty = fx.ty("resident_id_card");
    for version in [ty.version, ty.version - 1] {
        ty.version = version;
        let tx = fx.gov(Govern::LicenceType(ty.clone()), &fx.admin_keys(3));
        fx.expect(&tx, RejectCode::StaleVersion);
    }
}

#[test]
fn shard_maps_that_do_not_validate_or_name_unregistered_chains_are_invalid() {
    let mut fx = Fx::meta(1);
    assert_eq!(fx.govern(Govern::Chain(chain_info(1, &[1]))), Outcome::Valid);
    let unregistered = ShardMap::even(&[ChainId(1), ChainId(2)], 64).unwrap();
    let tx = fx.gov(Govern::ShardMap(unregistered), &fx.admin_keys(3));
    fx.expect(&tx, RejectCode::InvalidGovernance);
    let typed = ShardMap::even(&[ChainId(1)], 64).unwrap().reassign(Some(LicenceTypeId(2)), 0..8, ChainId(5)).unwrap();
    let mut typed = typed;
    typed.version = 1;
    let tx = fx.gov(Govern::ShardMap(typed), &fx.admin_keys(3));
    fx.expect(&tx, RejectCode::InvalidGovernance);
    let gap = ShardMap {
        version: 1,
        buckets: 64,
        rules: vec![Rule { licence_type: None, buckets: 0..32, chain: ChainId(1) }],
    };
    let tx = fx.gov(Govern::ShardMap(gap), &fx.admin_keys(3));
    fx.expect(&tx, RejectCode::InvalidGovernance);
    assert_eq!(fx.state.shard_map(), None);
}

#[test]
fn a_rotated_admin_key_counts_for_the_quorum_and_the_old_one_does_not() {
    let mut fx = Fx::meta(1);
    let admins = fx.admin_keys(5);
    let first = fx.c.admins().next().unwrap().clone();
    let rotated = Keypair::dev("rotated admin key");
    let member = elchain_types::contract::Member { signing_key: rotated.public(), ..first.clone() };
    assert_eq!(fx.govern(Govern::Member(member.clone())), Outcome::Valid);
    let now = fx.state.governed_consortium().expect("the consortium is stored once governance changes it");
    assert_eq!(now.member(first.id), Some(&member));
    assert_eq!(now.member_by_key(&rotated.public()), Some(first.id));
    assert_eq!(now.member_by_key(&admins[0].public()), None);
    let action = Govern::Param { name: "epoch".into(), value: 1 };
    let old = fx.gov(action.clone(), &[admins[0].clone(), admins[1].clone(), admins[2].clone()]);
    fx.expect(&old, RejectCode::AdminQuorum);
    let new = fx.gov(action, &[rotated.clone(), admins[1].clone(), admins[2].clone()]);
    assert_eq!(fx.run1(&new), Outcome::Valid);
    // Rotation and use of the new key in one block: the second transaction sees the first.
    let again = Keypair::dev("rotated twice");
    let m2 = elchain_types::contract::Member { signing_key: again.public(), ..member };
    let rotate = fx.gov(Govern::Member(m2), &[rotated, admins[1].clone(), admins[2].clone()]);
    let use_it =
        fx.gov(Govern::Param { name: "epoch".into(), value: 2 }, &[again, admins[3].clone(), admins[4].clone()]);
    assert_eq!(fx.run(&[rotate, use_it]), vec![Outcome::Valid, Outcome::Valid]);
    assert_eq!(fx.state.param("epoch"), Some(2));
}

#[test]
fn members_are_added_in_order_and_must_keep_keys_distinct_and_enough_admins() {
    let mut fx = Fx::meta(1);
    let n = fx.c.members.len() as u16;
    let base = fx.c.member(MemberId(1)).unwrap().clone();
    let newcomer = |id: u16, seed: &str| elchain_types::contract::Member {
        id: MemberId(id),
        code: format!("newcomer-{id}"),
        admin: false,
        signing_key: Keypair::dev(seed).public(),
        ..base.clone()
    };
    let skipping = fx.gov(Govern::Member(newcomer(n + 2, "n2")), &fx.admin_keys(3));
    fx.expect(&skipping, RejectCode::InvalidGovernance);
    let zero = fx.gov(Govern::Member(newcomer(0, "n0")), &fx.admin_keys(3));
    fx.expect(&zero, RejectCode::InvalidGovernance);
    assert_eq!(fx.govern(Govern::Member(newcomer(n + 1, "n1"))), Outcome::Valid);
    assert_eq!(fx.current().members.len(), n as usize + 1);
    // Another member's key.
    let mut shared = newcomer(n + 2, "n2");
    shared.signing_key = dev_member_keypair("education").public();
    let tx = fx.gov(Govern::Member(shared), &fx.admin_keys(3));
    fx.expect(&tx, RejectCode::InvalidGovernance);
    // Demoting admins until fewer than admin_k (3) remain is refused at the third.
    let ids: Vec<MemberId> = fx.c.admins().map(|m| m.id).collect();
    let signers = fx.admin_keys(3);
    for (victim, expected) in
        [(4, Outcome::Valid), (3, Outcome::Valid), (0, Outcome::Invalid(RejectCode::InvalidGovernance))]
    {
        let demoted =
            elchain_types::contract::Member { admin: false, ..fx.current().member(ids[victim]).unwrap().clone() };
        let tx = fx.gov(Govern::Member(demoted), &signers);
        assert_eq!(fx.run1(&tx), expected, "demoting admin {victim}");
    }
    assert_eq!(fx.current().admins().count(), 3);
}

#[test]
fn licence_types_are_added_or_versioned_upwards() {
    let mut fx = Fx::meta(1);
    let mut ty = fx.ty("resident_id_card");
    ty.version += 1;
    ty.max_validity_days = 3650;
    assert_eq!(fx.govern(Govern::LicenceType(ty.clone())), Outcome::Valid);
    assert_eq!(fx.current().licence_type(ty.id), Some(&ty));
    // A new version keeps the contract's code.
    let mut renamed = ty.clone();
    renamed.version += 1;
    renamed.code = "identity_card".into();
    let tx = fx.gov(Govern::LicenceType(renamed), &fx.admin_keys(3));
    fx.expect(&tx, RejectCode::InvalidGovernance);
    // A new type takes the next id; any other id, or a broken contract, is refused.
    let n = fx.c.licence_types.len() as u16;
    let fresh = elchain_types::contract::LicenceType {
        id: LicenceTypeId(n + 1),
        code: "fishing_permit".into(),
        version: 1,
        ..ty.clone()
    };
    let far = elchain_types::contract::LicenceType { id: LicenceTypeId(n + 2), ..fresh.clone() };
    let tx = fx.gov(Govern::LicenceType(far), &fx.admin_keys(3));
    fx.expect(&tx, RejectCode::InvalidGovernance);
    let no_issuer = elchain_types::contract::LicenceType { issuers: vec![MemberId(999)], ..fresh.clone() };
    let tx = fx.gov(Govern::LicenceType(no_issuer), &fx.admin_keys(3));
    fx.expect(&tx, RejectCode::InvalidGovernance);
    assert_eq!(fx.govern(Govern::LicenceType(fresh.clone())), Outcome::Valid);
    let current = fx.current();
    assert_eq!(current.licence_types.len(), n as usize + 1);
    assert_eq!(current.licence_type_by_code("fishing_permit"), Some(&fresh));
    assert_eq!(current.admin_k, fx.c.admin_k, "the threshold is kept");
}

#[test]
fn params_are_kept_sorted_and_admin_k_sets_the_threshold() {
    let mut fx = Fx::meta(1);
    for (name, value) in [("zeta", 1), ("alpha", 2), ("zeta", 3)] {
        assert_eq!(fx.govern(Govern::Param { name: name.into(), value }), Outcome::Valid);
    }
    assert_eq!(fx.state.params(), [("alpha".to_string(), 2), ("zeta".to_string(), 3)]);
    for bad in ["", "Alpha", "a-b", "a b"] {
        let tx = fx.gov(Govern::Param { name: bad.into(), value: 1 }, &fx.admin_keys(3));
        fx.expect(&tx, RejectCode::InvalidGovernance);
    }
    for k in [0, 6, 1 << 16] {
        let tx = fx.gov(Govern::Param { name: "admin_k".into(), value: k }, &fx.admin_keys(3));
        fx.expect(&tx, RejectCode::InvalidGovernance);
    }
    assert_eq!(fx.govern(Govern::Param { name: "admin_k".into(), value: 2 }), Outcome::Valid);
    assert_eq!(fx.current().admin_k, 2);
    assert_eq!(fx.state.param("admin_k"), None, "the threshold lives in the consortium");
    let tx = fx.gov(Govern::Param { name: "beta".into(), value: 9 }, &fx.admin_keys(2));
    assert_eq!(fx.run1(&tx), Outcome::Valid);
    let tx = fx.gov(Govern::Param { name: "beta".into(), value: 10 }, &fx.admin_keys(1));
    fx.expect(&tx, RejectCode::AdminQuorum);
}

#[test]
fn revoking_a_certificate_twice_is_refused() {
    let mut fx = Fx::meta(1);
    for serial in [vec![9, 9], vec![1, 2, 3], vec![5]] {
        assert_eq!(fx.govern(Govern::RevokeCertificate { serial, reason: 1 }), Outcome::Valid);
    }
    assert_eq!(fx.state.revoked_certificates(), [vec![1, 2, 3], vec![5], vec![9, 9]]);
    let tx = fx.gov(Govern::RevokeCertificate { serial: vec![5], reason: 4 }, &fx.admin_keys(3));
    fx.expect(&tx, RejectCode::InvalidGovernance);
    let tx = fx.gov(Govern::RevokeCertificate { serial: vec![], reason: 1 }, &fx.admin_keys(3));
    fx.expect(&tx, RejectCode::InvalidGovernance);
    assert_eq!(fx.state.revoked_certificates().len(), 3);
}

#[test]
fn every_reject_code_is_exercised_by_a_test_above() {
    // Keeps this file honest when a code is added: name the test that covers it.
    let source = include_str!("exec_tests.rs");
    for c in RejectCode::ALL {
        let variant = format!("RejectCode::{c:?}");
        let mentions = source.matches(&variant).count();
        assert!(mentions >= 1, "{variant} has no test");
    }
}

// ---- traces and privacy ----

#[test]
fn the_holder_lists_every_use_in_order() {
    let mut fx = Fx::new(1);
    let holder = person(1);
    let lic = fx.id_card(&holder);
    let terms = fx.terms(&["full_name", "id_number"]);
    let g = fx.granted(lic, &holder, terms);
    let mut uses = Vec::new();
    for _ in 0..3 {
        let u = fx.use_tx(g, terms.fields, "education");
        assert_eq!(fx.run1(&u), Outcome::Valid);
        uses.push(u.id());
    }
    let traces = fx.state.traces(&holder.holder_id());
    assert_eq!(traces.iter().map(|t| t.tx).collect::<Vec<_>>(), uses);
    assert!(traces.iter().all(|t| t.grantee == fx.member_id("education") && t.item == ITEM && t.licence == lic));
    assert!(traces.windows(2).all(|w| w[0].time < w[1].time));
    assert_eq!(fx.state.grant(&g).unwrap().uses, 3);
    assert!(fx.state.traces(&person(2).holder_id()).is_empty());
}

#[test]
fn uses_of_two_grants_in_one_block_keep_each_grants_order_through_a_revocation() {
    let mut fx = Fx::new(1);
    let holder = person(1);
    let lic = fx.id_card(&holder);
    let terms = fx.terms(&["full_name", "id_number"]);
    let (a, b) = (fx.granted(lic, &holder, terms), fx.granted(lic, &holder, terms));
    let first = fx.use_tx(a, terms.fields, "education");
    assert_eq!(fx.run1(&first), Outcome::Valid);
    // One block: a, b, a, b, a — each use links to the one before it of its own grant.
    let block: Vec<SignedTx> = [a, b, a, b, a].iter().map(|g| fx.use_tx(*g, terms.fields, "education")).collect();
    assert!(fx.run(&block).iter().all(|o| *o == Outcome::Valid));
    let revoke = fx.body(Payload::RevokeGrant(RevokeGrant { grant: a }));
    assert_eq!(fx.run1(&revoke.seal().sign(&holder).done()), Outcome::Valid);
    let tail = fx.use_tx(b, terms.fields, "education");
    assert_eq!(fx.run1(&tail), Outcome::Valid);

    let ids = |g: GrantId| fx.state.grant_traces(&g).iter().map(|t| t.tx).collect::<Vec<_>>();
    let want_a = vec![first.id(), block[0].id(), block[2].id(), block[4].id()];
    let want_b = vec![block[1].id(), block[3].id(), tail.id()];
    assert_eq!(ids(a), want_a);
    assert_eq!(ids(b), want_b);
    let (ga, sa) = fx.state.grant_and_state(&a).unwrap();
    assert!(ga.revoked && sa.revoked && ga.uses == 4, "revoking keeps the count");
    assert_eq!(sa.last, Some(block[4].id()), "and the newest use");
    assert_eq!(fx.state.grant(&b).unwrap().uses, 3);
    assert!(fx.state.grant_traces(&a).iter().all(|t| t.grant == a && t.licence == lic));
    // The holder's list is every use of both, by block time, then tx id.
    let all = fx.state.traces(&holder.holder_id());
    assert_eq!(all.len(), 7);
    assert!(all.windows(2).all(|w| (w[0].time, w[0].tx) < (w[1].time, w[1].tx)));
}

#[test]
fn grantee_decrypts_exactly_the_granted_fields() {
    let mut fx = Fx::new(1);
    let holder = person(1);
    let (lic, _) = fx.issued("resident_id_card", &holder);
    let rec = fx.state.licence(&lic).unwrap();
    // The holder recovers the data key from the chain alone, then grants two fields.
    let dk = client::open_data_key(&holder, &rec.holder_envelope).unwrap();
    let terms = fx.terms(&["full_name", "id_number"]);
    let ctx = fx.ctx();
    let grantee = dev_member_keypair("education");
    let body = client::grant(ctx, lic, &dk, terms, &grantee.encryption_public(), &mut StdRng::seed_from_u64(3));
    let tx = body.seal().sign(&holder).done();
    assert_eq!(fx.run1(&tx), Outcome::Valid);
    let g = fx.state.grant(&GrantId::from(tx.id())).unwrap();
    let keys = FieldKeys::from_bytes(&grantee.open(&g.envelope).unwrap()).unwrap();
    let ty = fx.ty("resident_id_card");
    for f in &rec.fields {
        let name = &ty.fields[f.index as usize].name;
        let granted = terms.fields >> f.index & 1 == 1;
        let opened: Vec<_> = keys.0.iter().filter_map(|(_, k)| f.open(&lic, k).ok()).collect();
        if granted {
            assert_eq!(opened.len(), 1, "{name} opens with exactly its key");
            assert_eq!(opened[0].value, format!("{name}-{}", holder.public().to_hex()).into_bytes());
            assert!(opened[0].matches(&lic, &f.commitment));
        } else {
            assert!(opened.is_empty(), "{name} was not granted but opened");
        }
    }
    // Another member cannot open the envelope at all.
    assert!(dev_member_keypair("taxation").open(&g.envelope).is_err());
}

#[test]
fn no_plaintext_field_value_reaches_state_or_blocks() {
    let mut fx = Fx::new(1);
    let holder = person(77);
    let d = fx.draft("resident_id_card", &holder);
    let tx = fx.sign_as_issuer("resident_id_card", d.body);
    let raw = tx.to_bytes();
    assert_eq!(fx.run1(&tx), Outcome::Valid);
    let needle = format!("id_number-{}", holder.public().to_hex()).into_bytes();
    let contains = |hay: &[u8]| hay.windows(needle.len()).any(|w| w == needle.as_slice());
    assert!(!contains(&raw), "plaintext in the transaction");
    assert!(fx.state.iter().all(|(_, v)| !contains(v)), "plaintext in state");
}

// ---- determinism ----

/// A random but valid-ish mix of operations, generated from a seed, as blocks of raw bytes.
pub(crate) fn scripted_blocks(seed: u64, blocks: usize) -> Vec<Vec<Vec<u8>>> {
    let mut fx = Fx::new(seed);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::new();
    let mut grants: Vec<(GrantId, u64)> = Vec::new();
    let mut licences: Vec<(LicenceId, Keypair)> = Vec::new();
    for b in 0..blocks {
        let mut txs = Vec::new();
        for i in 0..(4 + rand::Rng::gen_range(&mut rng, 0..6)) {
            let holder = person(rand::Rng::gen_range(&mut rng, 0..5));
            match rand::Rng::gen_range(&mut rng, 0..5) {
                0 | 1 => {
                    let d = fx.draft("resident_id_card", &holder);
                    licences.push((d.licence, holder.clone()));
                    txs.push(fx.sign_as_issuer("resident_id_card", d.body));
                }
                2 if !licences.is_empty() => {
                    let (lic, h) = licences[rand::Rng::gen_range(&mut rng, 0..licences.len())].clone();
                    let terms = fx.terms(&["full_name", "id_number"]);
                    let tx = fx.grant_body(lic, terms).seal().sign(&h).done();
                    grants.push((GrantId::from(tx.id()), terms.fields));
                    txs.push(tx);
                }
                3 if !grants.is_empty() => {
                    let (g, m) = grants[rand::Rng::gen_range(&mut rng, 0..grants.len())];
                    txs.push(fx.use_tx(g, m, if i % 4 == 0 { "taxation" } else { "education" }));
                }
                _ => {
                    let body = fx.body(Payload::Attest(Attest { digest: Hash32([(b * 16 + i) as u8; 32]), kind: 1 }));
                    txs.push(body.seal().sign(&dev_member_keypair("justice")).done());
                }
            }
        }
        // Occasionally repeat a transaction to exercise replay handling.
        if b % 3 == 2 {
            let dup = txs[0].clone();
            txs.push(dup);
        }
        let raws: Vec<Vec<u8>> = txs.iter().map(Encode::to_bytes).collect();
        fx.run_raw(raws.clone());
        out.push(raws);
    }
    out
}

pub(crate) fn replay_blocks(blocks: &[Vec<Vec<u8>>]) -> (Hash32, MemState, Vec<Vec<Outcome>>) {
    let mut fx = Fx::new(0);
    let outcomes = blocks.iter().map(|b| fx.run_raw(b.clone())).collect();
    (fx.tip.state_root, fx.state, outcomes)
}

#[test]
fn scripted_workload_mixes_valid_and_invalid_outcomes() {
    let (_, _, outcomes) = replay_blocks(&scripted_blocks(11, 12));
    let all: Vec<Outcome> = outcomes.into_iter().flatten().collect();
    assert!(all.iter().filter(|o| o.is_valid()).count() > 10);
    assert!(all.contains(&Outcome::Invalid(RejectCode::Replay)));
    assert!(all.contains(&Outcome::Invalid(RejectCode::NotGrantee)));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn the_same_blocks_give_the_same_state_digest_in_any_run(seed in any::<u64>(), n in 1usize..8) {
        let blocks = scripted_blocks(seed, n);
        let (root_a, state_a, out_a) = replay_blocks(&blocks);
        let (root_b, state_b, out_b) = replay_blocks(&blocks);
        prop_assert_eq!(root_a, root_b);
        prop_assert_eq!(out_a, out_b);
        prop_assert_eq!(state_a, state_b);
    }
}

#[test]
fn state_root_depends_on_every_change() {
    let blocks = scripted_blocks(5, 4);
    let (root, _, _) = replay_blocks(&blocks);
    let mut fewer = blocks.clone();
    fewer[3].pop();
    let (other, _, _) = replay_blocks(&fewer);
    assert_ne!(root, other);
}

/// The state root as its definition reads: the stream handed to the hasher field by field.
fn state_root_field_by_field(prev: &Hash32, writes: &Writes) -> Hash32 {
    let mut h = elchain_types::crypto::domain::STATE.hasher();
    h.update(&prev.0);
    for (k, v) in writes {
        let mut kb = [0u8; Key::MAX_LEN];
        let len = k.write_to(&mut kb);
        h.update(&[k.table() as u8]);
        h.update(&(len as u32).to_le_bytes());
        h.update(&kb[..len]);
        match v {
            Some(v) => {
                h.update(&[1]);
                h.update(&(v.len() as u32).to_le_bytes());
                h.update(v);
            }
            None => {
                h.update(&[0]);
            }
        }
    }
    Hash32(*h.finalize().as_bytes())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn the_state_root_hashed_in_pieces_is_the_root_of_the_whole_stream(
        writes in proptest::collection::vec(
            (any::<[u8; 32]>(), 0u8..3, proptest::option::weighted(0.9, 0usize..3_000)),
            0..400,
        ),
        big in 0usize..(3 * STATE_HASH_PIECE),
    ) {
        let mut w = Writes::new();
        for (id, kind, len) in writes {
            let key = match kind {
                0 => Key::Licence(LicenceId(id)),
                1 => Key::Grant(GrantId(id)),
                _ => Key::Tx(elchain_types::ids::TxId(id)),
            };
            w.insert(key, len.map(|n| vec![id[0]; n]));
        }
        // One value longer than a piece, so that a piece can hold more than its size.
        w.insert(Key::Licence(LicenceId([0xee; 32])), Some(vec![7; big]));
        let prev = Hash32([3; 32]);
        prop_assert_eq!(next_state_root(&prev, &w), state_root_field_by_field(&prev, &w));
    }
}
