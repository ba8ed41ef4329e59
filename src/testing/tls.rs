//! A throwaway CA, a server certificate for 127.0.0.1, ::1, localhost and kube-apiserver.test, and client certificates issued
//! on demand (their CN is the user the server maps them to).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex};

use crate::sync::lock;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

pub(crate) struct TlsMaterial {
    pub(crate) ca_pem: String,
    /// The server certificate and its key (PKCS#8), for servers that read them from files.
    pub(crate) server_cert_pem: String,
    pub(crate) server_key_pem: String,
    pub(crate) server_config: Arc<rustls::ServerConfig>,
    issuer: Mutex<(Certificate, KeyPair)>,
    /// DER of each issued client certificate → the user it authenticates.
    pub(crate) client_users: Mutex<HashMap<Vec<u8>, String>>,
}

fn io_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(format!("test TLS material: {e}"))
}

pub(crate) fn generate(dns_only: bool) -> std::io::Result<TlsMaterial> {
    let ca_key = KeyPair::generate().map_err(io_err)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(io_err)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "kube-elector test CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).map_err(io_err)?;

    let key = KeyPair::generate().map_err(io_err)?;
    // `kube-apiserver.test` is never resolved: tests use it as a `tls-server-name` for 127.0.0.1.
    let names = if dns_only {
        vec!["kube-apiserver.test".to_string()]
    } else {
        vec!["localhost".to_string(), "kube-apiserver.test".to_string()]
    };
    let mut params = CertificateParams::new(names).map_err(io_err)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    if !dns_only {
        params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)));
    }
    let cert = params.signed_by(&key, &ca_cert, &ca_key).map_err(io_err)?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca_cert.der().to_vec()))
        .map_err(io_err)?;
    // Client certificates are optional: bearer tokens still work on the same listener.
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(io_err)?;
    let server_config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io_err)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from(cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .map_err(io_err)?;
    Ok(TlsMaterial {
        ca_pem: ca_cert.pem(),
        server_cert_pem: cert.pem(),
        server_key_pem: key.serialize_pem(),
        server_config: Arc::new(server_config),
        issuer: Mutex::new((ca_cert, ca_key)),
        client_users: Mutex::new(HashMap::new()),
    })
}

impl TlsMaterial {
    /// Issue a client certificate with CN `user`, for `key_pkcs8_pem` or a fresh P-256 key. Returns the
    /// certificate PEM and the key PEM.
    pub(crate) fn issue_client_cert(
        &self,
        user: &str,
        key_pkcs8_pem: Option<&str>,
    ) -> std::io::Result<(String, String)> {
        self.issue_client_cert_in(user, &[], key_pkcs8_pem)
    }

    /// Like [`issue_client_cert`](Self::issue_client_cert), with groups (the subject's `O`, as the
    /// Kubernetes API server reads them).
    pub(crate) fn issue_client_cert_in(
        &self,
        user: &str,
        groups: &[&str],
        key_pkcs8_pem: Option<&str>,
    ) -> std::io::Result<(String, String)> {
        let key = match key_pkcs8_pem {
            Some(pem) => KeyPair::from_pem(pem).map_err(io_err)?,
            None => KeyPair::generate().map_err(io_err)?,
        };
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(io_err)?;
        params.distinguished_name.push(DnType::CommonName, user);
        for g in groups {
            params.distinguished_name.push(DnType::OrganizationName, *g);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let g = lock(&self.issuer);
        let cert = params.signed_by(&key, &g.0, &g.1).map_err(io_err)?;
        drop(g);
        lock(&self.client_users).insert(cert.der().to_vec(), user.to_string());
        Ok((cert.pem(), key.serialize_pem()))
    }
}
