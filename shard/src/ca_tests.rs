//! The CA's file conventions, certificate contents, chaining and revocation, checked with
//! x509-parser and with the rustls verifiers the QUIC transport uses.

use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, ServerName, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;
use x509_parser::x509::X509Name;

use super::*;

fn der(path: &Path) -> Vec<u8> {
    pem_der(&fs::read(path).unwrap(), "test input").unwrap()
}

fn crl_der(path: &Path) -> Vec<u8> {
    CertificateRevocationListDer::from_pem_file(path).unwrap().to_vec()
}

fn attr(name: &X509Name<'_>, which: &str) -> Vec<String> {
    let it: Vec<_> = match which {
        "CN" => name.iter_common_name().collect(),
        "O" => name.iter_organization().collect(),
        _ => name.iter_organizational_unit().collect(),
    };
    it.iter().map(|a| a.as_str().unwrap().to_string()).collect()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn new_ca() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    init(&dir, DEFAULT_NAME).unwrap();
    (tmp, dir)
}

fn crl_serials(crl: &CertificateRevocationList<'_>) -> Vec<Vec<u8>> {
    crl.iter_revoked_certificates().map(|r| trim_serial(&r.serial().to_bytes_be()).to_vec()).collect()
}

#[test]
fn init_writes_the_ca_files_with_a_private_key_only_the_owner_reads() {
    let (_tmp, dir) = new_ca();
    let paths = CaPaths::in_dir(&dir);
    for p in [&paths.cert, &paths.key, &paths.crl, &paths.serial, &paths.state] {
        assert!(p.is_file(), "{} missing", p.display());
    }
    assert!(!dir.join(LOCK_FILE).exists());
    #[cfg(unix)]
    assert_eq!(mode(&paths.key), 0o600);
    assert!(fs::read_to_string(&paths.key).unwrap().starts_with("-----BEGIN PRIVATE KEY-----"));
    assert_eq!(fs::read_to_string(&paths.serial).unwrap(), "02\n");

    let ca_der = der(&paths.cert);
    let ca = parse_cert(&ca_der, "ca").unwrap();
    assert_eq!(attr(ca.subject(), "CN"), ["elchain consortium root CA"]);
    assert_eq!(ca.subject().as_raw(), ca.issuer().as_raw());
    let bc = ca.basic_constraints().unwrap().unwrap().value;
    assert!(bc.ca && bc.path_len_constraint.is_none());
    let ku = ca.key_usage().unwrap().unwrap().value;
    assert!(ku.key_cert_sign() && ku.crl_sign() && ku.digital_signature());
    ca.verify_signature(None).unwrap();
    let years = (ca.validity().not_after.timestamp() - ca.validity().not_before.timestamp()) / (365 * 86_400);
    assert_eq!(years, 10);

    let crl_bytes = crl_der(&paths.crl);
    let (_, crl) = CertificateRevocationList::from_der(&crl_bytes).unwrap();
    crl.verify_signature(ca.public_key()).unwrap();
    assert_eq!(crl.iter_revoked_certificates().count(), 0);
    assert_eq!(crl.crl_number().unwrap().to_u64_digits(), [1]);
}

#[test]
fn init_refuses_a_non_empty_directory_and_bad_names() {
    let (_tmp, dir) = new_ca();
    assert!(matches!(init(&dir, DEFAULT_NAME), Err(CaError::NotEmpty(d)) if d == dir));
    let other = dir.parent().unwrap().join("other");
    assert!(matches!(init(&other, ""), Err(CaError::InvalidName { .. })));
    assert!(matches!(init(&other, &"x".repeat(57)), Err(CaError::InvalidName { .. })));
    assert!(!other.exists());
}

#[test]
fn a_node_certificate_carries_the_agreed_names_and_chains_to_the_root() {
    let (tmp, dir) = new_ca();
    let out = tmp.path().join("nodes");
    let issued = issue_node(&dir, 7, "city-services", Role::Replica, &out, false).unwrap();
    assert_eq!(issued.cert, out.join("node-7.pem"));
    assert_eq!(issued.key, out.join("node-7.key"));
    assert_eq!(issued.serial, [2]);
    assert_eq!(issued.server_name, "n7.elchain");
    #[cfg(unix)]
    assert_eq!(mode(&issued.key), 0o600);
    assert_eq!(fs::read_to_string(dir.join(SERIAL_FILE)).unwrap(), "03\n");
    let pem = fs::read_to_string(&issued.cert).unwrap();
    assert_eq!(pem.matches("-----BEGIN").count(), 1, "the node certificate alone");

    let ca_der = der(&dir.join(CA_CERT_FILE));
    let ca = parse_cert(&ca_der, "ca").unwrap();
    let cert_der = der(&issued.cert);
    let cert = parse_cert(&cert_der, "node").unwrap();
    cert.verify_signature(Some(ca.public_key())).unwrap();
    assert_eq!(cert.issuer().as_raw(), ca.subject().as_raw());
    assert_eq!(attr(cert.subject(), "CN"), ["node 7"]);
    assert_eq!(attr(cert.subject(), "O"), ["city-services"]);
    assert_eq!(attr(cert.subject(), "OU"), ["replica"]);
    let san = &cert.subject_alternative_name().unwrap().unwrap().value.general_names;
    assert_eq!(san, &[GeneralName::DNSName("n7.elchain")]);
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth);
    assert!(!cert.is_ca());
    assert!(cert.validity().not_after <= ca.validity().not_after);
    assert_eq!(read_serial(pem.as_bytes()).unwrap(), [2]);

    let key = KeyPair::from_pem(&fs::read_to_string(&issued.key).unwrap()).unwrap();
    assert_eq!(key.public_key_raw(), cert.public_key().subject_public_key.data.as_ref());

    let router = issue_node(&dir, 8, "economy-it", Role::Router, &out, false).unwrap();
    let router_der = der(&router.cert);
    assert_eq!(attr(parse_cert(&router_der, "router").unwrap().subject(), "OU"), ["router"]);
    assert_eq!(router.serial, [3]);
}

struct Verifiers {
    server: Arc<dyn ServerCertVerifier>,
    client: Arc<dyn ClientCertVerifier>,
}

/// The verifiers a node builds from `ca.pem` and `crl.pem`.
fn verifiers(dir: &Path) -> Verifiers {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(dir.join(CA_CERT_FILE)).unwrap()).unwrap();
    let roots = Arc::new(roots);
    let crl = || vec![CertificateRevocationListDer::from_pem_file(dir.join(CRL_FILE)).unwrap()];
    let server = rustls::client::WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
        .with_crls(crl())
        .build()
        .unwrap();
    let client = WebPkiClientVerifier::builder_with_provider(roots, provider).with_crls(crl()).build().unwrap();
    Verifiers { server, client }
}

fn as_server(v: &Verifiers, cert: &Path, name: &str) -> Result<(), rustls::Error> {
    let ee = CertificateDer::from_pem_file(cert).unwrap();
    let name = ServerName::try_from(name.to_string()).unwrap();
    v.server.verify_server_cert(&ee, &[], &name, &[], UnixTime::now()).map(|_| ())
}

fn as_client(v: &Verifiers, cert: &Path) -> Result<(), rustls::Error> {
    let ee = CertificateDer::from_pem_file(cert).unwrap();
    v.client.verify_client_cert(&ee, &[], UnixTime::now()).map(|_| ())
}

#[test]
fn rustls_accepts_node_certificates_until_they_are_revoked_and_never_member_ones() {
    let (tmp, dir) = new_ca();
    let out = tmp.path().join("out");
    let n7 = issue_node(&dir, 7, "city-services", Role::Replica, &out, false).unwrap();
    let n8 = issue_node(&dir, 8, "economy-it", Role::Router, &out, false).unwrap();
    let member = issue_member(&dir, "economy-it", &Keypair::dev("economy-it"), b"{}", &out, false).unwrap();

    let v = verifiers(&dir);
    as_server(&v, &n7.cert, "n7.elchain").unwrap();
    as_client(&v, &n7.cert).unwrap();
    assert!(as_server(&v, &n7.cert, "n8.elchain").is_err(), "the name is bound to the node");
    assert!(as_client(&v, &member.cert).is_err(), "a member certificate is not a TLS identity");
    assert!(as_server(&v, &member.cert, "economy-it").is_err());

    revoke(&dir, &n7.serial, Reason::KeyCompromise).unwrap();
    let v = verifiers(&dir);
    let revoked = rustls::Error::InvalidCertificate(rustls::CertificateError::Revoked);
    assert_eq!(as_server(&v, &n7.cert, "n7.elchain"), Err(revoked.clone()));
    assert_eq!(as_client(&v, &n7.cert), Err(revoked));
    as_client(&v, &n8.cert).unwrap();
    as_server(&v, &n8.cert, "n8.elchain").unwrap();
}

#[test]
fn revocations_accumulate_in_a_crl_signed_by_the_root() {
    let (tmp, dir) = new_ca();
    let out = tmp.path().join("out");
    let a = issue_node(&dir, 1, "city-services", Role::Replica, &out, false).unwrap();
    let b = issue_node(&dir, 2, "city-services", Role::Replica, &out, false).unwrap();

    let first = revoke(&dir, &read_serial(&fs::read(&a.cert).unwrap()).unwrap(), Reason::KeyCompromise).unwrap();
    assert!(first.newly_revoked);
    assert_eq!((first.crl_number, first.revoked_count), (2, 1));
    let second = revoke(&dir, &issued_serial(&dir, &fs::read(&b.cert).unwrap()).unwrap(), Reason::Unspecified).unwrap();
    assert_eq!((second.crl_number, second.revoked_count), (3, 2));
    let again = revoke(&dir, &a.serial, Reason::Superseded).unwrap();
    assert!(!again.newly_revoked);
    assert_eq!((again.crl_number, again.revoked_count), (4, 2));

    let ca_der = der(&dir.join(CA_CERT_FILE));
    let ca = parse_cert(&ca_der, "ca").unwrap();
    let crl_bytes = crl_der(&dir.join(CRL_FILE));
    let (_, crl) = CertificateRevocationList::from_der(&crl_bytes).unwrap();
    crl.verify_signature(ca.public_key()).unwrap();
    assert_eq!(crl.issuer().as_raw(), ca.subject().as_raw());
    assert_eq!(crl.crl_number().unwrap().to_u64_digits(), [4]);
    assert_eq!(crl_serials(&crl), [a.serial.clone(), b.serial.clone()]);
    let reasons: Vec<_> = crl.iter_revoked_certificates().map(|r| r.reason_code().map(|(_, c)| c.0)).collect();
    assert_eq!(reasons, [Some(1), None], "first reason kept; unspecified carries no code");
    let next_update = crl.next_update().unwrap().timestamp() - crl.last_update().timestamp();
    assert_eq!(next_update, 30 * 86_400);

    let renewed = renew_crl(&dir).unwrap();
    assert_eq!((renewed.crl_number, renewed.revoked_count), (5, 2));
}

#[test]
fn revoke_refuses_serials_this_ca_never_issued() {
    let (tmp, dir) = new_ca();
    assert!(matches!(revoke(&dir, &[2], Reason::Unspecified), Err(CaError::NotIssued { .. })));
    assert!(matches!(revoke(&dir, &[1], Reason::Unspecified), Err(CaError::RootSerial(_))));
    assert!(matches!(revoke(&dir, &[0; 9], Reason::Unspecified), Err(CaError::NotIssued { .. })));

    // The same serial from another CA must not revoke ours.
    let (_tmp2, other) = new_ca();
    let foreign = issue_node(&other, 1, "city-services", Role::Replica, &tmp.path().join("o"), false).unwrap();
    issue_node(&dir, 1, "city-services", Role::Replica, &tmp.path().join("d"), false).unwrap();
    let err = issued_serial(&dir, &fs::read(&foreign.cert).unwrap()).unwrap_err();
    assert!(matches!(err, CaError::ForeignCertificate(_)), "{err}");
    let state = fs::read_to_string(dir.join(STATE_FILE)).unwrap();
    assert!(!state.contains("[[revoked]]"));
}

#[test]
fn a_member_certificate_certifies_the_members_own_signing_key() {
    let (tmp, dir) = new_ca();
    let out = tmp.path().join("members");
    let kp = Keypair::dev("market-regulation");
    let issued = issue_member(&dir, "market-regulation", &kp, b"{\"secret\":1}\n", &out, false).unwrap();
    assert_eq!(issued.cert, out.join("market-regulation.pem"));
    assert_eq!(issued.key, out.join("market-regulation.key"));
    assert_eq!(fs::read(&issued.key).unwrap(), b"{\"secret\":1}\n");
    #[cfg(unix)]
    assert_eq!(mode(&issued.key), 0o600);

    let ca_der = der(&dir.join(CA_CERT_FILE));
    let ca = parse_cert(&ca_der, "ca").unwrap();
    let cert_der = der(&issued.cert);
    let cert = parse_cert(&cert_der, "member").unwrap();
    cert.verify_signature(Some(ca.public_key())).unwrap();
    assert_eq!(cert.public_key().subject_public_key.data.as_ref(), kp.public().0);
    assert_eq!(attr(cert.subject(), "CN"), ["market-regulation"]);
    assert_eq!(attr(cert.subject(), "OU"), ["member"]);
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(!eku.server_auth && !eku.client_auth && eku.other.len() == 1);

    for code in ["", "../x", "a/b", "-x", "x y", &"x".repeat(65)] {
        let err = issue_member(&dir, code, &kp, b"", &out, true).unwrap_err();
        assert!(matches!(err, CaError::InvalidName { .. }), "{code:?}: {err}");
    }
}

#[test]
fn existing_files_are_replaced_only_when_forced() {
    let (tmp, dir) = new_ca();
    let out = tmp.path().join("out");
    let first = issue_node(&dir, 3, "city-services", Role::Replica, &out, false).unwrap();
    let before = fs::read(&first.cert).unwrap();
    let err = issue_node(&dir, 3, "city-services", Role::Replica, &out, false).unwrap_err();
    assert!(matches!(&err, CaError::Exists(p) if p == &first.key), "{err}");
    assert!(err.to_string().contains("node-3.key"));
    assert_eq!(fs::read(&first.cert).unwrap(), before);
    assert_eq!(fs::read_to_string(dir.join(SERIAL_FILE)).unwrap(), "03\n", "no serial spent on a refusal");

    let kp = Keypair::dev("city-services");
    issue_member(&dir, "city-services", &kp, b"{}", &out, false).unwrap();
    let err = issue_member(&dir, "city-services", &kp, b"{}", &out, false).unwrap_err();
    assert!(matches!(err, CaError::Exists(_)));

    let second = issue_node(&dir, 3, "city-services", Role::Replica, &out, true).unwrap();
    assert_eq!(second.serial, [4]);
    assert_ne!(fs::read(&second.cert).unwrap(), before);
    #[cfg(unix)]
    assert_eq!(mode(&second.key), 0o600);
    assert!(fs::read_dir(&out).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().ends_with(".tmp")));
}

#[test]
fn a_held_lock_and_a_missing_ca_are_reported() {
    let (tmp, dir) = new_ca();
    let out = tmp.path().join("out");
    let lock = CaLock::acquire(&dir).unwrap();
    assert!(matches!(issue_node(&dir, 1, "m", Role::Router, &out, false), Err(CaError::Locked(_))));
    drop(lock);
    issue_node(&dir, 1, "m", Role::Router, &out, false).unwrap();
    let missing = tmp.path().join("nope");
    assert!(matches!(revoke(&missing, &[2], Reason::Unspecified), Err(CaError::NotInitialised(_))));
}

#[test]
fn serials_parse_as_people_copy_them() {
    assert_eq!(parse_serial_hex("0a").unwrap(), [10]);
    assert_eq!(parse_serial_hex("0x1F4").unwrap(), [1, 0xf4]);
    assert_eq!(parse_serial_hex("00:01:F4").unwrap(), [1, 0xf4]);
    assert!(parse_serial_hex("xyz").is_err());
    assert!(parse_serial_hex("").is_err());
    assert_eq!(serial_hex(&[0, 1, 0xf4]), "01f4");
    assert_eq!(serial_hex(&[]), "00");
}

#[test]
fn the_member_key_prefix_is_the_rfc_8410_encoding() {
    // RFC 8410 §10.3 example private key (PKCS#8 v1).
    let seed: [u8; 32] = [
        0xd4, 0xee, 0x72, 0xdb, 0xf9, 0x13, 0x58, 0x4a, 0xd5, 0xb6, 0xd8, 0xf1, 0xf7, 0x69, 0xf8, 0xad, 0x3a, 0xfe,
        0x7c, 0x28, 0xcb, 0xf1, 0xd4, 0xfb, 0xe0, 0x97, 0xa8, 0x8f, 0x44, 0x75, 0x58, 0x42,
    ];
    let pem = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n-----END PRIVATE KEY-----\n";
    let from_pem = KeyPair::from_pem(pem).unwrap();
    let mut der = ED25519_PKCS8_V1_PREFIX.to_vec();
    der.extend_from_slice(&seed);
    assert_eq!(from_pem.serialized_der(), der.as_slice());
}
