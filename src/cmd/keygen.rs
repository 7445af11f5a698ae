//! `elchain keygen`: write a new key file.

use std::path::PathBuf;
use std::process::ExitCode;

use elchain_router::keyfile::save;
use elchain_types::crypto::Keypair;

/// The key file format, shared with `elchain ca issue-member` and `elchain client`.
pub use elchain_router::keyfile::KeyFile;

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

/// Generate a key pair, write it to `--out`, and print its public values.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let kp = Keypair::generate(&mut rand_core::OsRng);
    save(&args.out, &kp, args.force)?;
    let file = KeyFile::new(&kp);
    println!("wrote {} (keep it secret)", args.out.display());
    println!("public key:            {}", file.public_key);
    println!("encryption public key: {}", file.encryption_public_key);
    println!("holder id:             {}", file.holder_id);
    Ok(ExitCode::SUCCESS)
}
