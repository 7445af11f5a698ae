//! The `elchain` binary end to end: run a local chain, audit it, tamper with it on disk.

use elchain_shard::Store;
use elchain_tests::{elchain, elchain_in, stderr, stdout};
use elchain_types::codec::Encode;

fn run_dev(dir: &std::path::Path, blocks: &str) {
    let out = elchain(&[
        "dev",
        "--in-process",
        "--data-dir",
        dir.to_str().unwrap(),
        "--blocks",
        blocks,
        "--block-size",
        "40",
        "--population",
        "200",
    ]);
    assert!(out.status.success(), "dev failed: {}{}", stdout(&out), stderr(&out));
}

#[test]
fn verify_passes_on_an_untouched_store_and_names_a_tampered_block() {
    let dir = tempfile::tempdir().unwrap();
    run_dev(dir.path(), "6");
    let data = dir.path().to_str().unwrap();

    let ok = elchain(&["verify", "--quiet", data]);
    assert_eq!(ok.status.code(), Some(0), "{}{}", stdout(&ok), stderr(&ok));
    assert!(stdout(&ok).contains("OK: 6 blocks, 240 transactions"), "{}", stdout(&ok));

    // Find block 4's bytes in the file and flip one byte in the middle of them.
    let path = dir.path().join("chain-1.redb");
    let block = Store::open(&path).unwrap().block(4).unwrap().unwrap().to_bytes();
    let mut file = std::fs::read(&path).unwrap();
    let needle = &block[block.len() / 2..block.len() / 2 + 48];
    let hits: Vec<usize> =
        file.windows(needle.len()).enumerate().filter(|(_, w)| w == &needle).map(|(i, _)| i).collect();
    assert!(!hits.is_empty(), "block 4 is stored contiguously");
    for at in hits {
        file[at + 20] ^= 0x01;
    }
    std::fs::write(&path, &file).unwrap();

    let bad = elchain(&["verify", "--quiet", data]);
    assert_eq!(bad.status.code(), Some(1), "{}{}", stdout(&bad), stderr(&bad));
    assert!(stdout(&bad).contains("TAMPERED: first bad block 4"), "{}", stdout(&bad));
}

#[test]
fn dev_runs_a_whole_deployment_that_resumes_and_verifies() {
    // As a newcomer runs it: a relative data directory under the current directory.
    let dir = tempfile::tempdir().unwrap();
    let data_s = "elchain-data";
    for round in 0..2 {
        let args = ["dev", "--data-dir", data_s, "--txs", "300", "--batch", "100", "--exit", "--http", "127.0.0.1:0"];
        let out = elchain_in(dir.path(), &[&args[..], &["--quic-port", "0"]].concat());
        let text = stdout(&out);
        assert!(out.status.success(), "round {round}: {text}{}", stderr(&out));
        assert!(text.contains("committed 300 transactions"), "{text}");
        assert!(text.contains(if round == 0 { "started 3 node(s)" } else { "resumed 3 node(s)" }), "{text}");
        assert!(text.contains("meta chain 0 and licence chain(s) [1, 2]"), "{text}");
        assert_eq!(text.contains("set shard map version 1"), round == 0, "bootstrapped once: {text}");
        assert!(text.contains("router: http://127.0.0.1:"), "{text}");
    }
    let ok = elchain_in(dir.path(), &["verify", "--quiet", "--replay", data_s]);
    assert_eq!(ok.status.code(), Some(0), "{}", stdout(&ok));
    let text = stdout(&ok);
    assert_eq!(text.matches("OK:").count(), 9, "three chain stores per node: {text}");

    // A node that cannot start stops `dev` with that node's own words, not a wait for a leader
    // that runs out.
    std::fs::write(dir.path().join(data_s).join("node-2/chain-1/chain.redb"), b"not a chain store").unwrap();
    let args = ["dev", "--data-dir", data_s, "--exit", "--http", "127.0.0.1:0", "--quic-port", "0"];
    let out = elchain_in(dir.path(), &args);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("node 2 exited while the cluster was starting"), "{text}");
    assert!(text.contains("chain.redb"), "the node's log names the file: {text}");
    assert!(!text.contains("no answer within"), "{text}");
}

#[test]
fn dev_continues_an_existing_chain_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    run_dev(dir.path(), "3");
    run_dev(dir.path(), "2");
    let height = Store::open(&dir.path().join("chain-1.redb")).unwrap().tip().unwrap().height;
    assert_eq!(height, 5);
    let ok = elchain(&["verify", "--quiet", dir.path().to_str().unwrap()]);
    assert_eq!(ok.status.code(), Some(0), "{}", stdout(&ok));
}

#[test]
fn verify_reports_a_missing_store_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let out = elchain(&["verify", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no chain store"), "{}", stderr(&out));
}

#[test]
fn keygen_writes_a_private_key_file_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("me.key");
    let out = elchain(&["keygen", "--out", key.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&key).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let public = json["public_key"].as_str().unwrap();
    assert_eq!(public.len(), 64);
    assert!(stdout(&out).contains(public));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let again = elchain(&["keygen", "--out", key.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(2));
    assert!(stderr(&again).contains("--force"));
}

#[test]
fn help_describes_every_command() {
    let out = elchain(&["--help"]);
    let text = stdout(&out);
    for cmd in ["dev", "node", "router", "client", "govern", "ca", "admin", "bench", "sim", "keygen", "verify"] {
        assert!(text.contains(cmd), "--help lacks {cmd}");
        let sub = elchain(&[cmd, "--help"]);
        assert!(sub.status.success());
        assert!(stdout(&sub).contains("Usage: elchain"), "{cmd} --help");
    }
}

#[test]
fn ca_commands_issue_and_revoke_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    let certs = dir.path().join("certs");
    let (ca_s, certs_s) = (ca.to_str().unwrap(), certs.to_str().unwrap());
    let ok = |args: &[&str]| {
        let out = elchain(args);
        assert!(out.status.success(), "{args:?}: {}{}", stdout(&out), stderr(&out));
        out
    };
    ok(&["ca", "init", "--ca", ca_s]);
    for f in ["ca.pem", "ca.key", "crl.pem"] {
        assert!(ca.join(f).is_file(), "{f}");
    }
    ok(&[
        "ca",
        "issue-node",
        "--ca",
        ca_s,
        "--node-id",
        "5",
        "--member",
        "public-security",
        "--role",
        "replica",
        "--out",
        certs_s,
    ]);
    let member = ok(&["ca", "issue-member", "--ca", ca_s, "--code", "justice", "--out", certs_s]);
    assert!(stdout(&member).to_lowercase().contains("public key"), "{}", stdout(&member));
    let again = elchain(&[
        "ca",
        "issue-node",
        "--ca",
        ca_s,
        "--node-id",
        "5",
        "--member",
        "x",
        "--role",
        "replica",
        "--out",
        certs_s,
    ]);
    assert!(!again.status.success(), "overwriting a node certificate needs --force");
    let crl_before = std::fs::read(ca.join("crl.pem")).unwrap();
    ok(&["ca", "revoke", "--ca", ca_s, "--cert", certs.join("node-5.pem").to_str().unwrap()]);
    assert_ne!(std::fs::read(ca.join("crl.pem")).unwrap(), crl_before, "the CRL was re-signed");
}

#[test]
fn the_readme_curl_examples_work_against_elchain_dev() {
    use std::process::{Command, Stdio};
    let readme = include_str!("../../README.md");
    let block = readme.split("### Talking to it").nth(1).expect("the README's curl section");
    let block = block.split("```sh").nth(1).and_then(|b| b.split("```").next()).expect("a sh block");
    let lines: Vec<&str> = block.lines().map(str::trim).filter(|l| l.starts_with("curl ")).collect();
    assert!(lines.len() >= 8, "{lines:?}");

    let dir = tempfile::tempdir().unwrap();
    let http = elchain_tests::deployment::free_http();
    let err_path = dir.path().join("dev.err");
    let mut dev = Command::new(elchain_tests::elchain_bin())
        .args(["dev", "--data-dir", "d", "--quic-port", "0", "--http", &http.to_string()])
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let rest = elchain_router::rest::RestClient::new(&format!("http://{http}"), std::time::Duration::from_secs(10));
    let healthy = elchain_router::rest::wait_healthy(&rest, std::time::Duration::from_secs(120));
    if let Err(e) = healthy {
        let _ = dev.kill();
        panic!("elchain dev never served: {e}");
    }
    for line in lines {
        let line = line.replace("127.0.0.1:8080", &http.to_string());
        let out = Command::new("sh").args(["-c", &line]).output().unwrap();
        assert!(out.status.success() && !out.stdout.is_empty(), "{line}: {}", stderr(&out));
        let status =
            Command::new("sh").args(["-c", &format!("{line} -o /dev/null -w '%{{http_code}}'")]).output().unwrap();
        let expected = if line.contains("-X POST") { "400" } else { "200" };
        assert_eq!(String::from_utf8_lossy(&status.stdout), expected, "{line}");
    }
    // A node killed while serving is reported at once, with the end of its log.
    let node = elchain_sim::cpu::children(dev.id()).into_iter().next().map(|p| p.to_string());
    let node = node.unwrap_or_else(|| {
        let _ = dev.kill();
        panic!("elchain dev has no node processes")
    });
    Command::new("kill").args(["-KILL", &node]).status().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let reported = loop {
        let err = std::fs::read_to_string(&err_path).unwrap_or_default();
        if err.contains("exited while serving") || std::time::Instant::now() > deadline {
            break err;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(reported.contains("exited while serving") && reported.contains("the end of"), "{reported}");
    // Ctrl-C (SIGTERM here) stops the router and the other nodes cleanly.
    Command::new("kill").args(["-TERM", &dev.id().to_string()]).status().unwrap();
    let status = dev.wait().unwrap();
    assert!(status.success(), "elchain dev did not stop cleanly: {status}");
}

#[test]
fn bench_measures_only_the_window_after_its_warm_up() {
    // One submitter of 500 tx/s in batches of 50: a batch every 100 ms, 10 in the one-second
    // warm-up, 20 in the two-second window. Only the window's 1,000 transactions are counted.
    let out = elchain(&[
        "bench",
        "--replicas",
        "1",
        "--clients",
        "1",
        "--batch",
        "50",
        "--rate",
        "500",
        "--warmup",
        "1",
        "--duration",
        "2",
        "--json",
    ]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    let report: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(report["warmup_s"], 1, "{report}");
    let committed = report["committed"].as_u64().unwrap();
    assert!((950..=1050).contains(&committed), "the window's batches only: {report}");
    assert!(text.contains("after 1 s of the same load not measured"), "{text}");
}
