//! Tests of scenario parsing and validation.

use super::*;

const GOOD: &str = r#"
    [cluster]
    replicas = 3
    [load]
    rate = 500
    duration_s = 15
    mix = { issue = 10, use = 90 }
    [[faults]]
    at_s = 10
    action = "restart"
    [[faults]]
    at_s = 5
    action = "kill_leader"
    chain = 1
"#;

#[test]
fn a_scenario_parses_with_defaults_and_faults_in_time_order() {
    let s = Scenario::parse(GOOD, "failover").unwrap();
    assert_eq!(s.name, "failover");
    assert_eq!(s.cluster.chains, 1);
    assert_eq!(s.load.rate, Rate::PerSecond(500.0));
    let mix =
        Mix { issue: 10, grant: 0, use_: 90, revoke_grant: 0, status: 0, renew: 0, revoke: 0, short_grants: 0.05 };
    assert_eq!(Mix::from(s.load.mix.unwrap()), mix);
    assert_eq!(s.faults.iter().map(|f| f.action).collect::<Vec<_>>(), [Action::KillLeader, Action::Restart]);
    let max = Scenario::parse(&GOOD.replace("rate = 500", "rate = \"max\""), "x").unwrap();
    assert_eq!(max.load.rate, Rate::Max);
}

#[test]
fn unknown_keys_and_bad_values_are_refused_with_the_field_named() {
    let typo = Scenario::parse(&GOOD.replace("duration_s", "duraton_s"), "x").unwrap_err();
    assert!(typo.to_string().contains("duraton_s"), "{typo}");
    let rate = Scenario::parse(&GOOD.replace("rate = 500", "rate = \"fast\""), "x").unwrap_err();
    assert!(rate.to_string().contains("fast"), "{rate}");
    let node = Scenario::parse(&format!("{GOOD}\n[[faults]]\nat_s = 1\naction = \"kill\"\nnode = 4\n"), "x");
    assert!(node.unwrap_err().to_string().contains("faults[0].node"));
    let late = Scenario::parse(&format!("{GOOD}\n[[faults]]\nat_s = 99\naction = \"heal\"\n"), "x");
    assert!(late.unwrap_err().to_string().contains("at_s"));
    let action = Scenario::parse(&format!("{GOOD}\n[[faults]]\nat_s = 1\naction = \"explode\"\n"), "x");
    assert!(action.unwrap_err().to_string().contains("explode"));
}

#[test]
fn a_warm_up_is_part_of_the_load_and_shorter_than_it() {
    assert_eq!(Scenario::parse(GOOD, "x").unwrap().load.warmup_s, 0.0, "no warm-up unless asked");
    let warm = Scenario::parse(&GOOD.replace("duration_s = 15", "duration_s = 15\nwarmup_s = 5"), "x").unwrap();
    assert_eq!((warm.load.duration_s, warm.load.warmup_s), (15.0, 5.0));
    let again = Scenario::parse(&toml::to_string(&warm).unwrap(), "y").unwrap();
    assert_eq!(again.load.warmup_s, 5.0, "written back with the scenario");
    for bad in ["15", "20", "-1"] {
        let e = Scenario::parse(&GOOD.replace("duration_s = 15", &format!("duration_s = 15\nwarmup_s = {bad}")), "x")
            .unwrap_err();
        assert!(e.to_string().contains("load.warmup_s"), "{e}");
    }
}

/// `GOOD` without its faults, with a `[cluster]` line added and `faults` appended.
fn with(cluster: &str, faults: &str) -> Result<Scenario, ScenarioError> {
    let base = &GOOD[..GOOD.find("[[faults]]").unwrap()];
    let text = base.replace("replicas = 3", &format!("replicas = 3\n{cluster}"));
    Scenario::parse(&format!("{text}\n{faults}"), "x")
}

fn refused(cluster: &str, faults: &str) -> String {
    match with(cluster, faults) {
        Ok(s) => panic!("accepted: {s:?}"),
        Err(e) => e.to_string(),
    }
}

fn fault(at_s: f64, action: &str, keys: &str) -> String {
    format!("[[faults]]\nat_s = {at_s}\naction = \"{action}\"\n{keys}\n")
}

#[test]
fn the_new_faults_parse_with_their_keys() {
    let faults = [
        fault(1.0, "slow_net", "node = 2\ndelay_ms = 40"),
        fault(2.0, "fast_net", ""),
        fault(3.0, "slow_disk", "node = 3\ndelay_ms = 20"),
        fault(4.0, "fast_disk", "node = 3"),
        fault(5.0, "kill_router", "router = 2"),
        fault(6.0, "restart_router", ""),
    ]
    .concat();
    let s = with("routers = 2", &faults).unwrap();
    assert_eq!(s.cluster.routers, 2);
    let actions: Vec<Action> = s.faults.iter().map(|f| f.action).collect();
    use Action::*;
    assert_eq!(actions, [SlowNet, FastNet, SlowDisk, FastDisk, KillRouter, RestartRouter]);
    assert_eq!((s.faults[0].node, s.faults[0].delay_ms), (Some(2), Some(40)));
    assert_eq!(s.faults[1].node, None, "fast_net without a node: every delay");
    assert_eq!((s.faults[2].node, s.faults[2].delay_ms), (Some(3), Some(20)));
    assert_eq!(s.faults[4].router, Some(2));
    assert_eq!(s.faults[5].router, None, "restart_router without a router: every killed one");
    assert!(s.needs_meta(), "routers follow the meta chain");
    assert!(!with("", "").unwrap().needs_meta());
    assert_eq!(with("", "").unwrap().cluster.routers, 0, "no routers unless asked");
}

#[test]
fn add_chain_numbers_new_nodes_and_chains_after_the_initial_ones() {
    let faults =
        [fault(3.0, "add_chain", "chain = 2"), fault(6.0, "kill_leader", "chain = 2"), fault(7.0, "kill", "node = 6")]
            .concat();
    let s = with("", &faults).unwrap();
    assert_eq!(s.added_chains(), vec![2]);
    assert_eq!(s.max_node(), 6, "three new replicas for the added chain");
    assert!(s.needs_meta(), "the new chain is registered on the meta chain");

    let before = refused("", &[fault(2.0, "kill_leader", "chain = 2"), fault(3.0, "add_chain", "chain = 2")].concat());
    assert!(before.contains("faults[0].chain") && before.contains("added only later"), "{before}");
    let existing = refused("", &fault(3.0, "add_chain", "chain = 1"));
    assert!(existing.contains("faults[0].chain") && existing.contains("2 ..= 64"), "{existing}");
    let twice = refused("", &[fault(3.0, "add_chain", "chain = 2"), fault(4.0, "add_chain", "chain = 2")].concat());
    assert!(twice.contains("faults[1].chain") && twice.contains("earlier"), "{twice}");
    let no_chain = refused("", &fault(3.0, "add_chain", ""));
    assert!(no_chain.contains("faults[0].chain") && no_chain.contains("required by `add_chain`"), "{no_chain}");
    let routed = refused("routers = 1", &fault(3.0, "add_chain", "chain = 2"));
    assert!(routed.contains("faults[0].action") && routed.contains("routers"), "{routed}");
    let node = refused("", &fault(3.0, "kill", "node = 4"));
    assert!(node.contains("faults[0].node") && node.contains("1 ..= 3"), "{node}");
}

#[test]
fn replicas_are_added_and_removed_on_chains_that_exist_then() {
    let faults = [
        fault(2.0, "add_chain", "chain = 2"),
        fault(3.0, "add_replica", "chain = 2"),
        fault(4.0, "remove_replica", "node = 1\nchain = 1"),
        fault(5.0, "kill", "node = 7"),
    ]
    .concat();
    let s = with("", &faults).unwrap();
    assert_eq!(s.max_node(), 7, "3 initial, 3 for chain 2, 1 added replica");
    assert_eq!(s.faults[1].action, Action::AddReplica);
    assert_eq!((s.faults[2].node, s.faults[2].chain), (Some(1), Some(1)));
    let cases = [
        (fault(1.0, "add_replica", ""), "faults[0].chain", "required by `add_replica`"),
        (fault(1.0, "add_replica", "chain = 1\nnode = 4"), "faults[0].node", "not taken by `add_replica`"),
        (fault(1.0, "remove_replica", "chain = 1"), "faults[0].node", "required by `remove_replica`"),
        (fault(1.0, "remove_replica", "node = 1"), "faults[0].chain", "required by `remove_replica`"),
        (fault(1.0, "add_replica", "chain = 2"), "faults[0].chain", "the chains are 1 ..= 1"),
        (fault(1.0, "kill", "node = 5"), "faults[0].node", "1 ..= 3"),
    ];
    for (faults, field, problem) in cases {
        let e = refused("", &faults);
        assert!(e.contains(&format!("`{field}`")) && e.contains(problem), "{faults}: {e}");
    }
    let added = with("", &fault(1.0, "add_replica", "chain = 1")).unwrap();
    assert_eq!(added.max_node(), 4);
    assert!(!added.needs_meta(), "a replica needs no governance");
}

#[test]
fn new_fault_keys_are_checked_with_the_field_named() {
    let cases = [
        ("", fault(1.0, "slow_net", "node = 2"), "faults[0].delay_ms", "required by `slow_net`"),
        ("", fault(1.0, "slow_disk", "delay_ms = 5"), "faults[0].node", "required by `slow_disk`"),
        ("", fault(1.0, "slow_net", "node = 2\ndelay_ms = 0"), "faults[0].delay_ms", "between 1 and 10000"),
        ("", fault(1.0, "slow_disk", "node = 2\ndelay_ms = 60000"), "faults[0].delay_ms", "between 1"),
        ("", fault(1.0, "kill", "node = 2\ndelay_ms = 5"), "faults[0].delay_ms", "not taken by `kill`"),
        ("", fault(1.0, "fast_net", "delay_ms = 5"), "faults[0].delay_ms", "only by slow_net, slow_disk"),
        ("", fault(1.0, "kill_leader", "node = 1"), "faults[0].node", "not taken by `kill_leader`"),
        ("", fault(1.0, "kill", "node = 1\nchain = 1"), "faults[0].chain", "not taken by `kill`"),
        ("", fault(1.0, "kill_router", "router = 1"), "faults[0].router", "`cluster.routers` is 0"),
        ("", fault(1.0, "restart_router", ""), "faults[0].action", "needs `cluster.routers`"),
        ("routers = 2", fault(1.0, "kill_router", ""), "faults[0].router", "required by `kill_router`"),
        ("routers = 2", fault(1.0, "kill_router", "router = 3"), "faults[0].router", "1 ..= 2"),
        ("routers = 2", fault(1.0, "kill", "node = 1\nrouter = 1"), "faults[0].router", "not taken by `kill`"),
        ("routers = 17", String::new(), "cluster.routers", "between 0 and 16"),
        ("", fault(1.0, "slow_net", "node = 9\ndelay_ms = 5"), "faults[0].node", "1 ..= 3"),
    ];
    for (cluster, faults, field, problem) in cases {
        let e = refused(cluster, &faults);
        assert!(e.contains(&format!("`{field}`")) && e.contains(problem), "{cluster} {faults}: {e}");
    }
}

#[test]
fn a_ramp_replaces_the_rate_and_is_checked() {
    let ramp = |points: &str| GOOD.replace("rate = 500", &format!("ramp = [{points}]"));
    let s = Scenario::parse(&ramp("{ at_s = 0, rate = 200 }, { at_s = 10, rate = 1500 }"), "x").unwrap();
    assert_eq!(s.load.rate, Rate::PerSecond(1500.0), "the rate reads as the ramp's peak");
    assert_eq!(s.load.rate_points(), Some(vec![(0.0, 200.0), (10.0, 1500.0)]));
    assert_eq!(Scenario::parse(GOOD, "x").unwrap().load.rate_points(), Some(vec![(0.0, 500.0)]));

    let both = GOOD.replace("rate = 500", "rate = 500\nramp = [{ at_s = 0, rate = 1 }]");
    let e = Scenario::parse(&both, "x").unwrap_err().to_string();
    assert!(e.contains("`rate` or `ramp`, not both"), "{e}");
    let neither = Scenario::parse(&GOOD.replace("rate = 500", ""), "x").unwrap_err().to_string();
    assert!(neither.contains("needs `rate`"), "{neither}");
    let max = GOOD.replace("rate = 500", "rate = \"max\"\nramp = [{ at_s = 0, rate = 1 }]");
    assert!(Scenario::parse(&max, "x").unwrap_err().to_string().contains("not both"));
    let cases = [
        ("{ at_s = 1, rate = 200 }", "load.ramp[0].at_s", "starts at 0"),
        ("{ at_s = 0, rate = 200 }, { at_s = 0, rate = 300 }", "load.ramp[1].at_s", "increasing"),
        ("{ at_s = 0, rate = 200 }, { at_s = 99, rate = 300 }", "load.ramp[1].at_s", "load.duration_s"),
        ("{ at_s = 0, rate = 200 }, { at_s = 5, rate = -1 }", "load.ramp[1].rate", ">= 0"),
    ];
    for (points, field, problem) in cases {
        let e = Scenario::parse(&ramp(points), "x").unwrap_err().to_string();
        assert!(e.contains(&format!("`{field}`")) && e.contains(problem), "{points}: {e}");
    }
    let zero = Scenario::parse(&ramp("{ at_s = 0, rate = 0 }"), "x").unwrap_err().to_string();
    assert!(zero.contains("positive"), "{zero}");
    let typo = Scenario::parse(&ramp("{ at = 0, rate = 5 }"), "x").unwrap_err().to_string();
    assert!(typo.contains("at"), "{typo}");
}

#[test]
fn the_life_cycle_mix_keys_parse_and_are_checked() {
    let mix = |m: &str| GOOD.replace("mix = { issue = 10, use = 90 }", &format!("mix = {{ {m} }}"));
    let s = Scenario::parse(&mix("issue = 5, renew = 2, revoke = 1, short_grants = 0.2"), "x").unwrap();
    let expected =
        Mix { issue: 5, grant: 0, use_: 0, revoke_grant: 0, status: 0, renew: 2, revoke: 1, short_grants: 0.2 };
    assert_eq!(Mix::from(s.load.mix.unwrap()), expected);
    let again = Scenario::parse(&toml::to_string(&s).unwrap(), "y").unwrap();
    assert_eq!(Mix::from(again.load.mix.unwrap()), expected);
    let e = Scenario::parse(&mix("use = 1, short_grants = 1.5"), "x").unwrap_err().to_string();
    assert!(e.contains("`load.mix.short_grants`") && e.contains("between 0 and 1"), "{e}");
    let e = Scenario::parse(&mix("short_grants = 0.5"), "x").unwrap_err().to_string();
    assert!(e.contains("weight 0"), "{e}");
    let e = Scenario::parse(&mix("use = 1, renewals = 2"), "x").unwrap_err().to_string();
    assert!(e.contains("renewals"), "{e}");
}

#[test]
fn a_scenario_written_back_as_toml_reads_the_same() {
    let faults = [fault(1.0, "slow_net", "node = 2\ndelay_ms = 40"), fault(2.0, "kill_router", "router = 1")].concat();
    let ramped = GOOD
        .replace("replicas = 3", "replicas = 3\nrouters = 1")
        .replace("rate = 500", "ramp = [{ at_s = 0, rate = 200 }, { at_s = 10, rate = 1500 }]");
    for text in [format!("{GOOD}\n{}", fault(1.0, "add_chain", "chain = 2")), format!("{ramped}\n{faults}")] {
        let s = Scenario::parse(&text, "x").unwrap();
        let again = Scenario::parse(&toml::to_string(&s).unwrap(), "y").unwrap();
        assert_eq!(again.name, "x");
        assert_eq!(again.load.rate, s.load.rate);
        assert_eq!(again.load.ramp, s.load.ramp);
        assert_eq!(again.cluster.routers, s.cluster.routers);
        let keys = |s: &Scenario| -> Vec<_> {
            s.faults.iter().map(|f| (f.action, f.node, f.chain, f.router, f.delay_ms)).collect()
        };
        assert_eq!(keys(&again), keys(&s));
    }
}

#[test]
fn the_shipped_scenarios_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let s = Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(s.load.duration_s <= 30.0, "{}: keep shipped scenarios short", s.name);
            seen += 1;
        }
    }
    assert!(seen >= 3, "{seen} scenarios in {}", dir.display());
}
