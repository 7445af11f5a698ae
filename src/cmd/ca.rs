//! `elchain ca`: run the consortium certificate authority.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use elchain_shard::ca::{self, Reason, Role};
use elchain_types::crypto::Keypair;

use super::keygen::KeyFile;

/// Arguments of `elchain ca`.
#[derive(Debug, clap::Args)]
#[command(after_help = "A CA directory holds ca.pem (the root every node trusts), ca.key (its private key, \
                        0600), crl.pem (the revocation list nodes check), serial and revoked.toml. Keep it \
                        offline; give nodes ca.pem and crl.pem only.")]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Create a CA: root key, self-signed root certificate (10 years) and an empty CRL.
    Init {
        #[command(flatten)]
        ca: CaDir,
        /// Consortium name; the root certificate is named "<NAME> root CA".
        #[arg(long, default_value = ca::DEFAULT_NAME)]
        name: String,
    },
    /// Issue a department's key pair and the certificate of its signing key.
    ///
    /// Generates an elchain key pair (Ed25519 signing + X25519 encryption) and writes
    /// <OUT>/<CODE>.pem, a certificate (2 years) naming the signing key, and <OUT>/<CODE>.key, the
    /// `elchain keygen` key file (0600). Prints the two public keys for the consortium.
    IssueMember {
        #[command(flatten)]
        ca: CaDir,
        /// Member code, as in the consortium profile (e.g. economy-it).
        #[arg(long)]
        code: String,
        #[command(flatten)]
        out: Output,
    },
    /// Issue a replica's or router's certificate for QUIC mutual TLS.
    ///
    /// Writes <OUT>/node-<NODE_ID>.pem, a certificate (2 years) whose only DNS name is
    /// n<NODE_ID>.elchain (what peers verify), with O = member and OU = role, and
    /// <OUT>/node-<NODE_ID>.key, a new Ed25519 key (PKCS#8, 0600).
    IssueNode {
        #[command(flatten)]
        ca: CaDir,
        /// Node id, unique in the deployment.
        #[arg(long)]
        node_id: u64,
        /// Code of the member that runs the node.
        #[arg(long)]
        member: String,
        /// What the node does.
        #[arg(long, value_enum)]
        role: RoleArg,
        #[command(flatten)]
        out: Output,
    },
    /// Revoke a certificate this CA issued and re-sign crl.pem.
    ///
    /// Nodes stop accepting the certificate once they load the new crl.pem; copy it to every node.
    #[command(group(clap::ArgGroup::new("which").required(true).args(["cert", "serial"])))]
    Revoke {
        #[command(flatten)]
        ca: CaDir,
        /// The certificate to revoke (PEM); it must have been issued by this CA.
        #[arg(long, value_name = "FILE.pem")]
        cert: Option<PathBuf>,
        /// Serial number to revoke, hex (e.g. 0a, or 0A:1B as OpenSSL prints it).
        #[arg(long, value_name = "HEX")]
        serial: Option<String>,
        /// Why the certificate is revoked.
        #[arg(long, value_enum, default_value_t = ReasonArg::Unspecified)]
        reason: ReasonArg,
    },
    /// Re-sign crl.pem with a fresh 30-day validity, revoking nothing.
    ///
    /// Run it before the current CRL's next-update date, then copy crl.pem to every node.
    Crl {
        #[command(flatten)]
        ca: CaDir,
    },
}

#[derive(Debug, clap::Args)]
struct CaDir {
    /// The CA directory.
    #[arg(long = "ca", value_name = "DIR", default_value = "ca")]
    dir: PathBuf,
}

#[derive(Debug, clap::Args)]
struct Output {
    /// Directory to write the certificate and key into (created with mode 0700 if missing).
    #[arg(long, value_name = "DIR", default_value = ".")]
    out: PathBuf,
    /// Replace existing files.
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum RoleArg {
    /// A Raft replica of one or more chains.
    Replica,
    /// A router in front of the chains.
    Router,
}

/// Why a certificate is revoked, as a command-line value.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum ReasonArg {
    /// No reason recorded.
    Unspecified,
    /// The private key is, or may be, exposed.
    KeyCompromise,
    /// The member left the consortium or the node changed hands.
    AffiliationChanged,
    /// A new certificate replaces this one.
    Superseded,
    /// The node or member was decommissioned.
    CessationOfOperation,
}

impl ReasonArg {
    /// The CA's reason.
    pub(crate) fn reason(self) -> Reason {
        match self {
            ReasonArg::Unspecified => Reason::Unspecified,
            ReasonArg::KeyCompromise => Reason::KeyCompromise,
            ReasonArg::AffiliationChanged => Reason::AffiliationChanged,
            ReasonArg::Superseded => Reason::Superseded,
            ReasonArg::CessationOfOperation => Reason::CessationOfOperation,
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Init { ca, name } => {
            let paths = ca::init(&ca.dir, &name).context("cannot create the CA")?;
            println!("created CA \"{name} root CA\" in {}", paths.dir.display());
            println!("  root certificate: {} (give to every node)", paths.cert.display());
            println!("  root key:         {} (keep offline)", paths.key.display());
            println!("  revocation list:  {} (give to every node)", paths.crl.display());
        }
        Command::IssueMember { ca, code, out } => {
            let kp = Keypair::generate(&mut rand_core::OsRng);
            let key_file = KeyFile::new(&kp);
            let json = format!("{}\n", serde_json::to_string_pretty(&key_file)?);
            let issued = ca::issue_member(&ca.dir, &code, &kp, json.as_bytes(), &out.out, out.force)
                .with_context(|| format!("cannot issue a certificate for member {code}"))?;
            println!("issued member certificate {} for {code}", ca::serial_hex(&issued.serial));
            print_written(&issued.cert, &issued.key);
            println!("public key:            {}", key_file.public_key);
            println!("encryption public key: {}", key_file.encryption_public_key);
        }
        Command::IssueNode { ca, node_id, member, role, out } => {
            let role = match role {
                RoleArg::Replica => Role::Replica,
                RoleArg::Router => Role::Router,
            };
            let issued = ca::issue_node(&ca.dir, node_id, &member, role, &out.out, out.force)
                .with_context(|| format!("cannot issue a certificate for node {node_id}"))?;
            println!(
                "issued node certificate {} for node {node_id} ({role} of {member}), name {}",
                ca::serial_hex(&issued.serial),
                issued.server_name
            );
            print_written(&issued.cert, &issued.key);
        }
        Command::Revoke { ca, cert, serial, reason } => {
            let serial = match (cert, serial) {
                (Some(cert), _) => {
                    let pem = std::fs::read(&cert).with_context(|| format!("cannot read {}", cert.display()))?;
                    ca::issued_serial(&ca.dir, &pem).with_context(|| format!("cannot revoke {}", cert.display()))?
                }
                (None, Some(hex)) => ca::parse_serial_hex(&hex)?,
                (None, None) => anyhow::bail!("name the certificate with --cert or --serial"),
            };
            let reason = reason.reason();
            let hex = ca::serial_hex(&serial);
            let update = ca::revoke(&ca.dir, &serial, reason).with_context(|| format!("cannot revoke serial {hex}"))?;
            if update.newly_revoked {
                println!("revoked serial {hex}");
            } else {
                println!("serial {hex} was already revoked; its first entry is kept");
            }
            print_crl(&update);
        }
        Command::Crl { ca } => {
            let update = ca::renew_crl(&ca.dir).context("cannot renew the CRL")?;
            print_crl(&update);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_written(cert: &Path, key: &Path) {
    println!("  certificate: {}", cert.display());
    println!("  key:         {} (keep it secret)", key.display());
}

fn print_crl(update: &ca::CrlUpdate) {
    println!(
        "wrote {} (CRL number {}, {} revoked, valid 30 days); copy it to every node",
        update.crl.display(),
        update.crl_number,
        update.revoked_count
    );
}
