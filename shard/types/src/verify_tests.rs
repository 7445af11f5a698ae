//! Adversarial vectors: every case must get the same verdict alone and in a batch.

use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT as B, EIGHT_TORSION};
use curve25519_dalek::edwards::CompressedEdwardsY;
use curve25519_dalek::scalar::Scalar;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use sha2::{Digest, Sha512};

use super::*;
use crate::crypto::Keypair;

fn challenge(r: &[u8; 32], a: &[u8; 32], msg: &[u8]) -> Scalar {
    let mut h = Sha512::new();
    h.update(r);
    h.update(a);
    h.update(msg);
    Scalar::from_bytes_mod_order_wide(&h.finalize().into())
}

fn random_scalar(rng: &mut StdRng) -> Scalar {
    let mut b = [0u8; 64];
    rng.fill_bytes(&mut b);
    Scalar::from_bytes_mod_order_wide(&b)
}

/// Sign by hand with secret scalar `a`, public key `key`, and an `R` shifted by `r_torsion`.
fn raw_sign(rng: &mut StdRng, a: Scalar, key: [u8; 32], r_torsion: usize, msg: &[u8; 32]) -> [u8; 64] {
    let r = random_scalar(rng);
    let big_r = (r * B + EIGHT_TORSION[r_torsion]).compress().to_bytes();
    let k = challenge(&big_r, &key, msg);
    let s = r + k * a;
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&big_r);
    sig[32..].copy_from_slice(s.as_bytes());
    sig
}

/// The verdict alone, and in a batch padded with good signatures, must agree.
fn verdicts(key: PublicKey, msg: [u8; 32], sig: [u8; 64]) -> (bool, bool) {
    let single = verify_one(SigItem { key: &key, msg: &msg, sig: &sig });
    let good: Vec<(PublicKey, [u8; 32], [u8; 64])> = (0..7u8)
        .map(|i| {
            let kp = Keypair::dev(&format!("pad-{i}"));
            let m = [i; 32];
            (kp.public(), m, kp.sign(&m))
        })
        .collect();
    let mut items: Vec<SigItem<'_>> = good.iter().map(|(k, m, s)| SigItem { key: k, msg: m, sig: s }).collect();
    items.insert(3, SigItem { key: &key, msg: &msg, sig: &sig });
    (single, verify_batch(&items))
}

#[test]
fn honest_signatures_verify_alone_and_in_batches() {
    let kp = Keypair::dev("honest");
    let msg = [9u8; 32];
    assert_eq!(verdicts(kp.public(), msg, kp.sign(&msg)), (true, true));
}

#[test]
fn wrong_message_or_flipped_bit_fails_in_both_modes() {
    let kp = Keypair::dev("honest");
    let msg = [9u8; 32];
    let sig = kp.sign(&msg);
    assert_eq!(verdicts(kp.public(), [8u8; 32], sig), (false, false));
    for byte in [0, 31, 32, 63] {
        let mut bad = sig;
        bad[byte] ^= 0x10;
        assert_eq!(verdicts(kp.public(), msg, bad), (false, false), "flip in byte {byte}");
    }
}

#[test]
fn small_order_keys_are_refused_though_the_cofactored_equation_holds() {
    // With A and R of small order and s = 0, [8]sB = [8]R + [8]kA holds for every message:
    // a universal forgery that plain ZIP-215 accepts. elchain refuses such keys.
    for a in EIGHT_TORSION.iter() {
        let key = PublicKey(a.compress().to_bytes());
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&EIGHT_TORSION[0].compress().to_bytes());
        let msg = [1u8; 32];
        let zebra_alone = ed25519_zebra::VerificationKey::try_from(key.0)
            .map(|vk| vk.verify(&ed25519_zebra::Signature::from_bytes(&sig), &msg).is_ok())
            .unwrap_or(false);
        assert!(zebra_alone, "the forgery is accepted by the bare cofactored rule");
        assert_eq!(verdicts(key, msg, sig), (false, false));
    }
}

#[test]
fn r_with_a_torsion_component_gets_one_verdict_in_both_modes() {
    // The case that splits cofactorless batch from single verification: R = rB + T.
    let mut rng = StdRng::seed_from_u64(7);
    let a = random_scalar(&mut rng);
    let key = (a * B).compress().to_bytes();
    for t in 1..8 {
        let msg = [t as u8; 32];
        let sig = raw_sign(&mut rng, a, key, t, &msg);
        // Repeat: a probabilistic batch must not flip its verdict between runs.
        for _ in 0..16 {
            assert_eq!(verdicts(PublicKey(key), msg, sig), (true, true), "torsion {t}");
        }
    }
}

#[test]
fn key_with_a_torsion_component_gets_one_verdict_in_both_modes() {
    let mut rng = StdRng::seed_from_u64(8);
    let a = random_scalar(&mut rng);
    for (t, torsion) in EIGHT_TORSION.iter().enumerate().skip(1) {
        let key = (a * B + torsion).compress().to_bytes();
        let msg = [t as u8; 32];
        let sig = raw_sign(&mut rng, a, key, 0, &msg);
        let v = verdicts(PublicKey(key), msg, sig);
        assert_eq!(v.0, v.1, "torsion {t}");
    }
}

#[test]
fn non_canonical_s_is_refused_in_both_modes() {
    let kp = Keypair::dev("s");
    let msg = [3u8; 32];
    let mut sig = kp.sign(&msg);
    // s + ℓ is the same scalar, encoded non-canonically.
    let s = Scalar::from_canonical_bytes(sig[32..].try_into().unwrap()).unwrap();
    let ell: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut sum = [0u8; 32];
    let mut carry = 0u16;
    for i in 0..32 {
        let v = s.as_bytes()[i] as u16 + ell[i] as u16 + carry;
        sum[i] = v as u8;
        carry = v >> 8;
    }
    assert_eq!(carry, 0, "s + ℓ fits in 256 bits");
    sig[32..].copy_from_slice(&sum);
    assert_eq!(verdicts(kp.public(), msg, sig), (false, false));
}

#[test]
fn non_canonical_point_encodings_are_refused() {
    // All encodings with y ≥ p, with either sign bit.
    for low in 0xedu8..=0xff {
        for sign in [0u8, 0x80] {
            let mut e = [0xffu8; 32];
            e[0] = low;
            e[31] = 0x7f | sign;
            assert!(!canonical_point_encoding(&e), "y ≥ p accepted: {}", hex::encode(e));
        }
    }
    // Negative zero: x = 0 points with the sign bit set.
    let mut one = [0u8; 32];
    one[0] = 1;
    one[31] = 0x80;
    assert!(!canonical_point_encoding(&one));
    let mut minus_one = [0xffu8; 32];
    minus_one[0] = 0xec;
    assert!(!canonical_point_encoding(&minus_one));
    // Every point's own compression is canonical.
    let mut rng = StdRng::seed_from_u64(9);
    for _ in 0..64 {
        let p = (random_scalar(&mut rng) * B).compress();
        assert!(canonical_point_encoding(p.as_bytes()));
        assert_eq!(CompressedEdwardsY(p.to_bytes()).decompress().unwrap().compress(), p);
    }
    // And a key given in non-canonical form is refused whatever the signature.
    let kp = Keypair::dev("nc");
    let msg = [4u8; 32];
    let mut e = [0xffu8; 32];
    e[0] = 0xee;
    e[31] = 0x7f;
    assert_eq!(verdicts(PublicKey(e), msg, kp.sign(&msg)), (false, false));
}

#[test]
fn key_not_on_the_curve_is_refused_in_both_modes() {
    let kp = Keypair::dev("x");
    let msg = [5u8; 32];
    let sig = kp.sign(&msg);
    assert_eq!(verdicts(PublicKey(off_curve(2)), msg, sig), (false, false));
}

/// A canonical-looking encoding (`fill` repeated, first byte counted up) that does not
/// decompress to a curve point.
fn off_curve(fill: u8) -> [u8; 32] {
    let mut key = [fill; 32];
    while CompressedEdwardsY(key).decompress().is_some() {
        key[0] += 1;
    }
    key
}

#[test]
fn batch_fails_when_any_member_fails_and_single_checks_find_it() {
    let keys: Vec<Keypair> = (0..64).map(|i| Keypair::dev(&format!("k{i}"))).collect();
    let msgs: Vec<[u8; 32]> = (0..64u8).map(|i| [i; 32]).collect();
    let mut sigs: Vec<[u8; 64]> = keys.iter().zip(&msgs).map(|(k, m)| k.sign(m)).collect();
    let pubs: Vec<PublicKey> = keys.iter().map(Keypair::public).collect();
    let items = |sigs: &[[u8; 64]]| -> Vec<(PublicKey, [u8; 32], [u8; 64])> {
        (0..64).map(|i| (pubs[i], msgs[i], sigs[i])).collect()
    };
    let all = items(&sigs);
    let view: Vec<SigItem<'_>> = all.iter().map(|(k, m, s)| SigItem { key: k, msg: m, sig: s }).collect();
    assert!(verify_batch(&view));
    for bad in [0usize, 17, 63] {
        sigs[bad][40] ^= 1;
    }
    let all = items(&sigs);
    let view: Vec<SigItem<'_>> = all.iter().map(|(k, m, s)| SigItem { key: k, msg: m, sig: s }).collect();
    assert!(!verify_batch(&view));
    let failing: Vec<usize> = view.iter().enumerate().filter(|(_, i)| !verify_one(**i)).map(|(n, _)| n).collect();
    assert_eq!(failing, vec![0, 17, 63]);
}

#[test]
fn one_key_signing_many_items_is_checked_item_by_item() {
    // The batch folds one key's coefficients together; a single bad item among many by the same
    // key, or the same message signed twice with one bad copy, must still fail the batch.
    let kp = Keypair::dev("department");
    let msgs: Vec<[u8; 32]> = (0..32u8).map(|i| [i; 32]).collect();
    let mut sigs: Vec<[u8; 64]> = msgs.iter().map(|m| kp.sign(m)).collect();
    let key = kp.public();
    let batch = |sigs: &[[u8; 64]]| {
        let items: Vec<SigItem<'_>> =
            msgs.iter().zip(sigs).map(|(m, s)| SigItem { key: &key, msg: m, sig: s }).collect();
        verify_batch(&items)
    };
    assert!(batch(&sigs));
    sigs[20] = kp.sign(&[99u8; 32]);
    assert!(!batch(&sigs), "a valid signature over another message");
    sigs[20] = kp.sign(&msgs[20]);
    sigs[5][33] ^= 4;
    assert!(!batch(&sigs), "a corrupted s");
}

#[test]
fn keys_kept_from_earlier_batches_give_the_same_verdicts() {
    // The first round decompresses and keeps the keys, the later ones find them kept: verdicts
    // (good, wrong message, key not on the curve, small-order key) must not change.
    let kp = Keypair::dev("kept");
    let msg = [6u8; 32];
    let sig = kp.sign(&msg);
    let off_curve = off_curve(3);
    let small = PublicKey(EIGHT_TORSION[1].compress().to_bytes());
    for round in 0..3 {
        assert_eq!(verdicts(kp.public(), msg, sig), (true, true), "round {round}");
        assert_eq!(verdicts(kp.public(), [7u8; 32], sig), (false, false), "round {round}");
        assert_eq!(verdicts(PublicKey(off_curve), msg, sig), (false, false), "round {round}");
        assert_eq!(verdicts(small, msg, sig), (false, false), "round {round}");
    }
}

#[test]
fn the_key_cache_starting_again_changes_no_verdict() {
    // More distinct keys than a thread keeps: the cache empties and refills on the way.
    let keys: Vec<Keypair> = (0..KEY_CACHE_ENTRIES / 64 + 2).map(|i| Keypair::dev(&format!("many-{i}"))).collect();
    let msg = [8u8; 32];
    let signed: Vec<(PublicKey, [u8; 64])> = keys.iter().map(|k| (k.public(), k.sign(&msg))).collect();
    for _ in 0..65 {
        let items: Vec<SigItem<'_>> = signed.iter().map(|(k, s)| SigItem { key: k, msg: &msg, sig: s }).collect();
        assert!(verify_batch(&items));
    }
    // Fill the cache past its bound with fresh points directly.
    let mut rng = StdRng::seed_from_u64(10);
    for _ in 0..KEY_CACHE_ENTRIES + 1 {
        let p = (random_scalar(&mut rng) * B).compress().to_bytes();
        assert!(key_point(&p).is_some());
    }
    KEYS.with_borrow(|k| assert!(k.len() <= KEY_CACHE_ENTRIES));
    let items: Vec<SigItem<'_>> = signed.iter().map(|(k, s)| SigItem { key: k, msg: &msg, sig: s }).collect();
    assert!(verify_batch(&items));
}
