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
