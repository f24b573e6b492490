//! `ingest --to-camera`: a row committed in the CAD's reporting database to the camera's recorder called, with
//! the whole chain running on the caller's cluster: `ingest` (the `sql` source, the Nashville profile),
//! `serve` (the shipped policy, a generated camera layout around the rows), `bridge` (an in-process HTTP sink
//! speaking Frigate's events API). The join is `demo --bridge`'s: each START the sink receives, through its
//! command, to the revision that caused it, whose `emitted_at` is the row's update time.

use crate::IngestArgs;
use anyhow::{Context, Result};
use dispatch_trigger::ingest::{sql::SqlSource, IngestConfig, Written};
use dispatch_trigger::kafka_tools::bridged::{self, BridgeSummary, Sink};
use dispatch_trigger::kafka_tools::{embedded_service_config, publish_cameras, sign_with_a_demo_key, NOT_STOPPED};
use rand::{Rng, SeedableRng};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};
use trigger_kafka::{Health, KafkaSettings};

/// The table as the Nashville profile reads it (deploy/cad-db/init.sql's shape).
pub(crate) fn create_table(db: &mut postgres::Client, table: &str) -> Result<()> {
    db.batch_execute(&format!(
        "CREATE TABLE {table} (id bigserial PRIMARY KEY, event_number text, tencode text, tencode_desc text, \
         tencode_suffix_desc text, latitude double precision, longitude double precision, call_received text, \
         updated_at timestamptz NOT NULL DEFAULT clock_timestamp())"
    ))?;
    Ok(())
}

/// Where the rows are: downtown Nashville, each call at its own spot.
fn spots(n: u64) -> Vec<(f64, f64)> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    (0..n).map(|_| (36.12 + rng.random::<f64>() * 0.08, -86.82 + rng.random::<f64>() * 0.08)).collect()
}

/// Run the chain, insert the rows, wait for their cameras; the source's figures and the bridge's.
pub(crate) fn measure(a: &IngestArgs, settings: &KafkaSettings, table: &str) -> Result<(Written, BridgeSummary)> {
    let policy = dispatch_trigger::config::default_policy();
    let points = spots(a.rows);
    let around = points.iter().map(|(lat, lon)| trigger_core::LatLon { lat: *lat, lon: *lon }).collect();
    let placement = dispatch_trigger::cameras::Placement::Around(around);
    let cams = dispatch_trigger::cameras::generate(a.cameras, 7, &placement, chrono_tz::America::Chicago)?;
    publish_cameras(settings, &cams, &NOT_STOPPED)?;
    let mut serve = embedded_service_config(settings, &policy)?;
    let public = sign_with_a_demo_key(&mut serve);
    let sink = Sink::start(false)?;
    let bridge = bridged::config(settings, &cams, &sink, None, &public);
    let query = format!(
        "SELECT id::text AS row_id, updated_at, event_number AS \"Event Number\", tencode AS \"Tencode\", \
         tencode_desc AS \"Tencode Description\", tencode_suffix_desc AS \"Tencode Suffix Description\", \
         latitude AS \"Latitude\", longitude AS \"Longitude\", call_received AS \"Call_Received\" FROM {table} \
         WHERE (updated_at, id::text) > ($1, $2) AND updated_at < clock_timestamp() - interval '{} milliseconds' \
         ORDER BY updated_at, id::text LIMIT $3",
        a.settle_ms
    );
    let source = SqlSource {
        connection: a.postgres.clone(),
        profile: "nashville-mnpd".into(),
        query,
        poll_interval_ms: a.poll_interval_ms,
        ..SqlSource::default()
    };
    let mut ingest = IngestConfig { kafka: settings.clone(), sql: source, ..IngestConfig::default() };
    ingest.kafka.group_id = format!("{}-ingest", settings.group_id);
    ingest.http.listen = String::new();
    let healths = [Health::default(), Health::default(), Health::default()];
    let stops = [AtomicBool::new(false), AtomicBool::new(false), AtomicBool::new(false)];
    std::thread::scope(|s| {
        let service = s.spawn(|| dispatch_trigger::serve::run(&serve, &healths[0], &stops[0]));
        let bridged = s.spawn(|| dispatch_trigger::bridge::run(&bridge, &healths[1], &stops[1]));
        let source = s.spawn(|| dispatch_trigger::ingest::run(&ingest, &policy, &healths[2], &stops[2]));
        let ready = wait(60, || healths[0].ready.load(Relaxed) && healths[0].assigned_partitions.load(Relaxed) > 0);
        let inserted =
            if ready { insert(a, table, &points) } else { Err(anyhow::anyhow!("serve was not ready in 60 s")) };
        wait(120, || healths[0].handled.load(Relaxed) >= a.rows);
        stops[2].store(true, Relaxed);
        let written = source.join().expect("source thread");
        stops[0].store(true, Relaxed);
        let stats = service.join().expect("service thread")?;
        wait(60, || healths[1].handled.load(Relaxed) >= stats.start_commands + stats.stop_commands);
        stops[1].store(true, Relaxed);
        let bridge_stats = bridged.join().expect("bridge thread")?;
        inserted?;
        let engine = trigger_core::Engine::new(dispatch_trigger::config::load_policy(&policy)?);
        let summary = bridged::summary(settings, &engine, &sink, None, bridge_stats)?;
        Ok((written?, summary))
    })
}

/// Wait until `done` (true) or `secs` have passed (false).
fn wait(secs: u64, done: impl Fn() -> bool) -> bool {
    let by = Instant::now() + Duration::from_secs(secs);
    while !done() {
        if Instant::now() > by {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// One shots-fired call per spot at `a.rate` per second, each committed on its own, received now (CAD local
/// time, as the Nashville export writes it).
fn insert(a: &IngestArgs, table: &str, spots: &[(f64, f64)]) -> Result<()> {
    let mut db = postgres::Client::connect(&a.postgres, postgres::NoTls).context("connecting to --postgres")?;
    let sql = format!(
        "INSERT INTO {table} (event_number, tencode, tencode_desc, tencode_suffix_desc, latitude, longitude, \
         call_received) VALUES ($1, '83', 'SHOTS FIRED', '', $2, $3, \
         to_char(clock_timestamp() AT TIME ZONE 'America/Chicago', 'YYYY-MM-DD HH24:MI:SS'))"
    );
    let started = Instant::now();
    for (i, (lat, lon)) in spots.iter().enumerate() {
        let due = started + Duration::from_secs_f64(i as f64 / a.rate);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        db.execute(&sql, &[&format!("PD{i:09}"), lat, lon])?;
    }
    Ok(())
}
