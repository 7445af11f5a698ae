//! `elchain keygen`: write a new key file.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use elchain_types::crypto::Keypair;
use serde::{Deserialize, Serialize};

/// Arguments of `elchain keygen`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to write the key file (created with mode 0600).
    #[arg(short, long, default_value = "elchain.key")]
    out: PathBuf,
    /// Replace an existing file.
    #[arg(long)]
    force: bool,
}

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

impl KeyFile {
    pub(crate) fn new(kp: &Keypair) -> Self {
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

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.out.exists() && !args.force {
        bail!("{} already exists; pass --force to replace it", args.out.display());
    }
    let kp = Keypair::generate(&mut rand_core::OsRng);
    let file = KeyFile::new(&kp);
    let json = serde_json::to_string_pretty(&file)?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&args.out).with_context(|| format!("cannot write {}", args.out.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    f.write_all(json.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    println!("wrote {} (keep it secret)", args.out.display());
    println!("public key:            {}", file.public_key);
    println!("encryption public key: {}", file.encryption_public_key);
    println!("holder id:             {}", file.holder_id);
    Ok(ExitCode::SUCCESS)
}
