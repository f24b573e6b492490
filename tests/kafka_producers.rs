//! The CAD-side producers never drop a record (Apache Kafka, a broker of this test's own): `replay --to-kafka`
//! rides out a broker outage longer than the delivery timeout its configuration sets, and delivers every event;
//! stopped (SIGTERM) during an outage, it names every event it has no acknowledgement for, says how many were
//! never sent, and exits non-zero. The oracle reads the export's rows with its own reader and the records on
//! the topic.

mod common;

use prost::Message as _;
use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::Duration;
use trigger_kafka::{inspect, KafkaSettings};
use trigger_proto::v1 as pb;

const ROWS: usize = 60;

/// The first `ROWS` rows of the bundled week, and their Event Numbers read with the test's own reader.
fn slice(dir: &std::path::Path) -> (std::path::PathBuf, BTreeSet<String>) {
    let text = std::fs::read_to_string(common::root().join(common::WEEK)).unwrap();
    let lines: Vec<&str> = text.lines().take(ROWS + 1).collect();
    let path = dir.join("slice.csv");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let clean = text.trim_start_matches("ï»¿").to_string();
    let mut r = csv::Reader::from_reader(clean.as_bytes());
    let col = r.headers().unwrap().iter().position(|h| h == "Event Number").unwrap();
    let ids = r.records().take(ROWS).map(|x| x.unwrap()[col].to_string()).collect();
    (path, ids)
}

/// Right after an outage the broker can answer a metadata request before it knows the topic's partitions
/// again (UnknownPartition): the read is tried again for a few seconds.
fn incidents_on_topic(settings: &KafkaSettings) -> BTreeSet<String> {
    let mut tries = 0;
    let records = loop {
        match inspect::read_topic(settings, &settings.topics.cfs, false, Duration::from_secs(30)) {
            Ok(r) => break r,
            Err(e) if tries < 20 => {
                tries += 1;
                eprintln!("reading the topic back: {e}; again");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => panic!("reading the topic back: {e}"),
        }
    };
    records
        .iter()
        .map(|r| pb::CallForService::decode(r.payload.as_deref().unwrap_or_default()).unwrap().incident_id)
        .collect()
}

/// A config whose producer would give a record up after 3 s, were the tools to honour it.
fn config(dir: &std::path::Path, settings: &KafkaSettings) -> std::path::PathBuf {
    let p = dir.join("producer.toml");
    std::fs::write(
        &p,
        format!("{}[kafka.producer]\n\"message.timeout.ms\" = \"3000\"\n", common::kafka_section(settings)),
    )
    .unwrap();
    p
}

fn replay_to_kafka(csv: &std::path::Path, bootstrap: &str, config: &std::path::Path) -> std::process::Child {
    Command::new(common::BIN)
        .args(["replay", csv.to_str().unwrap(), "--format", "csv", "--profile", "nashville-mnpd"])
        .args(["--to-kafka", bootstrap, "--config", config.to_str().unwrap(), "--rate", "10"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// A broker of the test's own, `replay --to-kafka` of the slice started, and the broker SIGSTOPped once its
/// first 3 events are on the topic (a few events sent and acknowledged, the rest waiting): the broker (stopped with the guard), its folder, the
/// settings, the slice's Event Numbers and the replay process.
fn replaying_into_a_stopped_broker(
    dir: &std::path::Path,
) -> Option<(common::OwnBroker, std::path::PathBuf, KafkaSettings, BTreeSet<String>, std::process::Child)> {
    let broker_dir = dir.join("kafka");
    let (broker, bootstrap) = common::own_broker(&broker_dir)?;
    let settings = KafkaSettings {
        bootstrap_servers: bootstrap.clone(),
        group_id: common::unique::name("producers"),
        ..Default::default()
    };
    trigger_kafka::admin::create_topics(&settings, &settings.topics, 2, 1, 1).unwrap();
    let (csv, ids) = slice(dir);
    let child = replay_to_kafka(&csv, &bootstrap, &config(dir, &settings));
    // Stopped once the replay is delivering: connected, its first events acknowledged, the rest to come.
    common::wait_for("the replay's first 3 events on the topic", Duration::from_secs(60), || {
        inspect::topic_record_count(&settings, &settings.topics.cfs).is_ok_and(|n| n >= 3)
    });
    common::kafka_sh(&broker_dir, "pause").expect("SIGSTOP");
    Some((broker, broker_dir, settings, ids, child))
}

#[test]
fn replay_to_kafka_rides_out_an_outage_longer_than_its_timeout_and_delivers_every_event() {
    let dir = tempfile::tempdir().unwrap();
    let Some((_broker, broker_dir, settings, ids, child)) = replaying_into_a_stopped_broker(dir.path()) else { return };
    // Four times the configured delivery timeout.
    std::thread::sleep(Duration::from_secs(12));
    common::kafka_sh(&broker_dir, "resume").expect("SIGCONT");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(incidents_on_topic(&settings), ids, "every event of the export is on the topic");
}

#[test]
fn replay_to_kafka_stopped_during_an_outage_names_every_event_not_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let Some((_broker, broker_dir, _, _, child)) = replaying_into_a_stopped_broker(dir.path()) else { return };
    std::thread::sleep(Duration::from_secs(3));
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let out = child.wait_with_output().unwrap();
    common::kafka_sh(&broker_dir, "resume").expect("SIGCONT");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    // The events sent while the broker was stopped are not acknowledged; the rest were never sent.
    let named = stderr.lines().filter(|l| l.contains(": not acknowledged")).count();
    assert!(named > 10, "every unacknowledged event is named: {stderr}");
    let number_before = |marker: &str| -> usize {
        let head = &stderr[..stderr.find(marker).unwrap_or_else(|| panic!("{marker:?} in {stderr}"))];
        head.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let sent = number_before(" records not confirmed delivered");
    assert!(
        stderr.contains(&format!(
            "{named} of {sent} records not confirmed delivered (0 refused by the brokers; {named} unacknowledged"
        )),
        "{stderr}"
    );
    // Every event of the export is accounted for: acknowledged, named, or counted as never sent.
    assert_eq!(sent + number_before(" more events were never sent"), ROWS, "{stderr}");
    assert!(stderr.contains("incident PD2024"), "events are named by incident and revision: {stderr}");
}
