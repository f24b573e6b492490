//! The Kafka-facing commands of the binary, on Apache Kafka and on the mock cluster: cameras publish and
//! replay --to-kafka (with the decoder's refused records sent as their original bytes). `topics create` needs
//! the CreateTopics API, which the mock cluster does not serve: it runs on Apache Kafka here and against tansu
//! in tests/kafka_tansu.rs.

mod common;

use common::run;
use std::time::Duration;
use trigger_kafka::inspect;

crate::on_every_broker! {
fn cameras_publish_and_replay_to_kafka(broker: &Broker) {
    let settings = broker.settings(4);
    let (b, t) = (settings.bootstrap_servers.clone(), settings.topics.clone());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("serve.toml");
    std::fs::write(&config, common::kafka_section(&settings)).unwrap();
    let cfg = config.to_str().unwrap();
    let cams = dir.path().join("cams.csv");
    let cams = cams.to_str().unwrap();
    run(&["cameras", "generate", "--count", "500", "--seed", "3", "--bbox", "36.1,-86.9,36.2,-86.7", "--out", cams]);
    assert!(run(&["cameras", "publish", "--cameras", cams, "--to", &b, "--config", cfg]).contains("published 500 cameras"));
    assert_eq!(inspect::topic_record_count(&settings, &t.registry).unwrap(), 500);

    // The second city's export: every decodable row becomes one record per lifecycle revision, in event-time
    // order; the rows its profile refuses go as their original bytes.
    let out = run(&[
        "replay",
        "fixtures/example-city.csv",
        "--format",
        "csv",
        "--profile",
        "example-city",
        "--to-kafka",
        &b,
        "--include-rejects",
        "--config",
        cfg,
    ]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let (events, bad) = (report["events"].as_i64().unwrap(), report["bad_records"].as_i64().unwrap());
    assert!(events > 0 && bad > 0, "{report}");
    let cfs = inspect::read_topic(&settings, &t.cfs, false, Duration::from_secs(30)).unwrap();
    assert_eq!(cfs.len() as i64, events + bad);
    let decodable = cfs
        .iter()
        .filter(|r| trigger_cad::pb::decode_one(r.payload.as_deref().unwrap(), &Default::default()).is_ok())
        .count();
    assert!(decodable as i64 >= events, "every event is a protobuf CallForService");
}

/// `replay --to-kafka` (and `demo`, which sends its CAD log the same way): a blocked term in a column the
/// profile does not map travels on the CFS topic as the verdict, and the column's value does not.
fn a_blocked_term_in_an_unmapped_column_reaches_the_cfs_topic_as_its_verdict(broker: &Broker) {
    let settings = broker.settings(2);
    let (b, t) = (settings.bootstrap_servers.clone(), settings.topics.clone());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("serve.toml");
    std::fs::write(&config, common::kafka_section(&settings)).unwrap();
    let csv = dir.path().join("calls.csv");
    let header = "OBJECTID,Event Number,Complaint Number,Tencode,Tencode Description,Tencode Suffix,\
                  Tencode Suffix Description,Disposition Code,Disposition Description,Block,Street Name,\
                  Unit Dispatched,Shift,Sector,Zone,Latitude,Longitude,RPA,Call_Received";
    let row = |id: &str, street: &str| {
        format!("1,{id},,83,SHOTS FIRED,P,PROGRESS,5,GONE ON ARRIVAL,300,{street},621C,C,E,623,36.218,-86.834,3105,2024-07-05 01:13:05")
    };
    let rows = [header.to_string(), row("B1", "MARCHERS OUTSIDE CITY HALL"), row("B2", "HAYNES PARK DR")];
    std::fs::write(&csv, rows.join("\n")).unwrap();
    let csv = csv.to_str().unwrap();
    let cfg = config.to_str().unwrap();
    run(&["replay", csv, "--format", "csv", "--profile", "nashville-mnpd", "--to-kafka", &b, "--config", cfg]);
    let cfs = inspect::read_topic(&settings, &t.cfs, false, Duration::from_secs(30)).unwrap();
    let evs: Vec<(trigger_core::CallForService, &[u8])> = cfs
        .iter()
        .map(|r| {
            let bytes = r.payload.as_deref().unwrap();
            (trigger_cad::pb::decode_one(bytes, &Default::default()).unwrap(), bytes)
        })
        .collect();
    let (blocked, bytes) = evs.iter().find(|(e, _)| e.incident_id == "B1").expect("B1 on the topic");
    let verdict = blocked.blocked.clone().expect("its verdict travels");
    assert_eq!((verdict.term.as_str(), verdict.field.as_str()), ("MARCH", "Street Name"));
    assert!(!String::from_utf8_lossy(bytes).contains("CITY HALL"), "the value stays behind");
    assert!(evs.iter().any(|(e, _)| e.incident_id == "B2" && e.blocked.is_none()));
}
}

/// `topics create --fanout-partitions`: the commands and owner notices get their own, smaller partition count;
/// the audit, dead-letter and changelog topics follow the CFS topic (the audit chain of CFS partition p is
/// audit partition p, and exactly-once needs the changelog partitioned as the CFS topic).
#[test]
fn topics_create_gives_commands_and_notices_their_own_partition_count() {
    let Some(broker) = common::Broker::apache() else { return };
    let settings = trigger_kafka::KafkaSettings {
        bootstrap_servers: broker.bootstrap(),
        topics: trigger_kafka::Topics::tagged(&common::unique::name("fanout")),
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("serve.toml");
    std::fs::write(&config, common::kafka_section(&settings)).unwrap();
    let (b, cfg) = (settings.bootstrap_servers.clone(), config.to_str().unwrap().to_string());
    let t = &settings.topics;
    let args = ["topics", "create", "--to", &b, "--config", &cfg, "--partitions", "4", "--fanout-partitions", "1"];
    // (The status topic keeps its default name here, which other tests on the shared broker may have created.)
    assert!(run(&args).contains(&format!("{}, ", t.commands)));
    let count = |topic: &str| inspect::partition_count(&settings, topic).unwrap();
    assert_eq!((count(&t.commands), count(&t.notices)), (1, 1));
    for topic in [&t.cfs, &t.audit, &t.dead_letter, &t.changelog] {
        assert_eq!(count(topic), 4, "{topic}");
    }
}
