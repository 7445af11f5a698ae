//! Ledger state: typed keys, records, and the read view the executor works on.
//!
//! State is a sorted key-value map. Each [`Key`] names its table and has a fixed byte encoding
//! (big-endian where order matters), so the in-memory store, the redb store and the state digest
//! all agree on what the state is.

use std::collections::BTreeMap;

use elchain_types::codec::{CodecError, Decode, Encode, Reader, Writer};
use elchain_types::contract::Consortium;
use elchain_types::crypto::SealedField;
use elchain_types::ids::{GrantId, Hash32, HolderId, ItemId, LicenceId, LicenceTypeId, MemberId, Timestamp, TxId};
use elchain_types::shardmap::{ChainInfo, ShardMap};
use elchain_types::tx::limits::{MAX_ENVELOPE, MAX_PARAM_NAME, MAX_SERIAL};
use elchain_types::tx::{get_fields, put_fields};

/// The tables of the ledger state. The names are part of the storage schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    /// Licence id → [`LicenceRecord`]. Licence ids start with the chain and then the issuance's
    /// time, so new licences go to the end of the table.
    Licences,
    /// Grant id → [`GrantRecord`] as made (uses 0, not revoked); written once. Grant ids are tx
    /// ids, which start with a time, so new grants go to the end of the table.
    Grants,
    /// Grant id → [`GrantState`]: uses so far, revoked, and the newest use. Small rows, so the
    /// whole table is a few pages per ten thousand grants.
    GrantUses,
    /// (holder, licence) → empty: the holder's licences on this chain.
    HolderLicences,
    /// (holder, grant) → empty: the grants made on the holder's licences, which lead to their
    /// traces.
    HolderGrants,
    /// Tx id → [`TxEntry`]: where every transaction is recorded and whether it took effect. It
    /// answers receipts and refuses replays: an id that took effect is never taken again (inside
    /// its window as `replay`, after it as `expired`), so nothing has to be pruned. A use that
    /// took effect also keeps its [`TraceEntry`] here, which names its grant and the grant's
    /// previous use: a grant's uses are found by following [`GrantState::last`] back. Tx ids
    /// start with their valid-until time, so a store write's entries land together at the end
    /// of the table, and a use costs one row, not two.
    TxIndex,
    /// Document digest → [`Attestation`].
    Attestations,
    /// [`GovKey`] → the meta chain's governance state (consortium, shard map, chain directory,
    /// parameters, revoked certificates). Empty on licence chains.
    Governance,
}

impl Table {
    /// Every table, in key order.
    pub const ALL: [Table; 8] = [
        Table::Licences,
        Table::Grants,
        Table::GrantUses,
        Table::HolderLicences,
        Table::HolderGrants,
        Table::TxIndex,
        Table::Attestations,
        Table::Governance,
    ];

    /// The table's stable name.
    pub fn name(self) -> &'static str {
        match self {
            Table::Licences => "licences",
            Table::Grants => "grants",
            Table::GrantUses => "grant_uses",
            Table::HolderLicences => "holder_licences",
            Table::HolderGrants => "holder_grants",
            Table::TxIndex => "tx_index",
            Table::Attestations => "attestations",
            Table::Governance => "governance",
        }
    }
}

/// A key of the ledger state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    /// A licence.
    Licence(LicenceId),
    /// A grant.
    Grant(GrantId),
    /// How often a grant was used, whether it was revoked, and its newest use.
    GrantState(GrantId),
    /// A holder owns a licence.
    HolderLicence(HolderId, LicenceId),
    /// A grant was made on a licence of the holder.
    HolderGrant(HolderId, GrantId),
    /// Where a transaction is recorded.
    Tx(TxId),
    /// An attested digest.
    Attestation(Hash32),
    /// One entry of the meta chain's governance state.
    Governance(GovKey),
}

/// The entries of the governance table; the key is the one-byte tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GovKey {
    /// The current [`Consortium`], once governance changed it (until then, the genesis one).
    Consortium = 0,
    /// The current [`ShardMap`].
    ShardMap = 1,
    /// The chain directory: [`ChainInfo`] list by ascending id.
    Chains = 2,
    /// Parameters: `(name, value)` list by ascending name; see [`encode_params`].
    Params = 3,
    /// Serials of revoked certificates, ascending; see [`encode_serials`].
    Revoked = 4,
}

impl GovKey {
    /// Every entry, in key order.
    pub const ALL: [GovKey; 5] =
        [GovKey::Consortium, GovKey::ShardMap, GovKey::Chains, GovKey::Params, GovKey::Revoked];

    /// The one-byte key.
    pub fn tag(self) -> u8 {
        self as u8
    }

    /// The entry with this tag.
    pub fn from_tag(tag: u8) -> Option<GovKey> {
        GovKey::ALL.get(tag as usize).copied()
    }
}

impl Key {
    /// The table this key lives in.
    pub fn table(&self) -> Table {
        match self {
            Key::Licence(_) => Table::Licences,
            Key::Grant(_) => Table::Grants,
            Key::GrantState(_) => Table::GrantUses,
            Key::HolderLicence(..) => Table::HolderLicences,
            Key::HolderGrant(..) => Table::HolderGrants,
            Key::Tx(_) => Table::TxIndex,
            Key::Attestation(_) => Table::Attestations,
            Key::Governance(_) => Table::Governance,
        }
    }

    /// The longest key encoding, in bytes.
    pub const MAX_LEN: usize = 64;

    /// The key's bytes within its table; big-endian numbers so byte order is numeric order.
    pub fn bytes(&self) -> Vec<u8> {
        let mut b = [0u8; Self::MAX_LEN];
        let n = self.write_to(&mut b);
        b[..n].to_vec()
    }

    /// Write [`Key::bytes`] into `out` without allocating; returns the length.
    pub fn write_to(&self, out: &mut [u8; Self::MAX_LEN]) -> usize {
        fn two(out: &mut [u8; Key::MAX_LEN], a: &[u8], b: &[u8]) -> usize {
            out[..a.len()].copy_from_slice(a);
            out[a.len()..a.len() + b.len()].copy_from_slice(b);
            a.len() + b.len()
        }
        match self {
            Key::Licence(id) => two(out, &id.0, &[]),
            Key::Grant(id) => two(out, &id.0, &[]),
            Key::GrantState(g) => two(out, &g.0, &[]),
            Key::HolderLicence(h, l) => two(out, &h.0, &l.0),
            Key::HolderGrant(h, g) => two(out, &h.0, &g.0),
            Key::Tx(id) => two(out, &id.0, &[]),
            Key::Attestation(d) => two(out, &d.0, &[]),
            Key::Governance(g) => two(out, &[g.tag()], &[]),
        }
    }

    /// Rebuild a key from its table and bytes.
    pub fn from_parts(table: Table, bytes: &[u8]) -> Option<Key> {
        let a32 = |s: &[u8]| -> Option<[u8; 32]> { s.try_into().ok() };
        Some(match (table, bytes.len()) {
            (Table::Licences, 32) => Key::Licence(LicenceId(a32(bytes)?)),
            (Table::Grants, 32) => Key::Grant(GrantId(a32(bytes)?)),
            (Table::GrantUses, 32) => Key::GrantState(GrantId(a32(bytes)?)),
            (Table::HolderLicences, 64) => {
                Key::HolderLicence(HolderId(a32(&bytes[..32])?), LicenceId(a32(&bytes[32..])?))
            }
            (Table::HolderGrants, 64) => Key::HolderGrant(HolderId(a32(&bytes[..32])?), GrantId(a32(&bytes[32..])?)),
            (Table::TxIndex, 32) => Key::Tx(TxId(a32(bytes)?)),
            (Table::Attestations, 32) => Key::Attestation(Hash32(a32(bytes)?)),
            (Table::Governance, 1) => Key::Governance(GovKey::from_tag(bytes[0])?),
            _ => return None,
        })
    }
}

/// Read access to the state as of the last committed block.
pub trait StateView {
    /// The value under `key`.
    fn get(&self, key: &Key) -> Option<Vec<u8>>;

    /// Every entry from `first` to `last` (inclusive), in key order. Both keys are of one kind
    /// (the same [`Key`] variant); only entries of that kind are returned.
    fn range(&self, first: &Key, last: &Key) -> Vec<(Key, Vec<u8>)>;
}

/// Overlay `writes` (later ones win) between `first` and `last` onto `base`, an ordered list of
/// entries of that range.
pub fn merge_range<'w>(
    base: Vec<(Key, Vec<u8>)>,
    writes: impl IntoIterator<Item = &'w Writes>,
    first: &Key,
    last: &Key,
) -> Vec<(Key, Vec<u8>)> {
    let mut merged: BTreeMap<Key, Vec<u8>> = base.into_iter().collect();
    for w in writes {
        for (k, v) in w.range(first..=last) {
            match v {
                Some(v) => merged.insert(*k, v.clone()),
                None => merged.remove(k),
            };
        }
    }
    merged.into_iter().collect()
}

/// Where a transaction is recorded: the value of [`Key::Tx`].
///
/// Only the transaction that took effect is indexed, or, while none has, the first mention of
/// its id: a rejected replay must not hide the original.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxEntry {
    /// Block height.
    pub height: u64,
    /// Position in the block.
    pub index: u32,
    /// 0 when it took effect, else its reject code.
    pub outcome: u16,
    /// For a use of a grant that took effect: the use.
    pub trace: Option<TraceEntry>,
}

impl TxEntry {
    /// Encoded size without a trace: height (8 bytes BE) ‖ index (4 bytes BE) ‖ outcome (2 bytes
    /// BE). A use's [`TraceEntry`] follows in the canonical codec.
    pub const LEN: usize = 14;

    /// True when the transaction took effect.
    pub fn took_effect(&self) -> bool {
        self.outcome == 0
    }

    /// The stored bytes, in one allocation of the right size (a use's entry is written per use).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(Self::LEN + self.trace.map_or(0, |_| TraceEntry::MAX_LEN));
        w.raw(&self.height.to_be_bytes());
        w.raw(&self.index.to_be_bytes());
        w.raw(&self.outcome.to_be_bytes());
        if let Some(t) = &self.trace {
            w.put(t);
        }
        w.into_bytes()
    }

    /// Read stored bytes back.
    pub fn from_bytes(v: &[u8]) -> Option<TxEntry> {
        if v.len() < Self::LEN {
            return None;
        }
        let (head, rest) = v.split_at(Self::LEN);
        Some(TxEntry {
            height: u64::from_be_bytes(head[..8].try_into().ok()?),
            index: u32::from_be_bytes(head[8..12].try_into().ok()?),
            outcome: u16::from_be_bytes(head[12..].try_into().ok()?),
            trace: if rest.is_empty() { None } else { Some(TraceEntry::from_bytes(rest).ok()?) },
        })
    }
}

/// Pending state changes: `None` deletes.
pub type Writes = BTreeMap<Key, Option<Vec<u8>>>;

/// A view of `base` with `writes` laid over it.
pub struct Overlay<'a, V: ?Sized> {
    base: &'a V,
    writes: Writes,
}

impl<'a, V: StateView + ?Sized> Overlay<'a, V> {
    /// No changes yet.
    pub fn new(base: &'a V) -> Self {
        Self { base, writes: Writes::new() }
    }

    /// Record a change.
    pub fn put(&mut self, key: Key, value: Option<Vec<u8>>) {
        self.writes.insert(key, value);
    }

    /// The changes.
    pub fn into_writes(self) -> Writes {
        self.writes
    }

    /// Record every change of `writes` (later ones replace earlier ones).
    pub fn extend(&mut self, mut writes: Writes) {
        if self.writes.is_empty() {
            self.writes = writes;
        } else {
            self.writes.append(&mut writes);
        }
    }
}

impl<V: StateView + ?Sized> StateView for Overlay<'_, V> {
    fn get(&self, key: &Key) -> Option<Vec<u8>> {
        match self.writes.get(key) {
            Some(v) => v.clone(),
            None => self.base.get(key),
        }
    }

    fn range(&self, first: &Key, last: &Key) -> Vec<(Key, Vec<u8>)> {
        merge_range(self.base.range(first, last), [&self.writes], first, last)
    }
}

/// The whole state in memory: for tests, the simulator and benchmarks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemState {
    map: BTreeMap<Key, Vec<u8>>,
}

impl MemState {
    /// Apply committed changes.
    pub fn apply(&mut self, writes: &Writes) {
        for (k, v) in writes {
            match v {
                Some(v) => self.map.insert(*k, v.clone()),
                None => self.map.remove(k),
            };
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Every entry in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&Key, &Vec<u8>)> {
        self.map.iter()
    }
}

impl StateView for MemState {
    fn get(&self, key: &Key) -> Option<Vec<u8>> {
        self.map.get(key).cloned()
    }

    fn range(&self, first: &Key, last: &Key) -> Vec<(Key, Vec<u8>)> {
        self.map.range(first..=last).map(|(k, v)| (*k, v.clone())).collect()
    }
}

/// Where a licence stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LicenceStatus {
    /// Usable.
    Active,
    /// Temporarily unusable; may be reinstated.
    Suspended,
    /// Permanently unusable.
    Revoked,
}

impl LicenceStatus {
    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            LicenceStatus::Active => "active",
            LicenceStatus::Suspended => "suspended",
            LicenceStatus::Revoked => "revoked",
        }
    }
}

/// A licence as the chain keeps it: metadata, status and sealed fields; no plaintext.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LicenceRecord {
    /// Licence type.
    pub licence_type: LicenceTypeId,
    /// Contract version it was issued under.
    pub contract_version: u32,
    /// Holder.
    pub holder: HolderId,
    /// Issuing member.
    pub issuer: MemberId,
    /// Status.
    pub status: LicenceStatus,
    /// Start of validity.
    pub valid_from: Timestamp,
    /// End of validity, 0 for none.
    pub valid_to: Timestamp,
    /// Block time of issuance.
    pub issued_at: Timestamp,
    /// Block time of the last change.
    pub updated_at: Timestamp,
    /// Last transaction that changed it.
    pub last_tx: TxId,
    /// Sealed fields by ascending index.
    pub fields: Vec<SealedField>,
    /// Data key sealed to the holder.
    pub holder_envelope: Vec<u8>,
}

/// The fixed-size start of a [`LicenceRecord`]: who holds it, its status and validity, without
/// its sealed fields. What granting and using a licence need to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LicenceHead {
    /// Licence type.
    pub licence_type: LicenceTypeId,
    /// The holder.
    pub holder: HolderId,
    /// Current status.
    pub status: LicenceStatus,
    /// End of validity (0: no end).
    pub valid_to: Timestamp,
}

impl LicenceHead {
    /// True when the licence's validity ended before `now`.
    pub fn expired_at(&self, now: Timestamp) -> bool {
        self.valid_to.0 != 0 && now > self.valid_to
    }

    /// Decode the head of an encoded [`LicenceRecord`] (its fields are not read).
    pub fn from_record_bytes(bytes: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(bytes);
        let licence_type = r.get()?;
        r.u32("contract version")?;
        let holder = r.get()?;
        let _issuer: MemberId = r.get()?;
        let status = LicenceStatus::from_u8(r.u8("status")?)?;
        let _valid_from: Timestamp = r.get()?;
        let valid_to = r.get()?;
        Ok(LicenceHead { licence_type, holder, status, valid_to })
    }
}

impl LicenceStatus {
    fn from_u8(tag: u8) -> Result<Self, CodecError> {
        match tag {
            0 => Ok(LicenceStatus::Active),
            1 => Ok(LicenceStatus::Suspended),
            2 => Ok(LicenceStatus::Revoked),
            tag => Err(CodecError::UnknownTag { what: "status", tag }),
        }
    }
}

impl LicenceRecord {
    /// The record's head.
    pub fn head(&self) -> LicenceHead {
        LicenceHead {
            licence_type: self.licence_type,
            holder: self.holder,
            status: self.status,
            valid_to: self.valid_to,
        }
    }

    /// True when `now` is past the end of validity.
    pub fn expired_at(&self, now: Timestamp) -> bool {
        self.valid_to.0 != 0 && now > self.valid_to
    }
}

/// A holder's authorisation of a member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantRecord {
    /// Licence.
    pub licence: LicenceId,
    /// Holder who granted.
    pub holder: HolderId,
    /// Member granted.
    pub grantee: MemberId,
    /// Service item.
    pub item: ItemId,
    /// Granted field mask.
    pub fields: u64,
    /// Window start.
    pub not_before: Timestamp,
    /// Window end.
    pub not_after: Timestamp,
    /// Most uses, 0 for no limit.
    pub max_uses: u32,
    /// Uses so far.
    pub uses: u32,
    /// Revoked by the holder.
    pub revoked: bool,
    /// Block time of the grant.
    pub created_at: Timestamp,
    /// Field keys sealed for release against a recorded use.
    pub envelope: Vec<u8>,
}

/// One recorded use of a holder's licence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceRecord {
    /// Grant used.
    pub grant: GrantId,
    /// Licence read.
    pub licence: LicenceId,
    /// Member who read.
    pub grantee: MemberId,
    /// Service item.
    pub item: ItemId,
    /// Fields read.
    pub fields: u64,
    /// Block time.
    pub time: Timestamp,
    /// The use transaction.
    pub tx: TxId,
}

/// A notarised document digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attestation {
    /// Member who attested.
    pub member: MemberId,
    /// Member's document kind code.
    pub kind: u16,
    /// Block time.
    pub time: Timestamp,
    /// The attest transaction.
    pub tx: TxId,
}

impl Encode for LicenceRecord {
    fn encode(&self, w: &mut Writer) {
        w.put(&self.licence_type);
        w.u32(self.contract_version);
        w.put(&self.holder);
        w.put(&self.issuer);
        w.u8(self.status as u8);
        w.put(&self.valid_from);
        w.put(&self.valid_to);
        w.put(&self.issued_at);
        w.put(&self.updated_at);
        w.put(&self.last_tx);
        put_fields(w, &self.fields);
        w.bytes(&self.holder_envelope);
    }
}

impl Decode for LicenceRecord {
    fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        let licence_type = r.get()?;
        let contract_version = r.u32("contract version")?;
        let holder = r.get()?;
        let issuer = r.get()?;
        let status = LicenceStatus::from_u8(r.u8("status")?)?;
        let (valid_from, valid_to, issued_at, updated_at, last_tx) = (r.get()?, r.get()?, r.get()?, r.get()?, r.get()?);
        let fields = get_fields(r)?;
        let holder_envelope = r.bytes("holder envelope", MAX_ENVELOPE)?.to_vec();
        Ok(LicenceRecord {
            licence_type,
            contract_version,
            holder,
            issuer,
            status,
            valid_from,
            valid_to,
            issued_at,
            updated_at,
            last_tx,
            fields,
            holder_envelope,
        })
    }
}

impl Encode for GrantRecord {
    fn encode(&self, w: &mut Writer) {
        w.put(&self.licence);
        w.put(&self.holder);
        w.put(&self.grantee);
        w.put(&self.item);
        w.u64(self.fields);
        w.put(&self.not_before);
        w.put(&self.not_after);
        w.u32(self.max_uses);
        w.u32(self.uses);
        w.bool(self.revoked);
        w.put(&self.created_at);
        w.bytes(&self.envelope);
    }
}

impl Decode for GrantRecord {
    fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(GrantRecord {
            licence: r.get()?,
            holder: r.get()?,
            grantee: r.get()?,
            item: r.get()?,
            fields: r.u64("fields")?,
            not_before: r.get()?,
            not_after: r.get()?,
            max_uses: r.u32("max uses")?,
            uses: r.u32("uses")?,
            revoked: r.bool("revoked")?,
            created_at: r.get()?,
            envelope: r.bytes("envelope", MAX_ENVELOPE)?.to_vec(),
        })
    }
}

/// What changes about a grant: the value of [`Key::GrantState`] (absent: unused, not revoked).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GrantState {
    /// Uses recorded so far.
    pub uses: u32,
    /// Revoked by its holder.
    pub revoked: bool,
    /// The newest use, the head of the grant's chain of [`TraceEntry::prev`] links.
    pub last: Option<TxId>,
}

fn put_tx_link(w: &mut Writer, link: &Option<TxId>) {
    w.bool(link.is_some());
    if let Some(id) = link {
        w.put(id);
    }
}

fn get_tx_link(r: &mut Reader<'_>) -> Result<Option<TxId>, CodecError> {
    Ok(match r.bool("link")? {
        true => Some(r.get()?),
        false => None,
    })
}

impl Encode for GrantState {
    fn encode(&self, w: &mut Writer) {
        w.u32(self.uses);
        w.bool(self.revoked);
        put_tx_link(w, &self.last);
    }
}

impl Decode for GrantState {
    fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(GrantState { uses: r.u32("uses")?, revoked: r.bool("revoked")?, last: get_tx_link(r)? })
    }
}

/// One use of a grant, kept in the use transaction's [`TxEntry`]. The rest of the
/// [`TraceRecord`] (licence, grantee, item) is the grant's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceEntry {
    /// Grant used.
    pub grant: GrantId,
    /// Fields read.
    pub fields: u64,
    /// Block time.
    pub time: Timestamp,
    /// The grant's previous use, if any.
    pub prev: Option<TxId>,
}

impl TraceEntry {
    /// Longest encoding: grant, fields, time, and a link to a previous use.
    pub const MAX_LEN: usize = 32 + 8 + 8 + 1 + 32;

    /// The full record of this use, made by transaction `tx`, of the grant `g`.
    pub fn record(&self, tx: TxId, g: &GrantRecord) -> TraceRecord {
        TraceRecord {
            grant: self.grant,
            licence: g.licence,
            grantee: g.grantee,
            item: g.item,
            fields: self.fields,
            time: self.time,
            tx,
        }
    }
}

impl Encode for TraceEntry {
    fn encode(&self, w: &mut Writer) {
        w.put(&self.grant);
        w.u64(self.fields);
        w.put(&self.time);
        put_tx_link(w, &self.prev);
    }
}

impl Decode for TraceEntry {
    fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(TraceEntry { grant: r.get()?, fields: r.u64("fields")?, time: r.get()?, prev: get_tx_link(r)? })
    }
}

impl Encode for TraceRecord {
    fn encode(&self, w: &mut Writer) {
        w.put(&self.grant);
        w.put(&self.licence);
        w.put(&self.grantee);
        w.put(&self.item);
        w.u64(self.fields);
        w.put(&self.time);
        w.put(&self.tx);
    }
}

impl Decode for TraceRecord {
    fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(TraceRecord {
            grant: r.get()?,
            licence: r.get()?,
            grantee: r.get()?,
            item: r.get()?,
            fields: r.u64("fields")?,
            time: r.get()?,
            tx: r.get()?,
        })
    }
}

impl Encode for Attestation {
    fn encode(&self, w: &mut Writer) {
        w.put(&self.member);
        w.u16(self.kind);
        w.put(&self.time);
        w.put(&self.tx);
    }
}

impl Decode for Attestation {
    fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(Attestation { member: r.get()?, kind: r.u16("kind")?, time: r.get()?, tx: r.get()? })
    }
}

/// Most entries of a stored governance list (bounded by the stored bytes in any case).
const MAX_GOV_LIST: usize = 1 << 24;

/// The value stored under [`GovKey::Params`]: `(name, value)` pairs, sorted by name.
pub fn encode_params(params: &[(String, u64)]) -> Vec<u8> {
    let mut w = Writer::new();
    w.u32(params.len() as u32);
    for (name, value) in params {
        w.bytes(name.as_bytes());
        w.u64(*value);
    }
    w.into_bytes()
}

/// Read back [`encode_params`].
pub fn decode_params(bytes: &[u8]) -> Result<Vec<(String, u64)>, CodecError> {
    let mut r = Reader::new(bytes);
    let n = r.len("params", MAX_GOV_LIST)?;
    let mut out = Vec::with_capacity(n.min(r.remaining()));
    for _ in 0..n {
        let name = String::from_utf8(r.bytes("param name", MAX_PARAM_NAME)?.to_vec())
            .map_err(|_| CodecError::NonCanonical { what: "param name", why: "not UTF-8" })?;
        out.push((name, r.u64("param value")?));
    }
    r.finish()?;
    Ok(out)
}

/// The value stored under [`GovKey::Revoked`]: certificate serials, sorted.
pub fn encode_serials(serials: &[Vec<u8>]) -> Vec<u8> {
    let mut w = Writer::new();
    w.u32(serials.len() as u32);
    for s in serials {
        w.bytes(s);
    }
    w.into_bytes()
}

/// Read back [`encode_serials`].
pub fn decode_serials(bytes: &[u8]) -> Result<Vec<Vec<u8>>, CodecError> {
    let mut r = Reader::new(bytes);
    let n = r.len("serials", MAX_GOV_LIST)?;
    let mut out = Vec::with_capacity(n.min(r.remaining()));
    for _ in 0..n {
        out.push(r.bytes("certificate serial", MAX_SERIAL)?.to_vec());
    }
    r.finish()?;
    Ok(out)
}

/// The value stored under [`GovKey::Chains`]: the directory, sorted by chain id.
pub fn encode_chains(chains: &[ChainInfo]) -> Vec<u8> {
    let mut w = Writer::new();
    w.seq(chains);
    w.into_bytes()
}

/// Read back [`encode_chains`].
pub fn decode_chains(bytes: &[u8]) -> Result<Vec<ChainInfo>, CodecError> {
    let mut r = Reader::new(bytes);
    let chains = r.seq("chains", MAX_GOV_LIST)?;
    r.finish()?;
    Ok(chains)
}

/// Typed reads over any view.
pub trait StateReads: StateView {
    /// A licence.
    fn licence(&self, id: &LicenceId) -> Option<LicenceRecord> {
        self.get(&Key::Licence(*id)).map(|b| LicenceRecord::from_bytes(&b).expect("stored licence decodes"))
    }

    /// The head of a licence (no fields decoded).
    fn licence_head(&self, id: &LicenceId) -> Option<LicenceHead> {
        self.get(&Key::Licence(*id)).map(|b| LicenceHead::from_record_bytes(&b).expect("stored licence decodes"))
    }

    /// A grant, with its uses and revocation.
    fn grant(&self, id: &GrantId) -> Option<GrantRecord> {
        self.grant_and_state(id).map(|(g, _)| g)
    }

    /// A grant, with its uses and revocation, and the state they came from.
    fn grant_and_state(&self, id: &GrantId) -> Option<(GrantRecord, GrantState)> {
        let mut g = self.get(&Key::Grant(*id)).map(|b| GrantRecord::from_bytes(&b).expect("stored grant decodes"))?;
        let s = self.grant_state(id);
        (g.uses, g.revoked) = (s.uses, s.revoked);
        Some((g, s))
    }

    /// A grant's uses, revocation and newest use.
    fn grant_state(&self, id: &GrantId) -> GrantState {
        self.get(&Key::GrantState(*id))
            .map_or_else(GrantState::default, |b| GrantState::from_bytes(&b).expect("stored grant state decodes"))
    }

    /// Where a transaction is recorded, if anywhere.
    fn tx_entry(&self, id: &TxId) -> Option<TxEntry> {
        self.get(&Key::Tx(*id)).map(|b| TxEntry::from_bytes(&b).expect("stored tx entry decodes"))
    }

    /// The grants made on a holder's licences.
    fn holder_grants(&self, holder: &HolderId) -> Vec<GrantId> {
        let (first, last) =
            (Key::HolderGrant(*holder, GrantId([0; 32])), Key::HolderGrant(*holder, GrantId([0xff; 32])));
        self.range(&first, &last)
            .into_iter()
            .filter_map(|(k, _)| match k {
                Key::HolderGrant(_, g) => Some(g),
                _ => None,
            })
            .collect()
    }

    /// Every use of a grant, oldest first: its chain of uses followed back from the newest.
    fn grant_traces(&self, grant: &GrantId) -> Vec<TraceRecord> {
        let Some((g, s)) = self.grant_and_state(grant) else { return Vec::new() };
        let mut out = Vec::with_capacity(s.uses as usize);
        let mut next = s.last;
        while let Some(tx) = next {
            let e = self
                .tx_entry(&tx)
                .and_then(|e| e.trace)
                .unwrap_or_else(|| panic!("use {tx} of grant {grant} is indexed with its trace"));
            assert!(
                e.grant == *grant && out.len() < s.uses as usize,
                "grant {grant}'s chain of uses is broken at {tx}"
            );
            out.push(e.record(tx, &g));
            next = e.prev;
        }
        out.reverse();
        out
    }

    /// Every trace of a holder, oldest first (by block time, then transaction id).
    fn traces(&self, holder: &HolderId) -> Vec<TraceRecord> {
        let mut out: Vec<TraceRecord> = self.holder_grants(holder).iter().flat_map(|g| self.grant_traces(g)).collect();
        out.sort_by_key(|t| (t.time, t.tx));
        out
    }

    /// The consortium as governance last set it on the meta chain; `None` while it is still the
    /// genesis consortium (and on licence chains).
    fn governed_consortium(&self) -> Option<Consortium> {
        self.get(&Key::Governance(GovKey::Consortium))
            .map(|b| Consortium::from_bytes(&b).expect("stored consortium decodes"))
    }

    /// The current shard map, once one is set.
    fn shard_map(&self) -> Option<ShardMap> {
        self.get(&Key::Governance(GovKey::ShardMap))
            .map(|b| ShardMap::from_bytes(&b).expect("stored shard map decodes"))
    }

    /// The chain directory, by ascending chain id.
    fn chains(&self) -> Vec<ChainInfo> {
        self.get(&Key::Governance(GovKey::Chains))
            .map_or_else(Vec::new, |b| decode_chains(&b).expect("stored chain directory decodes"))
    }

    /// Governance parameters, by ascending name.
    fn params(&self) -> Vec<(String, u64)> {
        self.get(&Key::Governance(GovKey::Params))
            .map_or_else(Vec::new, |b| decode_params(&b).expect("stored parameters decode"))
    }

    /// One governance parameter.
    fn param(&self, name: &str) -> Option<u64> {
        self.params().into_iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// Serials of revoked certificates, ascending.
    fn revoked_certificates(&self) -> Vec<Vec<u8>> {
        self.get(&Key::Governance(GovKey::Revoked))
            .map_or_else(Vec::new, |b| decode_serials(&b).expect("stored revocations decode"))
    }
}

impl<V: StateView + ?Sized> StateReads for V {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_bytes_are_fixed_and_round_trip() {
        let h = HolderId([0xaa; 32]);
        let k = Key::HolderGrant(h, GrantId([0xbb; 32]));
        let mut expected = vec![0xaa; 32];
        expected.extend_from_slice(&[0xbb; 32]);
        assert_eq!(k.bytes(), expected);
        let samples = [
            Key::Licence(LicenceId([1; 32])),
            Key::Grant(GrantId([2; 32])),
            k,
            Key::HolderLicence(h, LicenceId([3; 32])),
            Key::GrantState(GrantId([6; 32])),
            Key::Tx(TxId([4; 32])),
            Key::Attestation(Hash32([6; 32])),
        ];
        let samples = samples.into_iter().chain(GovKey::ALL.map(Key::Governance));
        for key in samples {
            assert_eq!(Key::from_parts(key.table(), &key.bytes()), Some(key));
        }
        assert_eq!(Key::from_parts(Table::Licences, &[0; 31]), None);
        assert_eq!(Key::Governance(GovKey::Revoked).bytes(), [4]);
        assert_eq!(Key::from_parts(Table::Governance, &[5]), None);
        assert_eq!(Key::from_parts(Table::Governance, &[0, 0]), None);
        for (i, t) in Table::ALL.iter().enumerate() {
            assert_eq!(*t as usize, i, "stores index their tables by this position");
        }
    }

    #[test]
    fn governance_lists_round_trip() {
        let params = vec![("a".to_string(), 1), ("max_block_txs".to_string(), u64::MAX)];
        assert_eq!(decode_params(&encode_params(&params)).unwrap(), params);
        let serials = vec![vec![1], vec![1, 2, 3], vec![0xff; MAX_SERIAL]];
        assert_eq!(decode_serials(&encode_serials(&serials)).unwrap(), serials);
        let chains = vec![ChainInfo {
            id: elchain_types::ids::ChainId(1),
            replicas: vec![elchain_types::shardmap::ReplicaInfo { node: 3, addr: "10.0.0.3:7000".into() }],
        }];
        assert_eq!(decode_chains(&encode_chains(&chains)).unwrap(), chains);
        let mut trailing = encode_serials(&serials);
        trailing.push(0);
        assert!(decode_serials(&trailing).is_err());
        let empty = MemState::default();
        assert!(empty.chains().is_empty() && empty.params().is_empty() && empty.revoked_certificates().is_empty());
        assert!(empty.governed_consortium().is_none() && empty.shard_map().is_none());
    }

    #[test]
    fn overlay_reads_its_own_writes_and_deletes() {
        let mut base = MemState::default();
        let k = Key::Tx(TxId([1; 32]));
        base.apply(&Writes::from([(k, Some(vec![1]))]));
        let mut o = Overlay::new(&base);
        assert_eq!(o.get(&k), Some(vec![1]));
        o.put(k, None);
        assert_eq!(o.get(&k), None);
    }

    #[test]
    fn grant_states_and_traces_round_trip_with_and_without_links() {
        for last in [None, Some(TxId([9; 32]))] {
            let s = GrantState { uses: 7, revoked: true, last };
            assert_eq!(GrantState::from_bytes(&s.to_bytes()).unwrap(), s);
            let t = TraceEntry { grant: GrantId([3; 32]), fields: 0b101, time: Timestamp(42), prev: last };
            assert_eq!(TraceEntry::from_bytes(&t.to_bytes()).unwrap(), t);
        }
        assert_eq!(GrantState::default().to_bytes().len(), 6);
        assert_eq!(GrantState { last: Some(TxId([0; 32])), ..Default::default() }.to_bytes().len(), 38);
    }

    #[test]
    fn tx_entries_round_trip() {
        let e = TxEntry { height: 0x0102, index: 3, outcome: 8, trace: None };
        assert_eq!(e.to_bytes(), [0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 3, 0, 8]);
        assert_eq!(TxEntry::from_bytes(&e.to_bytes()), Some(e));
        assert!(!e.took_effect());
        assert_eq!(TxEntry::from_bytes(&[0; 13]), None);
        let trace = TraceEntry { grant: GrantId([3; 32]), fields: 0b11, time: Timestamp(9), prev: Some(TxId([5; 32])) };
        let used = TxEntry { height: 7, index: 0, outcome: 0, trace: Some(trace) };
        let bytes = used.to_bytes();
        assert_eq!(bytes[..TxEntry::LEN], [0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0]);
        assert_eq!(bytes[TxEntry::LEN..], trace.to_bytes()[..]);
        assert_eq!(TxEntry::from_bytes(&bytes), Some(used));
        assert_eq!(TxEntry::from_bytes(&bytes[..bytes.len() - 1]), None, "a cut trace is refused");
    }
}
