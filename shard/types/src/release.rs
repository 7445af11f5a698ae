//! Trace before access (DESIGN P3): grant envelopes that open only against a recorded use.
//!
//! A holder who grants fields seals the field keys in two layers:
//!
//! ```text
//!  inner = seal(grantee's X25519 key, FieldKeys of the granted fields)
//!  outer = seal(authorisation service's X25519 key, ReleasePackage { licence, grantee, fields, inner })
//!  Grant.envelope = outer                                   (on chain, readable by every replica)
//!
//!  grantee: Use tx ──commit──► receipt ──POST /v1/release──► service checks the committed use,
//!           opens `outer`, checks it names this grant's licence, grantee and fields ──► inner
//!  grantee opens `inner` with its own key ──► field keys ──► decrypts the sealed fields
//! ```
//!
//! A department that holds the whole ledger and the grant sees only `outer`, which it cannot
//! open; the service sees only `inner`, which it cannot open. So no field is read without a use
//! transaction committed first, even by a department that runs a replica.

use rand_core::{CryptoRng, RngCore};

use crate::codec::{CodecError, Decode, Encode, Reader, Writer};
use crate::crypto::{domain, hash, seal, CryptoError, FieldKeys, Keypair};
use crate::ids::{HolderId, LicenceId, MemberId};
use crate::tx::limits::MAX_ENVELOPE;

/// What the authorisation service finds inside a grant's envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReleasePackage {
    /// The licence the grant is for.
    pub licence: LicenceId,
    /// The only member it may be released to.
    pub grantee: MemberId,
    /// The granted field mask.
    pub fields: u64,
    /// The field keys sealed to the grantee.
    pub inner: Vec<u8>,
}

impl Encode for ReleasePackage {
    fn encode(&self, w: &mut Writer) {
        w.put(&self.licence);
        w.put(&self.grantee);
        w.u64(self.fields);
        w.bytes(&self.inner);
    }
}

impl Decode for ReleasePackage {
    fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(Self {
            licence: r.get()?,
            grantee: r.get()?,
            fields: r.u64("fields")?,
            inner: r.bytes("inner envelope", MAX_ENVELOPE)?.to_vec(),
        })
    }
}

/// Seal granted field keys for release by the authorisation service (`service_key`) to the
/// grantee (`grantee_key`) only.
pub fn seal_for_release<R: RngCore + CryptoRng>(
    keys: &FieldKeys,
    licence: LicenceId,
    grantee: MemberId,
    fields: u64,
    grantee_key: &[u8; 32],
    service_key: &[u8; 32],
    rng: &mut R,
) -> Vec<u8> {
    let inner = seal(grantee_key, &keys.to_bytes(), rng);
    seal(service_key, &ReleasePackage { licence, grantee, fields, inner }.to_bytes(), rng)
}

/// Why the service will not release an envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReleaseError {
    /// The envelope is not sealed to this service (the holder sealed it to someone else).
    #[error("the grant's envelope is not sealed to this authorisation service")]
    NotForService,
    /// The envelope opens but names another licence, grantee or field set than the grant.
    #[error("the grant's envelope does not match the grant")]
    Mismatch,
}

/// The service's side: open a grant's envelope and check that it was made for this grant.
pub fn open_for_release(
    service: &Keypair,
    envelope: &[u8],
    licence: &LicenceId,
    grantee: MemberId,
    fields: u64,
) -> Result<Vec<u8>, ReleaseError> {
    let plain = service.open(envelope).map_err(|_| ReleaseError::NotForService)?;
    let pkg = ReleasePackage::from_bytes(&plain).map_err(|_| ReleaseError::NotForService)?;
    if pkg.licence != *licence || pkg.grantee != grantee || pkg.fields != fields {
        return Err(ReleaseError::Mismatch);
    }
    Ok(pkg.inner)
}

/// The grantee's side: the field keys inside a released inner envelope.
pub fn open_released(grantee: &Keypair, inner: &[u8]) -> Result<FieldKeys, CryptoError> {
    let plain = grantee.open(inner)?;
    FieldKeys::from_bytes(&plain).map_err(|_| CryptoError::Decrypt)
}

/// What a holder signs to read their own traces, licences or grants: the router's fresh
/// challenge bound to the holder id.
pub fn holder_query_message(challenge: &[u8], holder: &HolderId) -> [u8; 32] {
    hash(&domain::HOLDER_QUERY, &[challenge, &holder.0])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::DataKey;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn only_the_service_opens_the_outer_layer_and_only_the_grantee_the_inner() {
        let mut rng = StdRng::seed_from_u64(9);
        let (service, grantee, other) =
            (Keypair::generate(&mut rng), Keypair::generate(&mut rng), Keypair::generate(&mut rng));
        let licence = LicenceId([3; 32]);
        let keys = FieldKeys::for_mask(&DataKey([5; 32]), &licence, 0b110);
        let env = seal_for_release(
            &keys,
            licence,
            MemberId(4),
            0b110,
            &grantee.encryption_public(),
            &service.encryption_public(),
            &mut rng,
        );
        // The grantee holding the ledger cannot open what is on chain.
        assert!(grantee.open(&env).is_err());
        assert_eq!(open_for_release(&other, &env, &licence, MemberId(4), 0b110), Err(ReleaseError::NotForService));
        assert_eq!(open_for_release(&service, &env, &licence, MemberId(5), 0b110), Err(ReleaseError::Mismatch));
        assert_eq!(open_for_release(&service, &env, &licence, MemberId(4), 0b111), Err(ReleaseError::Mismatch));
        let inner = open_for_release(&service, &env, &licence, MemberId(4), 0b110).unwrap();
        // The service cannot read the keys it releases.
        assert!(service.open(&inner).is_err());
        assert_eq!(open_released(&grantee, &inner).unwrap(), keys);
        assert!(open_released(&other, &inner).is_err());
    }
}
