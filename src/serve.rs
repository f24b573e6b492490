//! `serve`: layered configuration, telemetry (Prometheus /metrics, /healthz, /readyz, JSON logs), signals,
//! and the Kafka service with its camera index.

use anyhow::{bail, Context, Result};
use figment::providers::{Env, Format as _, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use trigger_core::Engine;
use trigger_kafka::{wall_ms, Health, KafkaSettings, RunStats, Service, ServiceOptions};

pub use crate::index::IndexKind;

/// The `[service]` section: `trigger_kafka::ServiceOptions`, deserialised directly.
pub type ServiceSection = ServiceOptions;
pub use trigger_kafka::options::RegistrySync;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSection {
    /// Address of /metrics, /healthz and /readyz; empty: no HTTP endpoint.
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

/// The whole `serve` configuration. Layers: built-in defaults, then the TOML file, then `DT_*` environment
/// variables (`DT_KAFKA__BOOTSTRAP_SERVERS=...`: double underscore between levels). Unknown keys are errors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    /// Policy file (relative paths: to the working directory).
    pub policy: PathBuf,
    pub index: IndexKind,
    pub kafka: KafkaSettings,
    pub service: ServiceSection,
    pub http: HttpSection,
    pub log: LogSection,
    pub signing: crate::signing::SigningSection,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            policy: PathBuf::from(crate::config::DEFAULT_POLICY),
            index: IndexKind::default(),
            kafka: KafkaSettings::default(),
            service: ServiceSection::default(),
            http: HttpSection::default(),
            log: LogSection::default(),
            signing: Default::default(),
        }
    }
}

/// Every key of the merged configuration that the configuration does not have (dotted paths). The known keys
/// are those of the defaults, serialised; a table that is empty by default (raw librdkafka properties) takes
/// any key.
fn unknown_keys(fig: &Figment) -> Vec<String> {
    fn walk(given: &figment::value::Value, known: &serde_json::Value, path: &str, out: &mut Vec<String>) {
        let (Some(given), Some(known)) = (given.as_dict(), known.as_object()) else { return };
        if known.is_empty() {
            return;
        }
        for (k, v) in given {
            let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
            match known.get(k) {
                None => out.push(p),
                Some(kv) => walk(v, kv, &p, out),
            }
        }
    }
    let known = serde_json::to_value(ServeConfig::default()).unwrap_or_default();
    let mut out = Vec::new();
    if let Ok(given) = fig.extract::<figment::value::Value>() {
        walk(&given, &known, "", &mut out);
    }
    out
}

impl ServeConfig {
    /// Defaults, then `file` (if given), then the environment. Every problem is reported at once.
    pub fn load(file: Option<&Path>) -> Result<Self> {
        // DT_BRIDGE_* configure the bridge, not the service.
        Self::load_with_env(
            file,
            Env::prefixed("DT_").filter(|k| !k.as_str().to_ascii_lowercase().starts_with("bridge_")).split("__"),
        )
    }

    pub fn load_with_env(file: Option<&Path>, env: Env) -> Result<Self> {
        let mut fig = Figment::from(Serialized::defaults(ServeConfig::default()));
        if let Some(f) = file {
            if !f.exists() {
                bail!("config file {} does not exist", f.display());
            }
            fig = fig.merge(Toml::file_exact(f));
        }
        let fig = fig.merge(env);
        // serde stops at the first unknown key; name them all first.
        let unknown = unknown_keys(&fig);
        if !unknown.is_empty() {
            let all: Vec<String> = unknown.iter().map(|k| format!("unknown key {k:?}")).collect();
            bail!("invalid configuration:\n  - {}", all.join("\n  - "));
        }
        let cfg: ServeConfig = fig.extract().map_err(|e| {
            let all: Vec<String> = e.into_iter().map(|e| e.to_string()).collect();
            anyhow::anyhow!("invalid configuration:\n  - {}", all.join("\n  - "))
        })?;
        let errs = cfg.validate();
        if !errs.is_empty() {
            bail!("invalid configuration:\n  - {}", errs.join("\n  - "));
        }
        Ok(cfg)
    }

    pub fn validate(&self) -> Vec<String> {
        let mut errs = self.kafka.validate();
        errs.extend(self.service.validate());
        if !self.http.listen.is_empty() && self.http.listen.parse::<std::net::SocketAddr>().is_err() {
            errs.push(format!("http.listen {:?} is not an address (host:port)", self.http.listen));
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            errs.push(format!("log.level {:?} is not a tracing filter", self.log.level));
        }
        errs
    }
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

/// /metrics, /healthz (the process serves), /readyz (registry loaded, deciding), /standbyz (deciding, or a
/// standby ready to take over). Runs on its own thread.
pub fn spawn_http(listen: &str, health: Arc<Health>) -> Result<Option<std::net::SocketAddr>> {
    if listen.is_empty() {
        return Ok(None);
    }
    let handle = prometheus()?;
    let server = tiny_http::Server::http(listen).map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    let addr = server.server_addr().to_ip();
    std::thread::Builder::new().name("http".into()).spawn(move || {
        for req in server.incoming_requests() {
            let (code, body, ctype) = match req.url() {
                "/metrics" => {
                    // The gauge says what /readyz says, at the moment of the scrape.
                    trigger_kafka::telemetry::ready(health.readiness(wall_ms()).is_ok());
                    (200, handle.render(), "text/plain; version=0.0.4")
                }
                "/healthz" => (200, "ok\n".to_string(), "text/plain"),
                "/readyz" => match health.readiness(wall_ms()) {
                    Ok(()) => (200, "ready\n".to_string(), "text/plain"),
                    Err(why) => (503, why + "\n", "text/plain"),
                },
                "/standbyz" => match health.availability(wall_ms()) {
                    Ok(()) => (200, "deciding or standing by\n".to_string(), "text/plain"),
                    Err(why) => (503, why + "\n", "text/plain"),
                },
                _ => (404, "not found: /metrics, /healthz, /readyz, /standbyz\n".to_string(), "text/plain"),
            };
            let header = tiny_http::Header::from_bytes(&b"Content-Type"[..], ctype.as_bytes()).expect("valid header");
            let _ = req.respond(tiny_http::Response::from_string(body).with_status_code(code).with_header(header));
        }
    })?;
    Ok(addr)
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

/// Run the service until `shutdown` is set.
pub fn run(cfg: &ServeConfig, health: &Health, shutdown: &AtomicBool) -> Result<RunStats> {
    let policy = crate::config::load_policy(&cfg.policy)?;
    for w in policy.warnings() {
        tracing::warn!(warning = %w, "policy");
    }
    for a in &policy.config.agencies {
        tracing::info!(agency = %a.id, classification = %policy.classification_digest(&a.id), "classification in force");
    }
    let signer = cfg.signing.signer()?;
    struct Serve<'a>(&'a ServeConfig, Engine, &'a Health, &'a AtomicBool, Arc<trigger_core::CommandSigner>);
    impl crate::index::IndexJob for Serve<'_> {
        type Output = Result<RunStats, trigger_kafka::KafkaError>;
        fn run<B: trigger_index::SpatialBackend>(
            self,
            mut index: trigger_index::CameraIndex<B>,
            _: crate::index::IndexKind,
        ) -> Self::Output {
            let Serve(cfg, mut engine, health, shutdown, signer) = self;
            Service::new(cfg.kafka.clone(), cfg.service.clone(), &mut engine, &mut index, health)
                .signed_by(signer)
                .run(shutdown)
        }
    }
    // The registry topic fills the index: it starts empty.
    let (stats, _) =
        crate::index::with_index(cfg.index, vec![], Serve(cfg, Engine::new(policy), health, shutdown, signer));
    Ok(stats?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail's closure signature
    fn layers_file_then_environment_and_reports_every_error() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("serve.toml");
        std::fs::write(&f, "[kafka]\nbootstrap_servers = \"file:9092\"\ngroup_id = \"from-file\"\n").unwrap();
        figment::Jail::expect_with(|jail| {
            jail.set_env("DT_KAFKA__BOOTSTRAP_SERVERS", "env:9092");
            jail.set_env("DT_BRIDGE_KAFKA__GROUP_ID", "the-bridge's, not the service's");
            let c = ServeConfig::load(Some(&f)).unwrap();
            assert_eq!(c.kafka.bootstrap_servers, "env:9092", "environment wins over the file");
            assert_eq!(c.kafka.group_id, "from-file", "file wins over defaults");
            assert_eq!(c.service.max_batch, ServiceSection::default().max_batch, "defaults fill the rest");
            Ok(())
        });

        std::fs::write(
            &f,
            "colour = \"blue\"\n[service]\nmax_batch = 0\n[http]\nlisten = \"nowhere\"\n[kafka.producer]\nacks = \"1\"\n",
        )
        .unwrap();
        let e = ServeConfig::load_with_env(Some(&f), Env::prefixed("DT_TEST_NOTHING_")).unwrap_err().to_string();
        assert!(e.contains("colour"), "unknown key named: {e}");
        // Every unknown key at once, at any depth; raw librdkafka properties take any key.
        std::fs::write(
            &f,
            "colour = \"blue\"\n[service]\nmax_bach = 5\n[kafka]\nbootstrap = \"x\"\n[kafka.topics]\ncfs_topic = \"y\"\n[kafka.producer]\n\"linger.ms\" = \"5\"\n",
        )
        .unwrap();
        let e = ServeConfig::load_with_env(Some(&f), Env::prefixed("DT_TEST_NOTHING_")).unwrap_err().to_string();
        for want in ["\"colour\"", "\"service.max_bach\"", "\"kafka.bootstrap\"", "\"kafka.topics.cfs_topic\""] {
            assert!(e.contains(want), "{want} missing from: {e}");
        }
        assert!(!e.contains("linger"), "{e}");
        std::fs::write(&f, "[service]\nmax_batch = 0\n[http]\nlisten = \"nowhere\"\n[kafka.producer]\nacks = \"1\"\n")
            .unwrap();
        let e = ServeConfig::load_with_env(Some(&f), Env::prefixed("DT_TEST_NOTHING_")).unwrap_err().to_string();
        for want in ["max_batch", "http.listen", "\"acks\""] {
            assert!(e.contains(want), "{want} missing from: {e}");
        }
    }
}
