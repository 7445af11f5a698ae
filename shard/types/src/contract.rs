//! Contracts: declarative licence-type definitions, members and service items.
//!
//! A contract says what a licence type holds (field schema), who may issue it, whose
//! endorsement issuance needs (k of n members), how long it may be valid, and which service
//! items may ask for which of its fields. The whole set is a [`Consortium`], built from a
//! profile file (see [`crate::profile`]) and maintained on the meta chain by governance
//! transactions, which need the signatures of `admin_k` distinct admin members.

use std::collections::HashMap;

use crate::codec::{CodecError, Decode, Encode, Reader, Writer};
use crate::crypto::{PublicKey, MAX_FIELDS};
use crate::ids::{ItemId, LicenceTypeId, MemberId};

/// What a member is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberKind {
    /// A city-level bureau.
    CityBureau,
    /// A district government.
    District,
}

/// A department of the consortium.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Number used on chain.
    pub id: MemberId,
    /// Short stable code, e.g. `market-regulation`.
    pub code: String,
    /// Display name.
    pub name: String,
    /// City bureau or district.
    pub kind: MemberKind,
    /// Consortium admin (signs governance).
    pub admin: bool,
    /// Ed25519 key that signs the member's transactions.
    pub signing_key: PublicKey,
    /// X25519 key that envelopes for the member are sealed to.
    pub encryption_key: [u8; 32],
}

/// The type of a field's value (checked by clients before sealing; the chain sees ciphertext).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldKind {
    /// UTF-8 text.
    Text,
    /// A calendar date, `YYYY-MM-DD`.
    Date,
    /// A decimal integer.
    Integer,
    /// A hash of an image or document, hex.
    Digest,
}

/// One field of a licence type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldSpec {
    /// snake_case name.
    pub name: String,
    /// Value type.
    pub kind: FieldKind,
    /// Must be present at issuance.
    pub required: bool,
}

/// Who holds a licence type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HolderKind {
    /// A natural person.
    Person,
    /// A company or organisation.
    Enterprise,
}

/// A licence type: the contract that governs its licences.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LicenceType {
    /// Number used on chain.
    pub id: LicenceTypeId,
    /// Stable code, e.g. `business_licence`.
    pub code: String,
    /// Display name.
    pub name: String,
    /// Contract version; issuance must name it.
    pub version: u32,
    /// Person or enterprise.
    pub holder: HolderKind,
    /// Members that may issue and manage licences of this type.
    pub issuers: Vec<MemberId>,
    /// Endorsements needed besides the issuer's signature.
    pub endorse_k: u8,
    /// Members whose signatures count as endorsements.
    pub endorsers: Vec<MemberId>,
    /// Longest validity in days; 0 means licences of this type do not expire.
    pub max_validity_days: u32,
    /// Whether validity may be extended.
    pub renewable: bool,
    /// The schema, in field-index order.
    pub fields: Vec<FieldSpec>,
}

impl LicenceType {
    /// Bit mask of the required fields.
    pub fn required_mask(&self) -> u64 {
        self.fields.iter().enumerate().filter(|(_, f)| f.required).fold(0, |m, (i, _)| m | 1 << i)
    }

    /// Bit mask of every field.
    pub fn all_mask(&self) -> u64 {
        if self.fields.len() == 64 {
            u64::MAX
        } else {
            (1u64 << self.fields.len()) - 1
        }
    }

    /// The index of a field by name.
    pub fn field_index(&self, name: &str) -> Option<u16> {
        self.fields.iter().position(|f| f.name == name).map(|i| i as u16)
    }
}

/// Enterprise or personal service item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ItemKind {
    /// For companies.
    Enterprise,
    /// For persons.
    Personal,
}

/// A government service item and the licence fields it may ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    /// Number used on chain.
    pub id: ItemId,
    /// Stable code, e.g. `E001`.
    pub code: String,
    /// Display name.
    pub name: String,
    /// Enterprise or personal.
    pub kind: ItemKind,
    /// (licence type, fields it may request).
    pub needs: Vec<(LicenceTypeId, u64)>,
}

impl Item {
    /// The fields of `licence_type` this item may request (0 when none).
    pub fn allowed_fields(&self, licence_type: LicenceTypeId) -> u64 {
        self.needs.iter().find(|(t, _)| *t == licence_type).map_or(0, |(_, m)| *m)
    }
}

/// Every member, contract and service item, with lookups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Consortium {
    /// Profile name.
    pub name: String,
    /// Members by id order.
    pub members: Vec<Member>,
    /// Licence types by id order.
    pub licence_types: Vec<LicenceType>,
    /// Service items by id order.
    pub items: Vec<Item>,
    /// Distinct admin members whose signatures a governance transaction needs, 1 to the number
    /// of admins. Change it with [`Consortium::with_admin_k`], which checks that range.
    pub admin_k: u16,
    by_key: HashMap<PublicKey, MemberId>,
}

/// A consortium definition that breaks a structural rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsortiumError {
    /// Ids must be 1, 2, 3, … in order.
    #[error("{what} ids must be dense from 1; found {found} at position {position}")]
    Ids {
        /// Which list.
        what: &'static str,
        /// Id found.
        found: u16,
        /// Position in the list (from 1).
        position: usize,
    },
    /// Two members share a signing key.
    #[error("members {a} and {b} share a signing key")]
    SharedKey {
        /// One member.
        a: MemberId,
        /// The other.
        b: MemberId,
    },
    /// A reference names something that does not exist, or a limit is broken.
    #[error("{0}")]
    Invalid(String),
}

impl Consortium {
    /// Assemble and check a consortium. It needs at least one admin member; governance needs a
    /// majority of the admins (`n / 2 + 1`) until [`Consortium::with_admin_k`] says otherwise.
    pub fn new(
        name: String,
        members: Vec<Member>,
        licence_types: Vec<LicenceType>,
        items: Vec<Item>,
    ) -> Result<Self, ConsortiumError> {
        for (i, m) in members.iter().enumerate() {
            if m.id.0 as usize != i + 1 {
                return Err(ConsortiumError::Ids { what: "member", found: m.id.0, position: i + 1 });
            }
            if members[..i].iter().any(|o| o.code == m.code) {
                return Err(ConsortiumError::Invalid(format!("two members have the code {}", m.code)));
            }
        }
        let admins = members.iter().filter(|m| m.admin).count();
        if admins == 0 {
            return Err(ConsortiumError::Invalid("a consortium needs at least one admin member".into()));
        }
        for (i, t) in licence_types.iter().enumerate() {
            if t.id.0 as usize != i + 1 {
                return Err(ConsortiumError::Ids { what: "licence type", found: t.id.0, position: i + 1 });
            }
            if licence_types[..i].iter().any(|o| o.code == t.code) {
                return Err(ConsortiumError::Invalid(format!("two licence types have the code {}", t.code)));
            }
            if t.fields.is_empty() || t.fields.len() > MAX_FIELDS {
                return Err(ConsortiumError::Invalid(format!("{} has {} fields (1..=64)", t.code, t.fields.len())));
            }
            let known = |id: &MemberId| id.0 >= 1 && id.0 as usize <= members.len();
            if t.issuers.is_empty() || !t.issuers.iter().chain(&t.endorsers).all(known) {
                return Err(ConsortiumError::Invalid(format!("{} names an unknown issuer or endorser", t.code)));
            }
            if t.endorse_k as usize > t.endorsers.len() {
                return Err(ConsortiumError::Invalid(format!(
                    "{} needs {} endorsements of {} endorsers",
                    t.code,
                    t.endorse_k,
                    t.endorsers.len()
                )));
            }
        }
        for (i, it) in items.iter().enumerate() {
            if it.id.0 as usize != i + 1 {
                return Err(ConsortiumError::Ids { what: "item", found: it.id.0, position: i + 1 });
            }
            for (t, mask) in &it.needs {
                let Some(ty) = licence_types.get((t.0 as usize).wrapping_sub(1)) else {
                    return Err(ConsortiumError::Invalid(format!("item {} needs unknown type {t}", it.code)));
                };
                if mask & !ty.all_mask() != 0 {
                    return Err(ConsortiumError::Invalid(format!("item {} asks for unknown fields", it.code)));
                }
            }
        }
        let mut by_key = HashMap::with_capacity(members.len());
        for m in &members {
            if let Some(other) = by_key.insert(m.signing_key, m.id) {
                return Err(ConsortiumError::SharedKey { a: other, b: m.id });
            }
        }
        let admin_k = (admins / 2 + 1) as u16;
        Ok(Self { name, members, licence_types, items, admin_k, by_key })
    }

    /// The same consortium with governance needing `admin_k` distinct admins; refused unless
    /// `1 <= admin_k <= ` the number of admins.
    pub fn with_admin_k(mut self, admin_k: u16) -> Result<Self, ConsortiumError> {
        let admins = self.admins().count();
        if admin_k == 0 || admin_k as usize > admins {
            return Err(ConsortiumError::Invalid(format!("admin_k {admin_k} is outside 1..={admins} (the admins)")));
        }
        self.admin_k = admin_k;
        Ok(self)
    }

    /// The admin members, by id order.
    pub fn admins(&self) -> impl Iterator<Item = &Member> {
        self.members.iter().filter(|m| m.admin)
    }

    /// The member with this id.
    pub fn member(&self, id: MemberId) -> Option<&Member> {
        self.members.get((id.0 as usize).wrapping_sub(1))
    }

    /// The member whose signing key this is.
    pub fn member_by_key(&self, key: &PublicKey) -> Option<MemberId> {
        self.by_key.get(key).copied()
    }

    /// The member with this code.
    pub fn member_by_code(&self, code: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.code == code)
    }

    /// The licence type with this id.
    pub fn licence_type(&self, id: LicenceTypeId) -> Option<&LicenceType> {
        self.licence_types.get((id.0 as usize).wrapping_sub(1))
    }

    /// The licence type with this code.
    pub fn licence_type_by_code(&self, code: &str) -> Option<&LicenceType> {
        self.licence_types.iter().find(|t| t.code == code)
    }

    /// The service item with this id.
    pub fn item(&self, id: ItemId) -> Option<&Item> {
        self.items.get((id.0 as usize).wrapping_sub(1))
    }
}

fn put_str(w: &mut Writer, s: &str) {
    w.bytes(s.as_bytes());
}

fn get_str(r: &mut Reader<'_>, what: &'static str) -> Result<String, CodecError> {
    String::from_utf8(r.bytes(what, 1024)?.to_vec()).map_err(|_| CodecError::NonCanonical { what, why: "not UTF-8" })
}

fn put_ids<T: Encode>(w: &mut Writer, ids: &[T]) {
    w.seq(ids);
}

fn tag<T: Copy + PartialEq>(r: &mut Reader<'_>, what: &'static str, options: &[T]) -> Result<T, CodecError> {
    let t = r.u8(what)?;
    options.get(t as usize).copied().ok_or(CodecError::UnknownTag { what, tag: t })
}

fn index_of<T: PartialEq>(options: &[T], v: &T) -> u8 {
    options.iter().position(|o| o == v).expect("every variant is listed") as u8
}

const MEMBER_KINDS: [MemberKind; 2] = [MemberKind::CityBureau, MemberKind::District];
const FIELD_KINDS: [FieldKind; 4] = [FieldKind::Text, FieldKind::Date, FieldKind::Integer, FieldKind::Digest];
const HOLDER_KINDS: [HolderKind; 2] = [HolderKind::Person, HolderKind::Enterprise];
const ITEM_KINDS: [ItemKind; 2] = [ItemKind::Enterprise, ItemKind::Personal];

impl Encode for Member {
    fn encode(&self, w: &mut Writer) {
        w.put(&self.id);
        put_str(w, &self.code);
        put_str(w, &self.name);
        w.u8(index_of(&MEMBER_KINDS, &self.kind));
        w.bool(self.admin);
        w.put(&self.signing_key);
        w.raw(&self.encryption_key);
    }
}

impl Decode for Member {
    fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(Member {
            id: r.get()?,
            code: get_str(r, "member code")?,
            name: get_str(r, "member name")?,
            kind: tag(r, "member kind", &MEMBER_KINDS)?,
            admin: r.bool("admin")?,
            signing_key: r.get()?,
            encryption_key: r.array("encryption key")?,
        })
    }
}

impl Encode for LicenceType {
    fn encode(&self, w: &mut Writer) {
        w.put(&self.id);
        put_str(w, &self.code);
        put_str(w, &self.name);
        w.u32(self.version);
        w.u8(index_of(&HOLDER_KINDS, &self.holder));
        put_ids(w, &self.issuers);
        w.u8(self.endorse_k);
        put_ids(w, &self.endorsers);
        w.u32(self.max_validity_days);
        w.bool(self.renewable);
        w.u32(self.fields.len() as u32);
        for f in &self.fields {
            put_str(w, &f.name);
            w.u8(index_of(&FIELD_KINDS, &f.kind));
            w.bool(f.required);
        }
    }
}

impl Decode for LicenceType {
    fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        let id = r.get()?;
        let code = get_str(r, "type code")?;
        let name = get_str(r, "type name")?;
        let version = r.u32("version")?;
        let holder = tag(r, "holder kind", &HOLDER_KINDS)?;
        let issuers = r.seq("issuers", u16::MAX as usize)?;
        let endorse_k = r.u8("endorse k")?;
        let endorsers = r.seq("endorsers", u16::MAX as usize)?;
        let max_validity_days = r.u32("max validity")?;
        let renewable = r.bool("renewable")?;
        let nf = r.len("fields", MAX_FIELDS)?;
        let mut fields = Vec::with_capacity(nf);
        for _ in 0..nf {
            fields.push(FieldSpec {
                name: get_str(r, "field name")?,
                kind: tag(r, "field kind", &FIELD_KINDS)?,
                required: r.bool("required")?,
            });
        }
        Ok(LicenceType {
            id,
            code,
            name,
            version,
            holder,
            issuers,
            endorse_k,
            endorsers,
            max_validity_days,
            renewable,
            fields,
        })
    }
}

impl Encode for Consortium {
    fn encode(&self, w: &mut Writer) {
        put_str(w, &self.name);
        w.u32(self.members.len() as u32);
        for m in &self.members {
            w.put(m);
        }
        w.u16(self.admin_k);
        w.u32(self.licence_types.len() as u32);
        for t in &self.licence_types {
            w.put(t);
        }
        w.u32(self.items.len() as u32);
        for it in &self.items {
            w.put(&it.id);
            put_str(w, &it.code);
            put_str(w, &it.name);
            w.u8(index_of(&ITEM_KINDS, &it.kind));
            w.u32(it.needs.len() as u32);
            for (t, m) in &it.needs {
                w.put(t);
                w.u64(*m);
            }
        }
    }
}

impl Decode for Consortium {
    fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        let name = get_str(r, "consortium name")?;
        let n = r.len("members", u16::MAX as usize)?;
        let mut members = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            members.push(r.get()?);
        }
        let admin_k = r.u16("admin k")?;
        let n = r.len("licence types", u16::MAX as usize)?;
        let mut licence_types = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            licence_types.push(r.get()?);
        }
        let n = r.len("items", u16::MAX as usize)?;
        let mut items = Vec::with_capacity(n.min(4096));
        for _ in 0..n {
            let id = r.get()?;
            let code = get_str(r, "item code")?;
            let name = get_str(r, "item name")?;
            let kind = tag(r, "item kind", &ITEM_KINDS)?;
            let nn = r.len("needs", 64)?;
            let mut needs = Vec::with_capacity(nn);
            for _ in 0..nn {
                needs.push((r.get()?, r.u64("field mask")?));
            }
            items.push(Item { id, code, name, kind, needs });
        }
        Consortium::new(name, members, licence_types, items)
            .and_then(|c| c.with_admin_k(admin_k))
            .map_err(|_| CodecError::NonCanonical { what: "consortium", why: "fails its structural checks" })
    }
}
