//! Every redb table of a chain's state database, in one place.
//!
//! Keys and values are byte strings with fixed encodings: state keys as [`Key::bytes`], values in
//! the canonical codec, heights and indexes big-endian inside keys. Bump [`SCHEMA_VERSION`] on
//! any change here; a store of another version refuses to open.
//!
//! [`Key::bytes`]: crate::state::Key::bytes

use redb::TableDefinition;

use crate::state::Table;

/// Version of this schema, stored under [`META_SCHEMA_VERSION`].
/// Version 2 added the `governance` table and the consortium's `admin_k`.
pub const SCHEMA_VERSION: u32 = 2;

/// Chain metadata: schema version, chain id, consortium, tip header.
pub const META: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("meta");
/// Height → encoded [`elchain_types::Block`] (header, raw txs, ids, outcomes).
pub const BLOCKS: TableDefinition<'static, u64, &[u8]> = TableDefinition::new("blocks");
/// Height → encoded [`elchain_types::block::Checkpoint`]: replica signatures over that header.
pub const CHECKPOINTS: TableDefinition<'static, u64, &[u8]> = TableDefinition::new("checkpoints");
/// Tx id → height (8 bytes BE) ‖ index in block (4 bytes BE).
pub const TX_INDEX: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("tx_index");

/// `META` key: schema version, `u32` LE.
pub const META_SCHEMA_VERSION: &str = "schema_version";
/// `META` key: chain id, `u32` LE.
pub const META_CHAIN: &str = "chain";
/// `META` key: the consortium definition, canonical encoding.
pub const META_CONSORTIUM: &str = "consortium";
/// `META` key: the tip header, canonical encoding.
pub const META_TIP: &str = "tip";
/// `META` key: the genesis header, canonical encoding.
pub const META_GENESIS: &str = "genesis";

const LICENCES: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("licences");
const GRANTS: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("grants");
const TRACES: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("traces");
const TRACE_COUNTS: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("trace_counts");
const HOLDER_LICENCES: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("holder_licences");
const REPLAY: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("replay");
const REPLAY_EXPIRY: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("replay_expiry");
const ATTESTATIONS: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("attestations");
const GOVERNANCE: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("governance");

/// The redb table that holds a state table.
pub fn state_table(t: Table) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
    match t {
        Table::Licences => LICENCES,
        Table::Grants => GRANTS,
        Table::Traces => TRACES,
        Table::TraceCounts => TRACE_COUNTS,
        Table::HolderLicences => HOLDER_LICENCES,
        Table::Replay => REPLAY,
        Table::ReplayExpiry => REPLAY_EXPIRY,
        Table::Attestations => ATTESTATIONS,
        Table::Governance => GOVERNANCE,
    }
}

/// The tx-index value for position `index` of block `height`.
pub fn tx_location(height: u64, index: u32) -> [u8; 12] {
    let mut v = [0u8; 12];
    v[..8].copy_from_slice(&height.to_be_bytes());
    v[8..].copy_from_slice(&index.to_be_bytes());
    v
}

/// Read a tx-index value back.
pub fn parse_tx_location(v: &[u8]) -> Option<(u64, u32)> {
    if v.len() != 12 {
        return None;
    }
    Some((u64::from_be_bytes(v[..8].try_into().ok()?), u32::from_be_bytes(v[8..].try_into().ok()?)))
}

#[cfg(test)]
mod tests {
    use redb::TableHandle;

    use super::*;

    #[test]
    fn table_names_and_encodings_are_fixed() {
        // Renaming a table or changing an encoding strands existing data: bump SCHEMA_VERSION.
        assert_eq!(SCHEMA_VERSION, 2);
        let names: Vec<String> = Table::ALL.iter().map(|t| state_table(*t).name().to_string()).collect();
        assert_eq!(
            names,
            [
                "licences",
                "grants",
                "traces",
                "trace_counts",
                "holder_licences",
                "replay",
                "replay_expiry",
                "attestations",
                "governance"
            ]
        );
        for t in Table::ALL {
            assert_eq!(state_table(t).name(), t.name());
        }
        assert_eq!(
            [META.name(), BLOCKS.name(), TX_INDEX.name(), CHECKPOINTS.name()],
            ["meta", "blocks", "tx_index", "checkpoints"]
        );
        assert_eq!(tx_location(0x0102, 3), [0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 3]);
        assert_eq!(parse_tx_location(&tx_location(9, 8)), Some((9, 8)));
    }
}
