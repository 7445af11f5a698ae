//! Client-side builders: turn plaintext licence data into transaction bodies.
//!
//! Issuers seal every field under a fresh data key before anything leaves their system; holders
//! hand field keys to a grantee inside a sealed envelope. Signing stays with the caller, since
//! different transactions need different signers (issuer and endorsers, holder, grantee, the
//! consortium's admins).

use rand_core::{CryptoRng, RngCore};

use crate::codec::Encode;
use crate::contract::LicenceType;
use crate::crypto::{seal, DataKey, FieldKeys, Keypair, SealedField};
use crate::ids::{ChainId, GrantId, HolderId, ItemId, LicenceId, MemberId, Timestamp};
use crate::tx::{Govern, Grant, Issue, Payload, TxBody, Use};

/// A field value given by name that the licence type does not define.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("licence type {licence_type} has no field `{field}`")]
pub struct UnknownField {
    /// The type's code.
    pub licence_type: String,
    /// The name given.
    pub field: String,
}

/// Transaction envelope settings every builder needs.
#[derive(Clone, Copy, Debug)]
pub struct TxContext {
    /// Target chain.
    pub chain: ChainId,
    /// Client nonce.
    pub nonce: u64,
    /// Last time the transaction may be included.
    pub valid_until: Timestamp,
}

/// A licence ready to be issued, with the data key the issuer keeps.
#[derive(Clone, Debug)]
pub struct IssueDraft {
    /// The body, to be signed by issuer and endorsers.
    pub body: TxBody,
    /// The new licence's id.
    pub licence: LicenceId,
    /// Its data key.
    pub data_key: DataKey,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(…)")
    }
}

/// Build an issuance: seal each named value, and seal the data key to the holder's X25519 key.
#[allow(clippy::too_many_arguments)]
pub fn issue<R: RngCore + CryptoRng>(
    ctx: TxContext,
    ty: &LicenceType,
    issuer: MemberId,
    holder: HolderId,
    holder_encryption_key: &[u8; 32],
    values: &[(&str, &[u8])],
    validity: (Timestamp, Timestamp),
    rng: &mut R,
) -> Result<IssueDraft, UnknownField> {
    let licence = LicenceId::derive(ctx.chain, ctx.valid_until, issuer, ty.id, &holder, ctx.nonce);
    let data_key = DataKey::generate(rng);
    let mut indexed: Vec<(u16, &[u8])> = Vec::with_capacity(values.len());
    for (name, v) in values {
        let i = ty
            .field_index(name)
            .ok_or_else(|| UnknownField { licence_type: ty.code.clone(), field: (*name).to_string() })?;
        indexed.push((i, v));
    }
    indexed.sort_by_key(|(i, _)| *i);
    indexed.dedup_by_key(|(i, _)| *i);
    let fields = indexed.iter().map(|(i, v)| SealedField::seal(&data_key, &licence, *i, v, rng)).collect();
    let body = TxBody {
        chain: ctx.chain,
        nonce: ctx.nonce,
        valid_until: ctx.valid_until,
        payload: Payload::Issue(Issue {
            licence,
            licence_type: ty.id,
            contract_version: ty.version,
            holder,
            valid_from: validity.0,
            valid_to: validity.1,
            fields,
            holder_envelope: seal(holder_encryption_key, &data_key.0, rng),
        }),
    };
    Ok(IssueDraft { body, licence, data_key })
}

/// Recover a licence's data key from the holder envelope.
pub fn open_data_key(holder: &Keypair, envelope: &[u8]) -> Result<DataKey, crate::crypto::CryptoError> {
    let bytes = holder.open(envelope)?;
    let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| crate::crypto::CryptoError::TooShort)?;
    Ok(DataKey(key))
}

/// What a holder grants.
#[derive(Clone, Copy, Debug)]
pub struct GrantTerms {
    /// Member granted.
    pub grantee: MemberId,
    /// Service item.
    pub item: ItemId,
    /// Field mask.
    pub fields: u64,
    /// Window start.
    pub not_before: Timestamp,
    /// Window end.
    pub not_after: Timestamp,
    /// Most uses, 0 for no limit.
    pub max_uses: u32,
}

/// Build a grant: the keys of exactly the granted fields, sealed to `recipient` (the grantee's
/// X25519 key, or the authorisation service's, which releases them against a recorded use).
pub fn grant<R: RngCore + CryptoRng>(
    ctx: TxContext,
    licence: LicenceId,
    data_key: &DataKey,
    terms: GrantTerms,
    recipient: &[u8; 32],
    rng: &mut R,
) -> TxBody {
    let keys = FieldKeys::for_mask(data_key, &licence, terms.fields);
    grant_body(ctx, licence, terms, seal(recipient, &keys.to_bytes(), rng))
}

fn grant_body(ctx: TxContext, licence: LicenceId, terms: GrantTerms, envelope: Vec<u8>) -> TxBody {
    TxBody {
        chain: ctx.chain,
        nonce: ctx.nonce,
        valid_until: ctx.valid_until,
        payload: Payload::Grant(Grant {
            licence,
            grantee: terms.grantee,
            item: terms.item,
            fields: terms.fields,
            not_before: terms.not_before,
            not_after: terms.not_after,
            max_uses: terms.max_uses,
            envelope,
        }),
    }
}

/// Build a grant whose field keys only the authorisation service can release, and only the
/// grantee can then open (two layers, see [`crate::release`]): the shape that keeps DESIGN P3,
/// trace before access.
#[allow(clippy::too_many_arguments)]
pub fn grant_for_release<R: RngCore + CryptoRng>(
    ctx: TxContext,
    licence: LicenceId,
    data_key: &DataKey,
    terms: GrantTerms,
    grantee_key: &[u8; 32],
    service_key: &[u8; 32],
    rng: &mut R,
) -> TxBody {
    let keys = FieldKeys::for_mask(data_key, &licence, terms.fields);
    let envelope =
        crate::release::seal_for_release(&keys, licence, terms.grantee, terms.fields, grantee_key, service_key, rng);
    grant_body(ctx, licence, terms, envelope)
}

/// Build a use of granted fields.
pub fn use_fields(ctx: TxContext, grant: GrantId, fields: u64) -> TxBody {
    TxBody {
        chain: ctx.chain,
        nonce: ctx.nonce,
        valid_until: ctx.valid_until,
        payload: Payload::Use(Use { grant, fields }),
    }
}

/// Build a governance transaction for the meta chain; `admin_k` distinct admin members sign it.
pub fn govern(ctx: TxContext, action: Govern) -> TxBody {
    TxBody { chain: ctx.chain, nonce: ctx.nonce, valid_until: ctx.valid_until, payload: Payload::Govern(action) }
}

/// A bit mask from field names.
pub fn mask(ty: &LicenceType, names: &[&str]) -> Result<u64, UnknownField> {
    names.iter().try_fold(0u64, |m, n| {
        ty.field_index(n)
            .map(|i| m | 1 << i)
            .ok_or_else(|| UnknownField { licence_type: ty.code.clone(), field: (*n).to_string() })
    })
}
