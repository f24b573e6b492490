//! The process runtime every long-running command shares (`serve`, `bridge`): the layered configuration
//! loader, logging, the Prometheus recorder and its HTTP endpoints, and the shutdown signals. The
//! applications (`serve`, `bridge`) bring their own configuration type and loop; nothing here decides.

mod endpoints;
pub mod layered;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use trigger_kafka::Health;

pub use endpoints::spawn_http;

/// `[http]`: where /metrics, /healthz, /readyz and /standbyz are served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSection {
    /// Address of the endpoints; empty: no HTTP endpoint.
    pub listen: String,
}

impl Default for HttpSection {
    fn default() -> Self {
        Self { listen: "0.0.0.0:9898".into() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Json,
    Text,
}

/// `[log]`: the format and filter of the log on stderr.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    pub format: LogFormat,
    /// A tracing filter (`info`, `dispatch_trigger=debug,info`); RUST_LOG overrides it.
    pub level: String,
}

impl Default for LogSection {
    fn default() -> Self {
        Self { format: LogFormat::Json, level: "info".into() }
    }
}

impl LogSection {
    /// Warnings and errors only, as text: the in-process tools (`demo`).
    pub fn quiet() -> Self {
        Self { format: LogFormat::Text, level: "warn".into() }
    }
}

/// The problems of the sections every process has (an address that is not one, a filter that is not one).
pub fn validate(http: &HttpSection, log: &LogSection) -> Vec<String> {
    let mut errs = Vec::new();
    if !http.listen.is_empty() && http.listen.parse::<std::net::SocketAddr>().is_err() {
        errs.push(format!("http.listen {:?} is not an address (host:port)", http.listen));
    }
    if tracing_subscriber::EnvFilter::try_new(&log.level).is_err() {
        errs.push(format!("log.level {:?} is not a tracing filter", log.level));
    }
    errs
}

/// Logs to stderr, JSON or text. Safe to call more than once (later calls keep the first subscriber).
pub fn init_logging(log: &LogSection) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&log.level));
    use std::io::IsTerminal;
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match log.format {
        LogFormat::Json => b.json().flatten_event(true).try_init(),
        LogFormat::Text => b.try_init(),
    };
}

/// Install the Prometheus recorder (once per process) and return its handle.
pub fn prometheus() -> Result<metrics_exporter_prometheus::PrometheusHandle> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> = std::sync::OnceLock::new();
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let buckets = [
        0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
        10.0, 30.0, 120.0,
    ];
    let h = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full("dispatch_trigger_stage_seconds".into()), &buckets)?
        .install_recorder()
        .context("cannot install the Prometheus recorder")?;
    Ok(HANDLE.get_or_init(|| h).clone())
}

/// SIGTERM and SIGINT set the returned flag (stop polling, finish the batch, commit, exit 0); a second
/// SIGINT or SIGTERM while stopping exits at once.
pub fn shutdown_flag() -> Result<Arc<AtomicBool>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [SIGTERM, SIGINT] {
        signal_hook::flag::register_conditional_shutdown(sig, 1, flag.clone())?;
        signal_hook::flag::register(sig, flag.clone())?;
    }
    Ok(flag)
}

/// Sleep for `wait` (which may be very long: a tiny `--speed` over far-apart events), waking early when asked
/// to stop.
pub fn sleep_unless(wait: Duration, stop: &AtomicBool) {
    let until = Instant::now().checked_add(wait);
    while !stop.load(Relaxed) {
        let left = until.map_or(Duration::from_millis(200), |u| u.saturating_duration_since(Instant::now()));
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(200)));
    }
}

/// What a long-running process has once it started: its health (read by the endpoints) and the flag its
/// loop stops on.
#[derive(Debug)]
pub struct Process {
    pub health: Arc<Health>,
    pub shutdown: Arc<AtomicBool>,
}

impl Process {
    /// Logs, the Prometheus recorder, SIGTERM / SIGINT, and the endpoints on `http.listen`.
    pub fn start(log: &LogSection, http: &HttpSection) -> Result<Self> {
        init_logging(log);
        prometheus()?;
        let shutdown = shutdown_flag()?;
        let health = Arc::new(Health::default());
        if let Some(addr) = spawn_http(&http.listen, health.clone())? {
            tracing::info!(%addr, "serving /metrics, /healthz, /readyz, /standbyz");
        }
        Ok(Self { health, shutdown })
    }
}
