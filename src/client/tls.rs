//! rustls/ureq TLS set-up: the roots we trust and our client certificate, always with an explicit crypto
//! provider (never the process default), TLS 1.2 at least.

use std::sync::{Arc, OnceLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig, TlsProvider};

use crate::config::certificates;
use crate::error::{ConfigErrorKind, Error, Result};

/// Parse a private key and check that the crypto provider can sign with it: ureq would panic inside a
/// request on a key it cannot load (P-521 with ring, short RSA keys).
fn parse_key(pem: &[u8], provider: &rustls::crypto::CryptoProvider) -> Result<PrivateKey<'static>> {
    let unusable = |e: String| {
        Error::config(
            ConfigErrorKind::Tls,
            format!(
                "client key: no usable PEM private key ({e}); expected PKCS#1 (RSA PRIVATE KEY), SEC1 (EC PRIVATE KEY) or PKCS#8 (PRIVATE KEY)"
            ),
        )
    };
    let der = PrivateKeyDer::from_pem_slice(pem).map_err(|e| unusable(e.to_string()))?;
    provider.key_provider.load_private_key(der).map_err(|e| {
        Error::config(ConfigErrorKind::Tls, format!(
            "client key: the TLS provider (ring) cannot use this key: {e} (supported: RSA of 2048 bits or more, ECDSA P-256/P-384, Ed25519)"
        ))
    })?;
    let key = PrivateKey::from_pem(pem).map_err(|e| unusable(e.to_string()))?;
    Ok(key)
}

/// The trust roots when no CA is given: the system's (as client-go uses), read once per process. `None`
/// when the system has none (a distroless image): then the bundled Mozilla roots are used.
fn system_roots() -> Option<&'static [CertificateDer<'static>]> {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    let roots = ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        if found.certs.is_empty() {
            log::warn!(
                "no system trust roots found ({:?}); using the bundled Mozilla roots",
                found.errors
            );
        }
        found.certs
    });
    (!roots.is_empty()).then_some(roots.as_slice())
}

/// The TLS config for a connection config: its CA only when one is given (else the system roots), and
/// its client certificate. `tls_used`: some connection (to the server or to an https proxy) is TLS;
/// without one the system roots are neither read nor copied (a plain-HTTP test server).
pub(crate) fn tls_config(config: &crate::config::Config, tls_used: bool) -> Result<TlsConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut builder = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .disable_verification(config.insecure_skip_tls_verify());
    if let Some(pem) = config.ca_pem() {
        let certs = certificates(pem, "certificate authority")?;
        builder = builder.root_certs(RootCerts::from(certs));
    } else if let Some(roots) = tls_used.then(system_roots).flatten() {
        builder = builder.root_certs(RootCerts::from(
            roots
                .iter()
                .map(|c| Certificate::from_der(c.as_ref()).to_owned()),
        ));
    }
    if let Some(id) = config.client_identity() {
        let chain = certificates(&id.cert_pem, "client certificate")?;
        let key = parse_key(&id.key_pem, &provider)?;
        builder = builder.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
    }
    Ok(builder.unversioned_rustls_crypto_provider(provider).build())
}

/// A rustls config that verifies the server as `tls-server-name` (SNI and certificate name), for the
/// connector that ureq's own TLS set-up cannot express. TLS 1.2 and 1.3 only.
pub(crate) fn server_name_config(
    config: &crate::config::Config,
    name: &str,
) -> Result<(Arc<rustls::ClientConfig>, ServerName<'static>)> {
    let server_name = ServerName::try_from(name.to_string()).map_err(|e| {
        Error::config(
            ConfigErrorKind::Tls,
            format!("tls-server-name {name:?} is not a valid DNS name or IP address: {e}"),
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    let anchors: Vec<CertificateDer<'static>> = match config.ca_pem() {
        Some(pem) => certificates(pem, "certificate authority")?
            .iter()
            .map(|c| CertificateDer::from(c.der().to_vec()))
            .collect(),
        None => system_roots().map(<[_]>::to_vec).ok_or_else(|| {
            Error::config(
                ConfigErrorKind::Tls,
                "tls-server-name needs a certificate-authority here: the system has no trust roots",
            )
        })?,
    };
    roots.add_parsable_certificates(anchors);
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::config(ConfigErrorKind::Tls, format!("TLS set-up: {e}")))?
        .with_root_certificates(roots);
    let client = match config.client_identity() {
        Some(id) => {
            parse_key(&id.key_pem, &provider)?;
            let chain = certificates(&id.cert_pem, "client certificate")?
                .iter()
                .map(|c| CertificateDer::from(c.der().to_vec()))
                .collect();
            let key = PrivateKeyDer::from_pem_slice(&id.key_pem)
                .map_err(|e| Error::config(ConfigErrorKind::Tls, format!("client key: {e}")))?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                Error::config(ConfigErrorKind::Tls, format!("client certificate: {e}"))
            })?
        }
        None => builder.with_no_client_auth(),
    };
    Ok((Arc::new(client), server_name))
}
