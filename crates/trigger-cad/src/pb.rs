//! Protobuf `CallForService`: conversion to and from the domain type, and length-delimited streams.

use crate::{oversized, DecodeOptions, Decoded, Source};
use prost::Message;
use trigger_core::{CallForService, Location, Reject, RejectReason, Status};
use trigger_proto::v1 as pb;

pub fn status_from_pb(s: i32) -> Option<Status> {
    Some(match pb::CfsStatus::try_from(s).ok()? {
        pb::CfsStatus::Unspecified => return None,
        pb::CfsStatus::New => Status::New,
        pb::CfsStatus::Updated => Status::Updated,
        pb::CfsStatus::Dispatched => Status::Dispatched,
        pb::CfsStatus::OnScene => Status::OnScene,
        pb::CfsStatus::Closed => Status::Closed,
        pb::CfsStatus::Cancelled => Status::Cancelled,
    })
}

pub fn status_to_pb(s: Status) -> pb::CfsStatus {
    match s {
        Status::New => pb::CfsStatus::New,
        Status::Updated => pb::CfsStatus::Updated,
        Status::Dispatched => pb::CfsStatus::Dispatched,
        Status::OnScene => pb::CfsStatus::OnScene,
        Status::Closed => pb::CfsStatus::Closed,
        Status::Cancelled => pb::CfsStatus::Cancelled,
    }
}

/// Domain -> wire.
pub fn to_pb(ev: &CallForService) -> pb::CallForService {
    pb::CallForService {
        incident_id: ev.incident_id.clone(),
        agency_id: ev.agency_id.clone(),
        revision: ev.revision,
        status: status_to_pb(ev.status) as i32,
        call_type_code: ev.call_type_code.clone(),
        call_type_text: ev.call_type_text.clone(),
        priority: ev.priority,
        location: ev.location.map(|l| pb::GeoPoint { lat: l.lat, lon: l.lon, uncertainty_m: l.uncertainty_m }),
        received_at_ms: ev.received_at,
        emitted_at_ms: ev.emitted_at,
        blocked: ev.blocked.as_ref().map(|b| pb::RawBlock {
            kind: b.kind.as_str().to_string(),
            term: b.term.clone(),
            field: b.field.clone(),
        }),
        type_fields: ev.type_fields.clone(),
    }
}

/// This message's own strings read for a blocked term, with the verdict it carries.
fn scan_message(m: &pb::CallForService) -> Option<trigger_core::RawBlock> {
    let mut scanner = trigger_core::Scanner::default();
    scanner.merge(m.blocked.as_ref().map(|b| trigger_core::RawBlock {
        kind: trigger_core::vocabulary::BlockKind::parse(&b.kind),
        term: b.term.chars().take(64).collect(),
        field: b.field.chars().take(trigger_core::scan::MAX_FIELD_NAME).collect(),
    }));
    scanner.code("call_type_code", &m.call_type_code);
    scanner.text("call_type_text", &m.call_type_text);
    for (i, v) in m.type_fields.iter().enumerate() {
        scanner.text(&format!("type_fields[{i}]"), v);
    }
    scanner.text("incident_id", &m.incident_id);
    scanner.text("agency_id", &m.agency_id);
    scanner.finish()
}

/// Wire -> domain. Structural checks happen in the engine; this only refuses what has no domain meaning.
/// A message that names a blocked type (its verdict, or its own strings) is its incident marked, whatever
/// else is wrong with it.
pub fn from_pb(m: pb::CallForService) -> Result<CallForService, Reject> {
    let blocked = scan_message(&m);
    let status = match (status_from_pb(m.status), &blocked) {
        (Some(s), _) => s,
        (None, Some(_)) => Status::Updated,
        (None, None) => {
            return Err(Reject::new(
                RejectReason::InvalidRevision,
                format!("status {} is not a lifecycle status", m.status),
            ))
        }
    };
    Ok(CallForService {
        incident_id: m.incident_id,
        agency_id: m.agency_id,
        revision: m.revision,
        status,
        call_type_code: m.call_type_code,
        call_type_text: m.call_type_text,
        priority: m.priority,
        location: m.location.map(|l| Location { lat: l.lat, lon: l.lon, uncertainty_m: l.uncertainty_m }),
        received_at: m.received_at_ms,
        emitted_at: m.emitted_at_ms,
        blocked,
        type_fields: m.type_fields,
    })
}

/// A base-128 varint at `*at`, moving past it.
fn varint(b: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*at)?;
        *at += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Every length-delimited field of a protobuf message, and of the messages nested in it (four deep), whose
/// bytes are text (UTF-8 without control characters): `found(field number, text)`. Reads the wire itself,
/// so repeated and unknown fields are seen; stops where the bytes stop being a message.
fn wire_strings(b: &[u8], depth: usize, found: &mut dyn FnMut(u64, &str)) {
    let mut at = 0;
    while at < b.len() {
        let Some(key) = varint(b, &mut at) else { return };
        let skip = match key & 7 {
            0 => varint(b, &mut at).map(|_| 0),
            1 => Some(8),
            5 => Some(4),
            2 => varint(b, &mut at).and_then(|n| usize::try_from(n).ok()),
            _ => None,
        };
        let Some(n) = skip.filter(|n| at + n <= b.len()) else { return };
        if key & 7 == 2 {
            let body = &b[at..at + n];
            match std::str::from_utf8(body) {
                Ok(text) if !text.chars().any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r')) => {
                    found(key >> 3, text)
                }
                _ if depth < 4 => wire_strings(body, depth + 1, found),
                _ => {}
            }
        }
        at += n;
    }
}

/// Decode one message (a Kafka record value).
pub fn decode_one(bytes: &[u8], opts: &DecodeOptions) -> Result<CallForService, Reject> {
    if bytes.len() > opts.max_message_bytes {
        return Err(oversized(bytes.len(), opts.max_message_bytes));
    }
    let m =
        pb::CallForService::decode(bytes).map_err(|e| Reject::new(RejectReason::MalformedProtobuf, e.to_string()))?;
    let mut ev = from_pb(m)?;
    // Every string on the wire as well: a repeated field (the decoder keeps the last) and unknown fields hold
    // text too. A verdict only adds.
    let mut scanner = trigger_core::Scanner::default();
    scanner.merge(ev.blocked.take());
    wire_strings(bytes, 0, &mut |field, text| scanner.text(&format!("field {field}"), text));
    ev.blocked = scanner.finish();
    if let Some(a) = &opts.agency_id {
        ev.agency_id = a.clone();
    }
    Ok(ev)
}

/// Encode events as a length-delimited stream (what `--format pb` reads).
pub fn encode_stream<'a>(events: impl IntoIterator<Item = &'a CallForService>) -> Vec<u8> {
    let mut out = Vec::new();
    for ev in events {
        to_pb(ev).encode_length_delimited(&mut out).expect("Vec grows");
    }
    out
}

/// Decode a length-delimited stream. A message that does not decode is rejected and the stream goes on at
/// the next frame; a broken length prefix makes the rest of the stream one reject (framing is lost).
pub fn decode_stream(data: &[u8], opts: &DecodeOptions) -> Decoded {
    let mut out = Decoded::default();
    for (i, frame) in trigger_proto::framing::frames(data).enumerate() {
        match frame {
            Ok(f) => {
                let src = Source { position: format!("message {} at byte {}", i + 1, f.at), bytes: f.body.to_vec() };
                out.push(src, decode_one(f.body, opts).map(|e| vec![e]));
            }
            Err((at, e)) => {
                let src = Source { position: format!("message {} at byte {at}", i + 1), bytes: data[at..].to_vec() };
                out.push(src, Err(Reject::new(RejectReason::MalformedProtobuf, e.to_string())));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev() -> CallForService {
        CallForService {
            incident_id: "I1".into(),
            agency_id: "a".into(),
            revision: 1,
            status: Status::New,
            call_type_code: "70".into(),
            call_type_text: "BURGLARY".into(),
            priority: 2,
            location: Some(Location { lat: 36.1, lon: -86.7, uncertainty_m: 10.0 }),
            received_at: 1_700_000_000_000,
            emitted_at: 1_700_000_001_000,
            blocked: None,
            type_fields: vec![],
        }
    }

    #[test]
    fn round_trip_and_garbage_between_good_messages() {
        let good = ev();
        let mut stream = encode_stream([&good]);
        // A frame whose body is not a CallForService (field 1 declared as varint with a truncated value).
        stream.extend_from_slice(&[2, 0x08, 0xff]);
        stream.extend(encode_stream([&CallForService { revision: 2, ..good.clone() }]));
        let d = decode_stream(&stream, &DecodeOptions::default());
        assert_eq!(d.events.len(), 2);
        assert_eq!(d.events[0].event, good);
        assert_eq!(d.events[1].event.revision, 2);
        assert_eq!(d.rejects.len(), 1);
        assert_eq!(d.rejects[0].reason, RejectReason::MalformedProtobuf);
        assert_eq!(d.rejects[0].original, vec![0x08, 0xff]);
    }

    #[test]
    fn truncated_stream_and_oversized_message() {
        let mut stream = encode_stream([&ev()]);
        stream.extend_from_slice(&[50, 1, 2]);
        let d = decode_stream(&stream, &DecodeOptions::default());
        assert_eq!((d.events.len(), d.rejects.len()), (1, 1));
        let opts = DecodeOptions { max_message_bytes: 10, agency_id: None };
        let d = decode_stream(&encode_stream([&ev()]), &opts);
        assert_eq!(d.rejects[0].reason, RejectReason::OversizedMessage);
    }

    #[test]
    fn unspecified_status_is_refused() {
        let mut m = to_pb(&ev());
        m.status = 0;
        assert_eq!(from_pb(m).unwrap_err().reason, RejectReason::InvalidRevision);
    }
}
