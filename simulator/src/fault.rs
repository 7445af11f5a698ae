//! Break a running cluster on a scenario's schedule, and repair it afterwards.
//!
//! ```text
//!  prepare: [meta chain] bootstrap (chain directory, shard map 1) ─► [routers] start, healthy
//!  apply(fault) ─► kill | restart | kill_leader | partition | heal      (processes, relays)
//!                  slow_net | fast_net                                   (relay delay queues)
//!                  slow_disk | fast_disk                                 (config + restart)
//!                  kill_router | restart_router                          (router processes)
//!                  add_chain: new nodes ─► leader ─► register + buckets on the meta chain
//!                  add_replica: new node ─► AddReplica (learner, caught up, voter)
//!                  remove_replica: RemoveReplica ─► the node no longer counts for the chain
//!               ─► Damage (what is still broken)
//!  repair(Damage) ─► heal, remove delays, restart slow disks without the delay, restart killed
//! ```
//!
//! Governance receipts (bootstrap, scale-out) are kept as acknowledgements of the meta chain, so
//! the history checker holds the meta chain to them like any other chain.

use std::collections::BTreeSet;
use std::time::Duration;

use elchain_router::rest::{wait_healthy, RestClient};
use elchain_shard::node::client::Client;
use elchain_shard::node::rpc::{Answer, Query, Receipt, ReceiptStatus, Request, Response};
use elchain_types::codec::{Decode, Encode};
use elchain_types::contract::Consortium;
use elchain_types::shardmap::ShardMap;

use crate::checker::Ack;
use crate::cluster::{free_tcp, Cluster};
use crate::governance;
use crate::run::AppliedFault;
use crate::scenario::{Action, Fault, Scenario};

/// How long governance, a new chain's election and a router's start-up may take.
const DEADLINE: Duration = Duration::from_secs(30);

/// How long `kill_leader` looks for the leader.
const LEADER_DEADLINE: Duration = Duration::from_secs(10);

/// Router `n` of a scenario (1 ..= routers) runs with certificate id `ROUTER_BASE + n`: ids from
/// 900 up are clients and routers, 900 itself the load generator's.
pub const ROUTER_BASE: u64 = 900;

/// What the faults applied so far left broken, so that settling can undo it.
#[derive(Debug, Default)]
pub struct Damage {
    /// Nodes killed and not restarted.
    pub killed: BTreeSet<u64>,
    /// Nodes cut off and not healed.
    pub partitioned: BTreeSet<u64>,
    /// Nodes whose network is slowed.
    pub slow_net: BTreeSet<u64>,
    /// Nodes running (or to start) with an apply delay.
    pub slow_disk: BTreeSet<u64>,
    /// Routers (scenario numbers) killed and not restarted.
    pub killed_routers: BTreeSet<u32>,
}

/// The one node (or router) a fault names, or else every one `set` holds: what `restart`,
/// `heal` and the other undo actions act on.
pub fn named_or_all<T: Copy + Ord>(named: Option<T>, set: &BTreeSet<T>) -> Vec<T> {
    match named {
        Some(n) => vec![n],
        None => set.iter().copied().collect(),
    }
}

/// Make the cluster ready for the load: when the scenario needs the meta chain, register the
/// licence chains on it and set shard map version 1; when it has routers, start them and wait
/// until each serves. The governance receipts, as acknowledgements of chain 0.
pub async fn prepare(
    cluster: &mut Cluster,
    client: &Client,
    s: &Scenario,
    consortium: &Consortium,
) -> Result<Vec<Ack>, String> {
    if !s.needs_meta() {
        return Ok(Vec::new());
    }
    let meta: Vec<u64> = cluster.nodes.values().filter(|n| n.chains.contains(&0)).map(|n| n.id).collect();
    client.set_replicas(0, meta);
    client.wait_leader(0, DEADLINE).await.map_err(|e| format!("the meta chain elected no leader: {e}"))?;
    let infos: Vec<_> = cluster.chains().into_iter().map(|c| cluster.chain_info(c)).collect();
    let txs = governance::bootstrap(consortium, &infos)?;
    let acks = govern(client, txs).await.map_err(|e| format!("bootstrapping the meta chain: {e}"))?;
    for r in 1..=s.cluster.routers {
        let id = ROUTER_BASE + u64::from(r);
        let http = cluster.start_router(id, free_tcp());
        let rest = RestClient::new(&format!("http://{http}"), Duration::from_secs(5));
        let healthy = tokio::task::spawn_blocking(move || wait_healthy(&rest, DEADLINE)).await;
        match healthy {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("router {r} did not become healthy: {e}\n{}", cluster.router_log(id))),
            Err(e) => return Err(format!("router {r}: {e}")),
        }
    }
    Ok(acks)
}

/// Submit admin-signed governance transactions to the meta chain; their receipts as
/// acknowledgements, or why one did not take effect.
async fn govern(client: &Client, txs: Vec<elchain_types::tx::SignedTx>) -> Result<Vec<Ack>, String> {
    let receipts =
        client.submit(0, txs.iter().map(Encode::to_bytes).collect(), DEADLINE).await.map_err(|e| e.to_string())?;
    if let Some(bad) = receipts.iter().find(|r| !matches!(r.status, ReceiptStatus::Committed { outcome: 0, .. })) {
        return Err(format!("a governance transaction did not take effect: {:?}", bad.status));
    }
    Ok(receipts.into_iter().map(|receipt: Receipt| Ack { chain: 0, receipt }).collect())
}

/// Apply one fault, `at` seconds into the load; what was done, and the receipts of any
/// governance it took (`add_chain`).
pub async fn apply(
    cluster: &mut Cluster,
    client: &Client,
    consortium: &Consortium,
    damage: &mut Damage,
    f: &Fault,
    at: f64,
) -> (AppliedFault, Vec<Ack>) {
    let mut done = AppliedFault::begin(f, at);
    let mut acks = Vec::new();
    if let Some(n) = f.node.filter(|n| !cluster.nodes.contains_key(n)) {
        done.applied = false;
        done.note = format!("there is no node {n} (yet)");
        return (done, acks);
    }
    let delay = Duration::from_millis(f.delay_ms.unwrap_or(0));
    match f.action {
        Action::Kill => {
            let n = f.node.expect("validated: kill names a node");
            cluster.kill(n);
            damage.killed.insert(n);
            done.note = format!("killed node {n}");
        }
        Action::KillLeader => {
            let chain = f.chain.unwrap_or(1);
            done.chain = Some(chain);
            match client.wait_leader(chain, LEADER_DEADLINE).await {
                Ok(n) => {
                    cluster.kill(n);
                    damage.killed.insert(n);
                    done.nodes = vec![n];
                    done.note = format!("killed node {n}, the leader of chain {chain}");
                }
                Err(e) => {
                    done.applied = false;
                    done.note = format!("chain {chain} has no leader to kill: {e}");
                }
            }
        }
        Action::Restart => {
            let targets = named_or_all(f.node, &damage.killed);
            done.nodes.clear();
            for n in targets {
                if cluster.pid(n).is_none() {
                    cluster.spawn(n);
                    done.nodes.push(n);
                }
                damage.killed.remove(&n);
            }
            done.applied = !done.nodes.is_empty();
            done.note = if done.applied {
                format!("restarted node(s) {:?}", done.nodes)
            } else {
                "no killed node to restart".into()
            };
        }
        Action::Partition => {
            let n = f.node.expect("validated: partition names a node");
            cluster.partition(n, true);
            damage.partitioned.insert(n);
            done.note = format!("cut node {n} off");
        }
        Action::Heal => {
            let targets = named_or_all(f.node, &damage.partitioned);
            for n in &targets {
                cluster.partition(*n, false);
                damage.partitioned.remove(n);
            }
            done.nodes = targets;
            done.note = format!("healed node(s) {:?}", done.nodes);
        }
        Action::SlowNet => {
            let n = f.node.expect("validated: slow_net names a node");
            match cluster.set_net_delay(n, delay) {
                Ok(()) => {
                    damage.slow_net.insert(n);
                    done.note = format!("delayed node {n}'s datagrams by {delay:?} each way");
                }
                Err(e) => (done.applied, done.note) = (false, e),
            }
        }
        Action::FastNet => {
            let targets = named_or_all(f.node, &damage.slow_net);
            let failed: Vec<String> =
                targets.iter().filter_map(|n| cluster.set_net_delay(*n, Duration::ZERO).err()).collect();
            for n in &targets {
                damage.slow_net.remove(n);
            }
            done.applied = failed.is_empty();
            done.note = format!("removed the network delay of node(s) {targets:?}{}", problems(&failed));
            done.nodes = targets;
        }
        Action::SlowDisk => {
            let n = f.node.expect("validated: slow_disk names a node");
            let running = cluster.pid(n).is_some();
            let result = cluster.set_apply_delay(n, delay.as_millis() as u64);
            damage.slow_disk.insert(n);
            done.note = match (result, running) {
                (Ok(()), true) => format!("restarted node {n}, applying every block {delay:?} slower"),
                (Err(e), true) => {
                    format!("restarted node {n} with a {delay:?} apply delay; it had not stopped cleanly: {e}")
                }
                (Ok(()), false) => format!("node {n} is down: it applies blocks {delay:?} slower from its next start"),
                (Err(e), false) => {
                    done.applied = false;
                    e
                }
            };
        }
        Action::FastDisk => {
            let targets = named_or_all(f.node, &damage.slow_disk);
            let failed: Vec<String> = targets
                .iter()
                .filter_map(|n| cluster.set_apply_delay(*n, 0).err().map(|e| format!("node {n}: {e}")))
                .collect();
            for n in &targets {
                damage.slow_disk.remove(n);
            }
            done.note = format!("restarted node(s) {targets:?} without the apply delay{}", problems(&failed));
            done.nodes = targets;
        }
        Action::KillRouter => {
            let r = f.router.expect("validated: kill_router names a router");
            let id = ROUTER_BASE + u64::from(r);
            if cluster.router_pid(id).is_some() {
                cluster.kill_router(id);
                damage.killed_routers.insert(r);
                done.note = format!("killed router {r}");
            } else {
                (done.applied, done.note) = (false, format!("router {r} is not running"));
            }
        }
        Action::RestartRouter => {
            let targets = named_or_all(f.router, &damage.killed_routers);
            let mut restarted = Vec::new();
            for r in targets {
                let id = ROUTER_BASE + u64::from(r);
                if cluster.routers.contains_key(&id) && cluster.router_pid(id).is_none() {
                    cluster.spawn_router(id);
                    restarted.push(r);
                }
                damage.killed_routers.remove(&r);
            }
            done.applied = !restarted.is_empty();
            done.note = if done.applied {
                format!("restarted router(s) {restarted:?}")
            } else {
                "no killed router to restart".into()
            };
        }
        Action::AddChain => {
            let chain = f.chain.expect("validated: add_chain names a chain");
            done.chain = Some(chain);
            let replicas = cluster.nodes.values().filter(|n| n.chains.contains(&1)).count().max(1) as u64;
            match add_chain(cluster, client, consortium, chain, replicas).await {
                Ok((ids, receipts)) => {
                    done.note = format!("started chain {chain} on nodes {ids:?} and registered it on the meta chain");
                    done.nodes = ids;
                    acks = receipts;
                }
                Err((ids, e)) => {
                    (done.applied, done.note) = (false, format!("adding chain {chain}: {e}"));
                    done.nodes = ids;
                }
            }
        }
        Action::AddReplica => {
            let chain = f.chain.expect("validated: add_replica names a chain");
            done.chain = Some(chain);
            match add_replica(cluster, client, chain).await {
                Ok(id) => {
                    done.nodes = vec![id];
                    done.note = format!("started node {id} and made it a voter of chain {chain}");
                }
                Err((id, e)) => {
                    done.nodes = id.into_iter().collect();
                    (done.applied, done.note) = (false, format!("adding a replica to chain {chain}: {e}"));
                }
            }
        }
        Action::RemoveReplica => {
            let (n, chain) = (f.node.expect("validated"), f.chain.expect("validated"));
            done.chain = Some(chain);
            match remove_replica(cluster, client, n, chain).await {
                Ok(()) => done.note = format!("removed node {n} from chain {chain}'s voters"),
                Err(e) => (done.applied, done.note) = (false, format!("removing node {n} from chain {chain}: {e}")),
            }
        }
    }
    (done, acks)
}

/// The nodes that serve `chain`.
fn replicas_of(cluster: &Cluster, chain: u32) -> Vec<u64> {
    cluster.nodes.values().filter(|n| n.chains.contains(&chain)).map(|n| n.id).collect()
}

/// Start a new node (the next id) serving `chain` and ask the leader to add it: as a learner
/// until it has caught up, then as a voter. Its id, or what failed (a node that did not join is
/// stopped and no longer counts as the chain's).
async fn add_replica(cluster: &mut Cluster, client: &Client, chain: u32) -> Result<u64, (Option<u64>, String)> {
    let mut peers = replicas_of(cluster, chain);
    if peers.is_empty() {
        return Err((None, format!("no node serves chain {chain}")));
    }
    let id = cluster.next_node_id();
    cluster.prepare_node(id);
    peers.push(id);
    cluster.write_config_for(id, &peers, false, &[chain]);
    cluster.spawn(id);
    let addr = cluster.nodes[&id].public;
    client.add_node(id, addr);
    let add = Request::AddReplica { chain, node: id, addr: addr.to_string() };
    let problem = match client.to_leader(add, DEADLINE).await {
        Ok(Response::Done) => {
            client.set_replicas(chain, peers);
            return Ok(id);
        }
        Ok(other) => format!("the leader answered {other:?}"),
        Err(e) => e.to_string(),
    };
    cluster.kill(id);
    if let Some(n) = cluster.nodes.get_mut(&id) {
        n.chains.clear();
    }
    Err((Some(id), problem))
}

/// Ask `chain`'s leader to take `node` out of its voters; from then on the node's copy of the
/// chain is not waited for or checked (it keeps serving its other chains).
async fn remove_replica(cluster: &mut Cluster, client: &Client, node: u64, chain: u32) -> Result<(), String> {
    if !cluster.nodes.get(&node).is_some_and(|n| n.chains.contains(&chain)) {
        return Err(format!("node {node} does not serve chain {chain}"));
    }
    match client.to_leader(Request::RemoveReplica { chain, node }, DEADLINE).await {
        Ok(Response::Done) => {}
        Ok(other) => return Err(format!("the leader answered {other:?}")),
        Err(e) => return Err(e.to_string()),
    }
    if let Some(n) = cluster.nodes.get_mut(&node) {
        n.chains.retain(|c| *c != chain);
    }
    client.set_replicas(chain, replicas_of(cluster, chain));
    Ok(())
}

fn problems(failed: &[String]) -> String {
    if failed.is_empty() {
        String::new()
    } else {
        format!(" ({})", failed.join("; "))
    }
}

/// Scale out: start `replicas` new nodes serving `chain`, wait for its leader, register it on
/// the meta chain and hand it the top `1/(n+1)` of the buckets (n: licence chains before it).
/// The new nodes and the governance receipts, or the nodes started and what failed.
async fn add_chain(
    cluster: &mut Cluster,
    client: &Client,
    consortium: &Consortium,
    chain: u32,
    replicas: u64,
) -> Result<(Vec<u64>, Vec<Ack>), (Vec<u64>, String)> {
    let first = cluster.next_node_id();
    let ids: Vec<u64> = (first..first + replicas).collect();
    let before = cluster.chains().into_iter().filter(|c| *c != 0).count() as u32;
    cluster.add_chain(chain, &ids);
    for id in &ids {
        client.add_node(*id, cluster.nodes[id].public);
    }
    client.set_replicas(chain, ids.clone());
    let fail = |e: String| (ids.clone(), e);
    client.wait_leader(chain, DEADLINE).await.map_err(|e| fail(format!("no leader: {e}")))?;
    let answer =
        client.query(0, Query::Governance, DEADLINE).await.map_err(|e| fail(format!("the meta chain: {e}")))?;
    let Answer::Governance(g) = answer else { return Err(fail(format!("the meta chain answered {answer:?}"))) };
    let bytes = g.shard_map.ok_or_else(|| fail("the meta chain has no shard map".into()))?;
    let map = ShardMap::from_bytes(&bytes).map_err(|e| fail(format!("the meta chain's shard map: {e:?}")))?;
    let buckets = map.buckets - map.buckets / (before + 1).max(1)..map.buckets;
    let txs = governance::scale_out(consortium, &map, cluster.chain_info(chain), buckets).map_err(fail)?;
    let acks = govern(client, txs).await.map_err(fail)?;
    Ok((ids, acks))
}

/// Undo everything still broken: heal every cut, remove every network delay, restart slow
/// disks without their delay, restart every killed node. Killed routers stay down (the checker
/// reads the nodes' stores only). What did not go cleanly.
pub fn repair(cluster: &mut Cluster, damage: &mut Damage) -> Vec<String> {
    let mut problems = Vec::new();
    for n in std::mem::take(&mut damage.partitioned) {
        cluster.partition(n, false);
    }
    for n in std::mem::take(&mut damage.slow_net) {
        if let Err(e) = cluster.set_net_delay(n, Duration::ZERO) {
            problems.push(format!("removing node {n}'s network delay: {e}"));
        }
    }
    for n in std::mem::take(&mut damage.slow_disk) {
        if let Err(e) = cluster.set_apply_delay(n, 0) {
            problems.push(format!("restarting node {n} without its apply delay: {e}"));
        }
    }
    for n in std::mem::take(&mut damage.killed) {
        if cluster.pid(n).is_none() {
            cluster.spawn(n);
        }
    }
    problems
}
