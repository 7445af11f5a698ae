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
/// Version 2 added the `governance` table and the consortium's `admin_k`. Version 3 made the tx
/// index a state table (with each transaction's outcome) that also refuses replays, replacing the
/// `replay` and `replay_expiry` tables, and moved each grant's traces beside it in `grants` (the
/// `traces` and `trace_counts` tables replaced by `grant_uses` and `holder_grants`). Version 4
/// moved each use's trace out of `grant_uses` into `traces`, keyed by the use's tx id, so that a
/// store write appends its uses instead of inserting them all over the grants' pages, and derived
/// licence ids anew (chain ‖ the issuance's valid-until ‖ hash, see
/// [`LicenceId::derive`](elchain_types::LicenceId::derive)) so that new licences append too.
/// Version 5 keeps each use's trace in its tx index entry and drops the `traces` table: one row
/// per use instead of two, as a store write costs about the same per row whatever its size.
pub const SCHEMA_VERSION: u32 = 5;

/// Chain metadata: schema version, chain id, consortium, tip header.
pub const META: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("meta");
/// Height → encoded [`elchain_types::Block`] (header, raw txs, ids, outcomes).
pub const BLOCKS: TableDefinition<'static, u64, &[u8]> = TableDefinition::new("blocks");
/// Height → encoded [`elchain_types::block::Checkpoint`]: replica signatures over that header.
pub const CHECKPOINTS: TableDefinition<'static, u64, &[u8]> = TableDefinition::new("checkpoints");
/// Tx id → [`TxEntry`](crate::state::TxEntry): height (8 bytes BE) ‖ index in block (4 bytes BE) ‖
/// outcome (2 bytes BE) ‖ for a use that took effect, its trace. A state table
/// ([`Table::TxIndex`]), written by the executor.
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
const GRANT_USES: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("grant_uses");
const HOLDER_LICENCES: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("holder_licences");
const HOLDER_GRANTS: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("holder_grants");
const ATTESTATIONS: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("attestations");
const GOVERNANCE: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("governance");

/// The redb table that holds a state table.
pub fn state_table(t: Table) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
    match t {
        Table::Licences => LICENCES,
        Table::Grants => GRANTS,
        Table::GrantUses => GRANT_USES,
        Table::HolderLicences => HOLDER_LICENCES,
        Table::HolderGrants => HOLDER_GRANTS,
        Table::TxIndex => TX_INDEX,
        Table::Attestations => ATTESTATIONS,
        Table::Governance => GOVERNANCE,
    }
}

#[cfg(test)]
mod tests {
    use redb::TableHandle;

    use super::*;

    #[test]
    fn table_names_and_encodings_are_fixed() {
        // Renaming a table or changing an encoding strands existing data: bump SCHEMA_VERSION.
        assert_eq!(SCHEMA_VERSION, 5);
        let names: Vec<String> = Table::ALL.iter().map(|t| state_table(*t).name().to_string()).collect();
        assert_eq!(
            names,
            [
                "licences",
                "grants",
                "grant_uses",
                "holder_licences",
                "holder_grants",
                "tx_index",
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
    }
}
