//! `ingest`: a long-running process beside `serve` that brings a city's live CAD feed onto the CFS topic,
//! through the same profiles the offline replay reads its exports with. Configuration (`--config FILE`, then
//! `DT_INGEST_*` environment variables) names the cluster, the process's endpoints and log, and the source;
//! `sql` polls a CAD reporting database ([`sql`]); `eido_ws` subscribes to a NENA-STA-024 notifier
//! ([`eido_ws`]); `http_push` is an HTTPS endpoint CAD vendors push to ([`http_push`]). Each source keeps its position on the watermark topic, written with the records it stands
//! for ([`trigger_kafka::ingest`]).

pub mod eido_ws;
pub mod http_push;
mod memory;
pub mod sql;

use crate::runtime::{self, layered, HttpSection, LogSection};
use anyhow::Result;
use figment::providers::Env;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;
use trigger_kafka::ingest::IngestSink;
use trigger_kafka::options::RetryPolicy;
use trigger_kafka::records::DeadLetterPayload;
use trigger_kafka::{Health, KafkaSettings};

/// `[ingest]`: what every source shares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestOptions {
    /// Longest pause between retries of a source or a broker that does not answer (they start at 100 ms and
    /// double).
    pub retry_backoff_max_ms: u64,
    /// What a dead letter keeps of the refused input (`original`, `redacted`, `digest`).
    pub dead_letter_payload: DeadLetterPayload,
    /// How long a write may wait for the brokers' acknowledgement before `/readyz` says Kafka is not taking
    /// records (the write itself goes on waiting, up to the transaction's own limit).
    pub broker_grace_ms: u64,
}

impl Default for IngestOptions {
    fn default() -> Self {
        Self { retry_backoff_max_ms: 5000, dead_letter_payload: DeadLetterPayload::Original, broker_grace_ms: 10_000 }
    }
}

/// The whole `ingest` configuration (docs/connecting-a-cad.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// The cluster, the CFS, dead-letter and watermark topics, the delivery mode (exactly-once: records and
    /// watermark in one transaction).
    pub kafka: KafkaSettings,
    pub http: HttpSection,
    pub log: LogSection,
    pub ingest: IngestOptions,
    /// A CAD reporting database, polled (the source, once its `connection` is set).
    pub sql: sql::SqlSource,
    /// A NENA-STA-024 EIDO notifier, subscribed to (the source, once its `url` is set).
    pub eido_ws: eido_ws::EidoWsSource,
    /// An HTTPS endpoint CAD vendors push to (the source, once its `listen` is set).
    pub http_push: http_push::HttpPushSource,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            kafka: KafkaSettings { group_id: "dispatch-trigger-ingest".into(), ..KafkaSettings::default() },
            http: HttpSection { listen: "0.0.0.0:9897".into() },
            log: LogSection::default(),
            ingest: IngestOptions::default(),
            sql: sql::SqlSource::default(),
            eido_ws: eido_ws::EidoWsSource::default(),
            http_push: http_push::HttpPushSource::default(),
        }
    }
}

impl IngestConfig {
    /// Defaults, then `file`, then `DT_INGEST_*` variables (double underscore between levels:
    /// `DT_INGEST_SQL__PASSWORD`).
    pub fn load(file: &Path) -> Result<Self> {
        Self::load_with_env(file, Env::prefixed("DT_INGEST_").split("__"))
    }

    pub fn load_with_env(file: &Path, env: Env) -> Result<Self> {
        let cfg: IngestConfig = layered::load("ingest configuration", Some(file), env)?;
        let mut errs = cfg.kafka.validate();
        errs.extend(runtime::validate(&cfg.http, &cfg.log));
        match cfg.source() {
            Ok(Source::Sql) => errs.extend(cfg.sql.validate()),
            Ok(Source::EidoWs) => errs.extend(cfg.eido_ws.validate()),
            Ok(Source::HttpPush) => errs.extend(cfg.http_push.validate()),
            Err(e) => errs.push(e),
        }
        layered::check("ingest configuration", errs)?;
        Ok(cfg)
    }
}

/// The kinds of source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Sql,
    EidoWs,
    HttpPush,
}

impl IngestConfig {
    /// The one source configured: the section whose address is set.
    fn source(&self) -> Result<Source, String> {
        let set = [
            (Source::Sql, !self.sql.connection.trim().is_empty()),
            (Source::EidoWs, !self.eido_ws.url.trim().is_empty()),
            (Source::HttpPush, !self.http_push.listen.trim().is_empty()),
        ];
        match set.iter().filter(|(_, on)| *on).map(|(s, _)| *s).collect::<Vec<_>>()[..] {
            [one] => Ok(one),
            [] => Err("no source: configure [sql] (its connection, profile and query), [eido_ws] (its url and \
                       tls) or [http_push] (its listen, tls and client authentication)"
                .into()),
            _ => Err("more than one source: one ingest process runs one of [sql], [eido_ws], [http_push]".into()),
        }
    }
}

/// Run the configured source until `shutdown` is set; returns what it wrote.
pub fn run(cfg: &IngestConfig, policy: &Path, health: &Health, shutdown: &AtomicBool) -> Result<Written> {
    health.partitionless.store(true, Relaxed);
    health.broker_grace_ms.store(cfg.ingest.broker_grace_ms as i64, Relaxed);
    match cfg.source().map_err(anyhow::Error::msg)? {
        Source::Sql => sql::run(cfg, &cfg.sql, policy, health, shutdown),
        Source::EidoWs => eido_ws::run(cfg, &cfg.eido_ws, health, shutdown),
        Source::HttpPush => http_push::run(cfg, &cfg.http_push, health, shutdown),
    }
}

/// What a run wrote.
#[derive(Debug, Clone, Serialize)]
pub struct Written {
    /// Rows (sql) or documents (eido-ws) read.
    pub rows: u64,
    pub records: u64,
    pub dead_letters: u64,
    /// Documents not written again: a revision already on the topic (a notifier's replay or resend), or older
    /// than the source remembers.
    pub skipped: u64,
    /// A row's (a document's) last update -> its record acknowledged, microseconds.
    #[serde(skip)]
    pub row_to_ack_us: hdrhistogram::Histogram<u64>,
}

impl Default for Written {
    fn default() -> Self {
        let h = hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds");
        Self { rows: 0, records: 0, dead_letters: 0, skipped: 0, row_to_ack_us: h }
    }
}

impl Written {
    /// `updated_us` (each written row's or document's last update) was just acknowledged.
    fn acknowledged(&mut self, updated_us: &[i64]) {
        let acked = trigger_kafka::wall_us();
        for u in updated_us {
            let us = (acked - u).max(1) as u64;
            let _ = self.row_to_ack_us.record(us);
            metrics::histogram!("dispatch_trigger_ingest_row_to_ack_seconds").record(us as f64 / 1e6);
        }
    }
}

/// A sink and the source's stored position (`start()` when it has none), retried until the brokers answer
/// (None: asked to stop first).
fn open_sink<T: DeserializeOwned + std::fmt::Debug>(
    cfg: &IngestConfig,
    source: &str,
    start: fn() -> T,
    health: &Health,
    backoff: &mut Backoff,
    shutdown: &AtomicBool,
) -> Option<(IngestSink, T)> {
    let retry =
        RetryPolicy { backoff_max: Duration::from_millis(cfg.ingest.retry_backoff_max_ms), ..Default::default() };
    while !shutdown.load(Relaxed) {
        let opened = IngestSink::new(&cfg.kafka, source, retry).and_then(|s| Ok((s.watermark()?, s)));
        match opened {
            Ok((mark, sink)) => {
                let mark = match mark.map(|m| serde_json::from_slice::<T>(&m)) {
                    Some(Ok(m)) => m,
                    None => start(),
                    // Not this source's format: read from the start (what was sent is long stale: the service
                    // refuses it by its backlog guard), and say so.
                    Some(Err(e)) => {
                        tracing::error!(error = %e, "the stored watermark cannot be read: reading from the start");
                        start()
                    }
                };
                tracing::info!(source = %source, watermark = ?mark, "reading from the watermark");
                set_down(health, None);
                return Some((sink, mark));
            }
            Err(e) => {
                tracing::warn!(error = %e, "Kafka does not answer; retrying");
                set_down(health, Some(format!("Kafka does not answer: {e}")));
                backoff.wait(shutdown);
            }
        }
    }
    None
}

/// `sink.commit`, with `/readyz` told while it waits: a write the brokers do not acknowledge within
/// `[ingest] broker_grace_ms` makes the process not ready until it ends.
fn commit(
    sink: &mut IngestSink,
    health: &Health,
    records: &[trigger_kafka::OutRecord],
    watermark: &[u8],
    stop: &dyn Fn() -> bool,
) -> Result<bool, trigger_kafka::KafkaError> {
    health.awaiting_brokers_since_ms.store(trigger_kafka::wall_ms(), Relaxed);
    let done = sink.commit(records, watermark, stop);
    health.awaiting_brokers_since_ms.store(0, Relaxed);
    done
}

/// A source's name is the key of its watermark and part of its transactional id: letters, digits, '-', '_'.
fn name_problem(section: &str, name: &str) -> Option<String> {
    let ok = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    (!ok).then(|| format!("{section}.name {name:?}: letters, digits, '-' and '_' only"))
}

/// What `/readyz` says of the source (None: it is up).
fn set_down(health: &Health, why: Option<String>) {
    *health.source_down.lock().expect("not poisoned") = why;
}

/// The CFS record's payload: the contract's protobuf.
fn cfs_bytes(ev: &trigger_core::CallForService) -> Vec<u8> {
    use prost::Message as _;
    trigger_cad::pb::to_pb(ev).encode_to_vec()
}

/// A source's counters at zero, so a dashboard and the alerting rules see them before the first row.
fn register(source: &str) {
    for name in [
        "dispatch_trigger_ingest_rows_total",
        "dispatch_trigger_ingest_dead_letters_total",
        "dispatch_trigger_ingest_source_errors_total",
    ] {
        metrics::counter!(name, "source" => source.to_string()).increment(0);
    }
}

/// A source that did not answer, counted and said on `/readyz`.
fn source_fault(health: &Health, source: &str, why: String) {
    metrics::counter!("dispatch_trigger_ingest_source_errors_total", "source" => source.to_string()).increment(1);
    tracing::warn!(source = %source, error = %why, "retrying");
    set_down(health, Some(why));
}

/// One commit's rows (documents) and dead letters, counted.
fn count_written(source: &str, rows: usize, letters: u64) {
    let source = source.to_string();
    metrics::counter!("dispatch_trigger_ingest_rows_total", "source" => source.clone()).increment(rows as u64);
    metrics::counter!("dispatch_trigger_ingest_dead_letters_total", "source" => source).increment(letters);
}

/// Retries of one thing that does not answer: 100 ms, doubling up to the configured pause.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub(crate) fn new(max_ms: u64) -> Self {
        Self { next: Duration::from_millis(100), max: Duration::from_millis(max_ms.max(100)) }
    }

    /// Sleep the next pause (waking early on `shutdown`), then double it.
    pub(crate) fn wait(&mut self, shutdown: &AtomicBool) {
        crate::runtime::sleep_unless(self.next, shutdown);
        self.next = (self.next * 2).min(self.max);
    }

    pub(crate) fn reset(&mut self) {
        self.next = Duration::from_millis(100);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_file_loads_and_every_problem_is_named() {
        let env = || Env::prefixed("DT_TEST_NOTHING_");
        let files = ["config/ingest.toml", "config/ingest-mariadb.toml", "config/ingest-eido-ws.toml"];
        for file in files.into_iter().chain(["config/ingest-http-push.toml"]) {
            let shipped = IngestConfig::load_with_env(Path::new(file), env());
            assert!(shipped.is_ok(), "{file}: {shipped:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("ingest.toml");
        std::fs::write(&f, "[sql]\nconection = \"x\"\nquery = \"SELECT 1 WHERE $1 < $2\"\n[ingest]\nretry = 1\n")
            .unwrap();
        let e = IngestConfig::load_with_env(&f, env()).unwrap_err().to_string();
        for want in ["\"ingest.retry\"", "\"sql.conection\""] {
            assert!(e.contains(want), "{want} missing from: {e}");
        }
        std::fs::write(&f, "[sql]\nconnection = \"host=x\"\nquery = \"SELECT 1 WHERE $1 < $2\"\nname = \"a b\"\n")
            .unwrap();
        let e = IngestConfig::load_with_env(&f, env()).unwrap_err().to_string();
        for want in ["sql.profile is empty", "does not use $3", "sql.name \"a b\""] {
            assert!(e.contains(want), "{want} missing from: {e}");
        }
        std::fs::write(&f, "[kafka]\nbootstrap_servers = \"x:9092\"\n").unwrap();
        let e = IngestConfig::load_with_env(&f, env()).unwrap_err().to_string();
        assert!(e.contains("no source"), "{e}");
        let url = "engine = \"mariadb\"\nprofile = \"p\"\nquery = \"$1 $2 $3\"\nconnection = \"mysql://r:pw@h/cad\"\n";
        std::fs::write(&f, format!("[sql]\n{url}")).unwrap();
        let e = IngestConfig::load_with_env(&f, env()).unwrap_err().to_string();
        assert!(e.contains("holds a password"), "{e}");
        std::fs::write(&f, format!("[sql]\n{}", url.replace("mysql://r:pw@h", "postgres://h"))).unwrap();
        let e = IngestConfig::load_with_env(&f, env()).unwrap_err().to_string();
        assert!(e.contains("sql.connection"), "{e}");
    }
}
