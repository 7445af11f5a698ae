//! Placement: which chain a new licence goes to, as a pure function of the shard map.
//!
//! The shard map, its rules and the chain directory live in [`elchain_types::shardmap`], since the
//! meta chain's executor sets them by governance transactions; this module re-exports them under
//! the router's own path.

pub use elchain_types::shardmap::*;
