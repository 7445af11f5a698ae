//! `elchain client` end to end against a real deployment: nodes, meta chain and router as
//! processes, every transaction built and signed by the command-line client.

use std::path::Path;
use std::process::Output;

use elchain_tests::deployment;
use elchain_tests::{elchain_in, stderr, stdout};

/// The value after `key` on the first output line that starts with it.
fn value(out: &Output, key: &str) -> String {
    let text = stdout(out);
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no `{key}` line in:\n{text}{}", stderr(out)))
}

fn ok(out: &Output, what: &str) {
    assert_eq!(out.status.code(), Some(0), "{what}:\n{}{}", stdout(out), stderr(out));
}

const FIELDS: &[(&str, &str)] = &[
    ("full_name", "Li Hua"),
    ("sex", "F"),
    ("ethnicity", "Han"),
    ("date_of_birth", "1990-03-07"),
    ("address", "1 Chang'an Avenue, Dongcheng, Beijing"),
    ("id_number", "110101199003070021"),
    ("issuing_authority", "Beijing Public Security Bureau, Dongcheng Branch"),
    ("valid_from", "2020-01-01"),
    ("photo_digest", "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"),
];

#[test]
fn a_licence_is_issued_granted_used_traced_and_its_use_receipt_verifies_offline() {
    let mut d = deployment::start(3, 2);
    let dir = tempfile::tempdir().unwrap();
    let router = d.rest.base().to_string();
    let client = |args: &[&str]| {
        let mut all = vec!["client", "--router", router.as_str()];
        all.extend_from_slice(args);
        elchain_in(dir.path(), &all)
    };

    ok(&elchain_in(dir.path(), &["keygen", "--out", "holder.key"]), "keygen");

    // A required field left out is refused before anything is sent.
    let field_args: Vec<String> = FIELDS.iter().map(|(n, v)| format!("{n}={v}")).collect();
    let mut issue: Vec<&str> =
        vec!["issue", "--type", "resident_id_card", "--holder-key", "holder.key", "--member", "public-security"];
    for f in &field_args[1..] {
        issue.extend(["--field", f.as_str()]);
    }
    let missing = client(&issue);
    assert_eq!(missing.status.code(), Some(2), "{}{}", stdout(&missing), stderr(&missing));
    assert!(stderr(&missing).contains("full_name"), "{}", stderr(&missing));

    issue.extend(["--field", field_args[0].as_str()]);
    let issued = client(&issue);
    ok(&issued, "issue");
    let licence = value(&issued, "licence:");
    let chain = value(&issued, "chain:");
    assert_eq!(licence.len(), 64, "{}", stdout(&issued));

    // An enterprise licence, issued to public keys alone, with the endorsement its type needs
    // (a district's, chosen by the client since the issuer signs with a development key).
    let company = elchain_in(dir.path(), &["keygen", "--out", "company.key"]);
    ok(&company, "keygen");
    let holder_pub = format!("{}:{}", value(&company, "public key:"), value(&company, "encryption public key:"));
    let mut business = vec!["issue", "--type", "business_licence", "--holder-pub", &holder_pub];
    business.extend(["--member", "market-regulation", "--field", "unified_social_credit_code=91110000600037341L"]);
    for f in [
        "enterprise_name=Beijing Example Technology Co., Ltd.",
        "enterprise_type=limited liability company",
        "legal_representative=Li Hua",
        "date_of_establishment=2015-06-01",
        "business_term_from=2015-06-01",
        "business_scope=software development",
        "domicile=8 Zhongguancun Street, Haidian",
        "registration_authority=Haidian Market Regulation Bureau",
        "registration_date=2015-06-01",
    ] {
        business.extend(["--field", f]);
    }
    let enterprise = client(&business);
    ok(&enterprise, "issue business_licence");
    assert!(stdout(&enterprise).contains("endorsed by district-"), "{}", stdout(&enterprise));

    let licences = client(&["licences", "--holder-key", "holder.key"]);
    ok(&licences, "licences");
    assert!(stdout(&licences).contains(&licence) && stdout(&licences).contains("active"), "{}", stdout(&licences));

    // Item E001 (establish a company) may ask for a resident ID card's name and number.
    let granted = client(&[
        "grant",
        "--licence",
        &licence,
        "--holder-key",
        "holder.key",
        "--grantee",
        "market-regulation",
        "--item",
        "E001",
        "--fields",
        "full_name,id_number",
    ]);
    ok(&granted, "grant");
    let grant = value(&granted, "grant:");
    assert_eq!(value(&granted, "chain:"), chain);

    let used = client(&["use", "--grant", &grant, "--chain", &chain, "--member", "market-regulation"]);
    ok(&used, "use");
    let text = stdout(&used);
    assert!(text.contains("full_name = Li Hua"), "{text}");
    assert!(text.contains("id_number = 110101199003070021"), "{text}");
    assert!(!text.contains("date_of_birth"), "only granted fields are read: {text}");
    assert!(text.contains("use recorded in block"), "{text}");
    let use_tx = text
        .lines()
        .find_map(|l| l.split("(tx ").nth(1))
        .map(|t| t.split(')').next().unwrap().to_string())
        .unwrap_or_else(|| panic!("no use tx in {text}"));

    let traces = client(&["traces", "--holder-key", "holder.key"]);
    ok(&traces, "traces");
    let t = stdout(&traces);
    assert!(t.contains("1 recorded use(s)"), "{t}");
    let row = t.lines().find(|l| l.contains(&use_tx)).unwrap_or_else(|| panic!("no trace of {use_tx}: {t}"));
    assert!(row.contains("market-regulation") && row.contains("E001") && row.contains("full_name,id_number"), "{row}");

    // The use's receipt, checked offline: against the replicas' certificates and the CA, and
    // with the keys the checkpoint carries.
    ok(&client(&["receipt", "--tx", &use_tx, "--out", "receipt.json"]), "receipt");
    let cluster_dir = d.cluster.dir.path();
    let certs = cluster_dir.join("certs");
    let ca = cluster_dir.join("ca");
    let verify = |file: &str, extra: &[&str]| {
        let mut args = vec!["client", "verify-receipt", file];
        args.extend_from_slice(extra);
        elchain_in(dir.path(), &args)
    };
    let valid = verify("receipt.json", &["--node-certs", certs.to_str().unwrap(), "--ca", ca.to_str().unwrap()]);
    ok(&valid, "verify-receipt");
    assert!(stdout(&valid).starts_with(&format!("VALID: tx {use_tx} is in block")), "{}", stdout(&valid));
    assert!(stdout(&valid).contains("with outcome valid"), "{}", stdout(&valid));
    ok(&verify("receipt.json", &["--quorum", "2"]), "verify-receipt without certificates");

    tamper(&dir.path().join("receipt.json"), &dir.path().join("tampered.json"));
    let invalid = verify("tampered.json", &[]);
    assert_eq!(invalid.status.code(), Some(1), "{}{}", stdout(&invalid), stderr(&invalid));
    assert!(stdout(&invalid).starts_with("INVALID: "), "{}", stdout(&invalid));

    // Revoked: the next use is recorded without effect and nothing is released.
    ok(&client(&["revoke-grant", "--grant", &grant, "--chain", &chain, "--holder-key", "holder.key"]), "revoke-grant");
    let refused = client(&["use", "--grant", &grant, "--chain", &chain, "--member", "market-regulation"]);
    assert_eq!(refused.status.code(), Some(1), "{}{}", stdout(&refused), stderr(&refused));
    assert!(stderr(&refused).contains("error: grant_revoked"), "{}", stderr(&refused));
    assert!(!stdout(&refused).contains("Li Hua"));

    d.cluster.stop_all();
}

/// Copy a receipt with one hex digit of its block header changed (in the transaction root).
fn tamper(from: &Path, to: &Path) {
    let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(from).unwrap()).unwrap();
    let header = json["header"].as_str().unwrap().to_string();
    // Version, chain, height, prev, time, tx count: the transaction root starts at byte 57.
    let at = 2 * 60;
    let flipped = if &header[at..at + 1] == "0" { "1" } else { "0" };
    json["header"] = serde_json::Value::String(format!("{}{flipped}{}", &header[..at], &header[at + 1..]));
    std::fs::write(to, serde_json::to_string_pretty(&json).unwrap()).unwrap();
}
