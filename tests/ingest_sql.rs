//! `ingest` with its `sql` source against real database servers (Debian's PostgreSQL and MariaDB, started by
//! the test) and Apache Kafka, exactly-once: rows inserted and updated while the source runs, the source
//! SIGKILLed at random moments and restarted (`ADVERSARY_SEED` replays a run), then the database stopped and
//! started again, then the query failing until a renamed column is back; the same on both engines, one
//! configuration apart. The oracle reads the table and the CFS and dead-letter topics (read_committed) itself:
//! every row's revisions on the topic once each, in order, ending at the row's last update; a bad row
//! dead-lettered once; nothing lost while the database was down or the query failed; SIGTERM exits 0. A third
//! test stops Apache Kafka itself mid-stream for longer than a transaction waits.

mod common;

use common::mariadb::MariaDb;
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

/// A CAD reporting database as the test drives it: its statements, its clock, the table as it ends, an
/// outage, and the `[sql]` section (and environment) that reads it.
trait CadDb: Sync {
    /// A connection that runs statements (values written into them by the test).
    fn session(&self) -> Box<dyn FnMut(&str) + '_>;
    /// The SQL for the current time, read anew at each use.
    fn now(&self) -> &'static str;
    /// The table as it ends: event number -> (revision of its last update, closed).
    fn table(&self) -> BTreeMap<String, (u32, bool)>;
    fn down(&self);
    fn up(&self);
    /// The `[sql]` lines past the common ones, and the source's environment.
    fn source(&self) -> (String, Env);
}

const PG_TABLE: &str = "CREATE TABLE calls (
    id bigserial PRIMARY KEY, event_number text NOT NULL, tencode text, tencode_desc text,
    lat double precision, lon double precision, received timestamptz, dispatched timestamptz,
    closed timestamptz, updated_at timestamptz NOT NULL DEFAULT clock_timestamp())";

const PG_QUERY: &str = "SELECT id::text AS row_id, updated_at, event_number, tencode, tencode_desc, lat, lon, \
    received, dispatched, closed FROM calls \
    WHERE (updated_at, id::text) > ($1, $2) AND updated_at < clock_timestamp() - interval '300 milliseconds' \
    ORDER BY updated_at, id::text LIMIT $3";

impl CadDb for Postgres {
    fn session(&self) -> Box<dyn FnMut(&str) + '_> {
        let mut db = self.client();
        Box::new(move |sql| {
            db.batch_execute(sql).unwrap();
        })
    }

    fn now(&self) -> &'static str {
        "clock_timestamp()"
    }

    fn table(&self) -> BTreeMap<String, (u32, bool)> {
        let mut db = self.client();
        db.query("SELECT event_number, updated_at, closed IS NOT NULL FROM calls", &[])
            .unwrap()
            .iter()
            .map(|r| {
                let at: chrono::DateTime<chrono::Utc> = r.get(1);
                (r.get::<_, String>(0), (common::revision_of(at.timestamp_millis()), r.get::<_, bool>(2)))
            })
            .collect()
    }

    fn down(&self) {
        Postgres::down(self)
    }

    fn up(&self) {
        Postgres::up(self)
    }

    fn source(&self) -> (String, Env) {
        self.client().batch_execute(PG_TABLE).unwrap();
        (format!("connection = \"{}\"\nquery = {PG_QUERY:?}\n", self.connection()), Vec::new())
    }
}

const MARIADB_TABLE: &str = "CREATE TABLE cad.calls (
    id bigint AUTO_INCREMENT PRIMARY KEY, event_number varchar(32) NOT NULL, tencode varchar(16),
    tencode_desc varchar(64), lat double, lon double, received timestamp(6) NULL DEFAULT NULL,
    dispatched timestamp(6) NULL DEFAULT NULL, closed timestamp(6) NULL DEFAULT NULL,
    updated_at timestamp(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), KEY (updated_at, id))";

/// The same query as PostgreSQL's, in MariaDB's words (`$1`..`$3` as on every engine).
const MARIADB_QUERY: &str = "SELECT CAST(id AS CHAR) AS row_id, updated_at, event_number, tencode, \
    tencode_desc, lat, lon, received, dispatched, closed FROM calls \
    WHERE (updated_at, CAST(id AS CHAR)) > ($1, $2) AND updated_at < SYSDATE(6) - INTERVAL 300000 MICROSECOND \
    ORDER BY updated_at, CAST(id AS CHAR) LIMIT $3";

const READER_PASSWORD: &str = "reader-secret-7";

impl CadDb for MariaDb {
    fn session(&self) -> Box<dyn FnMut(&str) + '_> {
        use mysql::prelude::Queryable as _;
        let mut db = self.root();
        db.query_drop("USE cad").unwrap();
        Box::new(move |sql| db.query_drop(sql).unwrap_or_else(|e| panic!("{sql}: {e}")))
    }

    fn now(&self) -> &'static str {
        "SYSDATE(6)"
    }

    fn table(&self) -> BTreeMap<String, (u32, bool)> {
        use mysql::prelude::Queryable as _;
        let rows: Vec<(String, i64, i64)> = self
            .root()
            .query(
                "SELECT event_number, CAST(FLOOR(UNIX_TIMESTAMP(updated_at) * 1000) AS SIGNED), \
                 closed IS NOT NULL FROM cad.calls",
            )
            .unwrap();
        rows.into_iter().map(|(id, at, closed)| (id, (common::revision_of(at), closed == 1))).collect()
    }

    fn down(&self) {
        MariaDb::down(self)
    }

    fn up(&self) {
        MariaDb::up(self)
    }

    fn source(&self) -> (String, Env) {
        use mysql::prelude::Queryable as _;
        let mut root = self.root();
        for sql in [
            "CREATE DATABASE cad".to_string(),
            MARIADB_TABLE.to_string(),
            format!("CREATE USER 'reader'@'127.0.0.1' IDENTIFIED BY '{READER_PASSWORD}'"),
            "GRANT SELECT ON cad.* TO 'reader'@'127.0.0.1'".to_string(),
        ] {
            root.query_drop(&sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        let lines = format!(
            "engine = \"mariadb\"\nconnection = \"{}\"\nquery = {MARIADB_QUERY:?}\n",
            self.url("reader", "cad")
        );
        (lines, vec![("DT_INGEST_SQL__PASSWORD", READER_PASSWORD)])
    }
}

/// Insert `n` calls (one of them without an incident number: a reject), then dispatch each, then close each:
/// every row updated at least a second after its last update (a revision is a whole second).
fn write_calls(db: &dyn CadDb, n: usize) {
    let mut run = db.session();
    let now = db.now();
    let pause = Duration::from_millis(150);
    for i in 0..n {
        let (id, text) = if i == 7 { (String::new(), "BAD ROW") } else { (format!("E{i:03}"), "SHOTS FIRED") };
        let lat = 36.16 + i as f64 * 0.001;
        run(&format!(
            "INSERT INTO calls (event_number, tencode, tencode_desc, lat, lon, received, updated_at) \
             VALUES ('{id}', '83', '{text}', {lat}, -86.78, {now}, {now})"
        ));
        std::thread::sleep(pause);
    }
    for step in ["dispatched", "closed"] {
        std::thread::sleep(Duration::from_millis(1200));
        for i in 0..n {
            run(&format!("UPDATE calls SET {step} = {now}, updated_at = {now} WHERE event_number = 'E{i:03}'"));
            std::thread::sleep(pause);
        }
    }
}

/// Each incident's (revision, status) in topic order.
type ByIncident = BTreeMap<String, Vec<(u32, Status)>>;

/// Every incident's (revision, status) in topic order, read back committed; and how many records.
fn on_topic(settings: &trigger_kafka::KafkaSettings) -> (ByIncident, usize) {
    try_on_topic(settings).unwrap()
}

/// [`on_topic`], or the reader's error (a broker just back may not know its partitions yet).
fn try_on_topic(settings: &trigger_kafka::KafkaSettings) -> Result<(ByIncident, usize), trigger_kafka::KafkaError> {
    let records = trigger_kafka::inspect::read_topic(settings, &settings.topics.cfs, true, Duration::from_secs(30))?;
    let mut out = ByIncident::new();
    for r in &records {
        let m = trigger_proto::v1::CallForService::decode(r.payload.as_deref().unwrap_or_default()).expect("protobuf");
        let ev = trigger_cad::pb::from_pb(m).expect("a valid call");
        out.entry(ev.incident_id).or_default().push((ev.revision, ev.status));
    }
    Ok((out, records.len()))
}

/// The source's environment.
type Env = Vec<(&'static str, &'static str)>;

/// The `ingest` configuration reading `db` (its table created) into `kafka`: its file, the port of its
/// endpoints, its environment.
fn config(dir: &std::path::Path, kafka: &str, db: &dyn CadDb) -> (std::path::PathBuf, u16, Env) {
    let profile = dir.join("test-city.toml");
    std::fs::write(&profile, PROFILE).unwrap();
    let port = common::unique::port();
    let config = dir.join("ingest.toml");
    let (lines, env) = db.source();
    std::fs::write(
        &config,
        format!(
            "{kafka}[http]\nlisten = \"127.0.0.1:{port}\"\n[ingest]\nretry_backoff_max_ms = 500\n\
             [sql]\n{lines}profile = {:?}\npoll_interval_ms = 200\nbatch_rows = 7\n",
            profile.display().to_string(),
        ),
    )
    .unwrap();
    (config, port, env)
}

/// Whether every row of `want` (with an incident number) has its last revision on the topic.
fn arrived(settings: &trigger_kafka::KafkaSettings, want: &BTreeMap<String, (u32, bool)>) -> bool {
    let Ok((got, _)) = try_on_topic(settings) else { return false };
    want.iter()
        .filter(|(id, _)| !id.is_empty())
        .all(|(id, (rev, _))| got.get(id).and_then(|v| v.last()).is_some_and(|l| l.0 == *rev))
}

/// Wait (up to `within`) until every row of the table has arrived; how long it took.
fn until_arrived(settings: &trigger_kafka::KafkaSettings, db: &dyn CadDb, within: Duration) -> Duration {
    let want = db.table();
    let t = Instant::now();
    while !arrived(settings, &want) && t.elapsed() < within {
        std::thread::sleep(Duration::from_millis(500));
    }
    t.elapsed()
}

#[test]
fn postgresql_rows_written_while_the_source_is_killed_and_the_database_stops_arrive_once_each() {
    let Some(pg) = Postgres::start() else { return };
    adversary(&pg);
}

#[test]
fn mariadb_rows_written_while_the_source_is_killed_and_the_database_stops_arrive_once_each() {
    let Some(db) = MariaDb::start() else { return };
    adversary(&db);
}

fn adversary(db: &dyn CadDb) {
    let Some(broker) = common::Broker::apache() else { return };
    let mut settings = broker.settings(1);
    settings.delivery = trigger_kafka::Delivery::ExactlyOnce;
    let dir = tempfile::tempdir().unwrap();
    let (config, port, env) = config(dir.path(), &common::kafka_section(&settings), db);
    let log = dir.path().join("ingest.log");
    let seed: u64 = std::env::var("ADVERSARY_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    eprintln!("ADVERSARY_SEED={seed}");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    const N: usize = 30;

    // The writer runs while the source is killed at random moments and restarted.
    let mut child = common::ingest(&config, &log, &env);
    std::thread::scope(|s| {
        let writer = s.spawn(|| write_calls(db, N));
        let mut kills = 0;
        while !writer.is_finished() {
            std::thread::sleep(Duration::from_millis(rng.random_range(300..2500)));
            child.0.kill().unwrap();
            child.0.wait().unwrap();
            kills += 1;
            child = common::ingest(&config, &log, &env);
        }
        writer.join().unwrap();
        eprintln!("{kills} SIGKILLs");
    });
    let took = until_arrived(&settings, db, Duration::from_secs(90));
    eprintln!("every row's last revision on the topic after {took:?}");
    // The database stops: /readyz says so; rows written once it is back arrive.
    db.down();
    let said = common::readyz_saying(port, "database", Duration::from_secs(30));
    assert!(said.contains(" 503 ") && said.contains("the CAD database does not answer"), "{said}");
    db.up();
    // The query fails (a column it reads renamed by the CAD's upgrade): named on /readyz and counted, retried;
    // the rows written meanwhile arrive once the column is back.
    let mut run = db.session();
    let now = db.now();
    run("ALTER TABLE calls RENAME COLUMN tencode TO tencode_v2");
    for i in 0..3 {
        run(&format!(
            "INSERT INTO calls (event_number, tencode_v2, tencode_desc, lat, lon, received, updated_at) \
             VALUES ('AFTER{i}', '83', 'SHOTS FIRED', 36.2, -86.7, {now}, {now})"
        ));
    }
    let said = common::readyz_saying(port, "tencode", Duration::from_secs(30));
    assert!(said.contains(" 503 ") && said.contains("sql.query") && said.contains("tencode"), "{said}");
    let metrics = common::http_get(port, "/metrics").unwrap_or_default();
    let errors = metrics.lines().find(|l| l.starts_with("dispatch_trigger_ingest_source_errors_total{source=\"sql\"}"));
    assert!(errors.is_some_and(|l| !l.ends_with(" 0")), "the failed polls are not counted: {errors:?}");
    run("ALTER TABLE calls RENAME COLUMN tencode_v2 TO tencode");
    let took = until_arrived(&settings, db, Duration::from_secs(60));
    eprintln!("the rows written after the outage on the topic after {took:?}");
    let ready = common::http_get(port, "/readyz").unwrap_or_default();
    assert!(ready.contains(" 200 "), "{ready}");

    // SIGTERM: the source finishes what it holds and exits 0.
    Command::new("kill").args(["-TERM", &child.0.id().to_string()]).status().unwrap();
    let status = child.0.wait().unwrap();
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "exit {status}; log:\n{logged}");
    let want = db.table();
    assert_eq!(want.len(), N + 3, "the table: {want:?}");

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

#[test]
fn a_broker_outage_longer_than_a_transaction_waits_loses_no_row_and_writes_none_twice() {
    let Some(pg) = Postgres::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let Some((broker, settings)) = common::own_eos_cluster(dir.path(), "sql-outage") else { return };
    let (config, port, env) = config(dir.path(), &common::kafka_section(&settings), &pg);
    let log = dir.path().join("ingest.log");
    let _child = common::ingest(&config, &log, &env);
    assert!(common::readyz_saying(port, " 200 ", Duration::from_secs(60)).contains(" 200 "), "never ready");
    std::thread::scope(|s| {
        let writer = s.spawn(|| write_calls(&pg, 12));
        // The broker stops mid-stream (once the first rows are on the topic), past the point where the
        // transaction gives up.
        common::wait_for("the first rows on the CFS topic", Duration::from_secs(60), || {
            trigger_kafka::inspect::topic_record_count(&settings, &settings.topics.cfs).is_ok_and(|n| n > 0)
        });
        common::ingest_broker_outage(&broker, port, || {});
        writer.join().unwrap();
    });
    let took = until_arrived(&settings, &pg, Duration::from_secs(120));
    eprintln!("every row's last revision on the topic {took:?} after the broker came back");
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(arrived(&settings, &pg.table()), "rows missing after the outage; log:\n{logged}");
    let got = common::revisions_on_topic(&settings);
    let distinct: BTreeSet<&(String, u32)> = got.iter().collect();
    assert_eq!(distinct.len(), got.len(), "a revision written twice: {got:?}");
    let ready = common::readyz_saying(port, " 200 ", Duration::from_secs(30));
    assert!(ready.contains(" 200 "), "{ready}");
}

/// `AT_ONCE` calls of `start` from as many threads released together (parallel tests of one binary start
/// their servers in the same millisecond).
fn started_at_once<T: Send>(start: fn() -> Option<T>) -> Vec<T> {
    const AT_ONCE: usize = 4;
    let gate = std::sync::Barrier::new(AT_ONCE);
    std::thread::scope(|s| {
        let threads: Vec<_> = (0..AT_ONCE)
            .map(|_| {
                s.spawn(|| {
                    gate.wait();
                    start()
                })
            })
            .collect();
        threads.into_iter().filter_map(|t| t.join().expect("a database fixture started")).collect()
    })
}

/// Test servers started at the same moment each get a folder, a port and a server of their own: none fails
/// because another took its folder or port.
#[test]
fn database_fixtures_started_in_the_same_millisecond_are_each_their_own() {
    let pgs = started_at_once(Postgres::start);
    let dirs: BTreeSet<_> = pgs.iter().map(|pg| pg.dir().to_path_buf()).collect();
    let ports: BTreeSet<_> = pgs.iter().map(|pg| pg.port).collect();
    assert!(dirs.len() == pgs.len() && ports.len() == pgs.len(), "PostgreSQL: folders {dirs:?}, ports {ports:?}");
    for pg in &pgs {
        let port: String = pg.client().query_one("SHOW port", &[]).unwrap().get(0);
        assert_eq!(port, pg.port.to_string(), "each client reaches its own PostgreSQL");
    }
    let dbs = started_at_once(MariaDb::start);
    let dirs: BTreeSet<_> = dbs.iter().map(|db| db.dir().to_path_buf()).collect();
    let ports: BTreeSet<_> = dbs.iter().map(|db| db.port).collect();
    assert!(dirs.len() == dbs.len() && ports.len() == dbs.len(), "MariaDB: folders {dirs:?}, ports {ports:?}");
    for db in &dbs {
        use mysql::prelude::Queryable as _;
        let port: Option<u16> = db.root().query_first("SELECT @@port").unwrap();
        assert_eq!(port, Some(db.port), "each client reaches its own MariaDB");
    }
}
