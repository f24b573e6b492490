//! `ingest` with its `sql` source against a real PostgreSQL server (Debian's package, started by the test)
//! and Apache Kafka, exactly-once: rows inserted and updated while the source runs, the source SIGKILLed at
//! random moments and restarted (`ADVERSARY_SEED` replays a run), then the database stopped and started
//! again. The oracle reads the table and the CFS and dead-letter topics (read_committed) itself: every row's
//! revisions on the topic once each, in order, ending at the row's last update; a bad row dead-lettered once;
//! nothing lost while the database was down; SIGTERM exits 0.

mod common;

use common::postgres::Postgres;
use prost::Message as _;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};
use trigger_core::Status;

const PROFILE: &str = r#"
name = "test-city"
description = "a CAD reporting table"
agency_id = "test-pd"
time_zone = "America/Chicago"
timestamp_format = "%Y-%m-%d %H:%M:%S"
coordinate_uncertainty_m = 10
[columns]
incident_id = "event_number"
type_code = "tencode"
type_text = "tencode_desc"
latitude = "lat"
longitude = "lon"
[lifecycle]
created = "received"
dispatched = "dispatched"
closed = "closed"
"#;

const TABLE: &str = "CREATE TABLE calls (
    id bigserial PRIMARY KEY, event_number text NOT NULL, tencode text, tencode_desc text,
    lat double precision, lon double precision, received timestamptz, dispatched timestamptz,
    closed timestamptz, updated_at timestamptz NOT NULL DEFAULT clock_timestamp())";

const QUERY: &str = "SELECT id::text AS row_id, updated_at, event_number, tencode, tencode_desc, lat, lon, \
    received, dispatched, closed FROM calls \
    WHERE (updated_at, id::text) > ($1, $2) AND updated_at < clock_timestamp() - interval '300 milliseconds' \
    ORDER BY updated_at, id::text LIMIT $3";

/// Insert `n` calls (one of them without an incident number: a reject), then dispatch each, then close each:
/// every row updated at least a second after its last update (a revision is a whole second).
fn write_calls(pg: &Postgres, n: usize) {
    let mut db = pg.client();
    let pause = Duration::from_millis(150);
    for i in 0..n {
        let (id, text) = if i == 7 { (String::new(), "BAD ROW") } else { (format!("E{i:03}"), "SHOTS FIRED") };
        db.execute(
            "INSERT INTO calls (event_number, tencode, tencode_desc, lat, lon, received) \
             VALUES ($1, '83', $2, $3, -86.78, clock_timestamp())",
            &[&id, &text, &(36.16 + i as f64 * 0.001)],
        )
        .unwrap();
        std::thread::sleep(pause);
    }
    for step in ["dispatched", "closed"] {
        std::thread::sleep(Duration::from_millis(1200));
        for i in 0..n {
            let sql = format!(
                "UPDATE calls SET {step} = clock_timestamp(), updated_at = clock_timestamp() WHERE event_number = $1"
            );
            db.execute(&sql, &[&format!("E{i:03}")]).unwrap();
            std::thread::sleep(pause);
        }
    }
}

/// Every incident's (revision, status) in topic order, read back committed; and how many records.
fn on_topic(settings: &trigger_kafka::KafkaSettings) -> (BTreeMap<String, Vec<(u32, Status)>>, usize) {
    let records =
        trigger_kafka::inspect::read_topic(settings, &settings.topics.cfs, true, Duration::from_secs(30)).unwrap();
    let mut out: BTreeMap<String, Vec<(u32, Status)>> = BTreeMap::new();
    for r in &records {
        let m = trigger_proto::v1::CallForService::decode(r.payload.as_deref().unwrap_or_default()).expect("protobuf");
        let ev = trigger_cad::pb::from_pb(m).expect("a valid call");
        out.entry(ev.incident_id).or_default().push((ev.revision, ev.status));
    }
    (out, records.len())
}

/// The table as it ends: event number -> (revision of its last update, closed).
fn in_table(pg: &Postgres) -> BTreeMap<String, (u32, bool)> {
    let mut db = pg.client();
    db.query("SELECT event_number, updated_at, closed IS NOT NULL FROM calls", &[])
        .unwrap()
        .iter()
        .map(|r| {
            let at: chrono::DateTime<chrono::Utc> = r.get(1);
            (r.get::<_, String>(0), (common::revision_of(at.timestamp_millis()), r.get::<_, bool>(2)))
        })
        .collect()
}

#[test]
fn rows_written_while_the_source_is_killed_and_the_database_stops_arrive_once_each() {
    let Some(pg) = Postgres::start() else { return };
    let Some(broker) = common::Broker::apache() else { return };
    let mut settings = broker.settings(1);
    settings.delivery = trigger_kafka::Delivery::ExactlyOnce;
    pg.client().batch_execute(TABLE).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("test-city.toml");
    std::fs::write(&profile, PROFILE).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = dir.path().join("ingest.toml");
    std::fs::write(
        &config,
        format!(
            "{}[http]\nlisten = \"127.0.0.1:{port}\"\n[ingest]\nretry_backoff_max_ms = 500\n\
             [sql]\nconnection = \"{}\"\nprofile = {:?}\nquery = {:?}\npoll_interval_ms = 200\nbatch_rows = 7\n",
            common::kafka_section(&settings),
            pg.connection(),
            profile.display().to_string(),
            QUERY
        ),
    )
    .unwrap();
    let log = dir.path().join("ingest.log");
    let seed: u64 = std::env::var("ADVERSARY_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    eprintln!("ADVERSARY_SEED={seed}");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    const N: usize = 30;

    // The writer runs while the source is killed at random moments and restarted.
    let mut child = common::ingest(&config, &log, &[]);
    std::thread::scope(|s| {
        let writer = s.spawn(|| write_calls(&pg, N));
        let mut kills = 0;
        while !writer.is_finished() {
            std::thread::sleep(Duration::from_millis(rng.random_range(300..2500)));
            child.0.kill().unwrap();
            child.0.wait().unwrap();
            kills += 1;
            child = common::ingest(&config, &log, &[]);
        }
        writer.join().unwrap();
        eprintln!("{kills} SIGKILLs");
    });
    let done = |want: &BTreeMap<String, (u32, bool)>| {
        let (got, _) = on_topic(&settings);
        want.iter()
            .filter(|(id, _)| !id.is_empty())
            .all(|(id, (rev, _))| got.get(id).and_then(|v| v.last()).is_some_and(|l| l.0 == *rev))
    };
    let want = in_table(&pg);
    let t = Instant::now();
    let by = t + Duration::from_secs(90);
    while !done(&want) && Instant::now() < by {
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!("every row's last revision on the topic after {:?}", t.elapsed());
    // The database stops: /readyz says so; rows written once it is back arrive.
    pg.down();
    let by = Instant::now() + Duration::from_secs(30);
    let mut said = String::new();
    while !said.contains("database") && Instant::now() < by {
        said = common::http_get(port, "/readyz").unwrap_or_default();
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(said.contains(" 503 ") && said.contains("the CAD database does not answer"), "{said}");
    pg.up();
    let mut db = pg.client();
    for i in 0..3 {
        db.execute(
            "INSERT INTO calls (event_number, tencode, tencode_desc, lat, lon, received) \
             VALUES ($1, '83', 'SHOTS FIRED', 36.2, -86.7, clock_timestamp())",
            &[&format!("AFTER{i}")],
        )
        .unwrap();
    }
    let want = in_table(&pg);
    let t = Instant::now();
    let by = t + Duration::from_secs(60);
    while !done(&want) && Instant::now() < by {
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!("the rows written after the outage on the topic after {:?}", t.elapsed());
    let ready = common::http_get(port, "/readyz").unwrap_or_default();
    assert!(ready.contains(" 200 "), "{ready}");

    // SIGTERM: the source finishes what it holds and exits 0.
    Command::new("kill").args(["-TERM", &child.0.id().to_string()]).status().unwrap();
    let status = child.0.wait().unwrap();
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "exit {status}; log:\n{logged}");

    // The oracle: the table and the topics, read here.
    let (got, records) = on_topic(&settings);
    let distinct: BTreeSet<(&String, u32)> =
        got.iter().flat_map(|(id, v)| v.iter().map(move |(r, _)| (id, *r))).collect();
    assert_eq!(distinct.len(), records, "a revision written twice: {got:#?}");
    for (id, (last, closed)) in &want {
        if id.is_empty() {
            assert!(!got.contains_key(id), "the row without an incident number became a call: {:?}", got.get(id));
            continue;
        }
        let revs = got.get(id).unwrap_or_else(|| panic!("{id} never arrived; log:\n{logged}"));
        assert!(revs.windows(2).all(|w| w[0].0 < w[1].0), "{id}: revisions out of order {revs:?}");
        assert_eq!(revs.last().unwrap().0, *last, "{id}: its last revision is the row's last update: {revs:?}");
        let status = revs.last().unwrap().1;
        assert_eq!(status == Status::Closed, *closed, "{id}: {revs:?}");
    }
    assert_eq!(got.len(), want.len() - 1, "an incident on the topic that is no row: {:?}", got.keys());
    let letters =
        trigger_kafka::inspect::read_topic(&settings, &settings.topics.dead_letter, true, Duration::from_secs(30))
            .unwrap();
    let bad: Vec<_> = letters
        .iter()
        .filter(|r| String::from_utf8_lossy(r.payload.as_deref().unwrap_or_default()).contains("BAD ROW"))
        .collect();
    // Inserted once, never updated: one version, one dead letter, whatever the kills.
    assert_eq!(bad.len(), 1, "the bad row's dead letters: {bad:?}");
    assert_eq!(bad[0].header("dt.reject.reason"), Some(&b"missing_incident_id"[..]), "{bad:?}");
    assert_eq!(letters.len(), 1, "nothing else is dead-lettered: {letters:?}");
}
