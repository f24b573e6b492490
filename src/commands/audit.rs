//! `audit verify` (a file or every partition of the audit topic) and `audit redact`.

use super::kafka_target;
use crate::cli::{RedactArgs, VerifyArgs};
use anyhow::{Context, Result};
use trigger_proto::v1::ActivationRecord;

type Stream = (String, Vec<Result<ActivationRecord, String>>);

pub(super) fn redact(a: RedactArgs) -> Result<()> {
    let path = if a.path.is_dir() { a.path.join("audit.pb") } else { a.path.clone() };
    let (mut records, _) = dispatch_trigger::report::read_verified_audit(&path)?;
    let now = match &a.now {
        Some(t) => chrono::DateTime::parse_from_rfc3339(t).with_context(|| format!("--now {t:?}"))?.timestamp_millis(),
        None => chrono::Utc::now().timestamp_millis(),
    };
    let cutoff = now - a.older_than_days as i64 * 86_400_000;
    let mut n = 0;
    for r in records.iter_mut().filter(|r| r.decided_at_ms < cutoff && !r.detail_redacted) {
        trigger_audit::redact(r);
        n += 1;
    }
    let out = a.out.clone().unwrap_or_else(|| path.clone());
    let tmp = out.with_extension("pb.tmp");
    std::fs::write(&tmp, trigger_audit::encode_stream(&records))
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &out).with_context(|| format!("cannot replace {}", out.display()))?;
    println!("{n} of {} records lost their per-camera detail -> {}", records.len(), out.display());
    Ok(())
}

pub(super) fn verify(a: VerifyArgs) -> Result<()> {
    let start = match (&a.after, a.any_start) {
        (Some(h), _) => Some(h.as_str()),
        (None, true) => None,
        (None, false) => Some(trigger_audit::GENESIS),
    };
    let streams = match &a.source.from_kafka {
        Some(b) => kafka_streams(kafka_target(a.source.config.as_deref(), b)?)?,
        None => {
            let mut path = a.path.clone().expect("clap requires a path without --from-kafka");
            if path.is_dir() {
                path = path.join("audit.pb");
            }
            let data = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            vec![(path.display().to_string(), trigger_audit::decode_stream(&data))]
        }
    };
    let mut broken = 0;
    for (name, records) in &streams {
        match trigger_audit::verify(records, start) {
            Ok(v) => println!(
                "{name}: ok, {} records ({} without per-camera detail), head {}",
                v.records, v.redacted, v.head
            ),
            Err(b) => {
                broken += 1;
                println!("{name}: BROKEN: {b}");
            }
        }
    }
    if broken > 0 {
        eprintln!("{broken} of {} audit streams are broken", streams.len());
        std::process::exit(1);
    }
    Ok(())
}

/// Every partition of the audit topic (committed records), one chain each.
fn kafka_streams(settings: trigger_kafka::KafkaSettings) -> Result<Vec<Stream>> {
    let topic = settings.topics.audit.clone();
    let records = trigger_kafka::inspect::read_topic(&settings, &topic, true, std::time::Duration::from_secs(120))?;
    let mut by_partition: std::collections::BTreeMap<i32, Vec<_>> = Default::default();
    for r in records {
        let rec = <ActivationRecord as prost::Message>::decode(r.payload.unwrap_or_default().as_slice())
            .map_err(|e| format!("offset {}: {e}", r.offset));
        by_partition.entry(r.partition).or_default().push(rec);
    }
    Ok(by_partition.into_iter().map(|(p, v)| (format!("{topic} partition {p}"), v)).collect())
}
