//! `elchain govern` end to end: consortium admins scale a running deployment out to a new chain
//! through proposal files they sign in turn, with nothing but the command line and the router.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use elchain_router::json::{ChainJson, ShardMapJson};
use elchain_tests::deployment::{self, DEADLINE};
use elchain_tests::{elchain_in, stderr, stdout};
use elchain_types::profile::dev_member_keypair;

fn ok(out: &Output, what: &str) -> String {
    assert_eq!(out.status.code(), Some(0), "{what}:\n{}{}", stdout(out), stderr(out));
    stdout(out)
}

/// Assert `out` failed with `code` and its standard error mentions `needle`.
fn refused(out: &Output, code: i32, needle: &str, what: &str) {
    assert_eq!(out.status.code(), Some(code), "{what}:\n{}{}", stdout(out), stderr(out));
    assert!(stderr(out).contains(needle), "{what}: no `{needle}` in:\n{}", stderr(out));
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap()
}

/// Ask `f` until it has an answer: the router reads the meta chain every few hundred ms.
fn poll<T>(mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < DEADLINE, "the router never showed the change");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn admins_scale_out_through_proposals_they_sign_in_turn() {
    let mut d = deployment::start(3, 2);
    let dir = tempfile::tempdir().unwrap();
    let router = d.rest.base().to_string();
    let govern = |args: &[&str]| {
        let mut all = vec!["govern", "--router", router.as_str()];
        all.extend_from_slice(args);
        elchain_in(dir.path(), &all)
    };
    // One admin signs with a key file rather than a development key by code.
    elchain_router::keyfile::save(&dir.path().join("justice.key"), &dev_member_keypair("justice"), false).unwrap();

    // Chain 3's replicas start; the meta chain does not know them yet.
    d.start_chain(3, &[4, 5, 6]);

    // Register chain 3: a proposal file, signed by admins in turn.
    let replicas: Vec<String> =
        d.cluster.chain_info(3).replicas.iter().map(|r| format!("{}={}", r.node, r.addr)).collect();
    let mut args = vec!["chain", "--id", "3", "--out", "chain3.json"];
    for r in &replicas {
        args.extend(["--replica", r.as_str()]);
    }
    let made = ok(&govern(&args), "govern chain");
    assert!(made.contains("not in the directory yet"), "{made}");
    refused(&govern(&args), 2, "already exists", "a proposal is not overwritten without --force");

    // A member that is not an admin is refused before the file changes.
    let before = read(dir.path(), "chain3.json");
    refused(&govern(&["sign", "chain3.json", "--member", "market-regulation"]), 2, "not a consortium admin", "sign");
    assert_eq!(read(dir.path(), "chain3.json"), before);

    let one = ok(&govern(&["sign", "chain3.json", "--member", "city-services"]), "sign 1");
    assert!(one.contains("1 signature(s) from admins (city-services), of 5 admins"), "{one}");
    refused(&govern(&["sign", "chain3.json", "--member", "city-services"]), 2, "signed chain3.json already", "twice");
    ok(&govern(&["sign", "chain3.json", "--key", "justice.key"]), "sign 2");

    // Two of the three signatures admin_k asks for: the chain refuses it, and says why.
    refused(&govern(&["submit", "chain3.json"]), 1, "admin_quorum", "submit with 2 signatures");

    let three = ok(&govern(&["sign", "chain3.json", "--member", "public-security"]), "sign 3");
    assert!(three.contains("3 signature(s) from admins"), "{three}");
    let shown = ok(&govern(&["show", "chain3.json"]), "show");
    for want in ["chain directory: chain 3 served by replicas 4=", "city-services", "justice", "public-security"] {
        assert!(shown.contains(want), "show lacks {want}:\n{shown}");
    }
    let done = ok(&govern(&["submit", "chain3.json"]), "submit chain 3");
    assert!(done.contains("committed in block"), "{done}");
    let c3 = poll(|| d.rest.get_json::<Vec<ChainJson>>("/v1/chains").unwrap().into_iter().find(|c| c.id == 3));
    assert_eq!(c3.replicas.iter().map(|r| r.node).collect::<Vec<_>>(), [4, 5, 6]);

    // Hand chain 3 a quarter of the buckets. A second proposal made from the same map version
    // goes stale once the first takes effect.
    let made = ok(&govern(&["shard-map", "--chain", "3", "--buckets", "0..1024", "--out", "map.json"]), "shard-map");
    assert!(made.contains("version 1 → 2") && made.contains("move to chain 3"), "{made}");
    let args = ["shard-map", "--chain", "2", "--buckets", "0..8", "--type", "resident_id_card", "--out", "stale.json"];
    ok(&govern(&args), "a competing shard-map");

    // A body changed on its way is refused when the file is loaded.
    let text = read(dir.path(), "map.json");
    let mut file: serde_json::Value = serde_json::from_str(&text).unwrap();
    let body = file["body"].as_str().unwrap().to_string();
    let flipped = if body.ends_with('0') { "1" } else { "0" };
    file["body"] = format!("{}{flipped}", &body[..body.len() - 1]).into();
    std::fs::write(dir.path().join("tampered.json"), file.to_string()).unwrap();
    refused(&govern(&["sign", "tampered.json", "--member", "city-services"]), 2, "hashes to id", "tampered sign");
    refused(&govern(&["submit", "tampered.json"]), 2, "refusing the proposal", "tampered submit");

    for file in ["map.json", "stale.json"] {
        for admin in ["city-services", "economy-it", "district-dongcheng"] {
            ok(&govern(&["sign", file, "--member", admin]), "sign a shard map");
        }
    }
    let done = ok(&govern(&["submit", "map.json"]), "submit the shard map");
    assert!(done.contains("committed in block"), "{done}");
    refused(&govern(&["submit", "stale.json"]), 1, "stale_version", "a proposal for a superseded version");

    // The router follows the meta chain and serves version 2, chain 3 included.
    let map = poll(|| Some(d.rest.get_json::<ShardMapJson>("/v1/shard-map").unwrap()).filter(|m| m.version >= 2));
    assert_eq!(map.version, 2);
    assert!(
        map.rules.iter().any(|r| r.chain == 3 && r.licence_type.is_none() && (r.from, r.to) == (0, 1024)),
        "{map:?}"
    );
    d.cluster.stop_all();
}
