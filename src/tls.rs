//! The server's TLS: the rustls acceptor for `server.tls_certificate_file` and
//! `server.tls_key_file`. Built when the configuration is checked (so a bad pair stops the
//! start with a clear problem) and used by the accept loop in `http::server`.

use std::sync::Arc;

use anyhow::Context as _;
use tokio_rustls::TlsAcceptor;

/// Builds the TLS acceptor from PEM files: the certificate chain and its private key.
pub fn tls_acceptor(
    certificate_file: &std::path::Path,
    key_file: &std::path::Path,
) -> anyhow::Result<TlsAcceptor> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certificates: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(certificate_file)
            .with_context(|| format!("cannot read {}", certificate_file.display()))?
            .collect::<Result<_, _>>()
            .with_context(|| format!("no PEM certificates in {}", certificate_file.display()))?;
    if certificates.is_empty() {
        anyhow::bail!("no certificate in {}", certificate_file.display());
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .with_context(|| format!("no private key in {}", key_file.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certificates, key)
        .context("the certificate and key do not go together")?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
