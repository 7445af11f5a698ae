//! Transactions: a canonical body and the signatures over its id.
//!
//! ```text
//!  SignedTx bytes = u32 len ‖ body bytes ‖ u8 n ‖ n × (public key 32 ‖ signature 64)
//!  tx_id          = valid_until (u64 BE) ‖ first 24 bytes of blake3-derive("elchain 2026 tx id v2", body bytes)
//!  each signature = Ed25519 over the 32-byte tx_id
//! ```
//!
//! An id starts with the end of its transaction's window, so ids sort by time: the ids a chain
//! records in one second sit together in its tx index (and grant ids, which are tx ids, in its
//! grant table), and writing them touches a few B-tree pages instead of one page each. The 192
//! bits of hash that follow keep ids collision-resistant (2^96 work).

use rand_core::{CryptoRng, RngCore};

use crate::codec::{CodecError, Decode, Encode, Reader, Writer};
use crate::contract::{LicenceType, Member};
use crate::crypto::{domain, hash, Keypair, PublicKey, SealedField, MAX_FIELDS};
use crate::ids::{ChainId, GrantId, Hash32, HolderId, ItemId, LicenceId, LicenceTypeId, MemberId, Timestamp, TxId};
use crate::reason::RejectCode;
use crate::shardmap::{ChainInfo, ShardMap};

/// The id of a transaction body with this `valid_until` and encoding: `valid_until` big-endian,
/// then the first 24 bytes of the body's domain-separated hash.
pub fn tx_id(valid_until: Timestamp, body_bytes: &[u8]) -> TxId {
    let h = hash(&domain::TX_ID, &[body_bytes]);
    let mut id = [0u8; 32];
    id[..8].copy_from_slice(&valid_until.0.to_be_bytes());
    id[8..].copy_from_slice(&h[..24]);
    TxId(id)
}

/// Hard limits of the protocol. Anything larger is refused before it is looked at further.
pub mod limits {
    /// Largest encoded signed transaction.
    pub const MAX_TX_BYTES: usize = 64 * 1024;
    /// Most signatures on one transaction.
    pub const MAX_SIGNATURES: usize = 8;
    /// Largest field ciphertext (values are short; images travel as digests).
    pub const MAX_FIELD_CIPHERTEXT: usize = 4 * 1024;
    /// Largest key envelope.
    pub const MAX_ENVELOPE: usize = 4 * 1024;
    /// How far ahead of block time `valid_until` may be; tx ids are remembered this long.
    pub const MAX_TX_WINDOW_MS: u64 = 60 * 60 * 1000;
    /// Longest grant window.
    pub const MAX_GRANT_WINDOW_MS: u64 = 366 * 86_400_000;
    /// Longest governance parameter name.
    pub const MAX_PARAM_NAME: usize = 32;
    /// Longest certificate serial number, in bytes (RFC 5280 allows 20).
    pub const MAX_SERIAL: usize = 20;
}

const BODY_VERSION: u8 = 1;

/// What a transaction asks the chain to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// Issue a new licence (issuer plus endorsers sign).
    Issue(Issue),
    /// Extend a licence's validity (issuer plus endorsers sign).
    Renew(Renew),
    /// Replace some fields of a licence (issuer plus endorsers sign).
    Amend(Amend),
    /// Suspend an active licence (an issuer of the type signs).
    Suspend(StatusChange),
    /// Reinstate a suspended licence (an issuer of the type signs).
    Reinstate(StatusChange),
    /// Revoke a licence for good (an issuer of the type signs).
    Revoke(StatusChange),
    /// Authorise a member to use chosen fields for a service item (the holder signs).
    Grant(Grant),
    /// Withdraw a grant (the holder signs).
    RevokeGrant(RevokeGrant),
    /// Use granted fields: the trace written before any data is released (the grantee signs).
    Use(Use),
    /// Notarise a document digest (a member signs).
    Attest(Attest),
    /// Change consortium governance on the meta chain (`admin_k` distinct admins sign).
    Govern(Govern),
}

/// Issue a licence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issue {
    /// The new licence's id; see [`LicenceId::derive`].
    pub licence: LicenceId,
    /// The licence type (contract).
    pub licence_type: LicenceTypeId,
    /// The contract version the fields follow.
    pub contract_version: u32,
    /// The holder.
    pub holder: HolderId,
    /// Start of validity.
    pub valid_from: Timestamp,
    /// End of validity; `Timestamp(0)` when the licence does not expire.
    pub valid_to: Timestamp,
    /// The fields, sealed, in ascending schema order.
    pub fields: Vec<SealedField>,
    /// The licence's data key sealed to the holder, so the holder can grant.
    pub holder_envelope: Vec<u8>,
}

/// Extend validity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Renew {
    /// The licence.
    pub licence: LicenceId,
    /// New end of validity.
    pub valid_to: Timestamp,
}

/// Replace fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Amend {
    /// The licence.
    pub licence: LicenceId,
    /// New sealed values, in ascending schema order; fields not listed keep their value.
    pub fields: Vec<SealedField>,
}

/// Suspend, reinstate or revoke.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusChange {
    /// The licence.
    pub licence: LicenceId,
    /// The issuer's own reason code, recorded as is.
    pub reason: u16,
}

/// Authorise a member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The licence whose fields are shared.
    pub licence: LicenceId,
    /// The member allowed to use them.
    pub grantee: MemberId,
    /// The service item the use is for.
    pub item: ItemId,
    /// Bit `i` set: schema field `i` is granted.
    pub fields: u64,
    /// Window start.
    pub not_before: Timestamp,
    /// Window end.
    pub not_after: Timestamp,
    /// Most uses; 0 means no limit within the window.
    pub max_uses: u32,
    /// The granted field keys, sealed for release against a recorded use.
    pub envelope: Vec<u8>,
}

/// Withdraw a grant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevokeGrant {
    /// The grant.
    pub grant: GrantId,
}

/// Use granted fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Use {
    /// The grant.
    pub grant: GrantId,
    /// The fields read now; a subset of the grant's.
    pub fields: u64,
}

/// Notarise a document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attest {
    /// Digest of the document.
    pub digest: Hash32,
    /// The member's own document kind code.
    pub kind: u16,
}

/// A governance action, valid on the meta chain (chain 0) only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Govern {
    /// Replace the shard map: its version must be the current one plus 1 (the first is 1), it
    /// must pass [`ShardMap::validate`], and every chain it names must be in the directory.
    ShardMap(ShardMap),
    /// Register a chain in the directory, or replace its replica list.
    Chain(ChainInfo),
    /// Add a member (id = number of members + 1) or replace one (same id): key rotation, admin
    /// flag. No two members may share a signing key.
    Member(Member),
    /// Add a licence type (id = number of types + 1) or a new version of one (higher version,
    /// same code).
    LicenceType(LicenceType),
    /// Set a parameter. `admin_k` is reserved: it sets the consortium's admin threshold.
    Param {
        /// `[a-z0-9_]{1,32}`, see [`is_param_name`].
        name: String,
        /// The value.
        value: u64,
    },
    /// Revoke a member or node certificate; revoking one already revoked is refused.
    RevokeCertificate {
        /// The certificate's serial number, 1 to [`limits::MAX_SERIAL`] bytes.
        serial: Vec<u8>,
        /// The CRL reason code (RFC 5280), recorded as is.
        reason: u8,
    },
}

/// The name of the parameter that sets the consortium's admin threshold.
pub const ADMIN_K_PARAM: &str = "admin_k";

/// True when `name` is a parameter name: 1 to 32 of `a`–`z`, `0`–`9` and `_`.
pub fn is_param_name(name: &str) -> bool {
    (1..=limits::MAX_PARAM_NAME).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl Govern {
    /// A short stable name of the action, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Govern::ShardMap(_) => "shard_map",
            Govern::Chain(_) => "chain",
            Govern::Member(_) => "member",
            Govern::LicenceType(_) => "licence_type",
            Govern::Param { .. } => "param",
            Govern::RevokeCertificate { .. } => "revoke_certificate",
        }
    }
}

impl Encode for Govern {
    fn encode(&self, w: &mut Writer) {
        match self {
            Govern::ShardMap(m) => {
                w.u8(1);
                w.put(m);
            }
            Govern::Chain(c) => {
                w.u8(2);
                w.put(c);
            }
            Govern::Member(m) => {
                w.u8(3);
                w.put(m);
            }
            Govern::LicenceType(t) => {
                w.u8(4);
                w.put(t);
            }
            Govern::Param { name, value } => {
                w.u8(5);
                w.bytes(name.as_bytes());
                w.u64(*value);
            }
            Govern::RevokeCertificate { serial, reason } => {
                w.u8(6);
                w.bytes(serial);
                w.u8(*reason);
            }
        }
    }
}

impl Decode for Govern {
    fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(match r.u8("governance kind")? {
            1 => Govern::ShardMap(r.get()?),
            2 => Govern::Chain(r.get()?),
            3 => Govern::Member(r.get()?),
            4 => Govern::LicenceType(r.get()?),
            5 => Govern::Param {
                name: String::from_utf8(r.bytes("param name", limits::MAX_PARAM_NAME)?.to_vec())
                    .map_err(|_| CodecError::NonCanonical { what: "param name", why: "not UTF-8" })?,
                value: r.u64("param value")?,
            },
            6 => Govern::RevokeCertificate {
                serial: r.bytes("certificate serial", limits::MAX_SERIAL)?.to_vec(),
                reason: r.u8("revocation reason")?,
            },
            tag => return Err(CodecError::UnknownTag { what: "governance kind", tag }),
        })
    }
}

/// The signed part of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxBody {
    /// The chain this transaction is for.
    pub chain: ChainId,
    /// Chosen by the client so that equal requests get distinct ids.
    pub nonce: u64,
    /// The transaction is refused after this time, and its id is forgotten after it.
    pub valid_until: Timestamp,
    /// What to do.
    pub payload: Payload,
}

/// One signature over a transaction id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signature {
    /// The signer's Ed25519 public key.
    pub key: PublicKey,
    /// The signature bytes.
    pub sig: [u8; 64],
}

/// A transaction as it travels: body, its canonical bytes, id, and signatures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedTx {
    body: TxBody,
    body_bytes: Vec<u8>,
    id: TxId,
    sigs: Vec<Signature>,
}

impl LicenceId {
    /// The id of a licence issued on `chain` by `issuer` to `holder` in a transaction valid until
    /// `valid_until`, made unique by `nonce`: chain (4 bytes BE) ‖ `valid_until` (8 bytes BE) ‖ the
    /// first 20 bytes of a hash of all of them. The time after the chain puts the licences a chain
    /// issues in about the order it issues them, so its store appends new licences instead of
    /// inserting each into a random page of a table of large rows.
    pub fn derive(
        chain: ChainId,
        valid_until: Timestamp,
        issuer: MemberId,
        licence_type: LicenceTypeId,
        holder: &HolderId,
        nonce: u64,
    ) -> Self {
        let h = hash(
            &domain::LICENCE_ID,
            &[
                &chain.0.to_be_bytes(),
                &valid_until.0.to_be_bytes(),
                &issuer.0.to_le_bytes(),
                &licence_type.0.to_le_bytes(),
                &holder.0,
                &nonce.to_le_bytes(),
            ],
        );
        let mut id = [0u8; 32];
        id[..4].copy_from_slice(&chain.0.to_be_bytes());
        id[4..12].copy_from_slice(&valid_until.0.to_be_bytes());
        id[12..].copy_from_slice(&h[..20]);
        LicenceId(id)
    }
}

impl TxBody {
    /// Encode and hash the body, ready for signing.
    pub fn seal(self) -> UnsignedTx {
        let body_bytes = self.to_bytes();
        let id = tx_id(self.valid_until, &body_bytes);
        UnsignedTx { tx: SignedTx { body: self, body_bytes, id, sigs: Vec::new() } }
    }
}

/// A transaction being signed.
#[derive(Clone, Debug)]
pub struct UnsignedTx {
    tx: SignedTx,
}

impl UnsignedTx {
    /// The id every signer signs.
    pub fn id(&self) -> TxId {
        self.tx.id
    }

    /// Add a signature by `key`.
    pub fn sign(mut self, key: &Keypair) -> Self {
        let sig = key.sign(&self.tx.id.0);
        self.tx.sigs.push(Signature { key: key.public(), sig });
        self
    }

    /// Add a signature made elsewhere.
    pub fn with_signature(mut self, sig: Signature) -> Self {
        self.tx.sigs.push(sig);
        self
    }

    /// Finish signing.
    pub fn done(self) -> SignedTx {
        self.tx
    }
}

impl SignedTx {
    /// The body.
    pub fn body(&self) -> &TxBody {
        &self.body
    }

    /// The body's canonical bytes (what the id hashes).
    pub fn body_bytes(&self) -> &[u8] {
        &self.body_bytes
    }

    /// The transaction id.
    pub fn id(&self) -> TxId {
        self.id
    }

    /// The signatures, in the order given.
    pub fn signatures(&self) -> &[Signature] {
        &self.sigs
    }

    /// True when `key` signed (not checked for validity here).
    pub fn signed_by(&self, key: &PublicKey) -> bool {
        self.sigs.iter().any(|s| s.key == *key)
    }

    /// Decode from wire bytes, enforcing the size limit first.
    ///
    /// Returns the reject code a chain records for these bytes: `Oversized` or `Malformed`.
    pub fn decode_wire(bytes: &[u8]) -> Result<Self, RejectCode> {
        if bytes.len() > limits::MAX_TX_BYTES {
            return Err(RejectCode::Oversized);
        }
        Self::from_bytes(bytes).map_err(|_| RejectCode::Malformed)
    }

    /// Stateless checks that need no signature verification: a signature is present and the
    /// transaction is for `chain`.
    pub fn check_shape(&self, chain: ChainId) -> Result<(), RejectCode> {
        if self.sigs.is_empty() {
            return Err(RejectCode::Unsigned);
        }
        if self.body.chain != chain {
            return Err(RejectCode::WrongChain);
        }
        Ok(())
    }

    /// A random nonce for clients.
    pub fn random_nonce<R: RngCore + CryptoRng>(rng: &mut R) -> u64 {
        rng.next_u64()
    }
}

impl Encode for SignedTx {
    fn encode(&self, w: &mut Writer) {
        w.bytes(&self.body_bytes);
        w.u8(self.sigs.len() as u8);
        for s in &self.sigs {
            w.raw(&s.key.0);
            w.raw(&s.sig);
        }
    }
}

impl Decode for SignedTx {
    fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        let body_bytes = r.bytes("tx body", limits::MAX_TX_BYTES)?;
        let body = TxBody::from_bytes(body_bytes)?;
        let n = r.u8("signature count")? as usize;
        if n > limits::MAX_SIGNATURES {
            return Err(CodecError::TooLong { what: "signatures", len: n, max: limits::MAX_SIGNATURES });
        }
        let mut sigs: Vec<Signature> = Vec::with_capacity(n);
        for _ in 0..n {
            let key = PublicKey(r.array("signer key")?);
            if sigs.iter().any(|s| s.key == key) {
                return Err(CodecError::NonCanonical { what: "signatures", why: "a key signs twice" });
            }
            sigs.push(Signature { key, sig: r.array("signature")? });
        }
        let id = tx_id(body.valid_until, body_bytes);
        Ok(SignedTx { body, body_bytes: body_bytes.to_vec(), id, sigs })
    }
}

impl Encode for TxBody {
    fn encode(&self, w: &mut Writer) {
        w.u8(BODY_VERSION);
        w.put(&self.chain);
        w.u64(self.nonce);
        w.put(&self.valid_until);
        w.put(&self.payload);
    }
}

impl Decode for TxBody {
    fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        let version = r.u8("body version")?;
        if version != BODY_VERSION {
            return Err(CodecError::UnknownTag { what: "body version", tag: version });
        }
        Ok(TxBody { chain: r.get()?, nonce: r.u64("nonce")?, valid_until: r.get()?, payload: r.get()? })
    }
}

/// Write a list of sealed fields (count, then index ‖ commitment ‖ ciphertext each).
pub fn put_fields(w: &mut Writer, fields: &[SealedField]) {
    w.u32(fields.len() as u32);
    for f in fields {
        w.u16(f.index);
        w.raw(&f.commitment);
        w.bytes(&f.ciphertext);
    }
}

/// Read a list of sealed fields, refusing indices that do not strictly ascend below 64.
pub fn get_fields(r: &mut Reader<'_>) -> Result<Vec<SealedField>, CodecError> {
    let n = r.len("fields", MAX_FIELDS)?;
    let mut out: Vec<SealedField> = Vec::with_capacity(n);
    for _ in 0..n {
        let index = r.u16("field index")?;
        if index as usize >= MAX_FIELDS || out.last().is_some_and(|p| p.index >= index) {
            return Err(CodecError::NonCanonical { what: "fields", why: "indices must ascend below 64" });
        }
        let commitment = r.array("commitment")?;
        let ciphertext = r.bytes("field ciphertext", limits::MAX_FIELD_CIPHERTEXT)?.to_vec();
        out.push(SealedField { index, commitment, ciphertext });
    }
    Ok(out)
}

impl Encode for Payload {
    fn encode(&self, w: &mut Writer) {
        match self {
            Payload::Issue(p) => {
                w.u8(1);
                w.put(&p.licence);
                w.put(&p.licence_type);
                w.u32(p.contract_version);
                w.put(&p.holder);
                w.put(&p.valid_from);
                w.put(&p.valid_to);
                put_fields(w, &p.fields);
                w.bytes(&p.holder_envelope);
            }
            Payload::Renew(p) => {
                w.u8(2);
                w.put(&p.licence);
                w.put(&p.valid_to);
            }
            Payload::Amend(p) => {
                w.u8(3);
                w.put(&p.licence);
                put_fields(w, &p.fields);
            }
            Payload::Suspend(p) | Payload::Reinstate(p) | Payload::Revoke(p) => {
                w.u8(match self {
                    Payload::Suspend(_) => 4,
                    Payload::Reinstate(_) => 5,
                    _ => 6,
                });
                w.put(&p.licence);
                w.u16(p.reason);
            }
            Payload::Grant(p) => {
                w.u8(7);
                w.put(&p.licence);
                w.put(&p.grantee);
                w.put(&p.item);
                w.u64(p.fields);
                w.put(&p.not_before);
                w.put(&p.not_after);
                w.u32(p.max_uses);
                w.bytes(&p.envelope);
            }
            Payload::RevokeGrant(p) => {
                w.u8(8);
                w.put(&p.grant);
            }
            Payload::Use(p) => {
                w.u8(9);
                w.put(&p.grant);
                w.u64(p.fields);
            }
            Payload::Attest(p) => {
                w.u8(10);
                w.put(&p.digest);
                w.u16(p.kind);
            }
            Payload::Govern(g) => {
                w.u8(11);
                w.put(g);
            }
        }
    }
}

impl Decode for Payload {
    fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        let status = |r: &mut Reader<'_>| -> Result<StatusChange, CodecError> {
            Ok(StatusChange { licence: r.get()?, reason: r.u16("reason")? })
        };
        Ok(match r.u8("payload kind")? {
            1 => Payload::Issue(Issue {
                licence: r.get()?,
                licence_type: r.get()?,
                contract_version: r.u32("contract version")?,
                holder: r.get()?,
                valid_from: r.get()?,
                valid_to: r.get()?,
                fields: get_fields(r)?,
                holder_envelope: r.bytes("holder envelope", limits::MAX_ENVELOPE)?.to_vec(),
            }),
            2 => Payload::Renew(Renew { licence: r.get()?, valid_to: r.get()? }),
            3 => Payload::Amend(Amend { licence: r.get()?, fields: get_fields(r)? }),
            4 => Payload::Suspend(status(r)?),
            5 => Payload::Reinstate(status(r)?),
            6 => Payload::Revoke(status(r)?),
            7 => Payload::Grant(Grant {
                licence: r.get()?,
                grantee: r.get()?,
                item: r.get()?,
                fields: r.u64("field mask")?,
                not_before: r.get()?,
                not_after: r.get()?,
                max_uses: r.u32("max uses")?,
                envelope: r.bytes("grant envelope", limits::MAX_ENVELOPE)?.to_vec(),
            }),
            8 => Payload::RevokeGrant(RevokeGrant { grant: r.get()? }),
            9 => Payload::Use(Use { grant: r.get()?, fields: r.u64("field mask")? }),
            10 => Payload::Attest(Attest { digest: r.get()?, kind: r.u16("document kind")? }),
            11 => Payload::Govern(r.get()?),
            tag => return Err(CodecError::UnknownTag { what: "payload kind", tag }),
        })
    }
}

impl Payload {
    /// A short stable name of the kind, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Payload::Issue(_) => "issue",
            Payload::Renew(_) => "renew",
            Payload::Amend(_) => "amend",
            Payload::Suspend(_) => "suspend",
            Payload::Reinstate(_) => "reinstate",
            Payload::Revoke(_) => "revoke",
            Payload::Grant(_) => "grant",
            Payload::RevokeGrant(_) => "revoke_grant",
            Payload::Use(_) => "use",
            Payload::Attest(_) => "attest",
            Payload::Govern(_) => "govern",
        }
    }
}

#[cfg(test)]
#[path = "tx_tests.rs"]
mod tests;
