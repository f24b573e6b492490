//! The Kafka-facing commands of the binary, on Apache Kafka and on the mock cluster: cameras publish and
//! replay --to-kafka (with the decoder's refused records sent as their original bytes). `topics create` needs
//! the CreateTopics API, which the mock cluster does not serve: tests/kafka_tansu.rs runs it against tansu.

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
}
