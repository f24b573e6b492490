//! `ingest`: how long a row committed in a CAD reporting database takes to be a CFS record acknowledged, through
//! `ingest`'s `sql` source at its settings (poll interval, settle margin), on a PostgreSQL server and a
//! broker of the caller's. The latency is the source's own measure (`Written::row_to_ack_us`: the row's
//! update time to the commit that carried it returning), the same as `dispatch_trigger_ingest_row_to_ack_seconds`.

use crate::IngestArgs;
use anyhow::{Context, Result};
use dispatch_trigger::ingest::{sql::SqlSource, IngestConfig};
use dispatch_trigger::kafka_tools::{delete_topics_or_warn, Percentiles};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};
use trigger_kafka::{wall_ms, Health, KafkaSettings};

const PROFILE: &str = r#"
name = "bench-city"
description = "a CAD reporting table"
agency_id = "bench-pd"
time_zone = "America/Chicago"
timestamp_format = "%Y-%m-%d %H:%M:%S"
[columns]
incident_id = "event_number"
type_code = "tencode"
type_text = "tencode_desc"
latitude = "lat"
longitude = "lon"
[lifecycle]
created = "received"
"#;

/// `dispatch-trigger-bench ingest`: one row of figures.
pub(crate) fn run(a: IngestArgs) -> Result<()> {
    let tag = format!("ingest-{}", wall_ms());
    let table = format!("dt_bench_{}", tag.replace('-', "_"));
    let mut db = postgres::Client::connect(&a.postgres, postgres::NoTls).context("connecting to --postgres")?;
    if a.to_camera {
        crate::to_camera::create_table(&mut db, &table)?;
    } else {
        db.batch_execute(&format!(
            "CREATE TABLE {table} (id bigserial PRIMARY KEY, event_number text, tencode text, tencode_desc text, \
             lat double precision, lon double precision, received timestamptz, \
             updated_at timestamptz NOT NULL DEFAULT clock_timestamp())"
        ))?;
    }
    let settings = crate::tagged_cluster(&a.bootstrap, &tag, a.at_least_once)?;
    let measured = if a.to_camera {
        crate::to_camera::measure(&a, &settings, &table).map(|(w, b)| (w.rows, w.row_to_ack_us, Some(b)))
    } else {
        measure(&a, &settings, &table).map(|(rows, h)| (rows, h, None))
    };
    let _ = db.batch_execute(&format!("DROP TABLE {table}"));
    delete_topics_or_warn(&settings, &settings.topics.all());
    let (rows, latency, bridged) = measured?;
    let p = Percentiles::of(&latency, 1e3).context("no row measured")?;
    println!("| rows | poll interval ms | settle margin ms | delivery | row -> record acknowledged p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|---|");
    let delivery = if a.at_least_once { "at-least-once" } else { "exactly-once" };
    println!("| {rows} | {} | {} | {delivery} | {} | {} | {} |", a.poll_interval_ms, a.settle_ms, p.p50, p.p99, p.max);
    if let Some(b) = bridged {
        let c = b.cad_to_target_ms.context("no START reached the camera's recorder")?;
        println!();
        println!("| STARTs measured | delivered | row -> camera's recorder called p50 ms | p99 ms | max ms |");
        println!("|---|---|---|---|---|");
        println!("| {} | {} | {} | {} | {} |", b.starts_measured, b.delivered, c.p50, c.p99, c.max);
    }
    Ok(())
}

/// The source on a thread, rows inserted at the offered rate; returns rows written and the latencies.
fn measure(a: &IngestArgs, settings: &KafkaSettings, table: &str) -> Result<(u64, hdrhistogram::Histogram<u64>)> {
    let dir = std::env::temp_dir().join(format!("dispatch-trigger-{}", settings.group_id));
    std::fs::create_dir_all(&dir)?;
    let profile = dir.join("bench-city.toml");
    std::fs::write(&profile, PROFILE)?;
    let query = format!(
        "SELECT id::text AS row_id, updated_at, event_number, tencode, tencode_desc, lat, lon, received FROM {table} \
         WHERE (updated_at, id::text) > ($1, $2) AND updated_at < clock_timestamp() - interval '{} milliseconds' \
         ORDER BY updated_at, id::text LIMIT $3",
        a.settle_ms
    );
    let source = SqlSource {
        connection: a.postgres.clone(),
        profile: profile.display().to_string(),
        query,
        poll_interval_ms: a.poll_interval_ms,
        ..SqlSource::default()
    };
    let mut cfg = IngestConfig { kafka: settings.clone(), sql: source, ..IngestConfig::default() };
    cfg.http.listen = String::new();
    let (health, stop) = (Health::default(), AtomicBool::new(false));
    let policy = dispatch_trigger::config::default_policy();
    std::thread::scope(|s| {
        let source = s.spawn(|| dispatch_trigger::ingest::run(&cfg, &policy, &health, &stop));
        let inserted = insert(a, table);
        let by = Instant::now() + Duration::from_secs(120);
        while health.handled.load(Relaxed) < a.rows && Instant::now() < by && !source.is_finished() {
            std::thread::sleep(Duration::from_millis(50));
        }
        stop.store(true, Relaxed);
        let written = source.join().expect("source thread")?;
        inserted?;
        let _ = std::fs::remove_dir_all(&dir);
        Ok((written.rows, written.row_to_ack_us))
    })
}

/// `a.rows` calls at `a.rate` per second, each committed on its own.
fn insert(a: &IngestArgs, table: &str) -> Result<()> {
    let mut db = postgres::Client::connect(&a.postgres, postgres::NoTls)?;
    let sql = format!(
        "INSERT INTO {table} (event_number, tencode, tencode_desc, lat, lon, received) \
         VALUES ($1, '83', 'SHOTS FIRED', 36.16, -86.78, clock_timestamp())"
    );
    let started = Instant::now();
    for i in 0..a.rows {
        let due = started + Duration::from_secs_f64(i as f64 / a.rate);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        db.execute(&sql, &[&format!("B{i:06}")])?;
    }
    Ok(())
}
