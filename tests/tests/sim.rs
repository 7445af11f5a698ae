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
fn a_planted_ack_before_commit_bug_fails_the_checker() {
    // The same failover scenario that passes above, on nodes that answer when a block is
    // proposed: the receipts promise positions the chain never gives those transactions.
    let dir = tempfile::tempdir().unwrap();
    let file = scenario("leader-failover.toml");
    let args = ["sim", "run", file.to_str().unwrap(), "--out", "r.json", "--plant-bug", "ack-before-commit"];
    let out = elchain_in(dir.path(), &args);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("VIOLATION"), "{text}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("r.json")).unwrap()).unwrap();
    assert_eq!(report["verdict"]["ok"], false);
    let kinds: Vec<&str> =
        report["verdict"]["violations"].as_array().unwrap().iter().map(|v| v["kind"].as_str().unwrap()).collect();
    assert!(kinds.iter().any(|k| *k == "lost" || *k == "outcome_differs"), "{kinds:?}");
}

#[test]
fn a_deterministic_run_replays_to_the_same_digest_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = scenario("minority-partition.toml");
    let digest = |seed: &str, out: &str| {
        let args = ["sim", "run", file.to_str().unwrap(), "--deterministic", "--seed", seed, "--out", out];
        let o = elchain_in(dir.path(), &args);
        let text = format!("{}{}", stdout(&o), stderr(&o));
        assert_eq!(o.status.code(), Some(0), "{text}");
        assert!(text.contains("history: OK"), "{text}");
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join(out)).unwrap()).unwrap();
        assert_eq!(r["mode"], "deterministic");
        assert_eq!(r["faults"].as_array().unwrap().len(), 2, "{r:#}");
        (r["digest"].as_str().unwrap().to_string(), r["committed"].as_u64().unwrap())
    };
    let (a, committed) = digest("5", "a.json");
    assert!(committed > 0);
    assert_eq!(digest("5", "b.json"), (a.clone(), committed), "same seed, same run");
    assert_ne!(digest("6", "c.json").0, a, "another seed, another run");
    // A fault that needs processes is refused before anything starts.
    let text = std::fs::read_to_string(scenario("router-loss.toml")).unwrap();
    std::fs::write(dir.path().join("routers.toml"), text).unwrap();
    let o = elchain_in(dir.path(), &["sim", "run", "routers.toml", "--deterministic"]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(stderr(&o).contains("needs real processes"), "{}", stderr(&o));
}

#[test]
fn a_replica_restarted_behind_a_purged_log_catches_up_by_an_exported_snapshot_deterministically() {
    let dir = tempfile::tempdir().unwrap();
    let file = scenario("restart-catch-up-by-snapshot.toml");
    let args = ["sim", "run", file.to_str().unwrap(), "--deterministic", "--seed", "1", "--out", "r.json"];
    let o = std::process::Command::new(elchain_tests::elchain_bin())
        .args(args)
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .env("ELCHAIN_LOG", "info,openraft=error")
        .output()
        .unwrap();
    let text = format!("{}{}", stdout(&o), stderr(&o));
    assert_eq!(o.status.code(), Some(0), "{text}");
    assert!(text.contains("history: OK"), "{text}");
    // The leader exported its store into a file and the restarted replica installed it.
    assert!(text.contains("exported the chain store for a snapshot"), "{text}");
    assert!(text.contains("installed snapshot"), "{text}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("r.json")).unwrap()).unwrap();
    assert_eq!(r["verdict"]["ok"], true, "{r:#}");
    assert_eq!(r["faults"][1]["action"], "restart", "{r:#}");
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
    assert_eq!(report["chains"], 2, "the report counts the licence chains at the end: {report:#}");
    assert!(chain(0)["acks"].as_u64().unwrap() >= 2, "bootstrap and scale-out governance: {report:#}");
}

/// `elchain dev` serving in the background; killed if the test fails before stopping it.
struct Dev(std::process::Child);

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_deployed_cluster_is_driven_and_checked_through_its_router() {
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let http = elchain_tests::deployment::free_http();
    let child = Command::new(elchain_tests::elchain_bin())
        .args(["dev", "--data-dir", "d", "--quic-port", "0", "--http", &http.to_string()])
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut dev = Dev(child);
    let rest = elchain_router::rest::RestClient::new(&format!("http://{http}"), std::time::Duration::from_secs(10));
    elchain_router::rest::wait_healthy(&rest, std::time::Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("elchain dev never served: {e}"));

    // The service-centre day, short: `elchain dev` serves licence chains 1 and 2.
    let text = std::fs::read_to_string(scenario("service-day.toml"))
        .unwrap()
        .replace("rate = 1000", "rate = 200")
        .replace("duration_s = 20", "duration_s = 4");
    std::fs::write(dir.path().join("day.toml"), text).unwrap();
    let url = format!("http://{http}");
    let out = elchain_in(dir.path(), &["sim", "run", "day.toml", "--router", &url, "--out", "r.json"]);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("history: OK"), "{text}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("r.json")).unwrap()).unwrap();
    assert_eq!(report["mode"], "remote", "{report:#}");
    assert_eq!(report["verdict"]["ok"], true, "{report:#}");
    let chains = report["verdict"]["chains"].as_array().unwrap();
    let ids: Vec<u64> = chains.iter().map(|c| c["chain"].as_u64().unwrap()).collect();
    assert_eq!(ids, [1, 2], "{report:#}");
    let checked: u64 = chains.iter().map(|c| c["acks"].as_u64().unwrap()).sum();
    assert!(checked > 0, "{report:#}");
    assert_eq!(checked, report["committed"].as_u64().unwrap(), "under the check limit, every receipt: {report:#}");
    assert!(report["valid"].as_u64().unwrap() * 10 >= checked * 8, "the deployment accepts the load: {report:#}");

    // The simulator cannot break a cluster it does not control.
    let faults = dir.path().join("failover.toml");
    std::fs::copy(scenario("leader-failover.toml"), &faults).unwrap();
    let o = elchain_in(dir.path(), &["sim", "run", "failover.toml", "--router", &url]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(stderr(&o).contains("faults need a cluster the simulator controls"), "{}", stderr(&o));

    // Ctrl-C (SIGTERM here) stops the deployment cleanly.
    Command::new("kill").args(["-TERM", &dev.0.id().to_string()]).status().unwrap();
    let status = dev.0.wait().unwrap();
    assert!(status.success(), "elchain dev did not stop cleanly: {status}");
}
