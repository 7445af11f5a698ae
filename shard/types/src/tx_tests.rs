//! Codec round trips, golden bytes and size limits of transactions.

use proptest::prelude::*;

use super::*;
use crate::crypto::{DataKey, Keypair};

fn sample_body() -> TxBody {
    let dk = DataKey([5; 32]);
    let holder = Keypair::dev("holder").holder_id();
    let licence =
        LicenceId::derive(ChainId(1), Timestamp(1_700_000_000_000), MemberId(3), LicenceTypeId(1), &holder, 42);
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
    assert_eq!(tx.id().to_hex(), "00000000000000634ec17412c804d531938b701e75234c1dc0ab41f1c055a05d");
}

#[test]
fn ids_start_with_the_window_end_and_sort_by_it() {
    let mut body = sample_body();
    let a = body.clone().seal().id();
    assert_eq!(a.0[..8], body.valid_until.0.to_be_bytes());
    body.nonce += 1;
    let b = body.clone().seal().id();
    assert_eq!(a.0[..8], b.0[..8]);
    assert_ne!(a, b, "another body, another id");
    body.valid_until = body.valid_until.plus_ms(1);
    assert!(body.seal().id() > a.max(b), "a later window sorts after");
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
fn licence_id_embeds_its_chain_then_its_time() {
    let id = |t: u64, nonce: u64| {
        LicenceId::derive(ChainId(0x0102_0304), Timestamp(t), MemberId(1), LicenceTypeId(2), &HolderId([1; 32]), nonce)
    };
    let a = id(0x0a0b_0c0d, 5);
    assert_eq!(a.chain(), ChainId(0x0102_0304));
    assert_eq!(a.0[4..12], 0x0a0b_0c0du64.to_be_bytes());
    // Later issuances sort after earlier ones, whatever else they hash.
    assert!((0..50).all(|n| id(0x0a0b_0c0d, n) < id(0x0a0b_0c0e, 50 - n)));
    assert_ne!(a, id(0x0a0b_0c0d, 6));
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

// ---- governance ----

fn sample_member() -> crate::contract::Member {
    crate::contract::Member {
        id: MemberId(61),
        code: "new-bureau".into(),
        name: "New Bureau".into(),
        kind: crate::contract::MemberKind::CityBureau,
        admin: true,
        signing_key: Keypair::dev("new-bureau").public(),
        encryption_key: [7; 32],
    }
}

fn sample_licence_type() -> crate::contract::LicenceType {
    use crate::contract::{FieldKind, FieldSpec, HolderKind};
    crate::contract::LicenceType {
        id: LicenceTypeId(8),
        code: "fishing_permit".into(),
        name: "Fishing permit".into(),
        version: 2,
        holder: HolderKind::Person,
        issuers: vec![MemberId(3)],
        endorse_k: 1,
        endorsers: vec![MemberId(4), MemberId(5)],
        max_validity_days: 365,
        renewable: true,
        fields: vec![
            FieldSpec { name: "full_name".into(), kind: FieldKind::Text, required: true },
            FieldSpec { name: "waters".into(), kind: FieldKind::Text, required: false },
        ],
    }
}

fn all_governance() -> Vec<Govern> {
    use crate::shardmap::ReplicaInfo;
    vec![
        Govern::ShardMap(ShardMap::even(&[ChainId(1), ChainId(2)], 4096).unwrap()),
        Govern::Chain(ChainInfo {
            id: ChainId(2),
            replicas: vec![
                ReplicaInfo { node: 1, addr: "10.0.0.1:7000".into() },
                ReplicaInfo { node: 2, addr: "10.0.0.2:7000".into() },
            ],
        }),
        Govern::Member(sample_member()),
        Govern::LicenceType(sample_licence_type()),
        Govern::Param { name: "max_block_txs".into(), value: 5000 },
        Govern::RevokeCertificate { serial: vec![0x12, 0x34], reason: 1 },
    ]
}

#[test]
fn every_governance_action_round_trips_byte_for_byte() {
    for g in all_governance() {
        let tx = signed(Payload::Govern(g.clone()), &["a", "b", "c"]);
        let bytes = tx.to_bytes();
        let back = SignedTx::decode_wire(&bytes).unwrap();
        assert_eq!(back, tx);
        assert_eq!(back.to_bytes(), bytes);
        assert_eq!(Govern::from_bytes(&g.to_bytes()).unwrap(), g);
        assert_eq!(back.body().payload.kind(), "govern");
    }
}

#[test]
fn golden_bytes_of_a_governance_transaction() {
    // Changing this encoding changes the id of every governance transaction: it must be deliberate.
    let body = TxBody {
        chain: ChainId(0),
        nonce: 7,
        valid_until: Timestamp(99),
        payload: Payload::Govern(Govern::Param { name: "fee".into(), value: 42 }),
    };
    let tx = body.seal().done();
    let expected_body = concat!(
        "01",               // body version
        "00000000",         // chain 0, the meta chain
        "0700000000000000", // nonce 7
        "6300000000000000", // valid_until 99
        "0b",               // payload kind: govern
        "05",               // governance kind: param
        "03000000",         // name length
        "666565",           // "fee"
        "2a00000000000000", // value 42
    );
    assert_eq!(hex::encode(tx.body_bytes()), expected_body);
    assert_eq!(tx.id().to_hex(), "000000000000006390dbeb3951a3577f5984bcbb218533f2957c70a7037e7588");
    let revoke = Govern::RevokeCertificate { serial: vec![0xab, 0xcd], reason: 4 };
    assert_eq!(hex::encode(revoke.to_bytes()), "0602000000abcd04");
}

#[test]
fn governance_limits_are_enforced_by_the_decoder() {
    let long_name = Govern::Param { name: "a".repeat(limits::MAX_PARAM_NAME + 1), value: 1 };
    assert!(matches!(Govern::from_bytes(&long_name.to_bytes()), Err(CodecError::TooLong { .. })));
    let long_serial = Govern::RevokeCertificate { serial: vec![1; limits::MAX_SERIAL + 1], reason: 0 };
    assert!(matches!(Govern::from_bytes(&long_serial.to_bytes()), Err(CodecError::TooLong { .. })));
    assert!(matches!(Govern::from_bytes(&[7]), Err(CodecError::UnknownTag { what: "governance kind", tag: 7 })));
    let mut not_utf8 = Govern::Param { name: "ab".into(), value: 1 }.to_bytes();
    not_utf8[5] = 0xff;
    assert!(matches!(Govern::from_bytes(&not_utf8), Err(CodecError::NonCanonical { .. })));
    // The largest shard map still fits one transaction with every signature.
    let rules = (0..crate::shardmap::MAX_RULES as u32)
        .map(|i| crate::shardmap::Rule { licence_type: Some(LicenceTypeId(7)), buckets: i..i + 1, chain: ChainId(9) })
        .collect();
    let map = ShardMap { version: 1, buckets: 4096, rules };
    let signers: Vec<String> = (0..limits::MAX_SIGNATURES).map(|i| format!("admin-{i}")).collect();
    let refs: Vec<&str> = signers.iter().map(String::as_str).collect();
    let tx = signed(Payload::Govern(Govern::ShardMap(map)), &refs);
    assert!(SignedTx::decode_wire(&tx.to_bytes()).is_ok());
}

#[test]
fn param_names_are_lower_snake_case_up_to_32() {
    for ok in ["a", "admin_k", "max_block_txs", "x2", &"z".repeat(32)] {
        assert!(is_param_name(ok), "{ok}");
    }
    for bad in ["", "Admin", "a-b", "a b", "é", &"z".repeat(33)] {
        assert!(!is_param_name(bad), "{bad}");
    }
}

fn govern_strategy() -> impl Strategy<Value = Govern> {
    use crate::shardmap::{ReplicaInfo, Rule};
    let rule = (proptest::option::of(any::<u16>()), any::<u32>(), any::<u32>(), any::<u32>())
        .prop_map(|(t, a, b, c)| Rule { licence_type: t.map(LicenceTypeId), buckets: a..b, chain: ChainId(c) });
    let map = (any::<u64>(), any::<u32>(), proptest::collection::vec(rule, 0..20))
        .prop_map(|(version, buckets, rules)| Govern::ShardMap(ShardMap { version, buckets, rules }));
    let chain = (any::<u32>(), proptest::collection::btree_set(any::<u64>(), 0..16), "[0-9.:]{0,64}").prop_map(
        |(id, nodes, addr)| {
            Govern::Chain(ChainInfo {
                id: ChainId(id),
                replicas: nodes.into_iter().map(|node| ReplicaInfo { node, addr: addr.clone() }).collect(),
            })
        },
    );
    let param = ("[a-z0-9_]{0,32}", any::<u64>()).prop_map(|(name, value)| Govern::Param { name, value });
    let revoke = (proptest::collection::vec(any::<u8>(), 0..=20), any::<u8>())
        .prop_map(|(serial, reason)| Govern::RevokeCertificate { serial, reason });
    let member = (any::<u16>(), any::<bool>(), "[a-z-]{0,40}").prop_map(|(id, admin, code)| {
        Govern::Member(crate::contract::Member { id: MemberId(id), admin, code, ..sample_member() })
    });
    let ty = (any::<u16>(), any::<u32>(), any::<u8>()).prop_map(|(id, version, endorse_k)| {
        Govern::LicenceType(crate::contract::LicenceType {
            id: LicenceTypeId(id),
            version,
            endorse_k,
            ..sample_licence_type()
        })
    });
    prop_oneof![map, chain, param, revoke, member, ty]
}

proptest! {
    #[test]
    fn governance_round_trips(g in govern_strategy(), nonce in any::<u64>()) {
        let body = TxBody { chain: ChainId(0), nonce, valid_until: Timestamp(5), payload: Payload::Govern(g) };
        let tx = body.seal().sign(&Keypair::dev("admin")).done();
        let bytes = tx.to_bytes();
        let back = SignedTx::decode_wire(&bytes).unwrap();
        prop_assert_eq!(back.to_bytes(), bytes);
        prop_assert_eq!(back, tx);
    }

    #[test]
    fn mutated_governance_bytes_decode_to_canonical_form_or_fail(g in govern_strategy(), idx in any::<usize>(),
                                                                 bit in 0u8..8) {
        let mut m = g.to_bytes();
        let i = idx % m.len();
        m[i] ^= 1 << bit;
        if let Ok(back) = Govern::from_bytes(&m) {
            prop_assert_eq!(back.to_bytes(), m);
        }
    }
}
