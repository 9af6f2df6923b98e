//! TLS for the listener: rustls with the `ring` provider and ALPN `h2,
//! http/1.1`. HTTP/2 carries many SSE streams on one connection; HTTP/1.1
//! stays offered because Socket.IO's WebSocket upgrade needs it.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Only one of `tls.cert` and `tls.key` is set.
    #[error("set both tls.cert and tls.key, or neither")]
    Incomplete,
    /// The certificate file is unreadable or holds no PEM certificate.
    #[error("certificate {path}: {reason}")]
    Cert { path: String, reason: String },
    /// The key file is unreadable or holds no PEM private key.
    #[error("private key {path}: {reason}")]
    Key { path: String, reason: String },
    /// rustls refused the pair (e.g. the key does not match the certificate).
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The server config for `cert` and `key`, or `None` when TLS is off.
pub fn server_config(
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<Option<Arc<rustls::ServerConfig>>, TlsError> {
    let (cert, key) = match (cert, key) {
        (None, None) => return Ok(None),
        (Some(c), Some(k)) => (c, k),
        _ => return Err(TlsError::Incomplete),
    };
    let cert_err = |reason: String| TlsError::Cert {
        path: cert.display().to_string(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| cert_err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_err(e.to_string()))?;
    if certs.is_empty() {
        return Err(cert_err("no PEM certificate found".into()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.display().to_string(),
        reason: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Some(Arc::new(config)))
}
