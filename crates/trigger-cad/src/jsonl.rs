//! JSONL: one `CallForService` as JSON per line (the serde form of the domain type). Every string of the
//! line (unknown fields' included) is read for a blocked term first (`trigger_core::scan`), and a line that
//! names one is its incident marked, whatever else is wrong with it; beyond that scan, unknown fields are
//! ignored, which is how narrative or caller fields a producer adds are dropped at ingest.

use crate::{oversized, DecodeOptions, Decoded, Source};
use trigger_core::{CallForService, Reject, RejectReason};

pub fn decode_line(line: &[u8], opts: &DecodeOptions) -> Result<CallForService, Reject> {
    if line.len() > opts.max_message_bytes {
        return Err(oversized(line.len(), opts.max_message_bytes));
    }
    let value: Option<serde_json::Value> = serde_json::from_slice(line).ok();
    let mut scanner = trigger_core::Scanner::default();
    if let Some(v) = &value {
        trigger_core::scan::scan_json(&mut scanner, &mut String::new(), v);
    }
    // The line read whole as well: a repeated key, nesting past the parser's depth, a lone surrogate.
    scanner.raw("(line)", line);
    let found = scanner.finish();
    let mut ev: CallForService = match (serde_json::from_slice::<CallForService>(line), &found, &value) {
        (Ok(ev), _, _) => ev,
        (Err(_), Some(found), Some(v)) if v.get("incident_id").and_then(|i| i.as_str()).is_some() => {
            let s = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or_default().to_string();
            let at = v.get("emitted_at").and_then(serde_json::Value::as_i64).unwrap_or(0);
            let revision = v.get("revision").and_then(serde_json::Value::as_u64).and_then(|r| u32::try_from(r).ok());
            let ev = crate::blocked_only(s("incident_id"), s("agency_id"), at, found.clone());
            CallForService { revision: revision.unwrap_or(1), ..ev }
        }
        (Err(e), found, _) => match (found, crate::lenient_string(line, &["incident_id"])) {
            (Some(found), Some(id)) => {
                let agency = crate::lenient_string(line, &["agency_id"]).unwrap_or_default();
                crate::blocked_only(id, agency, 0, found.clone())
            }
            _ => return Err(Reject::new(RejectReason::MalformedJson, format!("{e} (column {})", e.column()))),
        },
    };
    ev.blocked = ev.blocked.or(found);
    if let Some(a) = &opts.agency_id {
        ev.agency_id = a.clone();
    }
    Ok(ev)
}

pub fn decode(data: &[u8], opts: &DecodeOptions) -> Decoded {
    let mut out = Decoded::default();
    for (i, line) in data.split(|b| *b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let src = Source { position: format!("line {}", i + 1), bytes: line.to_vec() };
        out.push(src, decode_line(line, opts).map(|e| vec![e]));
    }
    out
}

/// Write events as JSONL (one line each).
pub fn encode<'a>(events: impl IntoIterator<Item = &'a CallForService>) -> Vec<u8> {
    let mut out = Vec::new();
    for ev in events {
        serde_json::to_writer(&mut out, ev).expect("serialisable");
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_lines_are_rejected_good_ones_kept_and_extra_fields_dropped() {
        let data = br#"{"incident_id":"1","agency_id":"a","revision":1,"status":"new","call_type_code":"70","location":{"lat":36.1,"lon":-86.7},"received_at":1,"emitted_at":1,"caller_name":"Jane Roe","narrative":"my neighbour"}
not json
{"incident_id":"2","agency_id":"a","revision":1,"status":"exploded","received_at":1,"emitted_at":1}

{"incident_id":"3","agency_id":"a","revision":1,"status":"closed","location":null,"received_at":1,"emitted_at":1}
"#;
        let d = decode(data, &DecodeOptions::default());
        assert_eq!(d.events.len(), 2);
        assert_eq!(d.rejects.len(), 2);
        assert_eq!(d.rejects[0].position, "line 2");
        assert_eq!(d.rejects[0].original, b"not json");
        assert!(d.rejects.iter().all(|r| r.reason == RejectReason::MalformedJson));
        let back = String::from_utf8(encode(d.events.iter().map(|e| &e.event))).unwrap();
        assert!(!back.contains("Jane") && !back.contains("neighbour"));
    }
}
