//! Checks of a finished run against what clients were told.

use elchain_shard::node::rpc::{Receipt, ReceiptStatus};
use elchain_shard::Store;
use elchain_sim::cluster::{Cluster, CHAIN};

pub use elchain_sim::cluster::Settings;

/// Start a cluster of `n` replicas running this workspace's `elchain` binary.
pub fn start_cluster(n: u64, settings: Settings) -> Cluster {
    Cluster::start(crate::elchain_bin(), n, settings)
}

/// The chain store of node `id` of `cluster` (the node must be stopped).
pub fn store(cluster: &Cluster, id: u64) -> Store {
    Store::open(&cluster.nodes[&id].data.join(format!("chain-{CHAIN}/chain.redb"))).expect("open chain store")
}

/// What a test was told about one transaction.
#[derive(Clone, Debug)]
pub struct Ack {
    /// The receipt.
    pub receipt: Receipt,
}

/// Check the promise of replication on stopped nodes: every acknowledged transaction is in the
/// chain at the position its receipt gave, it took effect at most once (exactly once when the
/// receipt said it did, or said `replay` of an earlier commit), and all replicas hold identical
/// blocks. Returns the common height.
pub fn check_history(cluster: &Cluster, ids: &[u64], acks: &[Ack]) -> u64 {
    use elchain_types::reason::{Outcome, RejectCode};
    let stores: Vec<Store> = ids.iter().map(|id| store(cluster, *id)).collect();
    let tip = stores[0].tip().expect("tip");
    for (s, id) in stores.iter().zip(ids) {
        assert_eq!(s.tip().expect("tip"), tip, "node {id} ends at another tip");
    }
    let mut valid_count: std::collections::HashMap<[u8; 32], usize> = Default::default();
    for h in 1..=tip.height {
        let block = stores[0].block(h).expect("read block").expect("block present");
        for (s, id) in stores.iter().zip(ids).skip(1) {
            let other = s.block(h).expect("read block").expect("block present");
            assert_eq!(other.header.hash(), block.header.hash(), "node {id} differs at height {h}");
        }
        for (tx, o) in block.ids.iter().zip(&block.outcomes) {
            if o.is_valid() {
                *valid_count.entry(tx.0).or_default() += 1;
            }
        }
    }
    // Checkpoints: a quorum of the replicas' certificate keys signed the stored headers.
    let trusted: Vec<(u64, elchain_types::crypto::PublicKey)> =
        cluster.nodes.keys().map(|id| (*id, cluster.node_key(*id))).collect();
    for (s, id) in stores.iter().zip(ids) {
        let heights = s.checkpoint_heights().expect("checkpoints");
        assert!(
            heights.len() as u64 * 2 >= tip.height,
            "node {id} has checkpoints for only {} of {} blocks",
            heights.len(),
            tip.height
        );
        for h in heights {
            let cp = s.checkpoint(h).expect("read").expect("present");
            let header = s.block(h).expect("read").expect("block").header;
            assert!(cp.verify(&header, &trusted, 2), "node {id}: checkpoint {h} does not verify: {cp:?}");
        }
    }
    for ack in acks {
        let ReceiptStatus::Committed { height, index, outcome } = ack.receipt.status else { continue };
        let block = stores[0].block(height).expect("read").unwrap_or_else(|| panic!("acked block {height} missing"));
        assert_eq!(block.ids.get(index as usize).map(|i| i.0), Some(ack.receipt.tx_id), "acked position differs");
        assert_eq!(block.outcomes[index as usize].as_u16(), outcome, "acked outcome differs");
        let took_effect = outcome == Outcome::Valid.as_u16() || outcome == RejectCode::Replay.as_u16();
        let count = valid_count.get(&ack.receipt.tx_id).copied().unwrap_or(0);
        if took_effect {
            assert_eq!(count, 1, "acked transaction took effect {count} times");
        } else {
            assert!(count <= 1, "transaction took effect {count} times");
        }
    }
    tip.height
}

/// Run `elchain verify` on node `id`'s data directory and assert it passes.
pub fn assert_verify_passes(cluster: &Cluster, id: u64) {
    let out = crate::elchain(&["verify", "--quiet", cluster.nodes[&id].data.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(0), "verify failed on node {id}: {}", crate::stdout(&out));
}
