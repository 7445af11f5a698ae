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
//!
//! Single signatures are checked by `ed25519-zebra`. Batches are checked here, with the same
//! cofactored equation over `curve25519-dalek`, for two reasons the profile showed: members and
//! busy holders sign again and again, so each verifying thread keeps the keys it has
//! decompressed (a square root per key, which zebra's batch API recomputes every batch); and the
//! batch's random coefficients come from one ChaCha20 stream seeded from the system per batch,
//! not from one system call per signature.
//!
//! The batch arithmetic runs on `curve25519-dalek` 5, built (`.cargo/config.toml`) with its
//! AVX-512 IFMA backend beside the AVX2 one; it picks IFMA at run time on CPUs that have it, which
//! makes the batch's multiscalar multiplication about 2.5 times faster there. Single checks stay
//! on `ed25519-zebra`, the reference implementation of the rule, which the release gate also
//! times as its measure of the machine.

use std::cell::RefCell;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::OnceLock;

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use ed25519_zebra::{Signature as ZSignature, VerificationKey};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use sha2::{Digest, Sha512};

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

/// Decompressed keys a verifying thread keeps; when full it starts again. Members (a few dozen
/// per consortium) and busy holders stay in it; 8,192 points take about 1.6 MB per thread.
const KEY_CACHE_ENTRIES: usize = 8192;

thread_local! {
    static KEYS: RefCell<HashMap<[u8; 32], EdwardsPoint>> = RefCell::new(HashMap::new());
}

/// `key` as a curve point, from this thread's cache or decompressed (and then kept).
fn key_point(key: &[u8; 32]) -> Option<EdwardsPoint> {
    KEYS.with_borrow_mut(|keys| {
        if let Some(p) = keys.get(key) {
            return Some(*p);
        }
        let p = CompressedEdwardsY(*key).decompress()?;
        if keys.len() >= KEY_CACHE_ENTRIES {
            keys.clear();
        }
        keys.insert(*key, p);
        Some(p)
    })
}

/// Verify many signatures at once: true exactly when [`verify_one`] accepts every item
/// (up to a 2⁻¹²⁸ chance of accepting a bad batch). Says nothing about which item failed.
///
/// The equation, with a random 128-bit `zᵢ` per signature and `kᵢ = H(Rᵢ ‖ Aᵢ ‖ Mᵢ)`:
/// `[8]([-Σ zᵢsᵢ]B + Σ [zᵢ]Rᵢ + Σ [zᵢkᵢ]Aᵢ) = 0`, the `zᵢkᵢ` of one key summed into one
/// coefficient, so a key that signs several items of the batch costs one point.
pub fn verify_batch(items: &[SigItem<'_>]) -> bool {
    if !items.iter().all(|i| acceptable_encodings(i.key, i.sig)) {
        return false;
    }
    let mut rng = ChaCha20Rng::from_entropy();
    let mut b_coeff = Scalar::ZERO;
    let mut r_coeffs = Vec::with_capacity(items.len());
    let mut r_points = Vec::with_capacity(items.len());
    let mut a_coeffs: Vec<Scalar> = Vec::new();
    let mut a_points: Vec<EdwardsPoint> = Vec::new();
    let mut slot_of: HashMap<&[u8; 32], usize> = HashMap::with_capacity(items.len());
    for i in items {
        let r_bytes: [u8; 32] = i.sig[..32].try_into().expect("32 bytes");
        let s_bytes: [u8; 32] = i.sig[32..].try_into().expect("32 bytes");
        let Some(r) = CompressedEdwardsY(r_bytes).decompress() else {
            return false;
        };
        let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes)) else {
            return false;
        };
        let slot = match slot_of.entry(&i.key.0) {
            Entry::Occupied(e) => *e.get(),
            Entry::Vacant(e) => {
                let Some(a) = key_point(&i.key.0) else {
                    return false;
                };
                a_points.push(a);
                a_coeffs.push(Scalar::ZERO);
                *e.insert(a_points.len() - 1)
            }
        };
        let k = Scalar::from_bytes_mod_order_wide(
            &Sha512::new().chain_update(r_bytes).chain_update(i.key.0).chain_update(i.msg).finalize().into(),
        );
        let mut z = [0u8; 16];
        rng.fill_bytes(&mut z);
        let z = Scalar::from(u128::from_le_bytes(z));
        b_coeff -= z * s;
        a_coeffs[slot] += z * k;
        r_coeffs.push(z);
        r_points.push(r);
    }
    let check = EdwardsPoint::vartime_multiscalar_mul(
        std::iter::once(&b_coeff).chain(&a_coeffs).chain(&r_coeffs),
        std::iter::once(&ED25519_BASEPOINT_POINT).chain(&a_points).chain(&r_points),
    );
    check.mul_by_cofactor().is_identity()
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
