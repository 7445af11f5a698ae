//! Router configuration: a TOML file, parsed and checked once at start.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A router's configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterConfig {
    /// HTTP address of the REST API.
    pub listen: SocketAddr,
    /// The router's certificate (role `router`) for QUIC mutual TLS to the replicas.
    pub tls: TlsConfig,
    /// Replicas of the meta chain (chain 0), where the router learns every other chain.
    pub meta: Vec<MetaPeer>,
    /// Request limits.
    #[serde(default)]
    pub limits: Limits,
    /// The authorisation service's key: `dev` for the development key, or a key file written by
    /// `elchain keygen`.
    #[serde(default = "default_service_key")]
    pub authorisation_key: String,
    /// How long a request may wait for a chain (leader changes included), in milliseconds.
    #[serde(default = "default_timeout")]
    pub chain_timeout_ms: u64,
    /// How often the meta chain is read for a new shard map or chain directory, in milliseconds.
    #[serde(default = "default_refresh")]
    pub refresh_ms: u64,
}

fn default_service_key() -> String {
    "dev".into()
}

fn default_timeout() -> u64 {
    10_000
}

fn default_refresh() -> u64 {
    1_000
}

/// Paths of the router's TLS material (from `elchain ca issue-node --role router`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The consortium CA certificate.
    pub ca_cert: PathBuf,
    /// The router's certificate.
    pub cert: PathBuf,
    /// The router's private key.
    pub key: PathBuf,
}

/// A replica of the meta chain.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetaPeer {
    /// Node id.
    pub id: u64,
    /// Its QUIC address.
    pub addr: SocketAddr,
}

/// Limits on what one client may ask.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request body, in bytes (413 above).
    pub max_body_bytes: usize,
    /// Most transactions in one batch submit (413 above).
    pub max_batch: usize,
    /// Sustained requests per second per client (429 above).
    pub requests_per_second: u32,
    /// Burst allowance per client.
    pub burst: u32,
    /// Sustained transactions per second per signing key (429 above).
    pub txs_per_second_per_signer: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 4 << 20,
            max_batch: 2000,
            requests_per_second: 2000,
            burst: 4000,
            txs_per_second_per_signer: 20_000,
        }
    }
}

/// A configuration that cannot be used, with what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not valid TOML, not of the config's shape, or a value breaks a rule.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong and how to fix it.
        message: String,
    },
}

impl RouterConfig {
    /// Read, parse and check a configuration file; relative paths are taken relative to it.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        let invalid = |message: String| ConfigError::Invalid { path: path.to_path_buf(), message };
        let mut cfg: RouterConfig = toml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [&mut cfg.tls.ca_cert, &mut cfg.tls.cert, &mut cfg.tls.key] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        if cfg.authorisation_key != "dev" && Path::new(&cfg.authorisation_key).is_relative() {
            cfg.authorisation_key = base.join(&cfg.authorisation_key).display().to_string();
        }
        cfg.check().map_err(invalid)?;
        Ok(cfg)
    }

    /// Check the rules a parsed configuration must follow.
    pub fn check(&self) -> Result<(), String> {
        if self.meta.is_empty() {
            return Err("no [[meta]] replicas: the router needs the meta chain's replicas".into());
        }
        let l = &self.limits;
        if l.max_body_bytes < 1024 || l.max_batch == 0 || l.requests_per_second == 0 || l.burst == 0 {
            return Err("[limits] max_body_bytes >= 1024, and max_batch, requests_per_second, burst >= 1".into());
        }
        if self.chain_timeout_ms < 100 || self.refresh_ms < 50 {
            return Err("chain_timeout_ms must be at least 100 and refresh_ms at least 50".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_config_loads_and_mistakes_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("router.toml");
        std::fs::write(&p, include_str!("../../deploy/examples/router.toml")).unwrap();
        let c = RouterConfig::load(&p).unwrap();
        assert_eq!(c.meta.len(), 3);
        assert!(c.tls.cert.is_absolute());
        std::fs::write(&p, "listen = \"127.0.0.1:1\"\nmeta = []\n[tls]\nca_cert=\"a\"\ncert=\"b\"\nkey=\"c\"\n")
            .unwrap();
        assert!(RouterConfig::load(&p).unwrap_err().to_string().contains("[[meta]]"));
        std::fs::write(&p, "listen = 3").unwrap();
        assert!(RouterConfig::load(&p).unwrap_err().to_string().contains("listen"));
    }
}
