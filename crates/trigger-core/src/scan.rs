//! The raw record's scan: every text value the CAD sent, each on its own, read for a blocked term before any
//! profile or mapping sees the record. Decoders feed it every value (`trigger_cad`); the revision they build
//! carries only the verdict — the term and the field it was in — never the value, so no other text of the
//! record leaves ingest.

pub use crate::types::RawBlock;
use crate::vocabulary::{self, BlockKind};

/// The longest field name a verdict keeps (a CSV header or a JSON path can be anything a peer sends).
pub const MAX_FIELD_NAME: usize = 120;

/// Collects the first blocked term of a record's values.
#[derive(Debug, Default)]
pub struct Scanner {
    found: Option<RawBlock>,
}

fn bounded(field: &str) -> String {
    let mut end = field.len().min(MAX_FIELD_NAME);
    while !field.is_char_boundary(end) {
        end -= 1;
    }
    field[..end].to_string()
}

impl Scanner {
    /// A text value of field `field`.
    pub fn text(&mut self, field: &str, value: &str) {
        // A value with no letter (a number, a time) can name nothing, unless an entity spells letters.
        let may_name = value.chars().any(|c| c.is_alphabetic() || c == '&');
        if self.found.is_none() && may_name {
            self.keep(field, vocabulary::blocked_in(value));
        }
    }

    /// A value that holds a call-type code: the shipped standards' blocked codes, then its words.
    pub fn code(&mut self, field: &str, value: &str) {
        if self.found.is_none() {
            self.keep(field, vocabulary::blocked_code(value));
        }
        self.text(field, value);
    }

    fn keep(&mut self, field: &str, hit: Option<(BlockKind, &'static str)>) {
        if let Some((kind, term)) = hit {
            self.found = Some(RawBlock { kind, term: term.to_string(), field: bounded(field) });
        }
    }

    /// The record's bytes as they came, read as one text (not UTF-8: each bad byte a separator; a JSON
    /// `\uXXXX` escape a separator too). What a parser would drop — a repeated key or field, an unknown
    /// one, a record it refuses — is still read. Blocks only add: no exception is read across fields here
    /// that the per-value reading does not also see.
    pub fn raw(&mut self, field: &str, bytes: &[u8]) {
        if self.found.is_some() {
            return;
        }
        let text = String::from_utf8_lossy(bytes);
        let mut plain = String::with_capacity(text.len());
        let mut rest: &str = &text;
        while let Some(at) = rest.find("\\u") {
            plain.push_str(&rest[..at]);
            let hex = rest.get(at + 2..at + 6).is_some_and(|h| h.chars().all(|c| c.is_ascii_hexdigit()));
            plain.push(' ');
            rest = &rest[at + if hex { 6 } else { 2 }..];
        }
        plain.push_str(rest);
        self.text(field, &plain);
    }

    /// Take a verdict found earlier (a record already scanned upstream): a verdict only ever adds a block.
    pub fn merge(&mut self, earlier: Option<RawBlock>) {
        if self.found.is_none() {
            self.found = earlier;
        }
    }

    pub fn finish(self) -> Option<RawBlock> {
        self.found
    }
}

/// Every string of a JSON value, with its path (`incidentComponent[1].incidentTypeCommonRegistryText`), read
/// by the scanner; object keys are read too (a peer can put words anywhere).
pub fn scan_json(scanner: &mut Scanner, path: &mut String, v: &serde_json::Value) {
    match v {
        serde_json::Value::String(s) => scanner.text(path, s),
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                scan_json(scanner, path, item);
                path.truncate(len);
            }
        }
        serde_json::Value::Object(map) => {
            for (k, item) in map {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                scanner.text(path, k);
                scan_json(scanner, path, item);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_blocked_value_is_kept_with_its_field_and_never_its_text() {
        let mut s = Scanner::default();
        s.text("Tencode Description", "SHOTS FIRED");
        s.text("Disposition", "CALLER JANE ROE SAYS PROTESTERS ON LAWN");
        s.code("Tencode", "CIVDIS");
        let b = s.finish().unwrap();
        assert_eq!((b.kind, b.term.as_str(), b.field.as_str()), (BlockKind::FirstAmendment, "PROTEST", "Disposition"));
        assert!(!serde_json::to_string(&b).unwrap().contains("JANE"));
        let mut s = Scanner::default();
        s.code("code", "407");
        assert_eq!(s.finish().unwrap().term, "407");
    }

    #[test]
    fn every_string_of_a_json_document_is_read_with_its_path() {
        let doc = serde_json::json!({"incidentComponent": [{"a": "x"}, {"incidentTypeCommonRegistryText": ["SHOOTING", "CIVIL DISTURBANCE"]}]});
        let mut s = Scanner::default();
        scan_json(&mut s, &mut String::new(), &doc);
        assert_eq!(s.finish().unwrap().field, "incidentComponent[1].incidentTypeCommonRegistryText[1]");
    }
}
