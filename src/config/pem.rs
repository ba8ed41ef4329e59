//! PEM certificate bundles (CA bundles, client certificate chains), checked when a config is loaded so a
//! bad file is an error then, not at the first request.

use ureq::tls::{Certificate, PemItem};

use crate::error::{ConfigErrorKind, Error, Result};

/// Parse every certificate in a PEM bundle. A bundle without certificates is an error.
pub(crate) fn certificates(pem: &[u8], what: &str) -> Result<Vec<Certificate<'static>>> {
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(pem) {
        match item {
            Ok(PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(e) => {
                return Err(Error::config(
                    ConfigErrorKind::Tls,
                    format!("{what}: not valid PEM: {e}"),
                ));
            }
        }
    }
    if certs.is_empty() {
        return Err(Error::config(
            ConfigErrorKind::Tls,
            format!("{what}: no PEM certificate found (expected -----BEGIN CERTIFICATE-----)"),
        ));
    }
    Ok(certs)
}
