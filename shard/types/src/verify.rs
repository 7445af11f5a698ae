//! The one signature rule every replica applies.
//!
//! Plain Ed25519 libraries can disagree between single and batch verification on crafted inputs
//! (keys or `R` values with a small-order component), which would let two replicas reach
//! different verdicts on the same block. elchain's rule is therefore:
//!
//! 1. the public key and `R` must be canonical encodings (no `y ≥ p`, no negative zero);
//! 2. the public key must not be one of the eight small-order points;
//! 3. the signature must satisfy the **cofactored** equation `[8][s]B = [8]R + [8][k]A` with a
//!    canonical `s` (ZIP-215, as implemented by `ed25519-zebra`).
//!
//! Under ZIP-215 a batch accepts exactly when every member would be accepted alone (up to a
//! 2⁻¹²⁸ chance), so a replica may verify one by one or in batches and reach the same verdict.
//! Signing uses `ed25519-dalek`; its signatures satisfy this rule.

use std::sync::OnceLock;

use ed25519_zebra::{batch, Signature as ZSignature, VerificationKey, VerificationKeyBytes};

use crate::crypto::PublicKey;

/// One signature to check: key, the 32-byte message (a tx id), signature bytes.
#[derive(Clone, Copy, Debug)]
pub struct SigItem<'a> {
    /// Signer's public key.
    pub key: &'a PublicKey,
    /// The signed message.
    pub msg: &'a [u8; 32],
    /// The signature.
    pub sig: &'a [u8; 64],
}

/// True when `bytes` is the canonical encoding of some field element `y` with a sign bit that
/// is not the "negative zero" of a point with `x = 0`.
fn canonical_point_encoding(bytes: &[u8; 32]) -> bool {
    // y ≥ p = 2^255 - 19 iff the 255-bit value is 2^255-19 .. 2^255-1: top byte 0x7f, middle
    // bytes 0xff, low byte ≥ 0xed.
    let top = bytes[31] & 0x7f;
    let y_non_canonical = top == 0x7f && bytes[1..31].iter().all(|&b| b == 0xff) && bytes[0] >= 0xed;
    if y_non_canonical {
        return false;
    }
    // The points with x = 0 are y = 1 and y = p - 1; their encodings with the sign bit set are
    // non-canonical.
    let sign = bytes[31] & 0x80 != 0;
    if sign {
        let mut y = *bytes;
        y[31] &= 0x7f;
        let one = {
            let mut b = [0u8; 32];
            b[0] = 1;
            b
        };
        let minus_one = {
            let mut b = [0xffu8; 32];
            b[0] = 0xec;
            b[31] = 0x7f;
            b
        };
        if y == one || y == minus_one {
            return false;
        }
    }
    true
}

fn small_order_encodings() -> &'static [[u8; 32]; 8] {
    static TABLE: OnceLock<[[u8; 32]; 8]> = OnceLock::new();
    TABLE.get_or_init(|| curve25519_dalek::constants::EIGHT_TORSION.map(|p| p.compress().to_bytes()))
}

/// Cheap checks on key and `R` that come before the curve arithmetic (rules 1 and 2).
pub fn acceptable_encodings(key: &PublicKey, sig: &[u8; 64]) -> bool {
    let r: &[u8; 32] = sig[..32].try_into().unwrap();
    canonical_point_encoding(&key.0) && canonical_point_encoding(r) && !small_order_encodings().contains(&key.0)
}

/// Verify one signature under the elchain rule.
pub fn verify_one(item: SigItem<'_>) -> bool {
    if !acceptable_encodings(item.key, item.sig) {
        return false;
    }
    match VerificationKey::try_from(item.key.0) {
        Ok(vk) => vk.verify(&ZSignature::from_bytes(item.sig), item.msg).is_ok(),
        Err(_) => false,
    }
}

/// Verify many signatures at once: true exactly when [`verify_one`] accepts every item
/// (up to a 2⁻¹²⁸ chance of accepting a bad batch). Says nothing about which item failed.
pub fn verify_batch(items: &[SigItem<'_>]) -> bool {
    if !items.iter().all(|i| acceptable_encodings(i.key, i.sig)) {
        return false;
    }
    let mut v = batch::Verifier::new();
    for i in items {
        v.queue((VerificationKeyBytes::from(i.key.0), ZSignature::from_bytes(i.sig), &i.msg[..]));
    }
    v.verify(rand_core::OsRng).is_ok()
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
