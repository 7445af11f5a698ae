//! Codec round trips, golden bytes and size limits of transactions.

use proptest::prelude::*;

use super::*;
use crate::crypto::{DataKey, Keypair};

fn sample_body() -> TxBody {
    let dk = DataKey([5; 32]);
    let holder = Keypair::dev("holder").holder_id();
    let licence = LicenceId::derive(ChainId(1), MemberId(3), LicenceTypeId(1), &holder, 42);
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(1);
    TxBody {
        chain: ChainId(1),
        nonce: 42,
        valid_until: Timestamp(1_700_000_000_000),
        payload: Payload::Issue(Issue {
            licence,
            licence_type: LicenceTypeId(1),
            contract_version: 1,
            holder,
            valid_from: Timestamp(1_700_000_000_000),
            valid_to: Timestamp(0),
            fields: vec![
                SealedField::seal(&dk, &licence, 0, b"91110000MA01", &mut rng),
                SealedField::seal(&dk, &licence, 2, b"Acme Ltd", &mut rng),
            ],
            holder_envelope: vec![9; 80],
        }),
    }
}

fn all_payloads() -> Vec<Payload> {
    let l = LicenceId([1; 32]);
    let g = GrantId([2; 32]);
    let body = sample_body();
    vec![
        body.payload,
        Payload::Renew(Renew { licence: l, valid_to: Timestamp(9) }),
        Payload::Amend(Amend {
            licence: l,
            fields: vec![SealedField { index: 4, commitment: [3; 32], ciphertext: vec![1; 60] }],
        }),
        Payload::Suspend(StatusChange { licence: l, reason: 1 }),
        Payload::Reinstate(StatusChange { licence: l, reason: 2 }),
        Payload::Revoke(StatusChange { licence: l, reason: 3 }),
        Payload::Grant(Grant {
            licence: l,
            grantee: MemberId(7),
            item: ItemId(12),
            fields: 0b1011,
            not_before: Timestamp(1),
            not_after: Timestamp(2),
            max_uses: 3,
            envelope: vec![4; 100],
        }),
        Payload::RevokeGrant(RevokeGrant { grant: g }),
        Payload::Use(Use { grant: g, fields: 0b11 }),
        Payload::Attest(Attest { digest: Hash32([6; 32]), kind: 2 }),
    ]
}

fn signed(payload: Payload, signers: &[&str]) -> SignedTx {
    let mut tx = TxBody { chain: ChainId(1), nonce: 7, valid_until: Timestamp(99), payload }.seal();
    for s in signers {
        tx = tx.sign(&Keypair::dev(s));
    }
    tx.done()
}

#[test]
fn every_payload_round_trips_byte_for_byte() {
    for p in all_payloads() {
        let tx = signed(p, &["a", "b"]);
        let bytes = tx.to_bytes();
        let back = SignedTx::decode_wire(&bytes).unwrap();
        assert_eq!(back, tx);
        assert_eq!(back.to_bytes(), bytes);
        assert_eq!(back.id(), tx.id());
    }
}

#[test]
fn golden_bytes_of_a_use_transaction() {
    // Changing this encoding changes every tx id on every chain: it must be deliberate.
    let tx = signed(Payload::Use(Use { grant: GrantId([0xab; 32]), fields: 0b101 }), &[]);
    let expected_body = concat!(
        "01",                                                               // body version
        "01000000",                                                         // chain 1
        "0700000000000000",                                                 // nonce 7
        "6300000000000000",                                                 // valid_until 99
        "09",                                                               // payload kind: use
        "abababababababababababababababababababababababababababababababab", // grant id
        "0500000000000000",                                                 // field mask
    );
    assert_eq!(hex::encode(tx.body_bytes()), expected_body);
    assert_eq!(hex::encode(tx.to_bytes()), format!("3e000000{expected_body}00"));
    assert_eq!(tx.id().to_hex(), "b72a03898e1cae1512c003b9354e415f6fee4a9f08e86ae323c440f3377bd669");
}

#[test]
fn oversized_transaction_is_refused_before_decoding() {
    let bytes = vec![0u8; limits::MAX_TX_BYTES + 1];
    assert_eq!(SignedTx::decode_wire(&bytes).unwrap_err(), RejectCode::Oversized);
}

#[test]
fn truncated_or_trailing_bytes_are_malformed() {
    let bytes = signed(all_payloads().remove(6), &["a"]).to_bytes();
    assert_eq!(SignedTx::decode_wire(&bytes[..bytes.len() - 1]).unwrap_err(), RejectCode::Malformed);
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(SignedTx::decode_wire(&longer).unwrap_err(), RejectCode::Malformed);
}

#[test]
fn a_key_signing_twice_is_malformed() {
    let tx =
        TxBody { chain: ChainId(1), nonce: 1, valid_until: Timestamp(5), payload: all_payloads().remove(1) }.seal();
    let k = Keypair::dev("twice");
    let bytes = tx.sign(&k).sign(&k).done().to_bytes();
    assert_eq!(SignedTx::decode_wire(&bytes).unwrap_err(), RejectCode::Malformed);
}

#[test]
fn field_indices_must_ascend() {
    let mut p = all_payloads().remove(2);
    if let Payload::Amend(a) = &mut p {
        a.fields = vec![
            SealedField { index: 3, commitment: [0; 32], ciphertext: vec![0; 50] },
            SealedField { index: 3, commitment: [0; 32], ciphertext: vec![0; 50] },
        ];
    }
    let bytes = signed(p, &["a"]).to_bytes();
    assert_eq!(SignedTx::decode_wire(&bytes).unwrap_err(), RejectCode::Malformed);
}

#[test]
fn unknown_payload_kind_is_malformed() {
    let mut body = signed(all_payloads().remove(7), &[]).body_bytes().to_vec();
    body[21] = 0xee;
    let mut w = Writer::new();
    w.bytes(&body);
    w.u8(0);
    assert_eq!(SignedTx::decode_wire(&w.into_bytes()).unwrap_err(), RejectCode::Malformed);
}

#[test]
fn licence_id_embeds_its_chain() {
    let id = LicenceId::derive(ChainId(0x0102_0304), MemberId(1), LicenceTypeId(2), &HolderId([1; 32]), 5);
    assert_eq!(id.chain(), ChainId(0x0102_0304));
}

proptest! {
    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = SignedTx::decode_wire(&bytes);
    }

    #[test]
    fn mutated_valid_bytes_decode_to_canonical_form_or_fail(idx in 0usize..400, bit in 0u8..8) {
        let bytes = signed(all_payloads().remove(6), &["a", "b"]).to_bytes();
        let mut m = bytes.clone();
        let i = idx % m.len();
        m[i] ^= 1 << bit;
        if let Ok(tx) = SignedTx::decode_wire(&m) {
            // Whatever decodes re-encodes to exactly the bytes it came from.
            prop_assert_eq!(tx.to_bytes(), m);
        }
    }

    #[test]
    fn grant_round_trips(fields in any::<u64>(), nb in any::<u64>(), na in any::<u64>(), uses in any::<u32>(),
                         env in proptest::collection::vec(any::<u8>(), 0..200), nonce in any::<u64>()) {
        let body = TxBody { chain: ChainId(3), nonce, valid_until: Timestamp(nb), payload: Payload::Grant(Grant {
            licence: LicenceId([1; 32]), grantee: MemberId(2), item: ItemId(3), fields,
            not_before: Timestamp(nb), not_after: Timestamp(na), max_uses: uses, envelope: env,
        })};
        let tx = body.seal().sign(&Keypair::dev("p")).done();
        let back = SignedTx::decode_wire(&tx.to_bytes()).unwrap();
        prop_assert_eq!(back, tx);
    }
}
