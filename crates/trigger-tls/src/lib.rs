//! TLS for every peer that is not Kafka (librdkafka has its own): a CA bundle the peer's certificate must chain
//! to, and optionally a certificate and key of our own (mutual TLS), read from PEM files once, at start-up,
//! into rustls configurations. Every fault is named with the file it is in, so a process refuses to start
//! with the reason rather than failing at its first connection.
//!
//! No system trust store is consulted: a peer is trusted because its operator's CA bundle says so, never
//! because some public CA signed it.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `[… .tls]`: the files of one peer's TLS.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsFiles {
    /// PEM bundle of the CAs the peer's certificate must chain to (a client: the server's; a server: the
    /// clients', which turns client certificates on and requires them).
    pub ca_bundle: Option<PathBuf>,
    /// PEM certificate chain we present (a client: mutual TLS; a server: required).
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert` (PKCS#8, PKCS#1 or SEC1, unencrypted).
    pub key: Option<PathBuf>,
}

/// A TLS setting that cannot be used, with the file it is about.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{what} {path}: {detail}")]
    File { what: &'static str, path: String, detail: String },
    #[error("{0}")]
    Settings(String),
    #[error("{what}: {detail}")]
    Rustls { what: &'static str, detail: String },
    /// The peer's TLS refused: its certificate did not verify, or it refused ours.
    #[error("TLS with {peer}: {detail}")]
    Handshake { peer: String, detail: String },
}

impl TlsFiles {
    /// True when any TLS file is named.
    pub fn is_set(&self) -> bool {
        self.ca_bundle.is_some() || self.cert.is_some() || self.key.is_some()
    }

    /// Problems a configuration check reports (`section` is where these files are configured). The files
    /// themselves are read when the configuration is built, at start-up, each fault named with its file.
    pub fn validate(&self, section: &str) -> Vec<String> {
        let mut errs = Vec::new();
        if self.cert.is_some() != self.key.is_some() {
            errs.push(format!("{section}.cert and {section}.key: both or neither"));
        }
        errs
    }

    /// A client configuration: the server verified against `ca_bundle` (required), our certificate and key
    /// presented when configured.
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, TlsError> {
        let ca = self.ca_bundle.as_deref().ok_or_else(|| {
            TlsError::Settings("no ca_bundle: a TLS peer is verified against its operator's CA bundle".into())
        })?;
        let roots = roots(ca)?;
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| rustls_error("TLS versions", e))?
            .with_root_certificates(roots);
        let config = match self.identity()? {
            Some((chain, key)) => {
                builder.with_client_auth_cert(chain, key).map_err(|e| rustls_error("the client certificate", e))?
            }
            None => builder.with_no_client_auth(),
        };
        Ok(Arc::new(config))
    }

    /// A server configuration: `cert` and `key` required; with `ca_bundle`, every client must present a
    /// certificate that chains to it (mutual TLS).
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let (chain, key) =
            self.identity()?.ok_or_else(|| TlsError::Settings("a TLS server needs its cert and key".into()))?;
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| rustls_error("TLS versions", e))?;
        let builder = match &self.ca_bundle {
            Some(ca) => {
                let verifier =
                    rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider())
                        .build()
                        .map_err(|e| rustls_error("the client CA bundle", e))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let config = builder.with_single_cert(chain, key).map_err(|e| rustls_error("the server certificate", e))?;
        Ok(Arc::new(config))
    }

    /// The CA bundle's certificates (None: no bundle configured).
    pub fn ca_certificates(&self) -> Result<Option<Vec<CertificateDer<'static>>>, TlsError> {
        self.ca_bundle.as_deref().map(|ca| certificates(ca, "CA bundle")).transpose()
    }

    /// Our certificate chain and key (None: neither configured).
    #[allow(clippy::type_complexity)]
    pub fn identity(&self) -> Result<Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>, TlsError> {
        let (Some(cert), Some(key)) = (&self.cert, &self.key) else {
            return match (&self.cert, &self.key) {
                (None, None) => Ok(None),
                _ => Err(TlsError::Settings("a certificate and its key: both or neither".into())),
            };
        };
        let chain = certificates(cert, "certificate")?;
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| file_error("private key", key, e))?;
        Ok(Some((chain, key)))
    }
}

/// What a start-up probe of a TLS peer found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// The handshake completed: the peer's certificate verified (and ours, if we sent one, was taken).
    Verified,
    /// The peer could not be reached (down, or no route): not a TLS fault, said by the caller and retried later.
    Unreachable(String),
}

/// Connect to `host:port` and complete a TLS handshake with `config`, within `timeout`. A certificate the CA
/// bundle does not vouch for, one issued for another name, an expired one, or a peer that refuses ours is an
/// error naming the peer's reason (`TlsError::Handshake`).
pub fn probe(
    config: &Arc<rustls::ClientConfig>,
    host: &str,
    port: u16,
    timeout: std::time::Duration,
) -> Result<Probe, TlsError> {
    use std::net::ToSocketAddrs;
    let peer = format!("{host}:{port}");
    let addr = match (host, port).to_socket_addrs().map(|mut a| a.next()) {
        Ok(Some(addr)) => addr,
        Ok(None) => return Ok(Probe::Unreachable(format!("{host} has no address"))),
        Err(e) => return Ok(Probe::Unreachable(format!("{host}: {e}"))),
    };
    let mut tcp = match std::net::TcpStream::connect_timeout(&addr, timeout) {
        Ok(t) => t,
        Err(e) => return Ok(Probe::Unreachable(format!("{peer}: {e}"))),
    };
    let handshake = |detail: String| TlsError::Handshake { peer: peer.clone(), detail };
    tcp.set_read_timeout(Some(timeout)).map_err(|e| handshake(e.to_string()))?;
    tcp.set_write_timeout(Some(timeout)).map_err(|e| handshake(e.to_string()))?;
    let name = rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|e| handshake(e.to_string()))?;
    let mut conn = rustls::ClientConnection::new(config.clone(), name).map_err(|e| handshake(e.to_string()))?;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).map_err(|e| handshake(e.to_string()))?;
    }
    // TLS 1.3: a server that refuses our certificate says so after its Finished. Read what it sends next (its
    // session tickets, or its alert) until it pauses.
    tcp.set_read_timeout(Some(std::time::Duration::from_millis(300))).map_err(|e| handshake(e.to_string()))?;
    for _ in 0..8 {
        match conn.read_tls(&mut tcp) {
            Ok(0) => break,
            Ok(_) => {
                conn.process_new_packets().map_err(|e| handshake(e.to_string()))?;
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => break,
            Err(e) => return Err(handshake(e.to_string())),
        }
    }
    Ok(Probe::Verified)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn rustls_error(what: &'static str, e: impl std::fmt::Display) -> TlsError {
    TlsError::Rustls { what, detail: e.to_string() }
}

fn file_error(what: &'static str, path: &Path, e: impl std::fmt::Display) -> TlsError {
    TlsError::File { what, path: path.display().to_string(), detail: e.to_string() }
}

fn certificates(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(what, path, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_error(what, path, e))?;
    if certs.is_empty() {
        return Err(file_error(what, path, "no PEM certificate in it"));
    }
    Ok(certs)
}

fn roots(ca: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates(ca, "CA bundle")? {
        roots.add(cert).map_err(|e| file_error("CA bundle", ca, e))?;
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_are_named_with_their_file() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let files = TlsFiles { ca_bundle: Some(empty.clone()), ..Default::default() };
        let e = files.client_config().unwrap_err().to_string();
        assert!(e.contains("CA bundle") && e.contains("empty.pem") && e.contains("no PEM certificate"), "{e}");
        let e = TlsFiles::default().client_config().unwrap_err().to_string();
        assert!(e.contains("no ca_bundle"), "{e}");
        let half = TlsFiles { cert: Some(empty.clone()), ..Default::default() };
        assert!(half.validate("x.tls").iter().any(|e| e.contains("both or neither")));
        let missing = TlsFiles { ca_bundle: Some(dir.path().join("nope.pem")), ..Default::default() };
        let e = missing.client_config().unwrap_err().to_string();
        assert!(e.contains("CA bundle") && e.contains("nope.pem"), "{e}");
        let e = TlsFiles::default().server_config().unwrap_err().to_string();
        assert!(e.contains("needs its cert and key"), "{e}");
    }
}
