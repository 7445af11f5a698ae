//! Route elchain requests to the chain that owns them.
//!
//! The router is stateless apart from caches: it follows the meta chain (chain 0) for the
//! consortium, the chain directory and the shard map; places new licences with the shard map;
//! sends everything else to the chain its id names; tracks each chain's leader; and serves the
//! REST API with its OpenAPI document. It also runs the authorisation service that releases
//! field keys only against a committed use. Several routers can run side by side.
//!
//! ```text
//!  HTTP /v1 ─► api ─► admit (decode, placement, limits) ─► QUIC client ─► chain leader
//!                 └─► directory (meta chain view, refreshed) ─► shard map, replicas
//!  new licence:      (licence type, holder id) ──ShardMap::place──► chain
//!  later operations: licence id ──licence_chain──► chain (no lookup, survives scale-out)
//! ```

pub mod api;
pub mod config;
pub mod directory;
pub mod guard;
pub mod json;
pub mod keyfile;
pub mod placement;
pub mod problem;
pub mod rest;
pub mod service;

pub use placement::{ShardMap, DEFAULT_BUCKETS};
