//! Block execution: the pure, deterministic state machine of a chain.
//!
//! ```text
//!  prev header, block time, [CheckedTx] ──► for each tx: window → replay → contract rules → index
//!        state view (read only)                     │
//!                                                   ▼
//!                     Executed { block (header, outcomes), writes }  ──► store commits both
//! ```
//!
//! No clock, file, socket or randomness is touched here: time arrives as the block time, state as
//! a read view. The same inputs give the same block and writes on every replica and in every run.
//!
//! The meta chain (chain 0) runs this same executor but takes governance transactions only, and a
//! licence chain takes everything but governance. On the meta chain the consortium that governs is
//! the genesis one until a governance transaction changes it; from then on it is the one stored
//! under [`GovKey::Consortium`], so it survives restarts and travels in snapshots.

use elchain_types::block::{Block, BlockHeader};
use elchain_types::codec::Encode;
use elchain_types::contract::{Consortium, LicenceType};
use elchain_types::crypto::{domain, hash, PublicKey, SealedField};
use elchain_types::ids::{ChainId, GrantId, Hash32, LicenceId, MemberId, Timestamp};
use elchain_types::reason::{Outcome, RejectCode};
use elchain_types::tx::{is_param_name, limits, Govern, Payload, SignedTx, ADMIN_K_PARAM};

use crate::state::{
    encode_chains, encode_params, encode_serials, Attestation, GovKey, GrantRecord, GrantState, Key, LicenceHead,
    LicenceRecord, LicenceStatus, Overlay, StateReads, StateView, TraceEntry, TxEntry, Writes,
};
use crate::verifier::CheckedTx;

/// What a block did: the sealed block and the state changes to commit with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Executed {
    /// The block, header filled in.
    pub block: Block,
    /// State changes, in key order.
    pub writes: Writes,
}

/// Where a block sits in the Raft log (zero outside Raft).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogPosition {
    /// Raft term.
    pub term: u64,
    /// Raft index.
    pub index: u64,
}

/// Executes blocks for one chain under one consortium definition.
#[derive(Debug, Clone, Copy)]
pub struct Executor<'c> {
    consortium: &'c Consortium,
    chain: ChainId,
}

/// Fold a block's writes into the running state root: the hash, under its own context, of the
/// previous root and then, for each write in key order, its table, key length and key, and `1`,
/// value length and value, or `0` for a removal (lengths four bytes little-endian).
///
/// The stream is written out in pieces of about 64 KiB and each piece handed to blake3 at once:
/// given a piece, blake3 hashes its whole 1 KiB chunks side by side (SIMD); fed field by field, it
/// would compress one 64-byte block at a time. The root is the same either way.
pub fn next_state_root(prev: &Hash32, writes: &Writes) -> Hash32 {
    let mut h = domain::STATE.hasher();
    h.update(&prev.0);
    let mut piece = Vec::with_capacity(STATE_HASH_PIECE + 4 * 1024);
    for (k, v) in writes {
        let mut kb = [0u8; Key::MAX_LEN];
        let len = k.write_to(&mut kb);
        piece.push(k.table() as u8);
        piece.extend_from_slice(&(len as u32).to_le_bytes());
        piece.extend_from_slice(&kb[..len]);
        match v {
            Some(v) => {
                piece.push(1);
                piece.extend_from_slice(&(v.len() as u32).to_le_bytes());
                piece.extend_from_slice(v);
            }
            None => piece.push(0),
        }
        if piece.len() >= STATE_HASH_PIECE {
            h.update(&piece);
            piece.clear();
        }
    }
    h.update(&piece);
    Hash32(*h.finalize().as_bytes())
}

/// Bytes of a block's write stream handed to the hasher at once (see [`next_state_root`]).
const STATE_HASH_PIECE: usize = 64 * 1024;

/// The genesis header of a chain: height 0, state root committing to the consortium.
pub fn genesis_header(chain: ChainId, consortium: &Consortium, time: Timestamp) -> BlockHeader {
    BlockHeader {
        chain,
        height: 0,
        prev: Hash32::default(),
        time,
        tx_count: 0,
        tx_root: elchain_types::block::merkle_root(&[]),
        state_root: Hash32(hash(&domain::STATE, &[b"genesis/", &consortium.to_bytes()])),
        raft_term: 0,
        raft_index: 0,
    }
}

impl<'c> Executor<'c> {
    /// An executor for `chain`.
    pub fn new(consortium: &'c Consortium, chain: ChainId) -> Self {
        Self { consortium, chain }
    }

    /// Execute `txs` as the block after `prev`, at block time `time`.
    ///
    /// Block time never goes backwards: a proposer's time below the previous block's is raised to
    /// it, so expiry decisions are monotonic.
    pub fn execute<V: StateView + ?Sized>(
        &self,
        view: &V,
        prev: &BlockHeader,
        time: Timestamp,
        log: LogPosition,
        txs: Vec<CheckedTx>,
    ) -> Executed {
        let now = time.max(prev.time);
        let height = prev.height + 1;
        let mut state = Overlay::new(view);
        let mut raws = Vec::with_capacity(txs.len());
        let mut ids = Vec::with_capacity(txs.len());
        let mut outcomes = Vec::with_capacity(txs.len());
        let mut entries = Vec::with_capacity(txs.len());
        let mut pending = Vec::new();
        for (index, checked) in txs.into_iter().enumerate() {
            let id = checked.id();
            let mut trace = None;
            let outcome = match &checked {
                CheckedTx::Rejected { code, .. } => Outcome::Invalid(*code),
                CheckedTx::Verified(v) => {
                    pending.clear();
                    let r = self.execute_tx(&state, now, v.tx(), &mut pending, &mut trace);
                    if r.is_ok() {
                        for (k, val) in pending.drain(..) {
                            state.put(k, val);
                        }
                    }
                    r.into()
                }
            };
            // The index keeps the transaction that took effect, or else the first mention.
            if outcome.is_valid() || state.get(&Key::Tx(id)).is_none() {
                let trace = trace.filter(|_| outcome.is_valid());
                let entry = TxEntry { height, index: index as u32, outcome: outcome.as_u16(), trace };
                state.put(Key::Tx(id), Some(entry.to_bytes()));
            }
            ids.push(id);
            outcomes.push(outcome);
            entries.push(checked.entry());
            raws.push(checked.into_raw());
        }
        let writes = state.into_writes();
        let mut block = Block {
            header: BlockHeader {
                chain: self.chain,
                height,
                prev: prev.hash(),
                time: now,
                tx_count: raws.len() as u32,
                tx_root: Hash32::default(),
                state_root: next_state_root(&prev.state_root, &writes),
                raft_term: log.term,
                raft_index: log.index,
            },
            txs: raws,
            ids,
            outcomes,
        };
        block.header.tx_root = block.tx_root_from_entries(&entries);
        Executed { block, writes }
    }

    /// Check one verified transaction against the state and, when it is valid, push its
    /// changes to `out`.
    ///
    /// Only a transaction that takes effect consumes its id. The id hashes the body alone, so a
    /// body first sent with too few endorsements can still be sent again, fully signed.
    fn execute_tx<V: StateView + ?Sized>(
        &self,
        state: &V,
        now: Timestamp,
        tx: &SignedTx,
        out: &mut Vec<(Key, Option<Vec<u8>>)>,
        trace: &mut Option<TraceEntry>,
    ) -> Result<(), RejectCode> {
        let body = tx.body();
        if body.valid_until < now {
            return Err(RejectCode::Expired);
        }
        if body.valid_until.0 > now.0.saturating_add(limits::MAX_TX_WINDOW_MS) {
            return Err(RejectCode::WindowTooLong);
        }
        if state.tx_entry(&tx.id()).is_some_and(|e| e.took_effect()) {
            return Err(RejectCode::Replay);
        }
        self.apply_payload(state, now, tx, out, trace)
    }

    fn apply_payload<V: StateView + ?Sized>(
        &self,
        state: &V,
        now: Timestamp,
        tx: &SignedTx,
        out: &mut Vec<(Key, Option<Vec<u8>>)>,
        trace: &mut Option<TraceEntry>,
    ) -> Result<(), RejectCode> {
        let c = self.consortium;
        match &tx.body().payload {
            Payload::Govern(g) if self.chain.is_meta() => govern(state, self.consortium, tx, g, out),
            Payload::Govern(_) => Err(RejectCode::MetaChainOnly),
            _ if self.chain.is_meta() => Err(RejectCode::NotOnMetaChain),
            Payload::Issue(p) => {
                let ty = c
                    .licence_type(p.licence_type)
                    .filter(|t| t.version == p.contract_version)
                    .ok_or(RejectCode::UnknownLicenceType)?;
                let issuer = self.authorise_issuer(tx, ty, true)?;
                let body = tx.body();
                let expected =
                    LicenceId::derive(self.chain, body.valid_until, issuer, p.licence_type, &p.holder, body.nonce);
                if p.licence != expected {
                    return Err(RejectCode::BadLicenceId);
                }
                if state.get(&Key::Licence(p.licence)).is_some() {
                    return Err(RejectCode::LicenceExists);
                }
                check_fields(ty, &p.fields, true)?;
                check_validity(ty, p.valid_from, p.valid_to)?;
                let rec = LicenceRecord {
                    licence_type: p.licence_type,
                    contract_version: p.contract_version,
                    holder: p.holder,
                    issuer,
                    status: LicenceStatus::Active,
                    valid_from: p.valid_from,
                    valid_to: p.valid_to,
                    issued_at: now,
                    updated_at: now,
                    last_tx: tx.id(),
                    fields: p.fields.clone(),
                    holder_envelope: p.holder_envelope.clone(),
                };
                out.push((Key::Licence(p.licence), Some(rec.to_bytes())));
                out.push((Key::HolderLicence(p.holder, p.licence), Some(Vec::new())));
                Ok(())
            }
            Payload::Renew(p) => {
                let (mut rec, ty) = self.licence(state, &p.licence)?;
                self.authorise_issuer(tx, ty, true)?;
                live_for_change(&rec.head())?;
                if !ty.renewable {
                    return Err(RejectCode::NotRenewable);
                }
                if p.valid_to <= rec.valid_to || p.valid_to <= now {
                    return Err(RejectCode::BadValidity);
                }
                check_validity(ty, now, p.valid_to)?;
                rec.valid_to = p.valid_to;
                self.put_licence(out, &p.licence, rec, now, tx);
                Ok(())
            }
            Payload::Amend(p) => {
                let (mut rec, ty) = self.licence(state, &p.licence)?;
                self.authorise_issuer(tx, ty, true)?;
                live_for_change(&rec.head())?;
                check_fields(ty, &p.fields, false)?;
                for f in &p.fields {
                    match rec.fields.binary_search_by_key(&f.index, |g| g.index) {
                        Ok(i) => rec.fields[i] = f.clone(),
                        Err(i) => rec.fields.insert(i, f.clone()),
                    }
                }
                self.put_licence(out, &p.licence, rec, now, tx);
                Ok(())
            }
            Payload::Suspend(p) | Payload::Reinstate(p) | Payload::Revoke(p) => {
                let (mut rec, ty) = self.licence(state, &p.licence)?;
                self.authorise_issuer(tx, ty, false)?;
                use LicenceStatus::*;
                rec.status = match (&tx.body().payload, rec.status) {
                    (_, Revoked) => return Err(RejectCode::LicenceRevoked),
                    (Payload::Suspend(_), Active) => Suspended,
                    (Payload::Reinstate(_), Suspended) => Active,
                    (Payload::Revoke(_), _) => Revoked,
                    _ => return Err(RejectCode::InvalidTransition),
                };
                self.put_licence(out, &p.licence, rec, now, tx);
                Ok(())
            }
            Payload::Grant(p) => {
                let (rec, ty) = self.licence_head(state, &p.licence)?;
                if !signed_by_holder(tx, &rec) {
                    return Err(RejectCode::NotHolder);
                }
                usable(&rec, now)?;
                c.member(p.grantee).ok_or(RejectCode::UnknownMember)?;
                let item = c.item(p.item).ok_or(RejectCode::UnknownItem)?;
                let allowed = item.allowed_fields(ty.id);
                if p.fields == 0 || p.fields & !allowed != 0 {
                    return Err(RejectCode::FieldNotAllowed);
                }
                if p.not_after <= p.not_before
                    || p.not_after <= now
                    || p.not_after.0 - p.not_before.0 > limits::MAX_GRANT_WINDOW_MS
                {
                    return Err(RejectCode::BadGrantWindow);
                }
                let g = GrantRecord {
                    licence: p.licence,
                    holder: rec.holder,
                    grantee: p.grantee,
                    item: p.item,
                    fields: p.fields,
                    not_before: p.not_before,
                    not_after: p.not_after,
                    max_uses: p.max_uses,
                    uses: 0,
                    revoked: false,
                    created_at: now,
                    envelope: p.envelope.clone(),
                };
                let id = GrantId::from(tx.id());
                out.push((Key::HolderGrant(rec.holder, id), Some(Vec::new())));
                out.push((Key::Grant(id), Some(g.to_bytes())));
                Ok(())
            }
            Payload::RevokeGrant(p) => {
                let (g, s) = state.grant_and_state(&p.grant).ok_or(RejectCode::UnknownGrant)?;
                if !tx.signatures().iter().any(|s| s.key.holder_id() == g.holder) {
                    return Err(RejectCode::NotHolder);
                }
                if g.revoked {
                    return Err(RejectCode::GrantRevoked);
                }
                let state = GrantState { revoked: true, ..s };
                out.push((Key::GrantState(p.grant), Some(state.to_bytes())));
                Ok(())
            }
            Payload::Use(p) => {
                let (g, s) = state.grant_and_state(&p.grant).ok_or(RejectCode::UnknownGrant)?;
                let grantee = c.member(g.grantee).ok_or(RejectCode::UnknownMember)?;
                if !tx.signed_by(&grantee.signing_key) {
                    return Err(RejectCode::NotGrantee);
                }
                if g.revoked {
                    return Err(RejectCode::GrantRevoked);
                }
                if now < g.not_before || now > g.not_after {
                    return Err(RejectCode::GrantExpired);
                }
                if g.max_uses != 0 && g.uses >= g.max_uses {
                    return Err(RejectCode::GrantExhausted);
                }
                if p.fields == 0 || p.fields & !g.fields != 0 {
                    return Err(RejectCode::FieldNotGranted);
                }
                let (rec, _) = self.licence_head(state, &g.licence)?;
                usable(&rec, now)?;
                let uses = s.uses.checked_add(1).ok_or(RejectCode::GrantExhausted)?;
                let state = GrantState { uses, revoked: false, last: Some(tx.id()) };
                // The use's trace goes into its tx index entry, written with its outcome.
                *trace = Some(TraceEntry { grant: p.grant, fields: p.fields, time: now, prev: s.last });
                out.push((Key::GrantState(p.grant), Some(state.to_bytes())));
                Ok(())
            }
            Payload::Attest(p) => {
                let member =
                    tx.signatures().first().and_then(|s| c.member_by_key(&s.key)).ok_or(RejectCode::UnknownMember)?;
                if state.get(&Key::Attestation(p.digest)).is_some() {
                    return Err(RejectCode::AttestationExists);
                }
                let a = Attestation { member, kind: p.kind, time: now, tx: tx.id() };
                out.push((Key::Attestation(p.digest), Some(a.to_bytes())));
                Ok(())
            }
        }
    }

    fn licence<V: StateView + ?Sized>(
        &self,
        state: &V,
        id: &LicenceId,
    ) -> Result<(LicenceRecord, &'c LicenceType), RejectCode> {
        let rec = state.licence(id).ok_or(RejectCode::UnknownLicence)?;
        let ty = self.consortium.licence_type(rec.licence_type).ok_or(RejectCode::UnknownLicenceType)?;
        Ok((rec, ty))
    }

    fn licence_head<V: StateView + ?Sized>(
        &self,
        state: &V,
        id: &LicenceId,
    ) -> Result<(LicenceHead, &'c LicenceType), RejectCode> {
        let rec = state.licence_head(id).ok_or(RejectCode::UnknownLicence)?;
        let ty = self.consortium.licence_type(rec.licence_type).ok_or(RejectCode::UnknownLicenceType)?;
        Ok((rec, ty))
    }

    fn put_licence(
        &self,
        out: &mut Vec<(Key, Option<Vec<u8>>)>,
        id: &LicenceId,
        mut rec: LicenceRecord,
        now: Timestamp,
        tx: &SignedTx,
    ) {
        rec.updated_at = now;
        rec.last_tx = tx.id();
        out.push((Key::Licence(*id), Some(rec.to_bytes())));
    }

    /// The first signer must be an issuer of the type; with `endorse`, the other signers must
    /// include `endorse_k` of its endorsers. Returns the issuer.
    fn authorise_issuer(&self, tx: &SignedTx, ty: &LicenceType, endorse: bool) -> Result<MemberId, RejectCode> {
        let member_of = |k: &PublicKey| self.consortium.member_by_key(k);
        let sigs = tx.signatures();
        let issuer = sigs
            .first()
            .and_then(|s| member_of(&s.key))
            .filter(|m| ty.issuers.contains(m))
            .ok_or(RejectCode::WrongIssuer)?;
        if endorse {
            let endorsements = sigs[1..]
                .iter()
                .filter_map(|s| member_of(&s.key))
                .filter(|m| *m != issuer && ty.endorsers.contains(m))
                .count();
            if endorsements < ty.endorse_k as usize {
                return Err(RejectCode::EndorsementMissing);
            }
        }
        Ok(issuer)
    }
}

/// Check a governance action against the meta chain's state and, when it is valid, push its
/// changes to `out`. `genesis` governs until a governance transaction stores its successor.
fn govern<V: StateView + ?Sized>(
    state: &V,
    genesis: &Consortium,
    tx: &SignedTx,
    action: &Govern,
    out: &mut Vec<(Key, Option<Vec<u8>>)>,
) -> Result<(), RejectCode> {
    let governed = state.governed_consortium();
    let c = governed.as_ref().unwrap_or(genesis);
    admin_quorum(c, tx)?;
    let invalid = RejectCode::InvalidGovernance;
    let rebuilt = |members, licence_types| {
        Consortium::new(c.name.clone(), members, licence_types, c.items.clone())
            .and_then(|n| n.with_admin_k(c.admin_k))
            .map_err(|_| invalid)
    };
    let (key, value) = match action {
        Govern::ShardMap(map) => {
            let expected = state.shard_map().map_or(Some(1), |m| m.version.checked_add(1));
            if Some(map.version) != expected {
                return Err(RejectCode::StaleVersion);
            }
            map.validate().map_err(|_| invalid)?;
            let chains = state.chains();
            if !map.chains().iter().all(|id| chains.binary_search_by_key(id, |c| c.id).is_ok()) {
                return Err(invalid);
            }
            (GovKey::ShardMap, map.to_bytes())
        }
        Govern::Chain(info) => {
            info.check().map_err(|_| invalid)?;
            let mut chains = state.chains();
            match chains.binary_search_by_key(&info.id, |c| c.id) {
                Ok(i) => chains[i] = info.clone(),
                Err(i) => chains.insert(i, info.clone()),
            }
            (GovKey::Chains, encode_chains(&chains))
        }
        Govern::Member(m) => {
            let mut members = c.members.clone();
            match (m.id.0 as usize).checked_sub(1) {
                Some(i) if i < members.len() => members[i] = m.clone(),
                Some(i) if i == members.len() => members.push(m.clone()),
                _ => return Err(invalid),
            }
            (GovKey::Consortium, rebuilt(members, c.licence_types.clone())?.to_bytes())
        }
        Govern::LicenceType(t) => {
            let mut types = c.licence_types.clone();
            match (t.id.0 as usize).checked_sub(1) {
                Some(i) if i < types.len() => {
                    // A new version of a contract keeps its stable code.
                    if t.code != types[i].code {
                        return Err(invalid);
                    }
                    if t.version <= types[i].version {
                        return Err(RejectCode::StaleVersion);
                    }
                    types[i] = t.clone();
                }
                Some(i) if i == types.len() => types.push(t.clone()),
                _ => return Err(invalid),
            }
            (GovKey::Consortium, rebuilt(c.members.clone(), types)?.to_bytes())
        }
        Govern::Param { name, .. } if !is_param_name(name) => return Err(invalid),
        Govern::Param { name, value } if name == ADMIN_K_PARAM => {
            let k = u16::try_from(*value).map_err(|_| invalid)?;
            (GovKey::Consortium, c.clone().with_admin_k(k).map_err(|_| invalid)?.to_bytes())
        }
        Govern::Param { name, value } => {
            let mut params = state.params();
            match params.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
                Ok(i) => params[i].1 = *value,
                Err(i) => params.insert(i, (name.clone(), *value)),
            }
            (GovKey::Params, encode_params(&params))
        }
        Govern::RevokeCertificate { serial, .. } => {
            let mut revoked = state.revoked_certificates();
            match revoked.binary_search(serial) {
                Err(i) if !serial.is_empty() => revoked.insert(i, serial.clone()),
                _ => return Err(invalid),
            }
            (GovKey::Revoked, encode_serials(&revoked))
        }
    };
    out.push((Key::Governance(key), Some(value)));
    Ok(())
}

/// At least `admin_k` distinct admin members signed. Counted by member: signatures by members
/// that are not admins, by keys of no member, or a second one by the same member do not count.
fn admin_quorum(c: &Consortium, tx: &SignedTx) -> Result<(), RejectCode> {
    let mut admins: Vec<MemberId> = tx
        .signatures()
        .iter()
        .filter_map(|s| c.member_by_key(&s.key))
        .filter(|id| c.member(*id).is_some_and(|m| m.admin))
        .collect();
    admins.sort();
    admins.dedup();
    if admins.len() < c.admin_k.max(1) as usize {
        return Err(RejectCode::AdminQuorum);
    }
    Ok(())
}

fn signed_by_holder(tx: &SignedTx, rec: &LicenceHead) -> bool {
    tx.signatures().iter().any(|s| s.key.holder_id() == rec.holder)
}

/// A licence that may still be changed by its issuer.
fn live_for_change(rec: &LicenceHead) -> Result<(), RejectCode> {
    match rec.status {
        LicenceStatus::Active => Ok(()),
        LicenceStatus::Suspended => Err(RejectCode::LicenceSuspended),
        LicenceStatus::Revoked => Err(RejectCode::LicenceRevoked),
    }
}

/// A licence whose fields may be granted or read now.
fn usable(rec: &LicenceHead, now: Timestamp) -> Result<(), RejectCode> {
    live_for_change(rec)?;
    if rec.expired_at(now) {
        return Err(RejectCode::LicenceExpired);
    }
    Ok(())
}

fn check_fields(ty: &LicenceType, fields: &[SealedField], complete: bool) -> Result<(), RejectCode> {
    let mut present = 0u64;
    for f in fields {
        if f.index as usize >= ty.fields.len() || f.ciphertext.len() < MIN_FIELD_CIPHERTEXT {
            return Err(RejectCode::SchemaViolation);
        }
        present |= 1 << f.index;
    }
    if fields.is_empty() || (complete && ty.required_mask() & !present != 0) {
        return Err(RejectCode::SchemaViolation);
    }
    Ok(())
}

/// Nonce, tag and salt: the smallest ciphertext a sealed field can have.
const MIN_FIELD_CIPHERTEXT: usize = 24 + 16 + elchain_types::crypto::SALT_LEN;

fn check_validity(ty: &LicenceType, from: Timestamp, to: Timestamp) -> Result<(), RejectCode> {
    match (ty.max_validity_days, to.0) {
        (0, 0) => Ok(()),
        (_, 0) => Err(RejectCode::BadValidity),
        (max, _) => {
            if to <= from || (max != 0 && to.0 - from.0 > max as u64 * Timestamp::DAY_MS) {
                Err(RejectCode::BadValidity)
            } else {
                Ok(())
            }
        }
    }
}

#[cfg(test)]
#[path = "exec_tests.rs"]
pub(crate) mod tests;
