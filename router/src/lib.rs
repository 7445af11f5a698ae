//! Route elchain requests to the chain that owns them.
//!
//! Not built yet: the shard map, leader tracking, the REST API and the authorisation service will
//! live here. Until then a licence's chain is read from its id with
//! [`elchain_types::LicenceId::chain`].
