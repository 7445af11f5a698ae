//! Define elchain's wire types, canonical codec and crypto helpers.
//!
//! This crate has no I/O and no async runtime, so phone apps, department systems and light
//! clients can build, sign and check transactions with it alone.
//!
//! ```text
//!  TxBody ──seal()──► UnsignedTx ──sign(key)…──► SignedTx ──to_bytes()──► wire
//!                                                  │
//!         verify::verify_batch / verify_one ◄──────┘  (one verdict either way)
//!  Block { header, txs, ids, outcomes } ──► merkle root ──► InclusionProof::verify(header)
//! ```
//!
//! - [`codec`]: canonical binary encoding with hard limits.
//! - [`tx`]: transaction bodies, payloads and signatures.
//! - [`verify`]: the signature rule every replica applies.
//! - [`crypto`]: keys, sealed boxes, field encryption and commitments.
//! - [`contract`] and [`profile`]: licence types, members, service items.
//! - [`block`]: headers, blocks and Merkle proofs.
//! - [`shardmap`]: placement of licences on chains, and the meta chain's chain directory.
//! - [`client`]: builders that seal plaintext into issuance, grant, use and governance bodies.
//! - [`reason`]: stable rejection codes.
//! - [`release`]: two-layer grant envelopes released against a recorded use (trace before access).

pub mod block;
pub mod client;
pub mod codec;
pub mod contract;
pub mod crypto;
pub mod ids;
pub mod profile;
pub mod reason;
pub mod release;
pub mod shardmap;
pub mod tx;
pub mod verify;

pub use block::{Block, BlockHeader, InclusionProof};
pub use codec::{CodecError, Decode, Encode};
pub use contract::Consortium;
pub use crypto::{Keypair, PublicKey};
pub use ids::{ChainId, GrantId, Hash32, HolderId, ItemId, LicenceId, LicenceTypeId, MemberId, Timestamp, TxId};
pub use reason::{Outcome, RejectCode};
pub use shardmap::{ChainInfo, ShardMap};
pub use tx::{Govern, Payload, SignedTx, TxBody};
