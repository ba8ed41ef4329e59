//! rustls/ureq TLS set-up: the roots we trust and our client certificate, always with an explicit crypto
//! provider (never the process default), TLS 1.2 at least.

use std::sync::Arc;

use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig, TlsProvider};

use crate::error::{Error, Result};

/// Parse every certificate in a PEM bundle. A bundle without certificates is an error.
pub(crate) fn parse_certs(pem: &[u8], what: &str) -> Result<Vec<Certificate<'static>>> {
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(pem) {
        match item {
            Ok(PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(e) => return Err(Error::Config(format!("{what}: not valid PEM: {e}"))),
        }
    }
    if certs.is_empty() {
        return Err(Error::Config(format!(
            "{what}: no PEM certificate found (expected -----BEGIN CERTIFICATE-----)"
        )));
    }
    Ok(certs)
}

/// Parse a private key and check that the crypto provider can sign with it: ureq would panic inside a
/// request on a key it cannot load (P-521 with ring, short RSA keys).
fn parse_key(pem: &[u8], provider: &rustls::crypto::CryptoProvider) -> Result<PrivateKey<'static>> {
    let unusable = |e: String| {
        Error::Config(format!(
            "client key: no usable PEM private key ({e}); expected PKCS#1 (RSA PRIVATE KEY), SEC1 (EC PRIVATE KEY) or PKCS#8 (PRIVATE KEY)"
        ))
    };
    let der = PrivateKeyDer::from_pem_slice(pem).map_err(|e| unusable(e.to_string()))?;
    provider.key_provider.load_private_key(der).map_err(|e| {
        Error::Config(format!(
            "client key: the TLS provider (ring) cannot use this key: {e} (supported: RSA of 2048 bits or more, ECDSA P-256/P-384, Ed25519)"
        ))
    })?;
    let key = PrivateKey::from_pem(pem).map_err(|e| unusable(e.to_string()))?;
    Ok(key)
}

/// The TLS config for a connection config: its CA only when one is given (else the bundled web roots),
/// and its client certificate.
pub(crate) fn tls_config(config: &crate::Config) -> Result<TlsConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut builder = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .disable_verification(config.insecure_skip_tls_verify());
    if let Some(pem) = config.ca_pem() {
        let certs = parse_certs(pem, "certificate authority")?;
        builder = builder.root_certs(RootCerts::from(certs));
    }
    if let Some(id) = config.client_identity() {
        let chain = parse_certs(&id.cert_pem, "client certificate")?;
        let key = parse_key(&id.key_pem, &provider)?;
        builder = builder.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
    }
    Ok(builder.unversioned_rustls_crypto_provider(provider).build())
}
