//! The `sql` source: a CAD reporting database (PostgreSQL, or MariaDB and MySQL), polled. Every new or changed row since the
//! watermark (the last row's update time and id) becomes one revision of its incident: the row read through
//! the city's CSV profile, as the incident stands in it ([`trigger_cad::csv_profile::row_state`]), its revision
//! the row's update time ([`trigger_cad::eido::revision_at`]). A row the profile refuses goes to the dead
//! letters, as the source read it (its columns as JSON), and never stops the source. The watermark advances
//! only with the records' acknowledgement ([`trigger_kafka::ingest::IngestSink`]). Each engine is a
//! [`Replica`] ([`postgres`], [`mariadb`]): it connects, runs the query and gives the rows back as text; all
//! the rest is this module's, the same on every engine.

mod mariadb;
mod postgres;

use super::{cfs_bytes, count_written, open_sink, register, set_down, source_fault, Backoff, IngestConfig, Written};
use crate::runtime::sleep_unless;
use anyhow::Result;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;
use trigger_cad::CsvProfile;
use trigger_core::Secret;
use trigger_kafka::ingest::IngestSink;
use trigger_kafka::records::{cfs_key, source_dead_letter, DeadLetterRule};
use trigger_kafka::{wall_ms, Health, OutRecord};

/// `[sql]`: the database, the query and how the rows read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SqlSource {
    /// The source's name: the key of its watermark, the origin named in its dead letters.
    pub name: String,
    /// The database engine: `postgresql` (the default) or `mariadb` (MariaDB and MySQL).
    pub engine: Engine,
    /// `postgresql`: a libpq connection string (`host=replica.cad.local port=5432 user=reader dbname=cad`) or
    /// URL; `mariadb`: a URL (`mysql://reader@replica.cad.local:3306/cad`). Without the password.
    pub connection: String,
    /// From the environment: `DT_INGEST_SQL__PASSWORD`. Never printed.
    pub password: Option<Secret>,
    /// The CSV profile that reads a row (a name in `profiles/` beside the policy, or a path): the columns of
    /// the query's result are the profile's columns.
    pub profile: String,
    /// Every row changed since the watermark, oldest first: `$1` the watermark's update time (timestamptz;
    /// MariaDB: a UTC time), `$2` its row id (text), `$3` the most rows to return (bigint), on either engine.
    /// See docs/connecting-a-cad.md.
    pub query: String,
    /// The result column holding the row's last update (PostgreSQL: timestamptz; MariaDB: TIMESTAMP).
    pub updated_at_column: String,
    /// The result column holding the row's id (text), the tie-break of rows updated at the same instant.
    pub id_column: String,
    /// The pause between polls that found no more rows.
    pub poll_interval_ms: u64,
    /// The most rows one poll takes (and one transaction writes).
    pub batch_rows: i64,
}

impl Default for SqlSource {
    fn default() -> Self {
        Self {
            name: "sql".into(),
            engine: Engine::Postgresql,
            connection: String::new(),
            password: None,
            profile: String::new(),
            query: String::new(),
            updated_at_column: "updated_at".into(),
            id_column: "row_id".into(),
            poll_interval_ms: 2000,
            batch_rows: 1000,
        }
    }
}

impl SqlSource {
    pub(super) fn validate(&self) -> Vec<String> {
        let mut errs = Vec::new();
        for (key, v) in [("connection", &self.connection), ("profile", &self.profile), ("query", &self.query)] {
            if v.trim().is_empty() {
                errs.push(format!("sql.{key} is empty"));
            }
        }
        for p in ["$1", "$2", "$3"] {
            if !self.query.contains(p) {
                errs.push(format!("sql.query does not use {p} (the watermark's time, its row id, the row limit)"));
            }
        }
        errs.extend(super::name_problem("sql", &self.name));
        if self.engine == Engine::Mariadb && !self.connection.trim().is_empty() {
            errs.extend(mariadb::options(&self.connection).err().map(|e| e.to_string()));
        }
        if self.batch_rows < 1 || self.poll_interval_ms == 0 {
            errs.push("sql.batch_rows and sql.poll_interval_ms must be positive".into());
        }
        errs
    }
}

/// The database engines the source reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    Postgresql,
    Mariadb,
}

/// How far the source has read: the last row taken, by update time and id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Watermark {
    updated_at_us: i64,
    id: String,
}

impl Watermark {
    fn start() -> Self {
        Self { updated_at_us: 0, id: String::new() }
    }

    fn time(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(self.updated_at_us).unwrap_or_default()
    }
}

/// One poll's rows as text: the result's column names, and each row's update time, id and columns.
struct Table {
    names: Vec<String>,
    rows: Vec<TextRow>,
}

struct TextRow {
    updated_at_us: i64,
    id: String,
    /// Every column as the profile reads it (None: null).
    fields: Vec<Option<String>>,
}

/// A database engine: a connection with the query prepared, the rows changed since a watermark, and those
/// rows as text. An error of `connect` or `fetch` is the database not answering (retried); of `read`, a
/// result the source cannot read (a configuration fault, said until the query is fixed).
trait Replica: Sized {
    type Row;
    fn connect(src: &SqlSource) -> Result<Self>;
    /// At most `limit` rows changed after `mark`, oldest first.
    fn fetch(&mut self, mark: &Watermark, limit: i64) -> Result<Vec<Self::Row>>;
    fn read(rows: &[Self::Row], src: &SqlSource, profile: &CsvProfile) -> Result<Table>;
}

/// The records of one poll, its watermark after them, and each row's update time.
struct Polled {
    records: Vec<OutRecord>,
    mark: Watermark,
    dead_letters: u64,
    updated_us: Vec<i64>,
}

/// Poll the database until `shutdown`; a database or a broker that does not answer is retried with backoff
/// (and said on `/readyz`), from the last watermark written.
pub(super) fn run(
    cfg: &IngestConfig,
    src: &SqlSource,
    policy: &Path,
    health: &Health,
    shutdown: &AtomicBool,
) -> Result<Written> {
    match src.engine {
        Engine::Postgresql => run_on::<postgres::Postgres>(cfg, src, policy, health, shutdown),
        Engine::Mariadb => run_on::<mariadb::MariaDb>(cfg, src, policy, health, shutdown),
    }
}

fn run_on<R: Replica>(
    cfg: &IngestConfig,
    src: &SqlSource,
    policy: &Path,
    health: &Health,
    shutdown: &AtomicBool,
) -> Result<Written> {
    let profile = crate::config::load_profile(&src.profile, policy)?;
    register(&src.name);
    let mut written = Written::default();
    let mut backoff = Backoff::new(cfg.ingest.retry_backoff_max_ms);
    health.ready.store(true, Relaxed);
    while !shutdown.load(Relaxed) {
        let opened = open_sink(cfg, &src.name, Watermark::start, health, &mut backoff, shutdown);
        let Some((mut sink, mark)) = opened else { break };
        let topics = (cfg.kafka.topics.cfs.as_str(), cfg.kafka.topics.dead_letter.as_str());
        let letters = DeadLetterRule { payload: cfg.ingest.dead_letter_payload, ..DeadLetterRule::default() };
        let mut reader = Reader::<R> { src, profile: &profile, topics, letters, db: None, mark };
        if !reader.pump(&mut sink, &mut written, health, &mut backoff, shutdown) {
            break;
        }
    }
    health.ready.store(false, Relaxed);
    Ok(written)
}

/// The database side of a run: the connection, the profile, where it stands.
struct Reader<'a, R> {
    src: &'a SqlSource,
    profile: &'a CsvProfile,
    /// The CFS and dead-letter topics.
    topics: (&'a str, &'a str),
    letters: DeadLetterRule,
    db: Option<R>,
    mark: Watermark,
}

impl<R: Replica> Reader<'_, R> {
    /// Poll and write until `shutdown` (false) or a failed commit (true: the caller opens a new sink and
    /// starts again from the stored watermark).
    fn pump(
        &mut self,
        sink: &mut IngestSink,
        written: &mut Written,
        health: &Health,
        backoff: &mut Backoff,
        shutdown: &AtomicBool,
    ) -> bool {
        while !shutdown.load(Relaxed) {
            let rows = match self.poll() {
                Ok(rows) => rows,
                Err(e) => {
                    self.db = None;
                    source_fault(health, &self.src.name, format!("the CAD database does not answer: {e:#}"));
                    backoff.wait(shutdown);
                    continue;
                }
            };
            set_down(health, None);
            let full = rows.len() as i64 >= self.src.batch_rows;
            if !rows.is_empty() && !self.write(&rows, sink, written, health, shutdown) {
                return !shutdown.load(Relaxed);
            }
            backoff.reset();
            if !full {
                sleep_unless(Duration::from_millis(self.src.poll_interval_ms), shutdown);
            }
        }
        false
    }

    /// The rows changed since the watermark, connecting (and preparing the query) first if need be.
    fn poll(&mut self) -> Result<Vec<R::Row>> {
        if self.db.is_none() {
            self.db = Some(R::connect(self.src)?);
        }
        self.db.as_mut().expect("connected").fetch(&self.mark, self.src.batch_rows)
    }

    /// The rows as records (or dead letters) and the watermark after them, committed. False: the commit
    /// failed or was stopped (the watermark stays where it was).
    fn write(
        &mut self,
        rows: &[R::Row],
        sink: &mut IngestSink,
        written: &mut Written,
        health: &Health,
        shutdown: &AtomicBool,
    ) -> bool {
        let read = R::read(rows, self.src, self.profile).and_then(|table| self.records(table));
        let Polled { records, mark, dead_letters: letters, updated_us } = match read {
            Ok(x) => x,
            Err(e) => {
                // A column the query does not return as the source needs it: a configuration fault, said and
                // retried (the operator fixes the query; nothing is skipped meanwhile).
                tracing::error!(error = %format!("{e:#}"), "the query's result cannot be read");
                set_down(health, Some(format!("the query's result cannot be read: {e:#}")));
                sleep_unless(Duration::from_secs(5), shutdown);
                return false;
            }
        };
        let stop = || shutdown.load(Relaxed);
        let mark_json = serde_json::to_vec(&mark).expect("serialisable");
        match super::commit(sink, health, &records, &mark_json, &stop) {
            Ok(true) => {
                written.acknowledged(&updated_us);
                health.handled.fetch_add(rows.len() as u64, Relaxed);
                written.rows += rows.len() as u64;
                written.dead_letters += letters;
                written.records += records.len() as u64 - letters;
                telemetry(&self.src.name, rows.len(), letters, &mark);
                self.mark = mark;
                true
            }
            Ok(false) => false,
            Err(e) => {
                tracing::warn!(error = %e, "Kafka did not take the records; starting again from the stored watermark");
                set_down(health, Some(format!("Kafka does not acknowledge the records: {e}")));
                false
            }
        }
    }

    /// Each row as its CFS record, or as a dead letter; the watermark after the last.
    fn records(&self, table: Table) -> Result<Polled> {
        let topics = self.topics;
        let mut out = Vec::with_capacity(table.rows.len());
        let mut mark = self.mark.clone();
        let mut letters = 0;
        let mut updated_us = Vec::with_capacity(table.rows.len());
        // Every row of one result has the same columns: found, and checked against the profile, once.
        let index: HashMap<String, usize> = table.names.iter().enumerate().map(|(i, n)| (n.clone(), i)).collect();
        let missing = self.profile.missing_columns(&index);
        anyhow::ensure!(missing.is_empty(), "the result lacks the profile's columns {missing:?}");
        for TextRow { updated_at_us, id, fields } in table.rows {
            let fields_ref: Vec<&str> = fields.iter().map(|f| f.as_deref().unwrap_or("")).collect();
            let ms = updated_at_us.div_euclid(1000);
            let revision = trigger_cad::eido::revision_at(ms);
            let opts = trigger_cad::DecodeOptions::default();
            match trigger_cad::csv_profile::row_state(self.profile, &index, fields_ref, revision, ms, &opts) {
                Ok(ev) => out.push(OutRecord::keyed(topics.0, cfs_key(&ev), Some(cfs_bytes(&ev)))),
                Err(r) => {
                    letters += 1;
                    metrics::counter!("dispatch_trigger_ingest_rejects_total", "reason" => r.reason.as_str())
                        .increment(1);
                    let original = row_json(&table.names, &fields);
                    let position = format!("row {id}");
                    let (reason, name) = (r.reason.as_str(), &self.src.name);
                    out.push(source_dead_letter(topics.1, name, &position, &original, reason, &r.detail, self.letters));
                }
            }
            updated_us.push(updated_at_us);
            mark = Watermark { updated_at_us, id };
        }
        Ok(Polled { records: out, mark, dead_letters: letters, updated_us })
    }
}

/// A row as the source read it, for its dead letter: column -> text (null: JSON null).
fn row_json(names: &[String], fields: &[Option<String>]) -> Vec<u8> {
    let m: serde_json::Map<String, serde_json::Value> = names
        .iter()
        .cloned()
        .zip(fields.iter().map(|f| f.clone().map_or(serde_json::Value::Null, Into::into)))
        .collect();
    serde_json::to_vec(&m).expect("serialisable")
}

/// An instant in the profile's time zone and `timestamp_format`.
fn local_time(profile: &CsvProfile, t: DateTime<Utc>) -> String {
    let t = t.with_timezone(&profile.time_zone);
    if profile.timestamp_format == "rfc3339" {
        t.to_rfc3339()
    } else {
        t.format(&profile.timestamp_format).to_string()
    }
}

/// A timestamp without a zone is the CAD's local time already.
fn naive_time(profile: &CsvProfile, t: chrono::NaiveDateTime) -> String {
    if profile.timestamp_format == "rfc3339" {
        t.and_utc().to_rfc3339()
    } else {
        t.format(&profile.timestamp_format).to_string()
    }
}

/// One committed poll, counted.
fn telemetry(source: &str, rows: usize, letters: u64, mark: &Watermark) {
    count_written(source, rows, letters);
    let source = source.to_string();
    let lag = (wall_ms() - mark.updated_at_us / 1000).max(0) as f64 / 1e3;
    metrics::gauge!("dispatch_trigger_ingest_watermark_age_seconds", "source" => source).set(lag);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_naming_a_blocked_type_in_a_column_the_profile_does_not_map_carries_the_verdict() {
        let profile = CsvProfile::from_toml(include_str!("../../../config/profiles/nashville-mnpd.toml")).unwrap();
        let src = SqlSource::default();
        let reader = Reader::<postgres::Postgres> {
            src: &src,
            profile: &profile,
            topics: ("cfs", "dlq"),
            letters: DeadLetterRule::default(),
            db: None,
            mark: Watermark::start(),
        };
        let names: Vec<String> = ["Event Number", "Tencode", "Tencode Description", "Tencode Suffix Description"]
            .into_iter()
            .chain(["Latitude", "Longitude", "Call_Received", "Disposition Description"])
            .map(String::from)
            .collect();
        let row = |id: &str, disposition: &str| TextRow {
            updated_at_us: 1_764_756_000_000_000,
            id: id.into(),
            fields: ["PD1", "83", "SHOTS FIRED", "PROGRESS", "36.16", "-86.78", "2025-12-03 10:00:00", disposition]
                .into_iter()
                .map(|v| Some(v.to_string()))
                .collect(),
        };
        // Two states of one row within a second: the second, retyped in a column no profile maps, blocks.
        let table = Table { names, rows: vec![row("1", "ASSISTED CITIZEN"), row("1", "CIV DISTURB / CROWD")] };
        let polled = reader.records(table).unwrap();
        let evs: Vec<trigger_core::CallForService> = polled
            .records
            .iter()
            .map(|r| {
                trigger_cad::pb::decode_one(r.payload.as_deref().unwrap(), &trigger_cad::DecodeOptions::default())
                    .unwrap()
            })
            .collect();
        assert_eq!(evs.len(), 2);
        assert_eq!(evs[0].revision, evs[1].revision, "the same revision");
        assert_eq!(evs[0].blocked, None);
        let b = evs[1].blocked.clone().expect("the verdict travels with the revision");
        assert_eq!(b.field, "Disposition Description");
        assert!(
            !String::from_utf8_lossy(polled.records[1].payload.as_deref().unwrap()).contains("CIV DISTURB"),
            "the value stays behind"
        );
    }
}
