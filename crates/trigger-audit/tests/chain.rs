//! The audit chain catches a flipped byte, a deleted record and two swapped records, and names where.

use prost::Message;
use trigger_audit::{decode_stream, encode_stream, verify, Break, Chain, GENESIS};
use trigger_proto::v1 as pb;

fn stream(n: usize) -> Vec<pb::ActivationRecord> {
    let mut chain = Chain::new();
    (0..n)
        .map(|i| {
            chain.seal(pb::ActivationRecord {
                incident_ref: format!("inc_{i:04}"),
                agency_id: "metro".into(),
                category: "burglary".into(),
                outcome: if i % 3 == 0 { "triggered".into() } else { "not_trigger_type".into() },
                revision: 1,
                decided_at_ms: 1_720_000_000_000 + i as i64,
                excluded: vec![pb::ExcludedCamera {
                    camera_id: format!("cam-{i}"),
                    distance_m: 12.5,
                    reason: "quiet_hours".into(),
                }],
                ..Default::default()
            })
        })
        .collect()
}

fn ok(records: &[pb::ActivationRecord]) -> Vec<Result<pb::ActivationRecord, String>> {
    records.iter().cloned().map(Ok).collect()
}

#[test]
fn an_intact_chain_verifies_and_reports_its_head() {
    let s = stream(10);
    let v = verify(&ok(&s), Some(GENESIS)).unwrap();
    assert_eq!(v.records, 10);
    assert_eq!(v.head, s[9].hash);
    assert_eq!(verify(&decode_stream(&encode_stream(&s)), Some(GENESIS)).unwrap(), v, "through the file format");
    // A continuation verifies against the head published earlier.
    assert!(verify(&ok(&s[5..]), Some(&s[4].hash)).is_ok());
    assert_eq!(verify(&ok(&s[5..]), Some(GENESIS)), Err(Break::NotAtGenesis));
    assert!(verify(&ok(&s[5..]), None).is_ok(), "any starting point when asked");
}

#[test]
fn a_flipped_byte_is_caught_at_its_record() {
    let s = stream(10);
    let bytes = encode_stream(&s);
    // Flip one byte inside record 6's incident_ref (same length: the stream still frames).
    let offset: usize = s[..6].iter().map(|r| r.encoded_len() + prost::length_delimiter_len(r.encoded_len())).sum();
    let rec6 = s[6].encode_to_vec();
    let at = rec6.windows(8).position(|w| w == b"inc_0006").unwrap();
    let mut tampered = bytes.clone();
    tampered[offset + prost::length_delimiter_len(rec6.len()) + at + 5] ^= 0x01;
    assert_eq!(verify(&decode_stream(&tampered), Some(GENESIS)), Err(Break::Altered { index: 6 }));

    // Any single flipped byte anywhere is caught (altered, unreadable, or a broken frame).
    for i in (0..bytes.len()).step_by(7) {
        let mut t = bytes.clone();
        t[i] ^= 0x40;
        assert!(verify(&decode_stream(&t), Some(GENESIS)).is_err(), "flip at byte {i} went unnoticed");
    }
}

#[test]
fn a_deleted_record_is_caught_where_the_gap_is() {
    let mut s = stream(10);
    s.remove(4);
    assert_eq!(verify(&ok(&s), Some(GENESIS)), Err(Break::Missing { index: 4 }));
    let mut first_gone = stream(10);
    first_gone.remove(0);
    assert_eq!(verify(&ok(&first_gone), Some(GENESIS)), Err(Break::NotAtGenesis));
}

#[test]
fn two_swapped_records_are_caught_as_out_of_order() {
    let mut s = stream(10);
    s.swap(3, 4);
    assert_eq!(verify(&ok(&s), Some(GENESIS)), Err(Break::Reordered { index: 3, predecessor_at: 4 }));
}

#[test]
fn a_record_rewritten_with_a_fresh_hash_breaks_the_next_link() {
    let mut s = stream(10);
    s[5].outcome = "triggered".into();
    s[5].hash = trigger_audit::record_hash(&s[5]);
    assert_eq!(verify(&ok(&s), Some(GENESIS)), Err(Break::Missing { index: 6 }));
}

#[test]
fn retention_drops_detail_but_the_chain_verifies_and_kept_detail_stays_guarded() {
    let mut s = stream(10);
    for r in &mut s[..5] {
        trigger_audit::redact(r);
    }
    let v = verify(&ok(&s), Some(GENESIS)).unwrap();
    assert_eq!((v.records, v.redacted), (10, 5));
    assert_eq!(v.head, stream(10)[9].hash, "redaction changes no hash");
    assert!(s[..5].iter().all(|r| r.excluded.is_empty() && r.commanded.is_empty()));

    let mut altered = s.clone();
    altered[7].excluded[0].reason = "k_cap".into();
    assert_eq!(verify(&ok(&altered), Some(GENESIS)), Err(Break::Altered { index: 7 }), "kept detail is guarded");
    let mut marked_but_kept = s.clone();
    marked_but_kept[8].detail_redacted = true;
    assert_eq!(verify(&ok(&marked_but_kept), Some(GENESIS)), Err(Break::Altered { index: 8 }));
    let mut dropped_unmarked = s.clone();
    dropped_unmarked[9].excluded.clear();
    assert_eq!(verify(&ok(&dropped_unmarked), Some(GENESIS)), Err(Break::Altered { index: 9 }));
}
