//! rustls/ureq TLS set-up: the roots we trust, always with an explicit crypto provider.

use std::sync::Arc;

use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig, TlsProvider};

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

/// The TLS config for a connection config: its CA only when one is given, else the bundled web roots.
pub(crate) fn tls_config(config: &crate::Config) -> Result<TlsConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut builder = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .unversioned_rustls_crypto_provider(provider)
        .disable_verification(config.insecure_skip_tls_verify());
    if let Some(pem) = config.ca_pem() {
        let certs = parse_certs(pem, "certificate authority")?;
        builder = builder.root_certs(RootCerts::from(certs));
    }
    Ok(builder.build())
}
