//! Governance transactions for local clusters, signed with the development admin keys.
//!
//! A fresh cluster's meta chain knows no chain and has no shard map; [`bootstrap`] registers the
//! chains and sets shard map version 1. [`scale_out`] registers a new chain and hands it buckets.

use std::ops::Range;
use std::time::{SystemTime, UNIX_EPOCH};

use elchain_types::client::{govern, TxContext};
use elchain_types::contract::Consortium;
use elchain_types::ids::{ChainId, Timestamp};
use elchain_types::profile::dev_member_keypair;
use elchain_types::shardmap::{ChainInfo, ReplicaInfo, ShardMap, DEFAULT_BUCKETS};
use elchain_types::tx::{Govern, SignedTx};

/// The meta chain.
pub const META: ChainId = ChainId(0);

fn now() -> Timestamp {
    Timestamp(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64))
}

/// `action` as a meta-chain transaction signed by the first `admin_k` admins' development keys.
pub fn admin_signed(consortium: &Consortium, action: Govern) -> SignedTx {
    let ctx = TxContext { chain: META, nonce: rand_nonce(), valid_until: now().plus_ms(10 * 60_000) };
    let mut tx = govern(ctx, action).seal();
    for m in consortium.members.iter().filter(|m| m.admin).take(consortium.admin_k as usize) {
        tx = tx.sign(&dev_member_keypair(&m.code));
    }
    tx.done()
}

fn rand_nonce() -> u64 {
    use rand_core::RngCore;
    rand_core::OsRng.next_u64()
}

/// A chain's directory entry from (node id, QUIC address) pairs.
pub fn chain_info(chain: u32, replicas: &[(u64, std::net::SocketAddr)]) -> ChainInfo {
    let mut replicas: Vec<ReplicaInfo> =
        replicas.iter().map(|(node, addr)| ReplicaInfo { node: *node, addr: addr.to_string() }).collect();
    replicas.sort_by_key(|r| r.node);
    ChainInfo { id: ChainId(chain), replicas }
}

/// Register `chains` (the meta chain's own entry included, if given) and set shard map version 1,
/// splitting the buckets evenly over the licence chains.
pub fn bootstrap(consortium: &Consortium, chains: &[ChainInfo]) -> Result<Vec<SignedTx>, String> {
    let licence: Vec<ChainId> = chains.iter().map(|c| c.id).filter(|c| *c != META).collect();
    let map = ShardMap::even(&licence, DEFAULT_BUCKETS).map_err(|e| e.to_string())?;
    let mut txs: Vec<SignedTx> = chains.iter().map(|c| admin_signed(consortium, Govern::Chain(c.clone()))).collect();
    txs.push(admin_signed(consortium, Govern::ShardMap(map)));
    Ok(txs)
}

/// Register `chain` and give it `buckets` of every licence type in the map after `current`.
pub fn scale_out(
    consortium: &Consortium,
    current: &ShardMap,
    chain: ChainInfo,
    buckets: Range<u32>,
) -> Result<Vec<SignedTx>, String> {
    let map = current.reassign(None, buckets, chain.id).map_err(|e| e.to_string())?;
    Ok(vec![admin_signed(consortium, Govern::Chain(chain)), admin_signed(consortium, Govern::ShardMap(map))])
}
