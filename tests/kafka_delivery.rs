//! Delivery under produce errors, on Apache Kafka: order kept per partition through a permanent error (the
//! audit hash chain still verifies), and what the service does with errors the rule calls permanent.

mod common;

use common::Broker;
use prost::Message as _;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use trigger_kafka::options::RetryPolicy;
use trigger_kafka::settings::Role;
use trigger_kafka::sink::Delivering;
use trigger_kafka::OutRecord;
use trigger_proto::v1::ActivationRecord;

/// Eleven sealed audit records for partition 0; the second one `pad` bytes larger than the others.
fn audit_records(topic: &str, pad: usize) -> Vec<OutRecord> {
    let mut chain = trigger_audit::Chain::resume(trigger_audit::GENESIS.to_string());
    (0..11)
        .map(|i| {
            let incident_ref = if i == 1 { format!("inc-1-{}", "x".repeat(pad)) } else { format!("inc-{i}") };
            let sealed = chain.seal(ActivationRecord { incident_ref, ..Default::default() });
            OutRecord {
                topic: topic.into(),
                partition: Some(0),
                key: format!("k{i}").into_bytes(),
                payload: Some(sealed.encode_to_vec()),
                headers: vec![],
            }
        })
        .collect()
}

fn read_chain(settings: &trigger_kafka::KafkaSettings) -> Vec<Result<ActivationRecord, String>> {
    trigger_kafka::inspect::read_topic(settings, &settings.topics.audit, false, Duration::from_secs(30))
        .expect("read the audit topic")
        .into_iter()
        .map(|r| ActivationRecord::decode(r.payload.unwrap_or_default().as_slice()).map_err(|e| e.to_string()))
        .collect()
}

/// Audit record 1 is refused by the broker (larger than the topic's `max.message.bytes`) while records 2..10
/// are in flight behind it. Before the fix they landed first and the retry put record 1 after them: the
/// partition no longer verified. Now nothing lands ahead of a failed record; once the topic's limit is
/// raised, the retry delivers all of them in chain order.
#[test]
fn a_permanent_error_keeps_each_audit_partition_in_chain_order_on_apache_kafka() {
    let Some(broker) = Broker::apache() else { return };
    let mut settings = broker.settings(1);
    // One record per produce request: records 1..9 travel in requests of their own behind record 0's.
    settings.producer.insert("batch.num.messages".into(), "1".into());
    trigger_kafka::admin::set_topic_config(&settings, &settings.topics.audit, "max.message.bytes", "2000")
        .expect("shrink the audit topic's record limit");
    let records = audit_records(&settings.topics.audit, 5_000);
    let retry = RetryPolicy { backoff_max: Duration::from_millis(100), permanent_attempts: 1_000 };
    let mut sink = Delivering::new(&settings, Role::Producer, retry).expect("producer");
    let stop = AtomicBool::new(false);
    assert!(sink.deliver(&records[..1], &|| stop.load(std::sync::atomic::Ordering::Relaxed)).expect("record 0"));
    let records = &records[1..];
    let delivered = std::thread::scope(|s| {
        let job = s.spawn(|| sink.deliver(records, &|| stop.load(std::sync::atomic::Ordering::Relaxed)));
        // Let record 1 fail a few times (the service would keep retrying it), then fix the topic.
        std::thread::sleep(Duration::from_secs(2));
        let landed_meanwhile = read_chain(&settings).len();
        trigger_kafka::admin::set_topic_config(&settings, &settings.topics.audit, "max.message.bytes", "1000000")
            .expect("raise the limit again");
        (job.join().expect("no panic"), landed_meanwhile)
    });
    let (result, landed_meanwhile) = delivered;
    assert_eq!(landed_meanwhile, 1, "no record may land ahead of the refused record 1");
    assert!(result.expect("delivered once the topic accepted record 1"));
    assert!(sink.retries > 0, "record 1 was refused at least once");
    let read = read_chain(&settings);
    assert_eq!(read.len(), 11, "each record exactly once");
    trigger_audit::verify(&read, None).expect("the partition's chain verifies");
}

/// A 20,000-event replay on Apache Kafka: the audit topic holds exactly one record per decided event, the
/// commands topic exactly the commands the service reports, the dead-letter topic exactly its rejects.
/// (librdkafka's mock cluster keeps at most 5 MiB per partition and evicts the oldest records: counts read
/// back from it can be short, which `demo` says in its summary.)
#[test]
fn twenty_thousand_events_leave_exactly_the_counted_records_on_apache_kafka() {
    use std::sync::atomic::Ordering::Relaxed;
    const EVENTS: usize = 20_000;
    const BAD: usize = 50;
    let Some(broker) = Broker::apache() else { return };
    let settings = broker.settings(3);
    let mut p = trigger_kafka::Publisher::new(&settings).unwrap();
    for i in 0..2 {
        p.camera(&settings.topics.registry, &common::camera(&format!("cam-{i}"), 20.0 + 30.0 * i as f64)).unwrap();
    }
    for i in 0..EVENTS {
        let status = if i % 2 == 0 { trigger_core::Status::New } else { trigger_core::Status::Closed };
        let ev = common::shots_fired(&format!("N-{:05}", i / 2), 1 + (i % 2) as u32, status);
        p.cfs(&settings.topics.cfs, &ev).unwrap();
        if i % 400 == 0 {
            p.raw(&settings.topics.cfs, b"bad", b"\xff\xfe not a protobuf").unwrap();
        }
    }
    p.wait().unwrap();
    let mut cfg = dispatch_trigger::serve::ServeConfig { kafka: settings.clone(), ..Default::default() };
    cfg.service.poll_timeout_ms = 20;
    cfg.http.listen = String::new();
    let (health, stop) = (trigger_kafka::Health::default(), AtomicBool::new(false));
    let stats = std::thread::scope(|s| {
        let job = s.spawn(|| dispatch_trigger::serve::run(&cfg, &health, &stop));
        let t = std::time::Instant::now();
        while health.handled.load(Relaxed) < (EVENTS + BAD) as u64 {
            assert!(!job.is_finished(), "the service stopped early");
            assert!(t.elapsed() < Duration::from_secs(300), "handled {}", health.handled.load(Relaxed));
            std::thread::sleep(Duration::from_millis(50));
        }
        stop.store(true, Relaxed);
        job.join().unwrap().expect("service ran")
    });
    let (decided, rejected) = (stats.decision_count(), stats.reject_count());
    assert_eq!((decided, rejected), (EVENTS as u64, BAD as u64));
    let count = |topic: &str| trigger_kafka::inspect::topic_record_count(&settings, topic).unwrap() as u64;
    assert_eq!(count(&settings.topics.audit), decided, "one audit record per decided event");
    assert_eq!(count(&settings.topics.commands), stats.start_commands + stats.stop_commands);
    assert_eq!(stats.start_commands, 2 * (EVENTS / 2) as u64, "each incident starts both cameras");
    assert_eq!(count(&settings.topics.dead_letter), rejected);
    // And the audit trail of every partition verifies.
    let mut by_partition: std::collections::BTreeMap<i32, Vec<_>> = Default::default();
    for r in
        trigger_kafka::inspect::read_topic(&settings, &settings.topics.audit, false, Duration::from_secs(60)).unwrap()
    {
        let rec = ActivationRecord::decode(r.payload.unwrap_or_default().as_slice()).map_err(|e| e.to_string());
        by_partition.entry(r.partition).or_default().push(rec);
    }
    for (p, records) in by_partition {
        trigger_audit::verify(&records, Some(trigger_audit::GENESIS))
            .unwrap_or_else(|b| panic!("partition {p}: {b:?}"));
    }
}
