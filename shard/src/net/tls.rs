//! Load a node's certificates into rustls configurations and read peers' identities.
//!
//! ```text
//!  ca.pem ──► RootCertStore ─┬─► WebPkiClientVerifier (+ CRLs) ─► ServerConfig (+ node cert, key)
//!  crl.pem ──► CRLs ─────────┤
//!                            └─► WebPkiServerVerifier (+ CRLs) ─► ClientConfig (+ node cert, key)
//!  verified peer certificate ──► PeerIdentity { node_id ← SAN n<N>.elchain, member ← O, role ← OU }
//! ```
//!
//! Both sides speak TLS 1.3 only, offer only ALPN [`ALPN`], and use the ring
//! provider explicitly, so nothing depends on a process-wide default provider.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{NetError, ALPN};

/// What a node presents and trusts: paths of PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The consortium CA certificate(s); peers must chain to one of them.
    pub ca_cert: PathBuf,
    /// This node's certificate, optionally followed by intermediates.
    pub cert: PathBuf,
    /// This node's private key (PKCS#8 PEM).
    pub key: PathBuf,
    /// Revoked certificates, signed by the CA; `None` checks no revocation.
    pub crl: Option<PathBuf>,
}

/// Who is on the other end of a connection, read from its verified certificate.
///
/// A field is `None` when the certificate does not carry it exactly once in the expected form;
/// the handshake already proved the certificate chains to the CA, so what is here is what the
/// CA signed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct PeerIdentity {
    /// Node number from the DNS subject alternative name `n<N>.elchain`.
    pub node_id: Option<u64>,
    /// Member code from the subject's organisation (O).
    pub member: Option<String>,
    /// Role from the subject's organisational unit (OU): "replica" or "router".
    pub role: Option<String>,
    /// The certificate's Ed25519 public key: what the node's checkpoint signatures verify under.
    pub public_key: Option<[u8; 32]>,
}

impl PeerIdentity {
    /// Read the identity from a DER certificate.
    pub fn from_certificate(der: &[u8]) -> Result<Self, String> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| format!("unparsable certificate: {e}"))?;
        let subject = cert.subject();
        let member = single(subject.iter_organization().map(|a| a.as_str().ok()));
        let role = single(subject.iter_organizational_unit().map(|a| a.as_str().ok()));
        let mut node_ids = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                if let GeneralName::DNSName(dns) = name {
                    if let Some(id) = node_id_from_dns(dns) {
                        node_ids.push(id);
                    }
                }
            }
        }
        node_ids.dedup();
        // Two different node names would let one certificate speak for two nodes.
        let node_id = if node_ids.len() == 1 { Some(node_ids[0]) } else { None };
        let public_key = <[u8; 32]>::try_from(&*cert.public_key().subject_public_key.data).ok();
        Ok(PeerIdentity { node_id, member, role, public_key })
    }
}

/// The one value of an attribute, if it appears exactly once and is a string.
fn single<'a>(mut values: impl Iterator<Item = Option<&'a str>>) -> Option<String> {
    let first = values.next()??;
    if values.next().is_some() {
        return None;
    }
    Some(first.to_owned())
}

/// The server name a node's certificate must carry: `n<N>.elchain`.
pub fn server_name(node_id: u64) -> String {
    format!("n{node_id}.elchain")
}

/// Node number of a DNS name `n<N>.elchain`. Only the canonical spelling counts (no leading
/// zeros or signs), so the number read here is exactly the one whose [`server_name`] the
/// verifier would match when dialling; DNS is case-insensitive, so case is ignored as webpki does.
fn node_id_from_dns(dns: &str) -> Option<u64> {
    let lower = dns.to_ascii_lowercase();
    let digits = lower.strip_prefix('n')?.strip_suffix(".elchain")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let id: u64 = digits.parse().ok()?;
    (server_name(id) == lower).then_some(id)
}

/// A node's loaded TLS material: the server and client configurations for QUIC.
#[derive(Debug, Clone)]
pub struct Identity {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    local: PeerIdentity,
    signing_seed: Option<Seed>,
}

/// An Ed25519 secret seed that never prints.
#[derive(Clone)]
struct Seed([u8; 32]);

impl std::fmt::Debug for Seed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Seed(…)")
    }
}

/// The seed of an Ed25519 PKCS#8 key (v1 or v2): `04 22 04 20` then 32 bytes at offset 12.
fn ed25519_seed(pkcs8: &[u8]) -> Option<[u8; 32]> {
    const OID: [u8; 5] = [0x06, 0x03, 0x2b, 0x65, 0x70];
    if pkcs8.len() < 48 || pkcs8[7..12] != OID || pkcs8[12..16] != [0x04, 0x22, 0x04, 0x20] {
        return None;
    }
    pkcs8[16..48].try_into().ok()
}

impl Identity {
    /// Read and check the files, and build both configurations.
    pub fn load(files: &TlsFiles) -> Result<Self, NetError> {
        let ca = read_pem_file(&files.ca_cert)?;
        let ca_certs = parse_all::<CertificateDer<'static>>(&files.ca_cert, &ca, "certificate")?;
        let chain_pem = read_pem_file(&files.cert)?;
        let chain = parse_all::<CertificateDer<'static>>(&files.cert, &chain_pem, "certificate")?;
        let key_pem = read_pem_file(&files.key)?;
        let key =
            PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| config(&files.key, format!("no private key: {e}")))?;
        let crls = match &files.crl {
            Some(path) => {
                let pem = read_pem_file(path)?;
                parse_all::<CertificateRevocationListDer<'static>>(path, &pem, "X509 CRL")?
            }
            None => Vec::new(),
        };

        let mut roots = RootCertStore::empty();
        for cert in ca_certs {
            roots.add(cert).map_err(|e| config(&files.ca_cert, format!("not a usable CA certificate: {e}")))?;
        }
        let local = PeerIdentity::from_certificate(&chain[0]).map_err(|e| config(&files.cert, e))?;
        let signing_seed = ed25519_seed(key.secret_der()).map(Seed);
        let mut identity = Self::build(Arc::new(roots), chain, key, crls, local)?;
        identity.signing_seed = signing_seed;
        Ok(identity)
    }

    fn build(
        roots: Arc<RootCertStore>,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        crls: Vec<CertificateRevocationListDer<'static>>,
        local: PeerIdentity,
    ) -> Result<Self, NetError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = |e: rustls::Error| NetError::Tls(e.to_string());

        // The CRL's next-update date is not enforced: a CA that is late to publish should not cut
        // every node off from every other; a revoked serial is refused whatever the date.
        let client_verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .with_crls(crls.clone())
            .build()
            .map_err(|e| NetError::Tls(format!("client verifier: {e}")))?;
        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls)?
            .with_client_cert_verifier(client_verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(tls)?;
        server.alpn_protocols = vec![ALPN.to_vec()];

        let server_verifier = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
            .with_crls(crls)
            .build()
            .map_err(|e| NetError::Tls(format!("server verifier: {e}")))?;
        let mut client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls)?
            .with_webpki_verifier(server_verifier)
            .with_client_auth_cert(chain, key)
            .map_err(tls)?;
        client.alpn_protocols = vec![ALPN.to_vec()];

        Ok(Identity { server: Arc::new(server), client: Arc::new(client), local, signing_seed: None })
    }

    /// The rustls configuration this node serves with (client certificates required).
    pub fn server_config(&self) -> &Arc<ServerConfig> {
        &self.server
    }

    /// The rustls configuration this node dials with (presents its certificate).
    pub fn client_config(&self) -> &Arc<ClientConfig> {
        &self.client
    }

    /// This node's own identity, read from its certificate.
    pub fn local(&self) -> &PeerIdentity {
        &self.local
    }

    /// The node's certificate key as a signing key pair (for checkpoint signatures), when it is
    /// an Ed25519 key. Only the signing half is meaningful.
    pub fn signing_keypair(&self) -> Option<elchain_types::crypto::Keypair> {
        let seed = self.signing_seed.as_ref()?.0;
        let unused = elchain_types::crypto::hash(&elchain_types::crypto::domain::DEV_KEY, &[b"unused/", &seed]);
        Some(elchain_types::crypto::Keypair::from_seeds(seed, unused))
    }
}

/// The identity of the peer on `conn`, from the end-entity certificate the handshake verified.
pub(crate) fn peer_identity(conn: &quinn::Connection) -> Result<PeerIdentity, String> {
    let any = conn.peer_identity().ok_or("peer presented no certificate")?;
    let certs =
        any.downcast::<Vec<CertificateDer<'static>>>().map_err(|_| "peer identity is not a certificate chain")?;
    let leaf = certs.first().ok_or("peer presented an empty certificate chain")?;
    PeerIdentity::from_certificate(leaf)
}

fn config(path: &Path, reason: impl Into<String>) -> NetError {
    NetError::Config { path: path.to_path_buf(), reason: reason.into() }
}

fn read_pem_file(path: &Path) -> Result<Vec<u8>, NetError> {
    std::fs::read(path).map_err(|e| config(path, e.to_string()))
}

/// Every PEM section of type `T` in `pem`; at least one, or the file is misconfigured.
fn parse_all<T: PemObject>(path: &Path, pem: &[u8], what: &str) -> Result<Vec<T>, NetError> {
    let items =
        T::pem_slice_iter(pem).collect::<Result<Vec<T>, _>>().map_err(|e| config(path, format!("bad PEM: {e}")))?;
    if items.is_empty() {
        return Err(config(path, format!("no {what} in the file")));
    }
    Ok(items)
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn only_canonical_node_names_give_a_node_id() {
        assert_eq!(node_id_from_dns("n1.elchain"), Some(1));
        assert_eq!(node_id_from_dns("n0.elchain"), Some(0));
        assert_eq!(node_id_from_dns("N42.ELCHAIN"), Some(42));
        assert_eq!(node_id_from_dns("n18446744073709551615.elchain"), Some(u64::MAX));
        for bad in [
            "n01.elchain",
            "n.elchain",
            "n+1.elchain",
            "n-1.elchain",
            "n1.elchain.evil",
            "x1.elchain",
            "n1.other",
            "n18446744073709551616.elchain",
            "n1x.elchain",
        ] {
            assert_eq!(node_id_from_dns(bad), None, "{bad}");
        }
    }
}
