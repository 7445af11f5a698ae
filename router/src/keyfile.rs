//! Key files: `elchain keygen`'s JSON with hex secrets, readable by the owner only.

use std::io::Write;
use std::path::Path;

use elchain_types::crypto::Keypair;
use serde::{Deserialize, Serialize};

/// The key file: secrets and the public values derived from them, hex-encoded JSON.
#[derive(Debug, Serialize, Deserialize)]
pub struct KeyFile {
    /// Ed25519 secret seed.
    pub signing_secret: String,
    /// X25519 secret.
    pub encryption_secret: String,
    /// Ed25519 public key: what signs transactions.
    pub public_key: String,
    /// X25519 public key: what envelopes are sealed to.
    pub encryption_public_key: String,
    /// Holder id (hash of the public key) as it appears on chain.
    pub holder_id: String,
}

/// Why a key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// Cannot read or write it.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Not a key file, or its public values do not match its secrets.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// Exists already.
    #[error("{0} already exists; pass --force to replace it")]
    Exists(String),
}

impl KeyFile {
    /// The file contents for `kp`.
    pub fn new(kp: &Keypair) -> Self {
        let (s, e) = kp.secret_seeds();
        KeyFile {
            signing_secret: hex::encode(s),
            encryption_secret: hex::encode(e),
            public_key: kp.public().to_hex(),
            encryption_public_key: hex::encode(kp.encryption_public()),
            holder_id: kp.holder_id().to_hex(),
        }
    }
}

/// Read a key file and check that its public values match its secrets.
pub fn load(path: &Path) -> Result<Keypair, KeyFileError> {
    let p = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Io { path: p.clone(), source })?;
    let invalid = |message: String| KeyFileError::Invalid { path: p.clone(), message };
    let f: KeyFile = serde_json::from_str(&text).map_err(|e| invalid(format!("not a key file: {e}")))?;
    let seed = |s: &str, what: &str| -> Result<[u8; 32], KeyFileError> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| invalid(format!("{what} must be 64 hex digits")))?;
        Ok(out)
    };
    let kp = Keypair::from_seeds(
        seed(&f.signing_secret, "signing_secret")?,
        seed(&f.encryption_secret, "encryption_secret")?,
    );
    if kp.public().to_hex() != f.public_key || hex::encode(kp.encryption_public()) != f.encryption_public_key {
        return Err(invalid("the public keys do not match the secrets".into()));
    }
    Ok(kp)
}

/// Write `kp` to a new file with mode 0600 (replacing one only with `force`).
pub fn save(path: &Path, kp: &Keypair, force: bool) -> Result<(), KeyFileError> {
    let p = path.display().to_string();
    if path.exists() && !force {
        return Err(KeyFileError::Exists(p));
    }
    let io = |source| KeyFileError::Io { path: p.clone(), source };
    let json = serde_json::to_string_pretty(&KeyFile::new(kp)).expect("key files serialize");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    }
    f.write_all(json.as_bytes()).map_err(io)?;
    f.write_all(b"\n").map_err(io)?;
    f.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_key_loads_back_and_a_tampered_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.key");
        let kp = Keypair::dev("someone");
        save(&p, &kp, false).unwrap();
        assert_eq!(load(&p).unwrap().public(), kp.public());
        assert!(matches!(save(&p, &kp, false), Err(KeyFileError::Exists(_))));
        let text = std::fs::read_to_string(&p).unwrap();
        let other = KeyFile::new(&Keypair::dev("other")).public_key;
        std::fs::write(&p, text.replace(&kp.public().to_hex(), &other)).unwrap();
        assert!(load(&p).unwrap_err().to_string().contains("do not match"));
    }
}
