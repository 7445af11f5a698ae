//! Keys, hashing, sealed boxes and field encryption.
//!
//! ```text
//!  issuer                          chain                        grantee
//!  data key DK ──derive──► field key k_i ──XChaCha20-Poly1305──► ciphertext_i  (on chain)
//!  salt_i, value_i ──blake3──► commitment_i                                      (on chain)
//!  holder: seal({i: k_i | i granted}) to grantee's X25519 key ──► envelope ──► open, decrypt i
//! ```
//!
//! Every hash is `blake3` in derive-key mode with its own context string, so a value hashed for
//! one purpose can never be confused with one hashed for another.

use std::sync::OnceLock;

use blake3::hazmat::{hash_derive_key_context, ContextKey, HasherExt};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use ed25519_dalek::{Signer, SigningKey};
use rand_core::{CryptoRng, RngCore};
use thiserror::Error;
use x25519_dalek::{PublicKey as XPublicKey, StaticSecret};

use crate::codec::{CodecError, Decode, Encode, Reader, Writer};
use crate::ids::{HolderId, LicenceId};

/// A hash context: a `blake3` derive-key context string, with its context key (the hash of the
/// string) computed once. Most hashes here are short (a Merkle node is two blocks of input), so
/// hashing the string again at every call would add a third.
#[derive(Debug)]
pub struct Domain {
    context: &'static str,
    key: OnceLock<ContextKey>,
}

impl Domain {
    /// The context `context`; declare each as a `static`, so that its key is computed once.
    pub const fn new(context: &'static str) -> Self {
        Self { context, key: OnceLock::new() }
    }

    /// The context string.
    pub fn context(&self) -> &'static str {
        self.context
    }

    /// A hasher in derive-key mode for this context: what `blake3::Hasher::new_derive_key`
    /// returns, without hashing the context string again.
    pub fn hasher(&self) -> blake3::Hasher {
        blake3::Hasher::new_from_context_key(self.key.get_or_init(|| hash_derive_key_context(self.context)))
    }
}

/// Hash contexts; changing one changes every id derived from it.
pub mod domain {
    use super::Domain;

    /// Transaction ids.
    pub static TX_ID: Domain = Domain::new("elchain 2026 tx id v2");
    /// Holder ids from holder public keys.
    pub static HOLDER_ID: Domain = Domain::new("elchain 2026 holder id v1");
    /// Licence ids.
    pub static LICENCE_ID: Domain = Domain::new("elchain 2026 licence id v2");
    /// Merkle tree of a block's transactions.
    pub static MERKLE: Domain = Domain::new("elchain 2026 merkle v1");
    /// Block header hashes.
    pub static HEADER: Domain = Domain::new("elchain 2026 block header v1");
    /// State change digests.
    pub static STATE: Domain = Domain::new("elchain 2026 state v1");
    /// Per-field keys from a licence data key.
    pub static FIELD_KEY: Domain = Domain::new("elchain 2026 field key v1");
    /// Salted field commitments.
    pub static COMMITMENT: Domain = Domain::new("elchain 2026 field commitment v1");
    /// Sealed-box keys.
    pub static SEAL: Domain = Domain::new("elchain 2026 sealed box v1");
    /// Replica signatures over block headers (checkpoints).
    pub static CHECKPOINT: Domain = Domain::new("elchain 2026 checkpoint v1");
    /// A holder's signature over a router challenge (reads of their own data).
    pub static HOLDER_QUERY: Domain = Domain::new("elchain 2026 holder query v1");
    /// Development keys derived from a name.
    pub static DEV_KEY: Domain = Domain::new("elchain 2026 development key v1");
}

/// `blake3` in derive-key mode, with `domain`'s context, over the concatenation of `parts`.
pub fn hash(domain: &Domain, parts: &[&[u8]]) -> [u8; 32] {
    let mut h = domain.hasher();
    for p in parts {
        h.update(p);
    }
    *h.finalize().as_bytes()
}

/// An Ed25519 public key as it travels: 32 bytes, not yet checked.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// The holder id this key stands for.
    pub fn holder_id(&self) -> HolderId {
        HolderId(hash(&domain::HOLDER_ID, &[&self.0]))
    }

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({}…)", &self.to_hex()[..12])
    }
}

impl Encode for PublicKey {
    fn encode(&self, w: &mut Writer) {
        w.raw(&self.0);
    }
}

impl Decode for PublicKey {
    fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(Self(r.array("public key")?))
    }
}

/// An Ed25519 signing key plus an X25519 key for receiving sealed envelopes.
///
/// Departments and holders each have one. The secret halves never leave the owner.
#[derive(Clone)]
pub struct Keypair {
    signing: SigningKey,
    encryption: StaticSecret,
}

impl Keypair {
    /// A fresh random key pair.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut seed = [0u8; 64];
        rng.fill_bytes(&mut seed);
        Self::from_seeds(seed[..32].try_into().unwrap(), seed[32..].try_into().unwrap())
    }

    /// A key pair from its two 32-byte secrets (as stored in a key file).
    pub fn from_seeds(signing: [u8; 32], encryption: [u8; 32]) -> Self {
        Self { signing: SigningKey::from_bytes(&signing), encryption: StaticSecret::from(encryption) }
    }

    /// A deterministic key pair for development and tests, derived from a name.
    /// Never use for real members: anyone who knows the name knows the key.
    pub fn dev(name: &str) -> Self {
        let s = hash(&domain::DEV_KEY, &[b"sign/", name.as_bytes()]);
        let e = hash(&domain::DEV_KEY, &[b"encrypt/", name.as_bytes()]);
        Self::from_seeds(s, e)
    }

    /// The two secrets, signing first, for writing to a key file.
    pub fn secret_seeds(&self) -> ([u8; 32], [u8; 32]) {
        (self.signing.to_bytes(), self.encryption.to_bytes())
    }

    /// The Ed25519 public key.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key().to_bytes())
    }

    /// The X25519 public key that envelopes are sealed to.
    pub fn encryption_public(&self) -> [u8; 32] {
        XPublicKey::from(&self.encryption).to_bytes()
    }

    /// The holder id of this key.
    pub fn holder_id(&self) -> HolderId {
        self.public().holder_id()
    }

    /// Sign a message (always a 32-byte transaction id in this system).
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.signing.sign(msg).to_bytes()
    }

    /// Open an envelope sealed to this key pair.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        open(&self.encryption, sealed)
    }
}

impl std::fmt::Debug for Keypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keypair").field("public", &self.public()).finish_non_exhaustive()
    }
}

/// Failures of the sealed-box and field-encryption helpers.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CryptoError {
    /// The ciphertext is shorter than its fixed overhead.
    #[error("sealed data is too short")]
    TooShort,
    /// Authentication failed: wrong key, or the bytes were changed.
    #[error("decryption failed: wrong key or tampered data")]
    Decrypt,
    /// The decrypted value does not match the on-chain commitment.
    #[error("disclosed value does not match its commitment")]
    CommitmentMismatch,
    /// A decrypted envelope is not a valid key list.
    #[error("envelope content is malformed: {0}")]
    Envelope(#[from] CodecError),
}

/// Bytes added by [`seal`]: ephemeral public key, nonce, authentication tag.
pub const SEAL_OVERHEAD: usize = 32 + 24 + 16;

/// Seal `plaintext` to an X25519 public key (ephemeral-static Diffie–Hellman, HPKE-style).
///
/// Layout: ephemeral public key (32) ‖ nonce (24) ‖ XChaCha20-Poly1305 ciphertext and tag.
pub fn seal<R: RngCore + CryptoRng>(recipient: &[u8; 32], plaintext: &[u8], rng: &mut R) -> Vec<u8> {
    let mut eph_seed = [0u8; 32];
    rng.fill_bytes(&mut eph_seed);
    let eph = StaticSecret::from(eph_seed);
    let eph_pub = XPublicKey::from(&eph).to_bytes();
    let shared = eph.diffie_hellman(&XPublicKey::from(*recipient));
    let key = hash(&domain::SEAL, &[shared.as_bytes(), &eph_pub, recipient]);
    let mut nonce = [0u8; 24];
    rng.fill_bytes(&mut nonce);
    let ct = XChaCha20Poly1305::new(&key.into())
        .encrypt(XNonce::from_slice(&nonce), Payload { msg: plaintext, aad: &eph_pub })
        .expect("encryption of an in-memory buffer cannot fail");
    let mut out = Vec::with_capacity(SEAL_OVERHEAD + plaintext.len());
    out.extend_from_slice(&eph_pub);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    out
}

fn open(secret: &StaticSecret, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if sealed.len() < SEAL_OVERHEAD {
        return Err(CryptoError::TooShort);
    }
    let eph_pub: [u8; 32] = sealed[..32].try_into().unwrap();
    let nonce = &sealed[32..56];
    let shared = secret.diffie_hellman(&XPublicKey::from(eph_pub));
    let recipient = XPublicKey::from(secret).to_bytes();
    let key = hash(&domain::SEAL, &[shared.as_bytes(), &eph_pub, &recipient]);
    XChaCha20Poly1305::new(&key.into())
        .decrypt(XNonce::from_slice(nonce), Payload { msg: &sealed[56..], aad: &eph_pub })
        .map_err(|_| CryptoError::Decrypt)
}

/// A licence's data key: the root of its per-field keys. Destroying every copy makes the
/// licence's ciphertexts unreadable (crypto-shredding).
#[derive(Clone)]
pub struct DataKey(pub [u8; 32]);

impl DataKey {
    /// A fresh random data key.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut k = [0u8; 32];
        rng.fill_bytes(&mut k);
        Self(k)
    }

    /// The key of field `index` of `licence`.
    pub fn field_key(&self, licence: &LicenceId, index: u16) -> FieldKey {
        FieldKey(hash(&domain::FIELD_KEY, &[&self.0, &licence.0, &index.to_le_bytes()]))
    }
}

/// The key that decrypts one field of one licence.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct FieldKey(pub [u8; 32]);

impl std::fmt::Debug for FieldKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FieldKey(…)")
    }
}

/// Salt length of a field commitment.
pub const SALT_LEN: usize = 16;

/// The commitment to one field value: `blake3(licence ‖ index ‖ salt ‖ value)`.
pub fn commit_field(licence: &LicenceId, index: u16, salt: &[u8; SALT_LEN], value: &[u8]) -> [u8; 32] {
    hash(&domain::COMMITMENT, &[&licence.0, &index.to_le_bytes(), salt, value])
}

/// One field as the chain stores it: position, commitment and ciphertext; never the value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedField {
    /// Position of the field in the licence type's schema.
    pub index: u16,
    /// Salted commitment to the value, signed by the issuer as part of the issuing transaction.
    pub commitment: [u8; 32],
    /// `nonce ‖ XChaCha20-Poly1305(salt ‖ value)` under the field key.
    pub ciphertext: Vec<u8>,
}

/// A field value revealed together with the salt that opens its commitment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disclosure {
    /// Position of the field in the schema.
    pub index: u16,
    /// Salt of the commitment.
    pub salt: [u8; SALT_LEN],
    /// The plaintext value.
    pub value: Vec<u8>,
}

impl Disclosure {
    /// True when this disclosure opens `commitment` for `licence`.
    pub fn matches(&self, licence: &LicenceId, commitment: &[u8; 32]) -> bool {
        commit_field(licence, self.index, &self.salt, &self.value) == *commitment
    }
}

impl SealedField {
    /// Encrypt and commit to field `index` of `licence`.
    pub fn seal<R: RngCore + CryptoRng>(
        dk: &DataKey,
        licence: &LicenceId,
        index: u16,
        value: &[u8],
        rng: &mut R,
    ) -> Self {
        let mut salt = [0u8; SALT_LEN];
        rng.fill_bytes(&mut salt);
        let mut nonce = [0u8; 24];
        rng.fill_bytes(&mut nonce);
        let mut pt = Vec::with_capacity(SALT_LEN + value.len());
        pt.extend_from_slice(&salt);
        pt.extend_from_slice(value);
        let key = dk.field_key(licence, index);
        let aad = field_aad(licence, index);
        let ct = XChaCha20Poly1305::new(&key.0.into())
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: &pt, aad: &aad })
            .expect("encryption of an in-memory buffer cannot fail");
        let mut ciphertext = Vec::with_capacity(24 + ct.len());
        ciphertext.extend_from_slice(&nonce);
        ciphertext.extend_from_slice(&ct);
        Self { index, commitment: commit_field(licence, index, &salt, value), ciphertext }
    }

    /// Decrypt with a field key and check the value against the commitment.
    pub fn open(&self, licence: &LicenceId, key: &FieldKey) -> Result<Disclosure, CryptoError> {
        if self.ciphertext.len() < 24 + 16 + SALT_LEN {
            return Err(CryptoError::TooShort);
        }
        let aad = field_aad(licence, self.index);
        let pt = XChaCha20Poly1305::new(&key.0.into())
            .decrypt(XNonce::from_slice(&self.ciphertext[..24]), Payload { msg: &self.ciphertext[24..], aad: &aad })
            .map_err(|_| CryptoError::Decrypt)?;
        let d =
            Disclosure { index: self.index, salt: pt[..SALT_LEN].try_into().unwrap(), value: pt[SALT_LEN..].to_vec() };
        if d.matches(licence, &self.commitment) {
            Ok(d)
        } else {
            Err(CryptoError::CommitmentMismatch)
        }
    }
}

fn field_aad(licence: &LicenceId, index: u16) -> [u8; 34] {
    let mut aad = [0u8; 34];
    aad[..32].copy_from_slice(&licence.0);
    aad[32..].copy_from_slice(&index.to_le_bytes());
    aad
}

/// The field keys a holder hands to a grantee: the plaintext of a grant's key envelope.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct FieldKeys(pub Vec<(u16, FieldKey)>);

/// Most fields a licence type may have (a field set is a 64-bit mask).
pub const MAX_FIELDS: usize = 64;

impl FieldKeys {
    /// The keys of the fields in `mask`, derived from the licence's data key.
    pub fn for_mask(dk: &DataKey, licence: &LicenceId, mask: u64) -> Self {
        Self((0..MAX_FIELDS as u16).filter(|i| mask >> i & 1 == 1).map(|i| (i, dk.field_key(licence, i))).collect())
    }

    /// The key for field `index`, if handed over.
    pub fn get(&self, index: u16) -> Option<&FieldKey> {
        self.0.iter().find(|(i, _)| *i == index).map(|(_, k)| k)
    }
}

impl Encode for FieldKeys {
    fn encode(&self, w: &mut Writer) {
        w.u32(self.0.len() as u32);
        for (i, k) in &self.0 {
            w.u16(*i);
            w.raw(&k.0);
        }
    }
}

impl Decode for FieldKeys {
    fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        let n = r.len("field keys", MAX_FIELDS)?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push((r.u16("field index")?, FieldKey(r.array("field key")?)));
        }
        Ok(Self(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn a_domain_hashes_as_blake3_derive_key_mode_with_its_context() {
        // Ids in stores and on the wire depend on this: the cached context key must not change
        // a single hash.
        for d in [&domain::TX_ID, &domain::MERKLE, &domain::STATE, &domain::DEV_KEY] {
            for input in [&b""[..], b"x", &[7u8; 1500]] {
                let expected = blake3::Hasher::new_derive_key(d.context()).update(input).finalize();
                assert_eq!(hash(d, &[input]), *expected.as_bytes(), "{}", d.context());
                assert_eq!(hash(d, &[&input[..input.len() / 2], &input[input.len() / 2..]]), *expected.as_bytes());
            }
        }
    }

    #[test]
    fn sealed_box_opens_only_for_its_recipient() {
        let mut rng = StdRng::seed_from_u64(1);
        let alice = Keypair::generate(&mut rng);
        let bob = Keypair::generate(&mut rng);
        let sealed = seal(&alice.encryption_public(), b"hello", &mut rng);
        assert_eq!(alice.open(&sealed).unwrap(), b"hello");
        assert_eq!(bob.open(&sealed).unwrap_err(), CryptoError::Decrypt);
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(alice.open(&tampered).unwrap_err(), CryptoError::Decrypt);
        assert_eq!(alice.open(&sealed[..10]).unwrap_err(), CryptoError::TooShort);
    }

    #[test]
    fn field_opens_with_its_key_and_matches_commitment() {
        let mut rng = StdRng::seed_from_u64(2);
        let dk = DataKey::generate(&mut rng);
        let lic = LicenceId([7; 32]);
        let f = SealedField::seal(&dk, &lic, 3, b"Zhang San", &mut rng);
        let d = f.open(&lic, &dk.field_key(&lic, 3)).unwrap();
        assert_eq!(d.value, b"Zhang San");
        assert!(d.matches(&lic, &f.commitment));
        // The key of another field, or of the same field of another licence, does not open it.
        assert_eq!(f.open(&lic, &dk.field_key(&lic, 4)).unwrap_err(), CryptoError::Decrypt);
        assert_eq!(f.open(&lic, &dk.field_key(&LicenceId([8; 32]), 3)).unwrap_err(), CryptoError::Decrypt);
        // A disclosure with a changed value fails the commitment check.
        let forged = Disclosure { value: b"Li Si".to_vec(), ..d };
        assert!(!forged.matches(&lic, &f.commitment));
    }

    #[test]
    fn field_keys_round_trip_and_hold_only_the_mask() {
        let dk = DataKey([1; 32]);
        let lic = LicenceId([2; 32]);
        let keys = FieldKeys::for_mask(&dk, &lic, 0b1010);
        assert_eq!(keys.0.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![1, 3]);
        assert_eq!(FieldKeys::from_bytes(&keys.to_bytes()).unwrap(), keys);
        assert!(keys.get(0).is_none());
    }
}
