//! `elchain sim run`: a scenario with a fault runs end to end and its history checks out.

use std::path::{Path, PathBuf};

use elchain_tests::{elchain_in, stderr, stdout};

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../simulator/scenarios").join(name)
}

#[test]
fn a_leader_killed_under_load_loses_nothing_the_simulator_saw_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let file = scenario("leader-failover.toml");
    let out = elchain_in(dir.path(), &["sim", "run", file.to_str().unwrap(), "--out", "r.json"]);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("history: OK"), "{text}");

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("r.json")).unwrap()).unwrap();
    assert_eq!(report["scenario"], "leader-failover");
    assert_eq!(report["verdict"]["ok"], true, "{report:#}");
    assert_eq!(report["verdict"]["violations"].as_array().unwrap().len(), 0);
    assert!(report["committed"].as_u64().unwrap() > 0, "{report:#}");
    assert!(report["verdict"]["chains"][0]["acks"].as_u64().unwrap() > 0);
    let faults = report["faults"].as_array().unwrap();
    assert_eq!(faults.len(), 2, "{report:#}");
    assert_eq!(faults[0]["action"], "kill_leader");
    assert_eq!(faults[0]["applied"], true, "{report:#}");
    let killed = faults[0]["nodes"][0].as_u64().unwrap();
    assert_eq!(faults[1]["action"], "restart");
    assert_eq!(faults[1]["nodes"][0].as_u64(), Some(killed), "the killed leader is the one restarted");
}

#[test]
fn a_scenario_with_an_unknown_key_is_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(scenario("service-day.toml")).unwrap().replace("duration_s", "duration");
    std::fs::write(dir.path().join("typo.toml"), text).unwrap();
    let out = elchain_in(dir.path(), &["sim", "run", "typo.toml"]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(stderr(&out).contains("duration"), "{}", stderr(&out));
    assert!(!dir.path().join("sim-report.json").exists());
}

/// Run a shipped scenario to completion; its JSON report and its output.
fn run_scenario(name: &str) -> (serde_json::Value, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = scenario(name);
    let out = elchain_in(dir.path(), &["sim", "run", file.to_str().unwrap(), "--out", "r.json"]);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("history: OK"), "{text}");
    let report = serde_json::from_str(&std::fs::read_to_string(dir.path().join("r.json")).unwrap()).unwrap();
    (report, text)
}

#[test]
fn a_router_killed_under_load_through_the_routers_is_a_blip_not_a_loss() {
    let (report, _) = run_scenario("router-loss.toml");
    assert_eq!(report["verdict"]["ok"], true, "{report:#}");
    assert!(report["committed"].as_u64().unwrap() > 0, "{report:#}");
    let faults = report["faults"].as_array().unwrap();
    let actions: Vec<&str> = faults.iter().map(|f| f["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["kill_router", "restart_router"], "{report:#}");
    assert!(faults.iter().all(|f| f["applied"] == true), "{report:#}");
    // The meta chain (bootstrapped for the routers) and chain 1 are both checked.
    let chains: Vec<u64> =
        report["verdict"]["chains"].as_array().unwrap().iter().map(|c| c["chain"].as_u64().unwrap()).collect();
    assert_eq!(chains, [0, 1], "{report:#}");
    // Failover: what router 1 did not answer went to router 2, so nearly everything was answered.
    let (submitted, unanswered) = (report["submitted"].as_u64().unwrap(), report["unanswered"].as_u64().unwrap());
    assert!(unanswered * 20 <= submitted, "{unanswered} of {submitted} unanswered: {report:#}");
}

#[test]
fn a_chain_added_under_load_takes_load_and_checks_out() {
    let (report, _) = run_scenario("scale-out.toml");
    assert_eq!(report["verdict"]["ok"], true, "{report:#}");
    let faults = report["faults"].as_array().unwrap();
    assert_eq!(faults.len(), 1, "{report:#}");
    assert_eq!((faults[0]["action"].as_str(), faults[0]["applied"].as_bool()), (Some("add_chain"), Some(true)));
    assert_eq!(faults[0]["nodes"], serde_json::json!([4, 5, 6]), "{report:#}");
    let chain = |id: u64| {
        report["verdict"]["chains"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["chain"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("chain {id} not checked: {report:#}"))
    };
    assert!(chain(1)["acks"].as_u64().unwrap() > 0, "{report:#}");
    let added = chain(2);
    assert!(added["acks"].as_u64().unwrap() > 0, "the added chain has acknowledged load: {report:#}");
    assert_eq!(added["replicas"], serde_json::json!([4, 5, 6]));
    assert!(chain(0)["acks"].as_u64().unwrap() >= 2, "bootstrap and scale-out governance: {report:#}");
}
