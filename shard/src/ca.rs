//! Run the consortium certificate authority: one root, member and node certificates, a CRL.
//!
//! A CA directory (`elchain ca init`) holds:
//!
//! | file | content |
//! |---|---|
//! | `ca.pem` | the root certificate (Ed25519, self-signed, 10 years) |
//! | `ca.key` | its private key, PKCS#8 PEM, mode 0600 |
//! | `crl.pem` | the current revocation list, signed by the root |
//! | `serial` | the next serial number, hex (OpenSSL's `serial` file convention) |
//! | `revoked.toml` | the CRL number and every revocation; `crl.pem` is regenerated from it |
//! | `ca.lock` | present only while a command runs |
//!
//! Node certificates (`node-<N>.pem`, `node-<N>.key`) name the node as the DNS name
//! [`node_server_name`] (`n<N>.elchain`), which is what peers verify in QUIC mutual TLS; the
//! subject's O is the member that runs the node and OU its [`Role`]. Member certificates
//! (`<code>.pem`) certify the department's elchain signing key itself.
//!
//! Every file is written to a temporary name, synced and renamed, so a crash never leaves a torn
//! certificate or CRL that nodes would load; secret keys are created with mode 0600 from the
//! start. Commands that change the CA directory hold `ca.lock`, because two concurrent issuances
//! could otherwise hand out one serial twice (and revoking one would revoke both) or lose a
//! revocation.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use elchain_types::crypto::Keypair;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, CertificateRevocationListParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, RevocationReason, RevokedCertParams, SanType,
    SerialNumber, PKCS_ED25519,
};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;

/// File name of the root certificate in a CA directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// File name of the root private key in a CA directory.
pub const CA_KEY_FILE: &str = "ca.key";
/// File name of the certificate revocation list in a CA directory.
pub const CRL_FILE: &str = "crl.pem";
/// File name of the next-serial counter in a CA directory.
pub const SERIAL_FILE: &str = "serial";
/// File name of the revocation state in a CA directory.
pub const STATE_FILE: &str = "revoked.toml";
/// File name of the lock held while a command changes a CA directory.
pub const LOCK_FILE: &str = "ca.lock";
/// The consortium name `elchain ca init` uses when none is given.
pub const DEFAULT_NAME: &str = "elchain consortium";

/// The root's own serial; issued certificates start after it.
const CA_SERIAL: u64 = 1;
const CA_VALIDITY: Duration = Duration::days(3652);
const NODE_VALIDITY: Duration = Duration::days(730);
const MEMBER_VALIDITY: Duration = Duration::days(730);
const CRL_VALIDITY: Duration = Duration::days(30);
/// Certificates start an hour in the past so a replica whose clock runs a little behind the
/// CA's does not reject a fresh certificate as not yet valid.
const BACKDATE: Duration = Duration::hours(1);
/// X.520 caps a common name at 64 characters; the root's is "<name> root CA".
const MAX_CN: usize = 64;
const ROOT_CN_SUFFIX: &str = " root CA";
/// Ed25519 PKCS#8 v1 prefix (RFC 8410): version 0, algorithm id-Ed25519, then the 32-byte
/// seed as an OCTET STRING inside the privateKey OCTET STRING.
const ED25519_PKCS8_V1_PREFIX: [u8; 16] =
    [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
/// id-kp-documentSigning (RFC 9336). A member certificate carries it and no TLS purpose, because
/// TLS verifiers accept a certificate without any extended key usage for every purpose, and a
/// department's certificate must not pass as a node's in mutual TLS.
const EKU_DOCUMENT_SIGNING: [u64; 9] = [1, 3, 6, 1, 5, 5, 7, 3, 36];

const KEY_MODE: u32 = 0o600;
const PUBLIC_MODE: u32 = 0o644;
const DIR_MODE: u32 = 0o700;

/// Failures of the certificate authority.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// A file or directory could not be read or written.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done ("read", "write", "create directory", …).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's complaint.
        source: io::Error,
    },
    /// An output file exists and replacing it was not asked for.
    #[error("{0} already exists; pass --force to replace it")]
    Exists(PathBuf),
    /// `init` was pointed at a directory that already has files in it.
    #[error("{0} is not empty; a new CA needs an empty or missing directory")]
    NotEmpty(PathBuf),
    /// The directory has no CA in it.
    #[error("{0} holds no CA (no {CA_CERT_FILE}); create one with `elchain ca init`")]
    NotInitialised(PathBuf),
    /// Another command holds the CA directory's lock.
    #[error("{0} exists: another `elchain ca` command is running (remove the file if none is)")]
    Locked(PathBuf),
    /// A name that goes into a certificate (and maybe a file name) is unusable.
    #[error("invalid {what} {value:?}: {why}")]
    InvalidName {
        /// Which name ("member code", "CA name").
        what: &'static str,
        /// The name given.
        value: String,
        /// The rule it breaks.
        why: &'static str,
    },
    /// rcgen refused to build or sign a certificate, key or CRL.
    #[error("cannot build {what}: {source}")]
    Rcgen {
        /// What was being built.
        what: &'static str,
        /// rcgen's complaint.
        source: rcgen::Error,
    },
    /// A certificate or CRL does not parse.
    #[error("{what} is not a valid certificate: {why}")]
    BadCertificate {
        /// Which input.
        what: String,
        /// The parser's complaint.
        why: String,
    },
    /// `serial` or `revoked.toml` holds something this build cannot read.
    #[error("{path} is corrupt: {why}")]
    BadState {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// `ca.key` does not belong to `ca.pem`.
    #[error("{key} is not the key of {cert}")]
    KeyMismatch {
        /// The key file.
        key: PathBuf,
        /// The certificate file.
        cert: PathBuf,
    },
    /// A serial number given as text is not hex.
    #[error("serial {0:?} is not a hex number (e.g. 0a or 0A:1B)")]
    BadSerial(String),
    /// The serial was never issued by this CA.
    #[error("serial {serial} was not issued by this CA (the next serial is {next})")]
    NotIssued {
        /// The serial, hex.
        serial: String,
        /// The CA's next serial, hex.
        next: String,
    },
    /// Revoking the root's own serial would not stop anyone trusting it.
    #[error(
        "serial {0} is the root certificate's own; a root is withdrawn by removing it from every node's trust store"
    )]
    RootSerial(String),
    /// A certificate offered for revocation was not signed by this CA.
    #[error("the certificate was not issued by this CA: {0}")]
    ForeignCertificate(String),
}

/// What a node does in the network; it becomes the OU of the node's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// A Raft replica of one or more chains.
    Replica,
    /// A router in front of the chains.
    Router,
}

impl Role {
    /// The name written into certificates.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Replica => "replica",
            Role::Router => "router",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "replica" => Ok(Role::Replica),
            "router" => Ok(Role::Router),
            _ => Err(format!("unknown role {s:?} (replica or router)")),
        }
    }
}

/// Why a certificate is revoked (RFC 5280 §5.3.1 reason codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// No reason given; the CRL entry then carries no reason code, as RFC 5280 asks.
    Unspecified,
    /// The private key is known or suspected to be exposed.
    KeyCompromise,
    /// The member left the consortium or the node changed hands.
    AffiliationChanged,
    /// A new certificate replaces this one (key rotation).
    Superseded,
    /// The node or member was decommissioned.
    CessationOfOperation,
}

impl Reason {
    fn crl_code(self) -> Option<RevocationReason> {
        match self {
            Reason::Unspecified => None,
            Reason::KeyCompromise => Some(RevocationReason::KeyCompromise),
            Reason::AffiliationChanged => Some(RevocationReason::AffiliationChanged),
            Reason::Superseded => Some(RevocationReason::Superseded),
            Reason::CessationOfOperation => Some(RevocationReason::CessationOfOperation),
        }
    }

    /// The RFC 5280 CRLReason number (0 for unspecified), as governance transactions record it.
    pub fn code(self) -> u8 {
        self.crl_code().map_or(0, |r| r as u8)
    }
}

/// The files of a CA directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaPaths {
    /// The directory.
    pub dir: PathBuf,
    /// Root certificate (`ca.pem`): what every node trusts.
    pub cert: PathBuf,
    /// Root private key (`ca.key`).
    pub key: PathBuf,
    /// Revocation list (`crl.pem`): what every node checks peers against.
    pub crl: PathBuf,
    /// Next serial (`serial`).
    pub serial: PathBuf,
    /// Revocation state (`revoked.toml`).
    pub state: PathBuf,
}

impl CaPaths {
    /// The file names of the CA directory `dir` (nothing is read).
    pub fn in_dir(dir: &Path) -> Self {
        CaPaths {
            dir: dir.to_path_buf(),
            cert: dir.join(CA_CERT_FILE),
            key: dir.join(CA_KEY_FILE),
            crl: dir.join(CRL_FILE),
            serial: dir.join(SERIAL_FILE),
            state: dir.join(STATE_FILE),
        }
    }
}

/// A node certificate as written by [`issue_node`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeCertPaths {
    /// `node-<N>.pem`: the certificate alone.
    pub cert: PathBuf,
    /// `node-<N>.key`: its private key, PKCS#8 PEM, mode 0600.
    pub key: PathBuf,
    /// The certificate's serial, big-endian without leading zeros.
    pub serial: Vec<u8>,
    /// The DNS name the certificate carries, which peers verify.
    pub server_name: String,
}

/// A member certificate as written by [`issue_member`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberCertPaths {
    /// `<code>.pem`: the certificate.
    pub cert: PathBuf,
    /// `<code>.key`: the key file the caller supplied, mode 0600.
    pub key: PathBuf,
    /// The certificate's serial, big-endian without leading zeros.
    pub serial: Vec<u8>,
}

/// The outcome of [`revoke`] or [`renew_crl`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlUpdate {
    /// The revoked serial; empty for [`renew_crl`].
    pub serial: Vec<u8>,
    /// False when the serial was revoked before (the CRL is still re-signed).
    pub newly_revoked: bool,
    /// The new CRL's number.
    pub crl_number: u64,
    /// How many certificates the new CRL lists.
    pub revoked_count: usize,
    /// The CRL written.
    pub crl: PathBuf,
}

/// The DNS name in node `node_id`'s certificate: the server name its peers verify.
pub fn node_server_name(node_id: u64) -> String {
    format!("n{node_id}.elchain")
}

/// Create a CA in `dir` (created if missing, which must otherwise be empty): root key,
/// self-signed root certificate for "`name` root CA", an empty CRL and the serial counter.
pub fn init(dir: &Path, name: &str) -> Result<CaPaths, CaError> {
    check_ca_name(name)?;
    match fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(CaError::NotEmpty(dir.to_path_buf()));
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => create_dir(dir)?,
        Err(e) => return Err(io_err("read directory", dir, e)),
    }
    let paths = CaPaths::in_dir(dir);
    let _lock = CaLock::acquire(dir)?;

    let key = KeyPair::generate_for(&PKCS_ED25519).map_err(rcgen_err("the root key"))?;
    let now = OffsetDateTime::now_utc();
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, format!("{name}{ROOT_CN_SUFFIX}"));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params.serial_number = Some(SerialNumber::from(CA_SERIAL));
    params.not_before = now - BACKDATE;
    params.not_after = now + CA_VALIDITY;
    let cert = params.self_signed(&key).map_err(rcgen_err("the root certificate"))?;

    write_file(&paths.key, key.serialize_pem().as_bytes(), KEY_MODE, false)?;
    write_file(&paths.cert, cert.pem().as_bytes(), PUBLIC_MODE, false)?;
    write_file(&paths.serial, serial_file_text(CA_SERIAL + 1).as_bytes(), PUBLIC_MODE, false)?;
    let state = State { crl_number: 1, revoked: Vec::new() };
    state.save(&paths.state)?;
    write_crl(&paths, &cert, &key, &state, now)?;
    Ok(paths)
}

/// Issue node `node_id`'s certificate for QUIC mutual TLS and write `node-<N>.pem` and
/// `node-<N>.key` into `out_dir` (created if missing).
///
/// The certificate names [`node_server_name`] as its only DNS name, `member` as O and `role` as
/// OU, and allows both server and client authentication. Existing files are replaced only with
/// `force`; a refused overwrite consumes no serial.
pub fn issue_node(
    ca_dir: &Path,
    node_id: u64,
    member: &str,
    role: Role,
    out_dir: &Path,
    force: bool,
) -> Result<NodeCertPaths, CaError> {
    check_code(member)?;
    let cert_path = out_dir.join(format!("node-{node_id}.pem"));
    let key_path = out_dir.join(format!("node-{node_id}.key"));
    let ca = Ca::open(ca_dir)?;
    if !force {
        refuse_existing(&[&key_path, &cert_path])?;
    }
    let serial = ca.take_serial()?;

    let key = KeyPair::generate_for(&PKCS_ED25519).map_err(rcgen_err("the node key"))?;
    let server_name = node_server_name(node_id);
    let mut params = ca.leaf_params(serial, NODE_VALIDITY);
    params.distinguished_name.push(DnType::OrganizationName, member);
    params.distinguished_name.push(DnType::OrganizationalUnitName, role.as_str());
    params.distinguished_name.push(DnType::CommonName, format!("node {node_id}"));
    let dns = server_name.clone().try_into().map_err(rcgen_err("the node's DNS name"))?;
    params.subject_alt_names = vec![SanType::DnsName(dns)];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &ca.cert, &ca.key).map_err(rcgen_err("the node certificate"))?;

    create_dir(out_dir)?;
    write_file(&key_path, key.serialize_pem().as_bytes(), KEY_MODE, true)?;
    write_file(&cert_path, cert.pem().as_bytes(), PUBLIC_MODE, true)?;
    Ok(NodeCertPaths { cert: cert_path, key: key_path, serial: serial_bytes(serial), server_name })
}

/// Certify member `code`'s elchain signing key and write `<code>.pem` and `<code>.key` into
/// `out_dir` (created if missing).
///
/// The certificate's public key is `keypair`'s Ed25519 key itself, so whatever the member signs
/// on chain checks against the certificate. `key_file` is written verbatim as `<code>.key` (mode
/// 0600): the caller serialises `keypair` in its key-file format (the CLI uses `elchain keygen`'s
/// JSON), which this crate does not define. Existing files are replaced only with `force`; a
/// refused overwrite consumes no serial.
pub fn issue_member(
    ca_dir: &Path,
    code: &str,
    keypair: &Keypair,
    key_file: &[u8],
    out_dir: &Path,
    force: bool,
) -> Result<MemberCertPaths, CaError> {
    check_code(code)?;
    let cert_path = out_dir.join(format!("{code}.pem"));
    let key_path = out_dir.join(format!("{code}.key"));
    let ca = Ca::open(ca_dir)?;
    if !force {
        refuse_existing(&[&key_path, &cert_path])?;
    }
    let serial = ca.take_serial()?;

    let mut pkcs8 = Vec::with_capacity(48);
    pkcs8.extend_from_slice(&ED25519_PKCS8_V1_PREFIX);
    pkcs8.extend_from_slice(&keypair.secret_seeds().0);
    let key = KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8.as_slice().into(), &PKCS_ED25519)
        .map_err(rcgen_err("the member key"))?;
    pkcs8.fill(0);
    // A mismatch would certify a key the member does not hold; it can only be a bug here.
    assert_eq!(key.public_key_raw(), keypair.public().0, "member key rebuilt from its seed");

    let mut params = ca.leaf_params(serial, MEMBER_VALIDITY);
    params.distinguished_name.push(DnType::OrganizationalUnitName, "member");
    params.distinguished_name.push(DnType::CommonName, code);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::Other(EKU_DOCUMENT_SIGNING.to_vec())];
    let cert = params.signed_by(&key, &ca.cert, &ca.key).map_err(rcgen_err("the member certificate"))?;

    create_dir(out_dir)?;
    write_file(&key_path, key_file, KEY_MODE, true)?;
    write_file(&cert_path, cert.pem().as_bytes(), PUBLIC_MODE, true)?;
    Ok(MemberCertPaths { cert: cert_path, key: key_path, serial: serial_bytes(serial) })
}

/// Revoke `serial` (big-endian bytes, as [`read_serial`] returns) and re-sign `crl.pem` with
/// every revocation so far and a new CRL number.
///
/// Revoking a serial twice keeps its first entry and still re-signs the CRL, so a command
/// interrupted between recording and signing can simply be run again.
pub fn revoke(ca_dir: &Path, serial: &[u8], reason: Reason) -> Result<CrlUpdate, CaError> {
    let ca = Ca::open(ca_dir)?;
    let serial = trim_serial(serial);
    let next = ca.next_serial()?;
    let value = serial_value(serial);
    if value == Some(CA_SERIAL) {
        return Err(CaError::RootSerial(serial_hex(serial)));
    }
    if !matches!(value, Some(v) if v > CA_SERIAL && v < next) {
        return Err(CaError::NotIssued { serial: serial_hex(serial), next: serial_hex(&serial_bytes(next)) });
    }
    let mut state = State::load(&ca.paths.state)?;
    let known = state.revoked.iter().any(|r| r.serial == serial_hex(serial));
    if !known {
        let now = OffsetDateTime::now_utc();
        state.revoked.push(Revoked { serial: serial_hex(serial), revoked_at: now.unix_timestamp(), reason });
    }
    let mut update = ca.resign_crl(state)?;
    update.serial = serial.to_vec();
    update.newly_revoked = !known;
    Ok(update)
}

/// Re-sign `crl.pem` unchanged but with a new number and a fresh next-update date.
///
/// A CRL is valid for 30 days; nodes that enforce its next-update date need a renewed one
/// before then even when nothing was revoked.
pub fn renew_crl(ca_dir: &Path) -> Result<CrlUpdate, CaError> {
    let ca = Ca::open(ca_dir)?;
    let state = State::load(&ca.paths.state)?;
    ca.resign_crl(state)
}

/// The DER bytes of the first certificate in `cert_pem`.
pub fn certificate_der(cert_pem: &[u8]) -> Result<Vec<u8>, CaError> {
    pem_der(cert_pem, "the certificate")
}

/// The serial of the first certificate in `cert_pem`, big-endian without leading zeros.
pub fn read_serial(cert_pem: &[u8]) -> Result<Vec<u8>, CaError> {
    let der = pem_der(cert_pem, "the certificate")?;
    let cert = parse_cert(&der, "the certificate")?;
    Ok(trim_serial(&cert.serial.to_bytes_be()).to_vec())
}

/// The serial of the certificate in `cert_pem` after checking that the CA in `ca_dir` signed it.
///
/// Revoking by serial alone would revoke this CA's certificate with the same serial when handed
/// a certificate from another CA.
pub fn issued_serial(ca_dir: &Path, cert_pem: &[u8]) -> Result<Vec<u8>, CaError> {
    let paths = CaPaths::in_dir(ca_dir);
    let ca_der = pem_der(&read(&paths.cert).map_err(|e| not_initialised(e, ca_dir))?, "ca.pem")?;
    let ca_cert = parse_cert(&ca_der, "ca.pem")?;
    let der = pem_der(cert_pem, "the certificate")?;
    let cert = parse_cert(&der, "the certificate")?;
    if cert.issuer().as_raw() != ca_cert.subject().as_raw() {
        return Err(CaError::ForeignCertificate(format!("its issuer is {}", cert.issuer())));
    }
    cert.verify_signature(Some(ca_cert.public_key()))
        .map_err(|e| CaError::ForeignCertificate(format!("the CA's signature does not verify ({e})")))?;
    Ok(trim_serial(&cert.serial.to_bytes_be()).to_vec())
}

/// Lower-case hex of a serial, two digits per byte (`0a`, `01f4`).
pub fn serial_hex(serial: &[u8]) -> String {
    let serial = trim_serial(serial);
    if serial.is_empty() {
        return "00".into();
    }
    serial.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parse a hex serial as people copy it: optional `0x`, either case, optional `:` between bytes
/// (as OpenSSL prints them). Returns big-endian bytes without leading zeros.
pub fn parse_serial_hex(text: &str) -> Result<Vec<u8>, CaError> {
    let bad = || CaError::BadSerial(text.to_string());
    let t = text.trim();
    let t = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")).unwrap_or(t);
    let digits: Vec<u8> = t.bytes().filter(|&b| b != b':').collect();
    if digits.is_empty() || digits.len() > 40 {
        return Err(bad());
    }
    let mut nibbles = Vec::with_capacity(digits.len() + 1);
    if digits.len() % 2 == 1 {
        nibbles.push(0);
    }
    for d in digits {
        nibbles.push((d as char).to_digit(16).ok_or_else(bad)? as u8);
    }
    let bytes: Vec<u8> = nibbles.chunks(2).map(|p| (p[0] << 4) | p[1]).collect();
    Ok(trim_serial(&bytes).to_vec())
}

/// An open CA directory: the root's signing identity, with the lock held.
struct Ca {
    paths: CaPaths,
    cert: Certificate,
    key: KeyPair,
    _lock: CaLock,
}

impl Ca {
    fn open(dir: &Path) -> Result<Self, CaError> {
        let paths = CaPaths::in_dir(dir);
        if !paths.cert.exists() {
            return Err(CaError::NotInitialised(dir.to_path_buf()));
        }
        let lock = CaLock::acquire(dir)?;
        let cert_pem = read_text(&paths.cert)?;
        let key = KeyPair::from_pem(&read_text(&paths.key)?).map_err(rcgen_err("the root key from ca.key"))?;
        let ca_der = pem_der(cert_pem.as_bytes(), "ca.pem")?;
        let ca_public = parse_cert(&ca_der, "ca.pem")?.public_key().subject_public_key.data.to_vec();
        if ca_public != key.public_key_raw() {
            return Err(CaError::KeyMismatch { key: paths.key, cert: paths.cert });
        }
        // Re-signing the parsed root gives rcgen an issuer with the same subject DN and key
        // identifier, which is all it takes from an issuer; the new signature is never written.
        let cert = CertificateParams::from_ca_cert_pem(&cert_pem)
            .map_err(rcgen_err("the root from ca.pem"))?
            .self_signed(&key)
            .map_err(rcgen_err("the root from ca.pem"))?;
        Ok(Ca { paths, cert, key, _lock: lock })
    }

    fn next_serial(&self) -> Result<u64, CaError> {
        let text = read_text(&self.paths.serial)?;
        let bad = |why: &str| CaError::BadState { path: self.paths.serial.clone(), why: why.into() };
        let bytes = parse_serial_hex(&text).map_err(|_| bad("not a hex number"))?;
        serial_value(&bytes).filter(|&v| v > CA_SERIAL).ok_or_else(|| bad("serial out of range"))
    }

    /// Advance the counter before the certificate exists, so a crash skips a serial rather
    /// than handing the same one out twice.
    fn take_serial(&self) -> Result<u64, CaError> {
        let serial = self.next_serial()?;
        let next = serial
            .checked_add(1)
            .ok_or_else(|| CaError::BadState { path: self.paths.serial.clone(), why: "serials exhausted".into() })?;
        write_file(&self.paths.serial, serial_file_text(next).as_bytes(), PUBLIC_MODE, true)?;
        Ok(serial)
    }

    /// Parameters shared by every certificate the root issues; never outliving the root.
    fn leaf_params(&self, serial: u64, validity: Duration) -> CertificateParams {
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.serial_number = Some(SerialNumber::from(serial));
        params.not_before = now - BACKDATE;
        params.not_after = (now + validity).min(self.cert.params().not_after);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        params
    }

    fn resign_crl(&self, mut state: State) -> Result<CrlUpdate, CaError> {
        state.crl_number = state
            .crl_number
            .checked_add(1)
            .ok_or_else(|| CaError::BadState { path: self.paths.state.clone(), why: "CRL numbers exhausted".into() })?;
        // State first: if signing fails or the process dies, the next run re-signs from it.
        state.save(&self.paths.state)?;
        write_crl(&self.paths, &self.cert, &self.key, &state, OffsetDateTime::now_utc())?;
        Ok(CrlUpdate {
            serial: Vec::new(),
            newly_revoked: false,
            crl_number: state.crl_number,
            revoked_count: state.revoked.len(),
            crl: self.paths.crl.clone(),
        })
    }
}

/// Exclusive use of a CA directory while this value lives.
struct CaLock {
    path: PathBuf,
}

impl CaLock {
    fn acquire(dir: &Path) -> Result<Self, CaError> {
        let path = dir.join(LOCK_FILE);
        let mut f = match fs::OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(CaError::Locked(path)),
            Err(e) => return Err(io_err("create", &path, e)),
        };
        // The pid only helps a person decide whether the lock is stale.
        let _ = writeln!(f, "{}", std::process::id());
        Ok(CaLock { path })
    }
}

impl Drop for CaLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// `revoked.toml`: everything needed to sign the next CRL.
#[derive(Debug, Serialize, Deserialize)]
struct State {
    /// Number of the CRL in `crl.pem`; the next one gets a higher number.
    crl_number: u64,
    #[serde(default)]
    revoked: Vec<Revoked>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Revoked {
    /// Hex, as [`serial_hex`] writes it.
    serial: String,
    /// Unix seconds.
    revoked_at: i64,
    reason: Reason,
}

impl State {
    fn load(path: &Path) -> Result<Self, CaError> {
        let state: State = toml::from_str(&read_text(path)?)
            .map_err(|e| CaError::BadState { path: path.to_path_buf(), why: e.to_string() })?;
        for r in &state.revoked {
            parse_serial_hex(&r.serial)
                .map_err(|_| CaError::BadState { path: path.to_path_buf(), why: format!("serial {:?}", r.serial) })?;
        }
        Ok(state)
    }

    fn save(&self, path: &Path) -> Result<(), CaError> {
        let body = toml::to_string(self)
            .map_err(|e| CaError::BadState { path: path.to_path_buf(), why: format!("cannot serialise: {e}") })?;
        let text = format!("# Written by `elchain ca`; crl.pem is signed from this file. Do not edit.\n{body}");
        write_file(path, text.as_bytes(), PUBLIC_MODE, true)
    }
}

fn write_crl(
    paths: &CaPaths,
    cert: &Certificate,
    key: &KeyPair,
    state: &State,
    now: OffsetDateTime,
) -> Result<(), CaError> {
    let mut revoked_certs = Vec::with_capacity(state.revoked.len());
    for r in &state.revoked {
        let serial = parse_serial_hex(&r.serial)
            .map_err(|_| CaError::BadState { path: paths.state.clone(), why: format!("serial {:?}", r.serial) })?;
        let revocation_time = OffsetDateTime::from_unix_timestamp(r.revoked_at)
            .map_err(|e| CaError::BadState { path: paths.state.clone(), why: format!("revoked_at: {e}") })?;
        revoked_certs.push(RevokedCertParams {
            serial_number: SerialNumber::from_slice(&serial),
            revocation_time,
            reason_code: r.reason.crl_code(),
            invalidity_date: None,
        });
    }
    let params = CertificateRevocationListParams {
        this_update: now,
        next_update: now + CRL_VALIDITY,
        crl_number: SerialNumber::from(state.crl_number),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: cert.params().key_identifier_method.clone(),
    };
    let crl = params.signed_by(cert, key).map_err(rcgen_err("the CRL"))?;
    let pem = crl.pem().map_err(rcgen_err("the CRL"))?;
    write_file(&paths.crl, pem.as_bytes(), PUBLIC_MODE, true)
}

/// Write `bytes` to `path` through a synced temporary file and a rename, so readers see the old
/// file or the new one, never a part; the temporary is created with `mode`, so a secret is
/// never readable by others, not even for a moment.
fn write_file(path: &Path, bytes: &[u8], mode: u32, replace: bool) -> Result<(), CaError> {
    if !replace && fs::symlink_metadata(path).is_ok() {
        return Err(CaError::Exists(path.to_path_buf()));
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("remove", &tmp, e)),
    }
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let result = opts.open(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    if let Err(e) = result.and_then(|()| fs::rename(&tmp, path)) {
        let _ = fs::remove_file(&tmp);
        return Err(io_err("write", path, e));
    }
    sync_parent(path);
    Ok(())
}

/// Make a rename durable; best effort, since not every platform can open a directory.
fn sync_parent(path: &Path) {
    #[cfg(unix)]
    if let Some(parent) = path.parent() {
        let parent = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
        if let Ok(d) = fs::File::open(parent) {
            let _ = d.sync_all();
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

fn create_dir(dir: &Path) -> Result<(), CaError> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    // Directories created here hold private keys.
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(DIR_MODE);
    }
    builder.create(dir).map_err(|e| io_err("create directory", dir, e))
}

fn refuse_existing(paths: &[&Path]) -> Result<(), CaError> {
    match paths.iter().find(|p| fs::symlink_metadata(p).is_ok()) {
        Some(p) => Err(CaError::Exists(p.to_path_buf())),
        None => Ok(()),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, CaError> {
    fs::read(path).map_err(|e| io_err("read", path, e))
}

fn read_text(path: &Path) -> Result<String, CaError> {
    fs::read_to_string(path).map_err(|e| io_err("read", path, e))
}

fn io_err(action: &'static str, path: &Path, source: io::Error) -> CaError {
    CaError::Io { action, path: path.to_path_buf(), source }
}

fn not_initialised(e: CaError, dir: &Path) -> CaError {
    match e {
        CaError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => {
            CaError::NotInitialised(dir.to_path_buf())
        }
        e => e,
    }
}

fn rcgen_err(what: &'static str) -> impl Fn(rcgen::Error) -> CaError {
    move |source| CaError::Rcgen { what, source }
}

fn pem_der(pem: &[u8], what: &str) -> Result<Vec<u8>, CaError> {
    let bad = |why: String| CaError::BadCertificate { what: what.to_string(), why };
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem).map_err(|e| bad(format!("not PEM ({e})")))?;
    if pem.label != "CERTIFICATE" {
        return Err(bad(format!("PEM block is {:?}, not CERTIFICATE", pem.label)));
    }
    Ok(pem.contents)
}

fn parse_cert<'a>(der: &'a [u8], what: &str) -> Result<X509Certificate<'a>, CaError> {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, c)| c)
        .map_err(|e| CaError::BadCertificate { what: what.to_string(), why: e.to_string() })
}

fn trim_serial(serial: &[u8]) -> &[u8] {
    let zeros = serial.iter().take_while(|&&b| b == 0).count();
    &serial[zeros..]
}

fn serial_value(serial: &[u8]) -> Option<u64> {
    let serial = trim_serial(serial);
    if serial.len() > 8 {
        return None;
    }
    Some(serial.iter().fold(0u64, |v, &b| (v << 8) | u64::from(b)))
}

fn serial_bytes(serial: u64) -> Vec<u8> {
    trim_serial(&serial.to_be_bytes()).to_vec()
}

fn serial_file_text(next: u64) -> String {
    format!("{}\n", serial_hex(&serial_bytes(next)))
}

/// Member codes become file names and certificate names, so they are kept to a safe alphabet.
fn check_code(code: &str) -> Result<(), CaError> {
    let bad = |why| CaError::InvalidName { what: "member code", value: code.to_string(), why };
    if code.is_empty() || code.len() > MAX_CN {
        return Err(bad("must be 1 to 64 characters"));
    }
    if !code.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric()) {
        return Err(bad("must start with a letter or digit"));
    }
    if !code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(bad("may hold only ASCII letters, digits, '-' and '_'"));
    }
    Ok(())
}

fn check_ca_name(name: &str) -> Result<(), CaError> {
    let bad = |why| CaError::InvalidName { what: "CA name", value: name.to_string(), why };
    if name.trim().is_empty() {
        return Err(bad("must not be empty"));
    }
    if name.chars().count() + ROOT_CN_SUFFIX.len() > MAX_CN {
        return Err(bad("must be at most 56 characters (the certificate's name adds \" root CA\")"));
    }
    if name.chars().any(char::is_control) {
        return Err(bad("must not hold control characters"));
    }
    Ok(())
}

#[cfg(test)]
#[path = "ca_tests.rs"]
mod tests;
