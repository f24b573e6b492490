//! /metrics, /healthz (the process serves), /readyz (ready for its work), /standbyz (deciding, or a standby
//! ready to take over), on a thread of their own.

use anyhow::Result;
use std::sync::Arc;
use trigger_kafka::{wall_ms, Health};

/// Serve the endpoints on `listen` (empty: none); returns the bound address.
pub fn spawn_http(listen: &str, health: Arc<Health>) -> Result<Option<std::net::SocketAddr>> {
    if listen.is_empty() {
        return Ok(None);
    }
    let handle = super::prometheus()?;
    let server = tiny_http::Server::http(listen).map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    let addr = server.server_addr().to_ip();
    std::thread::Builder::new().name("http".into()).spawn(move || {
        for req in server.incoming_requests() {
            let (code, body, ctype) = answer(req.url(), &health, &handle);
            let header = tiny_http::Header::from_bytes(&b"Content-Type"[..], ctype.as_bytes()).expect("valid header");
            let _ = req.respond(tiny_http::Response::from_string(body).with_status_code(code).with_header(header));
        }
    })?;
    Ok(addr)
}

/// Status, body and content type of one request.
fn answer(
    url: &str,
    health: &Health,
    metrics: &metrics_exporter_prometheus::PrometheusHandle,
) -> (u16, String, &'static str) {
    let text = "text/plain";
    match url {
        "/metrics" => {
            // The gauge says what /readyz says, at the moment of the scrape.
            trigger_kafka::telemetry::ready(health.readiness(wall_ms()).is_ok());
            (200, metrics.render(), "text/plain; version=0.0.4")
        }
        "/healthz" => (200, "ok\n".to_string(), text),
        "/readyz" => match health.readiness(wall_ms()) {
            Ok(()) => (200, "ready\n".to_string(), text),
            Err(why) => (503, why + "\n", text),
        },
        "/standbyz" => match health.availability(wall_ms()) {
            Ok(()) => (200, "deciding or standing by\n".to_string(), text),
            Err(why) => (503, why + "\n", text),
        },
        _ => (404, "not found: /metrics, /healthz, /readyz, /standbyz\n".to_string(), text),
    }
}
