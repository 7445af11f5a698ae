//! The REST API end to end, as a department system, a holder's phone and an operator use it:
//! real node processes (meta chain and licence chains), router processes, HTTP only.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use elchain_router::json::{GrantJson, LicenceJson, ShardMapJson};
use elchain_router::rest::{open_fields, RestClient, RestError};
use elchain_shard::node::rpc::{Answer, Query};
use elchain_sim::governance;
use elchain_tests::deployment::{self, Deployment, DEADLINE};
use elchain_types::codec::{Decode, Encode};
use elchain_types::contract::HolderKind;
use elchain_types::crypto::Keypair;
use elchain_types::ids::ChainId;
use elchain_types::release::open_released;
use elchain_types::shardmap::ShardMap;
use elchain_types::tx::Govern;
use rand_core::OsRng;

fn problem_code(r: Result<impl std::fmt::Debug, RestError>) -> String {
    match r {
        Err(RestError::Problem(p)) => p.code,
        other => panic!("expected a problem answer, got {other:?}"),
    }
}

/// The meta chain's current shard map, read over QUIC.
fn current_map(d: &Deployment) -> ShardMap {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let client = d.cluster.client().await;
        let Answer::Governance(g) = client.query(0, Query::Governance, DEADLINE).await.unwrap() else { panic!() };
        client.close().await;
        ShardMap::from_bytes(&g.shard_map.expect("a shard map")).unwrap()
    })
}

/// Wait until router 901 (`d.rest`) serves shard map `version`.
fn wait_map(d: &Deployment, version: u64) {
    let start = Instant::now();
    loop {
        let served = d.rest.get_json::<ShardMapJson>("/v1/shard-map");
        if served.as_ref().is_ok_and(|m| m.version >= version) {
            return;
        }
        if start.elapsed() >= DEADLINE {
            let logs: Vec<String> =
                d.cluster.nodes.keys().map(|id| format!("node {id}:\n{}", d.cluster.log(*id))).collect();
            panic!(
                "the router never saw shard map version {version} (it serves {:?}); its log:\n{}\n{}",
                served.map(|m| m.version),
                d.cluster.router_log(901),
                logs.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn submit_governance(d: &Deployment, action: Govern) {
    let tx = governance::admin_signed(&d.consortium, action);
    let r = d.rest.submit(&tx, true).expect("governance through HTTP");
    assert_eq!(r.outcome.as_deref(), Some("valid"), "{r:?}");
}

/// A holder whose licences of `licence_type` the router places on `chain`.
fn holder_on(d: &Deployment, licence_type: &str, chain: u32) -> Keypair {
    loop {
        let k = Keypair::generate(&mut OsRng);
        if d.rest.placement(licence_type, &k.holder_id()).unwrap().chain == chain {
            return k;
        }
    }
}

#[test]
fn a_department_system_works_through_http_alone() {
    let mut d = deployment::start(3, 2);
    let c = d.consortium.clone();

    // Governance through HTTP: every driver's licence goes to chain 2 from now on.
    let dl = c.licence_type_by_code("driver_licence").unwrap().id;
    let v2 = current_map(&d).reassign(Some(dl), 0..current_map(&d).buckets, ChainId(2)).unwrap();
    submit_governance(&d, Govern::ShardMap(v2));
    wait_map(&d, 2);

    // All seven licence types, for a person whose other licences live on chain 1 and a company.
    let person = holder_on(&d, "resident_id_card", 1);
    let company = Keypair::generate(&mut OsRng);
    let mut issued = BTreeMap::new();
    for ty in &c.licence_types {
        let holder = if ty.holder == HolderKind::Person { &person } else { &company };
        let i = d.issue(&ty.code, holder);
        let rec: LicenceJson = d.rest.licence(&i.licence).unwrap();
        assert_eq!((rec.status.as_str(), rec.licence_type.as_str()), ("active", ty.code.as_str()));
        assert_eq!(rec.holder, holder.holder_id().to_hex());
        let body = d.rest.get(&format!("/v1/licences/{}", i.licence)).unwrap().body;
        for (name, v) in &i.values {
            let text = std::str::from_utf8(v).unwrap();
            assert!(!body.contains(&hex::encode(v)) && !body.contains(text), "{name} = {text} appears in {body}");
        }
        issued.insert(ty.code.clone(), i);
    }
    assert_eq!(issued.len(), 7);
    assert_eq!(issued["resident_id_card"].chain, 1);
    assert_eq!(issued["driver_licence"].chain, 2);

    // The holder grants two fields of each of two licences (on two chains) to a department.
    let grantee = "public-security";
    let g_key = d.member_key(grantee);
    let mut grants = Vec::new();
    for ty in ["resident_id_card", "driver_licence"] {
        let i = &issued[ty];
        let (item, fields) = d.item_for(ty, 2);
        let tx = d.grant_tx(i, &person, grantee, &item, fields);
        let r = d.rest.submit(&tx, true).unwrap();
        assert_eq!(r.outcome.as_deref(), Some("valid"), "{r:?}");
        grants.push((i.clone(), r.tx_id.clone(), fields));
    }

    // Trace before access: the department holds the grant and the ledger, and still cannot read.
    let (lic, grant_id, fields) = grants[0].clone();
    let g: GrantJson = d.rest.get_json(&format!("/v1/grants/{grant_id}")).unwrap();
    assert_eq!(g.fields.len(), 2);
    assert!(g_key.open(&hex::decode(&g.envelope).unwrap()).is_err(), "the grantee opened the envelope without a use");
    assert_eq!(problem_code(d.rest.release(lic.chain, &grant_id)), "not_a_use");
    assert_eq!(problem_code(d.rest.release(lic.chain, &"ab".repeat(32))), "unknown_transaction");

    // A recorded use releases exactly the granted fields, sealed to the grantee.
    for (i, grant, fields) in &grants {
        let u = d.use_tx(i.chain, grant, *fields, grantee);
        let r = d.rest.submit(&u, true).unwrap();
        assert_eq!(r.outcome.as_deref(), Some("valid"), "{r:?}");
        let rel = d.rest.release(i.chain, &r.tx_id).unwrap();
        let keys = open_released(&g_key, &hex::decode(&rel.sealed_keys).unwrap()).unwrap();
        assert!(open_released(&d.member_key("civil-affairs"), &hex::decode(&rel.sealed_keys).unwrap()).is_err());
        let opened = open_fields(&d.rest.licence(&i.licence).unwrap(), &keys).unwrap();
        assert_eq!(opened.len(), 2, "exactly the granted fields open");
        for (name, value) in &opened {
            assert_eq!(Some(value), i.values.iter().find(|(n, _)| n == name).map(|(_, v)| v), "{name}");
        }
        assert_eq!(rel.fields.len(), 2);
    }

    // The holder revokes the first grant; the next use is refused and nothing is released for it.
    let r = d.rest.submit(&d.revoke_grant_tx(lic.chain, &grant_id, &person), true).unwrap();
    assert_eq!(r.outcome.as_deref(), Some("valid"));
    let refused = d.rest.submit(&d.use_tx(lic.chain, &grant_id, fields, grantee), true);
    let Err(RestError::Problem(p)) = refused else { panic!("use after revocation: {refused:?}") };
    assert_eq!((p.status, p.code.as_str()), (403, "grant_revoked"));
    let receipt = p.receipt.expect("the refused use is recorded with its receipt");
    assert_eq!(receipt.status, "committed");
    assert_eq!(problem_code(d.rest.release(lic.chain, p.tx_id.as_deref().unwrap())), "use_not_effective");

    // The holder lists every use across both chains; nobody else may.
    let traces = d.rest.holder_traces(&person).unwrap();
    assert_eq!(traces.traces.len(), 2, "{traces:?}");
    let chains: Vec<u32> = traces.traces.iter().map(|t| t.chain).collect();
    assert!(chains.contains(&1) && chains.contains(&2), "{chains:?}");
    assert!(traces.traces.iter().all(|t| t.grantee == grantee && t.fields.len() == 2));
    let licences = d.rest.holder_licences(&person).unwrap();
    assert_eq!(licences.licences.len(), c.licence_types.iter().filter(|t| t.holder == HolderKind::Person).count());

    let path = format!("/v1/holders/{}/traces", person.holder_id());
    let a = d.rest.get(&path).unwrap();
    assert_eq!((a.status, a.content_type.as_str()), (401, "application/problem+json"));
    let stranger = Keypair::generate(&mut OsRng);
    let mut h = d.rest.holder_headers(&stranger).unwrap();
    h[0].1 = person.public().to_hex(); // claims the holder's key, signed with another
    let hs: Vec<(&str, &str)> = h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(problem_code(d.rest.get_with(&path, &hs).unwrap().json::<()>()), "bad_holder_signature");
    let h = d.rest.holder_headers(&stranger).unwrap();
    let hs: Vec<(&str, &str)> = h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(problem_code(d.rest.get_with(&path, &hs).unwrap().json::<()>()), "not_holder");
    let h = d.rest.holder_headers(&person).unwrap();
    let hs: Vec<(&str, &str)> = h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(d.rest.get_with(&path, &hs).unwrap().status, 200);
    assert_eq!(problem_code(d.rest.get_with(&path, &hs).unwrap().json::<()>()), "challenge_used");

    // Receipts carry proofs that check against the header and a quorum checkpoint.
    let proof: elchain_router::json::ProofJson = d.rest.get_json(&format!("/v1/transactions/{}", r.tx_id)).unwrap();
    let header = elchain_types::BlockHeader::from_bytes(&hex::decode(&proof.header).unwrap()).unwrap();
    let inclusion = elchain_types::InclusionProof::from_bytes(&hex::decode(&proof.proof).unwrap()).unwrap();
    assert!(inclusion.verify(&header));
    assert_eq!(proof.outcome, "valid");

    // The catalogue endpoints answer from the meta chain.
    let cons: elchain_router::json::ConsortiumJson = d.rest.get_json("/v1/consortium").unwrap();
    assert_eq!((cons.admin_k, cons.admins.len()), (3, 5));
    let members: Vec<elchain_router::json::MemberJson> = d.rest.get_json("/v1/members").unwrap();
    assert_eq!(members.len(), c.members.len());
    let contracts: Vec<elchain_router::json::ContractJson> = d.rest.get_json("/v1/contracts").unwrap();
    assert_eq!(contracts.len(), 7);
    let items: Vec<elchain_router::json::ItemJson> = d.rest.get_json("/v1/items").unwrap();
    assert_eq!(items.len(), 318);
    let chains: Vec<elchain_router::json::ChainJson> = d.rest.get_json("/v1/chains").unwrap();
    assert_eq!(chains.iter().map(|c| c.id).collect::<Vec<_>>(), vec![0, 1, 2]);
    d.cluster.stop_all();
}

#[test]
fn bad_input_gets_the_right_problem_and_breaks_nothing() {
    let mut d = deployment::start(3, 1);
    let rest = &d.rest;
    let problem = |a: elchain_router::rest::Answer, status: u16, code: &str| {
        assert_eq!(a.status, status, "{code}: {}", a.body);
        assert_eq!(a.content_type, "application/problem+json", "{code}");
        let p: serde_json::Value = serde_json::from_str(&a.body).unwrap();
        assert_eq!(p["code"], code, "{}", a.body);
        assert!(p["detail"].as_str().is_some_and(|s| !s.is_empty()));
    };
    problem(rest.post("/v1/transactions", "{\"tx\": ").unwrap(), 400, "malformed_json");
    problem(rest.post("/v1/transactions", "[1, 2]").unwrap(), 400, "invalid_request");
    problem(rest.post("/v1/transactions", "{\"tx\": 17}").unwrap(), 400, "invalid_request");
    problem(rest.post("/v1/transactions", "{\"tx\": \"00\", \"colour\": 1}").unwrap(), 400, "invalid_request");
    problem(rest.post("/v1/transactions", "{\"tx\": \"not hex\"}").unwrap(), 400, "malformed");
    problem(rest.post("/v1/transactions", "{\"tx\": \"0102\"}").unwrap(), 400, "malformed");
    problem(rest.post("/v1/transactions/batch", "{\"txs\": []}").unwrap(), 400, "empty_batch");
    let many = serde_json::json!({ "txs": vec!["00"; 2001] }).to_string();
    problem(rest.post("/v1/transactions/batch", &many).unwrap(), 413, "batch_too_large");
    problem(rest.get(&format!("/v1/licences/{}", "00".repeat(32))).unwrap(), 404, "unknown_licence");
    problem(rest.get("/v1/licences/xyz").unwrap(), 400, "invalid_id");
    problem(rest.get(&format!("/v1/grants/{}", "11".repeat(32))).unwrap(), 404, "unknown_grant");
    problem(rest.get(&format!("/v1/transactions/{}", "22".repeat(32))).unwrap(), 404, "unknown_transaction");
    problem(rest.get("/v1/chains/9/blocks/1").unwrap(), 404, "unknown_chain");
    problem(rest.get("/v1/chains/1/blocks/999999").unwrap(), 404, "unknown_block");
    problem(
        rest.get(&format!("/v1/placement?licence_type=spaceship&holder={}", "00".repeat(32))).unwrap(),
        404,
        "unknown_licence_type",
    );
    problem(rest.get("/v1/nothing-here").unwrap(), 404, "no_such_route");

    // Signed transactions that break a rule: each code, each with its status.
    let holder = Keypair::generate(&mut OsRng);
    let (tx, _) = d.issue_tx("resident_id_card", &holder, 1);
    let mut forged = tx.to_bytes();
    let n = forged.len();
    forged[n - 1] ^= 1; // the last byte of the last signature
    let body = serde_json::json!({ "tx": hex::encode(&forged) }).to_string();
    problem(rest.post("/v1/transactions", &body).unwrap(), 403, "bad_signature");
    let (other_chain, _) = d.issue_tx("resident_id_card", &holder, 7);
    assert_eq!(problem_code(rest.submit(&other_chain, true)), "unknown_chain");
    let ok = rest.submit(&tx, true).unwrap();
    assert_eq!(ok.outcome.as_deref(), Some("valid"));
    let replay = rest.submit(&tx, true);
    let Err(RestError::Problem(p)) = replay else { panic!("{replay:?}") };
    assert_eq!((p.status, p.code.as_str()), (409, "replay"));
    let ghost = d.use_tx(1, &"33".repeat(32), 1, "public-security");
    let Err(RestError::Problem(p)) = rest.submit(&ghost, true) else { panic!() };
    assert_eq!((p.status, p.code.as_str()), (404, "unknown_grant"));
    // Governance signed by someone who is not a consortium admin.
    let ctx = elchain_types::client::TxContext {
        chain: ChainId(0),
        nonce: 5,
        valid_until: deployment::now().plus_ms(60_000),
    };
    let not_admin =
        elchain_types::client::govern(ctx, Govern::Param { name: "x".into(), value: 1 }).seal().sign(&holder).done();
    let Err(RestError::Problem(p)) = rest.submit(&not_admin, true) else { panic!() };
    assert_eq!((p.status, p.code.as_str()), (403, "admin_quorum"));

    // A router with tight limits answers 413 to a body over its limit, 429 with Retry-After past
    // its rate, and keeps serving. (The body is small enough to be written whole before the early
    // 413 answer closes the connection, so the client reads the answer rather than a broken pipe.)
    let limits = "[limits]\nrequests_per_second = 2\nburst = 3\nmax_body_bytes = 65536\n";
    let http = d.cluster.start_router_with(902, deployment::free_http(), limits);
    let limited = RestClient::new(&format!("http://{http}"), Duration::from_secs(10));
    elchain_router::rest::wait_healthy(&limited, DEADLINE).unwrap();
    let huge = format!("{{\"tx\": \"{}\"}}", "00".repeat(50_000));
    problem(limited.post("/v1/transactions", &huge).unwrap(), 413, "body_too_large");
    std::thread::sleep(Duration::from_secs(2)); // let the bucket refill
    let answers: Vec<_> = (0..10).map(|_| limited.get("/v1/members").unwrap()).collect();
    let refused: Vec<_> = answers.iter().filter(|a| a.status == 429).collect();
    assert!(!refused.is_empty() && refused.len() < 10, "{:?}", answers.iter().map(|a| a.status).collect::<Vec<_>>());
    assert!(refused[0].body.contains("rate_limited"));
    assert_eq!(limited.get("/healthz").unwrap().status, 200, "health is not rate limited");

    // The OpenAPI document lists exactly what is served: every documented route answers (with
    // whatever status its dummy parameters earn), never the fallback's `no_such_route`.
    let doc: serde_json::Value = serde_json::from_str(&rest.get("/openapi.json").unwrap().body).unwrap();
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() >= 20, "{:?}", paths.keys());
    for (path, ops) in paths {
        let concrete = path.replace("{id}", &"00".repeat(32)).replace("{holder}", &"00".repeat(32));
        let concrete = concrete.replace("{chain}", "1").replace("{height}", "1");
        for method in ops.as_object().unwrap().keys() {
            let a = match method.as_str() {
                "get" => rest.get(&concrete).unwrap(),
                "post" => rest.post(&concrete, "{}").unwrap(),
                other => panic!("undocumented method {other}"),
            };
            assert!(!a.body.contains("no_such_route"), "{method} {path} is documented but not served");
        }
    }

    // Nothing crashed: the router and every node still serve, and stop cleanly.
    assert_eq!(rest.get("/healthz").unwrap().status, 200);
    assert_eq!(rest.licence(&d.issue("resident_id_card", &holder).licence).unwrap().status, "active");
    d.cluster.stop_all();
}

#[test]
fn a_new_chain_takes_new_issuance_while_old_licences_keep_working() {
    let mut d = deployment::start(3, 2);
    // Before: a licence on chain 1 with a grant.
    let old_holder = holder_on(&d, "resident_id_card", 1);
    let old = d.issue("resident_id_card", &old_holder);
    let (item, fields) = d.item_for("resident_id_card", 2);
    let grant = d.rest.submit(&d.grant_tx(&old, &old_holder, "public-security", &item, fields), true).unwrap().tx_id;

    // Scale out: start chain 3's replicas, register it and give it buckets 0..1024.
    d.start_chain(3, &[4, 5, 6]);
    let map = current_map(&d);
    for tx in governance::scale_out(&d.consortium, &map, d.cluster.chain_info(3), 0..1024).unwrap() {
        let r = d.rest.submit(&tx, true).unwrap();
        assert_eq!(r.outcome.as_deref(), Some("valid"), "{r:?}");
    }
    wait_map(&d, map.version + 1);
    let chains: Vec<elchain_router::json::ChainJson> = d.rest.get_json("/v1/chains").unwrap();
    let c3 = chains.iter().find(|c| c.id == 3).expect("chain 3 in the directory");
    assert_eq!(c3.replicas.iter().map(|r| r.node).collect::<Vec<_>>(), vec![4, 5, 6]);

    // New issuance for holders in those buckets lands on chain 3 and works there.
    let new_holder = holder_on(&d, "resident_id_card", 3);
    let new = d.issue("resident_id_card", &new_holder);
    assert_eq!(new.licence.chain(), ChainId(3));
    assert_eq!(d.rest.licence(&new.licence).unwrap().chain, 3);
    let g3 = d.rest.submit(&d.grant_tx(&new, &new_holder, "public-security", &item, fields), true).unwrap();
    let u3 = d.rest.submit(&d.use_tx(3, &g3.tx_id, fields, "public-security"), true).unwrap();
    assert_eq!((u3.chain, u3.outcome.as_deref()), (3, Some("valid")));
    assert_eq!(d.rest.holder_traces(&new_holder).unwrap().traces[0].chain, 3);

    // The licence issued before keeps working where it is.
    let u = d.rest.submit(&d.use_tx(1, &grant, fields, "public-security"), true).unwrap();
    assert_eq!((u.chain, u.outcome.as_deref()), (1, Some("valid")));
    let rel = d.rest.release(1, &u.tx_id).unwrap();
    let keys = open_released(&d.member_key("public-security"), &hex::decode(&rel.sealed_keys).unwrap()).unwrap();
    assert_eq!(open_fields(&d.rest.licence(&old.licence).unwrap(), &keys).unwrap().len(), 2);
    // An issuance built for the old placement is refused as misplaced, not silently accepted.
    let (stale, _) = d.issue_tx("resident_id_card", &new_holder, 1);
    assert_eq!(problem_code(d.rest.submit(&stale, true)), "misplaced");
    d.cluster.stop_all();
}

#[test]
fn killing_a_router_or_a_leader_during_requests_loses_nothing() {
    let mut d = deployment::start(3, 1);
    let second = d.cluster.start_router(902, deployment::free_http());
    let backup = RestClient::new(&format!("http://{second}"), Duration::from_secs(30));
    elchain_router::rest::wait_healthy(&backup, DEADLINE).unwrap();

    let txs: Vec<_> =
        (0..60).map(|_| d.issue_tx("resident_id_card", &holder_on(&d, "resident_id_card", 1), 1).0).collect();
    let primary = d.rest.clone();
    let worker = std::thread::spawn(move || {
        // A department system: send each transaction until it has a definite answer, switching
        // router on a transport error. Every answer must be a receipt or a retryable problem.
        let mut outcomes = Vec::new();
        for tx in &txs {
            let mut tries = 0;
            let outcome = loop {
                tries += 1;
                let via = if tries % 2 == 1 { &primary } else { &backup };
                match via.submit(tx, true) {
                    Ok(r) => break r.outcome.unwrap(),
                    Err(RestError::Problem(p)) if p.code == "replay" => break "replay".to_string(),
                    Err(RestError::Problem(p)) => {
                        assert!(p.retryable, "a non-retryable problem under faults: {p:?}");
                    }
                    Err(RestError::Transport(_)) => {}
                    Err(e) => panic!("{e}"),
                }
                assert!(tries < 200, "no definite answer for {}", tx.id());
                std::thread::sleep(Duration::from_millis(100));
            };
            outcomes.push((tx.id(), outcome));
            std::thread::sleep(Duration::from_millis(30));
        }
        outcomes
    });
    std::thread::sleep(Duration::from_millis(800));
    d.cluster.kill_router(901);
    std::thread::sleep(Duration::from_millis(800));
    d.cluster.spawn_router(901);
    std::thread::sleep(Duration::from_millis(500));
    let leader = {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let client = d.cluster.client().await;
            let l = client.wait_leader(1, DEADLINE).await.unwrap();
            client.close().await;
            l
        })
    };
    d.cluster.kill(leader);
    std::thread::sleep(Duration::from_secs(2));
    d.cluster.spawn(leader);
    let outcomes = worker.join().expect("the client saw only receipts and retryable problems");
    assert_eq!(outcomes.len(), 60);

    // Every transaction is in chain 1 exactly once, as a valid issuance.
    elchain_router::rest::wait_healthy(&d.rest, DEADLINE).unwrap();
    for (id, outcome) in &outcomes {
        assert!(outcome == "valid" || outcome == "replay", "{id}: {outcome}");
        let p: elchain_router::json::ProofJson = d.rest.get_json(&format!("/v1/transactions/{id}?chain=1")).unwrap();
        assert_eq!(p.outcome, "valid", "{id}");
    }
    d.cluster.stop_all();
}
