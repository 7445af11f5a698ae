//! Order, execute and store licence transactions on one elchain chain.
//!
//! ```text
//!  raw tx bytes ──► Verifier (rayon: decode, shape, batched Ed25519) ──► [CheckedTx]
//!                                                                          │
//!   Store::view() (redb read txn) ──► Executor::execute (pure) ◄───────────┘
//!                                          │
//!                                          ▼
//!                      Executed { block, writes } ──► Store::commit (one durable redb write)
//! ```
//!
//! - [`verifier`]: stateless checks and parallel signature verification; makes [`VerifiedTx`].
//! - [`exec`]: the deterministic state machine; no I/O, time comes in as the block time.
//! - [`state`]: state keys, records and the read view the executor uses.
//! - [`store`]: the redb store, its schema, and the chain audit behind `elchain verify`.
//! - [`ledger`]: the three wired together for one replica.

pub mod ca;
pub mod clock;
pub mod exec;
pub mod ledger;
pub mod net;
pub mod state;
pub mod store;
pub mod thread;
pub mod verifier;

pub use clock::Clock;
pub use exec::{Executed, Executor, LogPosition};
pub use ledger::Ledger;
pub use state::{MemState, StateReads, StateView};
pub use store::{Store, StoreError};
pub use verifier::{CheckedTx, VerifiedTx, Verifier};
pub mod node;
pub mod raft;
