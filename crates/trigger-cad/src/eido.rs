//! NENA EIDO JSON (NENA-STA-024): both the 2020 field names (`LastUpdateTimeStamp`,
//! `locationInformationComponent`, `OwningAgencyIdentifier`) and the 2021+ ones (`lastUpdateTimeStamp`,
//! `locationComponent`, `updatedByAgencyReference`).
//!
//! Read: the incident id, owning agency, last update time, call start time, incident type and priority
//! (`incidentComponent`), status, and the location from the PIDF-LO in `locationByValue` (`gml:pos`
//! "lat lon [alt]"; uncertainty from a circle's `radius` or an ellipse's `semiMajorAxis`).
//! Every string of the document (every component's, notes and person components' included) is read once, on
//! its own, for a blocked term (`trigger_core::scan`); the revision keeps only the verdict. Beyond that scan,
//! `personComponent`, `callbackComponent`, `vehicleComponent`, `additionalDataComponent`, `notesComponent`
//! and agent identities are never read — they are dropped at ingest. A document that names a blocked type is
//! decided as blocked whatever else is wrong with it (only its incident id is needed).
//!
//! EIDO has no revision number: the revision is the document's last-update time in whole seconds since
//! 2020-01-01T00:00:00Z, which is monotonic per incident (two updates within one second collide and the
//! second is refused as a duplicate).

use crate::{oversized, DecodeOptions, Decoded, Source};
use serde_json::Value;
use trigger_core::{CallForService, Location, Millis, Reject, RejectReason, Status};

const REVISION_EPOCH_MS: Millis = 1_577_836_800_000; // 2020-01-01T00:00:00Z

/// The revision number of an incident's state last updated at `updated_at` (Unix ms): whole seconds since
/// 2020-01-01T00:00:00Z, monotonic per incident (two updates within one second collide, and the second is
/// refused as a duplicate revision). EIDO documents and database rows (`ingest`'s `sql` source) alike.
pub fn revision_at(updated_at: Millis) -> u32 {
    ((updated_at - REVISION_EPOCH_MS) / 1000).clamp(1, u32::MAX as i64) as u32
}

fn field<'a>(v: &'a Value, names: &[&str]) -> Option<&'a Value> {
    names.iter().find_map(|n| v.get(*n)).filter(|v| !v.is_null())
}

fn text<'a>(v: &'a Value, names: &[&str]) -> Option<&'a str> {
    field(v, names).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty())
}

fn components<'a>(doc: &'a Value, names: &[&str]) -> &'a [Value] {
    field(doc, names).and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

fn time(v: &Value, names: &[&str], what: &str) -> Result<Option<Millis>, Reject> {
    match text(v, names) {
        None => Ok(None),
        Some(s) => chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| Some(t.timestamp_millis()))
            .map_err(|e| Reject::new(RejectReason::UnparseableTimestamp, format!("{what} {s:?}: {e}"))),
    }
}

/// The text inside the first element named `local` (any namespace prefix), e.g. `<gml:pos>…</gml:pos>`.
fn xml_text<'a>(xml: &'a str, local: &str) -> Option<&'a str> {
    let mut from = 0;
    while let Some(i) = xml[from..].find('<') {
        let start = from + i + 1;
        let rest = &xml[start..];
        let name_end = rest.find(|c: char| c.is_whitespace() || c == '>' || c == '/').unwrap_or(rest.len());
        let name = &rest[..name_end];
        let bare = name.rsplit(':').next().unwrap_or(name);
        if bare == local && !name.starts_with('/') {
            let body = &rest[name_end..];
            let open_end = body.find('>')?;
            let content = &body[open_end + 1..];
            let close = content.find("</")?;
            return Some(content[..close].trim());
        }
        from = start;
    }
    None
}

/// Location from a PIDF-LO document.
pub fn pidf_location(xml: &str) -> Result<Option<Location>, Reject> {
    let Some(pos) = xml_text(xml, "pos") else { return Ok(None) };
    let bad = || Reject::new(RejectReason::InvalidCoordinates, format!("gml:pos {pos:?} is not \"lat lon [alt]\""));
    let mut it = pos.split_whitespace().map(str::parse::<f64>);
    let lat = it.next().and_then(Result::ok).ok_or_else(bad)?;
    let lon = it.next().and_then(Result::ok).ok_or_else(bad)?;
    let uncertainty_m = ["radius", "semiMajorAxis"]
        .iter()
        .find_map(|t| xml_text(xml, t))
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    Ok(Some(Location { lat, lon, uncertainty_m }))
}

fn status_of(doc: &Value, incident: Option<&Value>) -> Status {
    let mut words = String::new();
    if let Some(i) = incident {
        for n in ["incidentStatusCommonRegistryText", "incidentStatusInternalText"] {
            match i.get(n) {
                Some(Value::String(s)) => words.push_str(s),
                Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).for_each(|s| words.push_str(s)),
                _ => {}
            }
            words.push(' ');
        }
    }
    words.push_str(text(doc, &["reasonForIssueRegistryText"]).unwrap_or(""));
    let w = words.to_ascii_uppercase().replace([' ', '_', '-'], "");
    if w.contains("CANCEL") {
        Status::Cancelled
    } else if w.contains("CLOSED") || w.contains("CLOSE") {
        Status::Closed
    } else if w.contains("ONSCENE") || w.contains("ARRIVED") {
        Status::OnScene
    } else if w.contains("DISPATCH") {
        Status::Dispatched
    } else if w.contains("NEWINCIDENT") {
        Status::New
    } else {
        Status::Updated
    }
}

/// The agency a document names: its owning agency, the agency that updated it, or its first agency component.
fn agency_of(doc: &Value) -> Option<String> {
    text(doc, &["OwningAgencyIdentifier", "owningAgencyIdentifier"])
        .map(String::from)
        .or_else(|| field(doc, &["updatedByAgencyReference"]).and_then(|r| text(r, &["$ref"])).map(String::from))
        .or_else(|| {
            components(doc, &["agencyComponent"])
                .first()
                .and_then(|a| text(a, &["organizationIdentification", "$id"]))
                .map(String::from)
        })
}

/// The first readable location of a document, the incident's before a routing location before the caller's.
fn location_of(doc: &Value) -> Result<Option<Location>, Reject> {
    let locs = components(doc, &["locationComponent", "locationInformationComponent"]);
    let rank = |l: &Value| match text(l, &["locationTypeDescriptionRegistryText"]).unwrap_or("") {
        "Incident" => 0,
        "RoutingLocation" => 1,
        "Caller" => 2,
        _ => 3,
    };
    let mut ordered: Vec<&Value> = locs.iter().collect();
    ordered.sort_by_key(|l| rank(l));
    for l in ordered {
        if let Some(xml) = text(l, &["locationByValue"]) {
            if let Some(loc) = pidf_location(xml)? {
                return Ok(Some(loc));
            }
        }
    }
    Ok(None)
}

/// Every string value of a field of every incident component (a string or an array of strings).
fn component_strings<'a>(doc: &'a Value, names: &'a [&'a str]) -> impl Iterator<Item = &'a str> + 'a {
    components(doc, &["incidentComponent"]).iter().flat_map(move |c| {
        names.iter().flat_map(move |n| match c.get(*n) {
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        })
    })
}

const TYPE_TEXT_FIELDS: &[&str] = &["incidentTypeInternalText", "incidentTypeCommonRegistryText"];
const TYPE_CODE_FIELDS: &[&str] = &["incidentTypeInternalCode", "incidentTypeCommonRegistryCode"];

/// The whole document read for a blocked term: every string (and key), then the type codes of every incident
/// component for the shipped standards' blocked codes.
fn scan_document(doc: &Value) -> Option<trigger_core::RawBlock> {
    let mut scanner = trigger_core::Scanner::default();
    trigger_core::scan::scan_json(&mut scanner, &mut String::new(), doc);
    for code in component_strings(doc, TYPE_CODE_FIELDS) {
        scanner.code("incidentComponent.incidentTypeInternalCode", code);
    }
    scanner.finish()
}

/// One EIDO document -> one CallForService revision (a document that names a blocked type: its incident,
/// marked, whatever else it lacks).
pub fn decode_document(doc: &Value, opts: &DecodeOptions) -> Result<CallForService, Reject> {
    let blocked = scan_document(doc);
    match (decode_fields(doc, opts), blocked) {
        (Ok(ev), blocked) => Ok(CallForService { blocked, ..ev }),
        (Err(r), None) => Err(r),
        (Err(r), Some(blocked)) => {
            let Some(incident_id) = text(doc, &["incidentTrackingIdentifier", "$id"]) else { return Err(r) };
            let at = time(doc, &["lastUpdateTimeStamp", "LastUpdateTimeStamp"], "").ok().flatten().unwrap_or(0);
            let agency = opts.agency_id.clone().or_else(|| agency_of(doc)).unwrap_or_default();
            let ev = crate::blocked_only(incident_id.to_string(), agency, at, blocked);
            Ok(CallForService { revision: revision_at(at), ..ev })
        }
    }
}

fn decode_fields(doc: &Value, opts: &DecodeOptions) -> Result<CallForService, Reject> {
    if !doc.is_object() {
        return Err(Reject::new(RejectReason::MalformedJson, "an EIDO document is a JSON object"));
    }
    let incident_id = text(doc, &["incidentTrackingIdentifier", "$id"])
        .ok_or_else(|| Reject::new(RejectReason::MissingIncidentId, "no incidentTrackingIdentifier or $id"))?
        .to_string();
    let agency_id = opts.agency_id.clone().or_else(|| agency_of(doc)).unwrap_or_default();
    let emitted_at = time(doc, &["lastUpdateTimeStamp", "LastUpdateTimeStamp"], "lastUpdateTimeStamp")?
        .ok_or_else(|| Reject::new(RejectReason::MissingTimestamp, "no lastUpdateTimeStamp"))?;
    let call = components(doc, &["callComponent"]).first();
    let received_at = match call {
        Some(c) => time(c, &["callStartTimestamp", "CallStartTimestamp"], "callStartTimestamp")?,
        None => None,
    }
    .unwrap_or(emitted_at);
    let incident = components(doc, &["incidentComponent"]).first();
    let Some(inc) = incident else {
        return Err(Reject::new(
            RejectReason::MissingCallType,
            "no incidentComponent: the document carries no incident type (a call transfer, not an incident)",
        ));
    };
    let call_type_code =
        text(inc, &["incidentTypeInternalCode", "incidentTypeCommonRegistryText"]).unwrap_or("").to_string();
    let call_type_text =
        text(inc, &["incidentTypeInternalText", "incidentTypeCommonRegistryText"]).unwrap_or("").to_string();
    let priority = field(inc, &["incidentCommonPriorityNumber"]).and_then(Value::as_u64).unwrap_or(0) as u32;
    let location = location_of(doc)?;
    let revision = revision_at(emitted_at);
    let values: Vec<String> =
        component_strings(doc, TYPE_TEXT_FIELDS).map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
    Ok(CallForService {
        incident_id,
        agency_id,
        revision,
        status: status_of(doc, Some(inc)),
        call_type_code,
        call_type_text,
        priority,
        location,
        received_at,
        emitted_at,
        blocked: None,
        type_fields: if values.len() > 1 { values } else { vec![] },
    })
}

/// The document's bytes read whole as well (a repeated key, a value a parser refuses): a verdict only adds.
/// A document that does not decode but names a blocked type is its incident marked, when an incident id can
/// be found in its text.
fn with_raw_scan(
    r: Result<CallForService, Reject>,
    bytes: &[u8],
    opts: &DecodeOptions,
) -> Result<Vec<CallForService>, Reject> {
    let mut scanner = trigger_core::Scanner::default();
    scanner.raw("(document)", bytes);
    let Some(found) = scanner.finish() else { return r.map(|e| vec![e]) };
    match r {
        Ok(ev) => Ok(vec![CallForService { blocked: ev.blocked.clone().or(Some(found)), ..ev }]),
        Err(e) => match crate::lenient_string(bytes, &["incidentTrackingIdentifier", "$id"]) {
            Some(id) => Ok(vec![crate::blocked_only(id, opts.agency_id.clone().unwrap_or_default(), 0, found)]),
            None => Err(e),
        },
    }
}

/// A document, an array of documents, or one document per line.
pub fn decode(data: &[u8], opts: &DecodeOptions) -> Decoded {
    let mut out = Decoded::default();
    let one = |bytes: &[u8], position: String, out: &mut Decoded| {
        let src = Source { position, bytes: bytes.to_vec() };
        let r = if bytes.len() > opts.max_message_bytes {
            Err(oversized(bytes.len(), opts.max_message_bytes))
        } else {
            serde_json::from_slice::<Value>(bytes)
                .map_err(|e| Reject::new(RejectReason::MalformedJson, e.to_string()))
                .and_then(|v| decode_document(&v, opts))
        };
        out.push(src, with_raw_scan(r, bytes, opts));
    };
    match serde_json::from_slice::<Value>(data) {
        Ok(Value::Array(docs)) => {
            for (i, d) in docs.iter().enumerate() {
                let bytes = serde_json::to_vec(d).expect("re-serialise");
                one(&bytes, format!("document {}", i + 1), &mut out);
            }
        }
        Ok(_) => one(data, "document 1".into(), &mut out),
        Err(_) => {
            for (i, line) in data.split(|b| *b == b'\n').enumerate() {
                if !line.iter().all(u8::is_ascii_whitespace) {
                    one(line, format!("line {}", i + 1), &mut out);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pidf_pos_and_uncertainty() {
        let xml = r#"<presence><gs:Circle srsName="x"><gml:pos>40.1 -80.2</gml:pos><gs:radius uom="m">15</gs:radius></gs:Circle></presence>"#;
        assert_eq!(pidf_location(xml).unwrap(), Some(Location { lat: 40.1, lon: -80.2, uncertainty_m: 15.0 }));
        assert_eq!(pidf_location("<civicAddress><A1>DE</A1></civicAddress>").unwrap(), None);
        assert_eq!(pidf_location("<gml:pos>north</gml:pos>").unwrap_err().reason, RejectReason::InvalidCoordinates);
    }

    #[test]
    fn malformed_documents_are_rejected_and_lines_go_on() {
        let data = b"{\"incidentTrackingIdentifier\": \"x\"}\n{oops\n";
        let d = decode(data, &DecodeOptions::default());
        assert_eq!(d.rejects.len(), 2);
        assert_eq!(d.rejects[0].reason, RejectReason::MissingTimestamp);
        assert_eq!(d.rejects[1].reason, RejectReason::MalformedJson);
        assert_eq!(d.rejects[1].original, b"{oops");
    }
}
