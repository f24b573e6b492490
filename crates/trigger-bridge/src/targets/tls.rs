//! TLS for the targets that speak it (MQTT over TLS, HTTPS to Frigate and Home Assistant): the target's
//! `[target.tls]` files read at start-up, and its peer's certificate checked then, so a wrong CA, an expired
//! certificate, one issued for another name, or a peer that refuses ours stops the bridge at start-up with the
//! peer's reason. A peer that cannot be reached at start-up is not a TLS fault: it is said, and its
//! certificate is checked at its first delivery. zmtrigger has no TLS.

use std::sync::Arc;
use std::time::Duration;
use trigger_tls::{Probe, TlsFiles};

/// The target's rustls client configuration, its peer probed at `host:port`.
pub(crate) fn checked(
    target: &str,
    tls: &TlsFiles,
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let config = tls.client_config().map_err(|e| format!("target {target}: tls: {e}"))?;
    match trigger_tls::probe(&config, host, port, timeout.max(Duration::from_secs(2))) {
        Ok(Probe::Verified) => Ok(config),
        Ok(Probe::Unreachable(why)) => {
            tracing::warn!(
                target_name = target,
                why,
                "a TLS target does not answer at start-up: its certificate is checked at its first delivery"
            );
            Ok(config)
        }
        Err(e) => Err(format!("target {target}: {e}")),
    }
}

/// The same trust for ureq: the CA bundle's certificates only, our certificate when configured.
pub(crate) fn for_ureq(target: &str, tls: &TlsFiles) -> Result<ureq::tls::TlsConfig, String> {
    use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig, TlsProvider};
    let named = |e: trigger_tls::TlsError| format!("target {target}: tls: {e}");
    let roots =
        tls.ca_certificates().map_err(named)?.ok_or_else(|| format!("target {target}: tls.ca_bundle is required"))?;
    let roots: Vec<_> = roots.iter().map(|c| Certificate::from_der(c.as_ref()).to_owned()).collect();
    let client = match (tls.identity().map_err(named)?, &tls.key) {
        (Some((chain, _)), Some(key)) => {
            let chain: Vec<_> = chain.iter().map(|c| Certificate::from_der(c.as_ref()).to_owned()).collect();
            let pem = std::fs::read(key).map_err(|e| format!("target {target}: tls.key {}: {e}", key.display()))?;
            let key =
                PrivateKey::from_pem(&pem).map_err(|e| format!("target {target}: tls.key {}: {e}", key.display()))?;
            Some(ClientCert::new_with_certs(&chain, key))
        }
        _ => None,
    };
    Ok(TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .root_certs(RootCerts::new_with_certs(&roots))
        .client_cert(client)
        .build())
}

/// `scheme://host[:port]/...`: the host and the port (the scheme's default when none is given).
pub(crate) fn host_port(url: &str, default_port: u16) -> Result<(String, u16), String> {
    let uri: ureq::http::Uri = url.parse().map_err(|e| format!("{url:?}: {e}"))?;
    let host = uri.host().ok_or_else(|| format!("{url:?}: no host"))?;
    let port = match uri.port() {
        Some(p) => p.as_u16(),
        None => default_port,
    };
    Ok((host.trim_matches(['[', ']']).to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_ports_of_urls() {
        assert_eq!(host_port("https://ha.example:8123/api", 443).unwrap(), ("ha.example".into(), 8123));
        assert_eq!(host_port("https://ha.example", 443).unwrap(), ("ha.example".into(), 443));
        assert_eq!(host_port("https://[::1]:8971", 443).unwrap(), ("::1".into(), 8971));
        assert!(host_port("/no/host", 443).is_err());
    }
}
