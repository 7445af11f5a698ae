//! Issue test certificates the way the consortium CA does, into a directory.
//!
//! ```text
//!  TestCa::new(dir) ─► dir/ca.pem          (Ed25519, self-signed, CA: cert + CRL signing)
//!  ca.node(N, member, role) ─► dir/node-N.pem, dir/node-N.key
//!                              CN "node N", O member, OU role, SAN DNS nN.elchain,
//!                              EKU server + client auth, serial N
//!  ca.crl(&[serials]) ─► dir/crl.pem
//! ```

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason, RevokedCertParams, SerialNumber, PKCS_ED25519,
};
use time::{Duration, OffsetDateTime};

use super::tls::{server_name, TlsFiles};

/// A certificate authority writing its files into one directory.
pub(crate) struct TestCa {
    dir: PathBuf,
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl TestCa {
    /// A fresh CA named `name`, its certificate written to `dir/ca.pem`.
    pub(crate) fn new(dir: &Path, name: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let key = KeyPair::generate_for(&PKCS_ED25519).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.join("ca.pem"), cert.pem()).unwrap();
        TestCa { dir: dir.to_path_buf(), cert, key }
    }

    /// Path of the CA certificate.
    pub(crate) fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Issue node `n`'s certificate and key and return its files (trusting this CA, no CRL).
    pub(crate) fn node(&self, n: u64, member: &str, role: &str) -> TlsFiles {
        self.node_with_names(n, member, role, vec![server_name(n)])
    }

    /// Like [`TestCa::node`], with the given DNS names instead of the conventional one.
    pub(crate) fn node_with_names(&self, n: u64, member: &str, role: &str, dns: Vec<String>) -> TlsFiles {
        let key = KeyPair::generate_for(&PKCS_ED25519).unwrap();
        let mut params = CertificateParams::new(dns).unwrap();
        params.distinguished_name.push(DnType::CommonName, format!("node {n}"));
        params.distinguished_name.push(DnType::OrganizationName, member);
        params.distinguished_name.push(DnType::OrganizationalUnitName, role);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.serial_number = Some(SerialNumber::from(n));
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let cert_path = self.dir.join(format!("node-{n}.pem"));
        let key_path = self.dir.join(format!("node-{n}.key"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        TlsFiles { ca_cert: self.ca_path(), cert: cert_path, key: key_path, crl: None }
    }

    /// Write a CRL revoking the certificates with these serials (node numbers) and return its path.
    pub(crate) fn crl(&self, revoked: &[u64]) -> PathBuf {
        let now = OffsetDateTime::now_utc();
        let crl = CertificateRevocationListParams {
            this_update: now - Duration::minutes(1),
            next_update: now + Duration::days(1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|&n| RevokedCertParams {
                    serial_number: SerialNumber::from(n),
                    revocation_time: now - Duration::minutes(1),
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&self.cert, &self.key)
        .unwrap();
        let path = self.dir.join("crl.pem");
        std::fs::write(&path, crl.pem().unwrap()).unwrap();
        path
    }
}
