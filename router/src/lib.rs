//! Route elchain requests to the chain that owns them.
//!
//! Today this crate holds placement: the versioned shard map and the pure function from
//! (licence type, holder) to chain, plus the rule that an existing licence's chain is named in its
//! id. The router service (leader tracking, REST API with OpenAPI, the authorisation service) is
//! not built yet.
//!
//! ```text
//!  new licence:      (licence type, holder id) ──ShardMap::place──► chain
//!  later operations: licence id ──licence_chain──► chain (no lookup, survives scale-out)
//! ```

pub mod placement;

pub use placement::{ShardMap, DEFAULT_BUCKETS};
