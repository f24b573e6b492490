//! Call type -> category, from code tables loaded from config (TOML).
//!
//! Order of evaluation, for each event:
//! 1. The built-in hard block (civil unrest / protest, immigration enforcement), then any extra `blocked`
//!    rules of the tables. A blocked type never triggers, whatever else matches; config cannot remove
//!    a built-in block.
//! 2. Exact code rules of the agency's tables, in table order (codes compare case-insensitively).
//! 3. Text rules, in file order: a case-insensitive whole-word phrase match on the call type text
//!    ("ARSON" does not match "PERSON").
//! 4. Nothing matched: the table's `unknown` policy decides (reject the event, or ignore it).
//!
//! A match in a trigger category becomes `alarm` when the code or text also carries an alarm marker
//! (`[alarm]` in the table) — alarm-only calls are their own category, off by default in policy.

use crate::types::Category;
use serde::{Deserialize, Serialize};

/// Phrases that hard-block a call type. Matched as whole words, case-insensitively, on code and text.
pub const HARD_BLOCKED: &[(&str, &str)] = &[
    ("CIVIL UNREST", "civil_unrest"),
    ("CIVIL DISTURBANCE", "civil_unrest"),
    ("PROTEST", "civil_unrest"),
    ("PROTESTER", "civil_unrest"),
    ("PROTESTERS", "civil_unrest"),
    ("PROTESTORS", "civil_unrest"),
    ("DEMONSTRATION", "civil_unrest"),
    ("DEMONSTRATORS", "civil_unrest"),
    ("RIOT", "civil_unrest"),
    ("UNLAWFUL ASSEMBLY", "civil_unrest"),
    ("MASS GATHERING", "civil_unrest"),
    ("IMMIGRATION", "immigration"),
    ("DEPORTATION", "immigration"),
    ("ICE", "immigration"),
    ("ICE ENFORCEMENT", "immigration"),
    ("BORDER PATROL", "immigration"),
    ("UNDOCUMENTED", "immigration"),
];

/// What a code or text rule maps to: a trigger category, or `none` (a known type that never triggers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    None,
    Burglary,
    VehicleBreakIn,
    Robbery,
    ShotsFired,
    Shooting,
    Stabbing,
    Hostage,
    Alarm,
}

impl Target {
    fn category(self) -> Option<Category> {
        Some(match self {
            Target::None => return None,
            Target::Burglary => Category::Burglary,
            Target::VehicleBreakIn => Category::VehicleBreakIn,
            Target::Robbery => Category::Robbery,
            Target::ShotsFired => Category::ShotsFired,
            Target::Shooting => Category::Shooting,
            Target::Stabbing => Category::Stabbing,
            Target::Hostage => Category::Hostage,
            Target::Alarm => Category::Alarm,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownPolicy {
    /// An unknown type is bad input: rejected with `unknown_call_type` (the table is out of date).
    #[default]
    Reject,
    /// An unknown type is decided as "not a trigger type".
    Ignore,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
    pub category: Target,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Markers {
    #[serde(default)]
    pub codes: Vec<String>,
    #[serde(default)]
    pub text: Vec<String>,
}

/// One code table, as written in `config/codes/*.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeTable {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub unknown: UnknownPolicy,
    #[serde(default)]
    pub alarm: Markers,
    #[serde(default)]
    pub blocked: Markers,
    #[serde(default, rename = "rule")]
    pub rules: Vec<Rule>,
}

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("code table is not valid TOML: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("code table {table}: rule {index} needs exactly one of `code` or `text`")]
    RuleShape { table: String, index: usize },
}

impl CodeTable {
    pub fn from_toml(s: &str) -> Result<Self, TableError> {
        let t: CodeTable = toml::from_str(s)?;
        for (index, r) in t.rules.iter().enumerate() {
            if r.code.is_some() == r.text.is_some() {
                return Err(TableError::RuleShape { table: t.name.clone(), index });
            }
        }
        Ok(t)
    }
}

/// The result of classifying one call type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Classification {
    /// A trigger category; `rule` names what matched, e.g. `nashville-mnpd:code:70`.
    Trigger { category: Category, rule: String },
    /// Never triggers (`builtin:civil_unrest`, `table:blocked:...`).
    Blocked { rule: String },
    /// A known type that does not trigger.
    NotTrigger { rule: String },
    /// Nothing matched and the table says to reject.
    Unknown,
}

/// Tables compiled for matching (upper-cased once).
#[derive(Debug, Clone)]
pub struct Classifier {
    tables: Vec<Compiled>,
}

#[derive(Debug, Clone)]
struct Compiled {
    name: String,
    unknown: UnknownPolicy,
    codes: Vec<(String, Target)>,
    texts: Vec<(String, Target)>,
    alarm_codes: Vec<String>,
    alarm_text: Vec<String>,
    blocked_codes: Vec<String>,
    blocked_text: Vec<String>,
}

fn norm(s: &str) -> String {
    s.trim().to_uppercase()
}

/// Whole-word, case-insensitive phrase match. `hay` and `needle` must already be upper-case.
pub fn has_phrase(hay: &str, needle: &str) -> bool {
    if needle.is_empty() {
        return false;
    }
    let bytes = hay.as_bytes();
    let mut from = 0;
    while let Some(pos) = hay[from..].find(needle) {
        let start = from + pos;
        let end = start + needle.len();
        let before_ok = start == 0 || !bytes[start - 1].is_ascii_alphanumeric();
        let after_ok = end == bytes.len() || !bytes[end].is_ascii_alphanumeric();
        if before_ok && after_ok {
            return true;
        }
        from = start + 1;
        while !hay.is_char_boundary(from) {
            from += 1;
        }
    }
    false
}

impl Classifier {
    /// Tables are consulted in the order given.
    pub fn new(tables: &[CodeTable]) -> Self {
        let tables = tables
            .iter()
            .map(|t| Compiled {
                name: t.name.clone(),
                unknown: t.unknown,
                codes: t.rules.iter().filter_map(|r| r.code.as_deref().map(|c| (norm(c), r.category))).collect(),
                texts: t.rules.iter().filter_map(|r| r.text.as_deref().map(|c| (norm(c), r.category))).collect(),
                alarm_codes: t.alarm.codes.iter().map(|s| norm(s)).collect(),
                alarm_text: t.alarm.text.iter().map(|s| norm(s)).collect(),
                blocked_codes: t.blocked.codes.iter().map(|s| norm(s)).collect(),
                blocked_text: t.blocked.text.iter().map(|s| norm(s)).collect(),
            })
            .collect();
        Self { tables }
    }

    pub fn table_names(&self) -> impl Iterator<Item = &str> {
        self.tables.iter().map(|t| t.name.as_str())
    }

    pub fn classify(&self, code: &str, text: &str) -> Classification {
        let (code, text) = (norm(code), norm(text));
        for (phrase, why) in HARD_BLOCKED {
            if has_phrase(&text, phrase) || has_phrase(&code, phrase) {
                return Classification::Blocked { rule: format!("builtin:{why}") };
            }
        }
        for t in &self.tables {
            if t.blocked_codes.contains(&code) || t.blocked_text.iter().any(|p| has_phrase(&text, p)) {
                return Classification::Blocked { rule: format!("{}:blocked", t.name) };
            }
        }
        let found = self.tables.iter().find_map(|t| {
            let by_code = (!code.is_empty())
                .then(|| t.codes.iter().find(|(c, _)| *c == code))
                .flatten()
                .map(|(c, target)| (t, format!("{}:code:{c}", t.name), *target));
            by_code.or_else(|| {
                t.texts
                    .iter()
                    .find(|(p, _)| has_phrase(&text, p))
                    .map(|(p, target)| (t, format!("{}:text:{p}", t.name), *target))
            })
        });
        match found {
            Some((t, rule, target)) => match target.category() {
                None => Classification::NotTrigger { rule },
                Some(mut category) => {
                    let alarm = t.alarm_codes.contains(&code) || t.alarm_text.iter().any(|p| has_phrase(&text, p));
                    if alarm && category != Category::Alarm {
                        category = Category::Alarm;
                    }
                    let rule = if alarm { format!("{rule}+alarm") } else { rule };
                    Classification::Trigger { category, rule }
                }
            },
            None => match self.tables.first().map(|t| t.unknown).unwrap_or_default() {
                UnknownPolicy::Reject => Classification::Unknown,
                UnknownPolicy::Ignore => Classification::NotTrigger { rule: "unknown:ignored".into() },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> CodeTable {
        CodeTable::from_toml(
            r#"
name = "t"
[alarm]
text = ["ALARM"]
[blocked]
codes = ["CU1"]
[[rule]]
code = "70"
category = "burglary"
[[rule]]
text = "ARSON"
category = "none"
[[rule]]
text = "shots fired"
category = "shots_fired"
"#,
        )
        .unwrap()
    }

    #[test]
    fn exact_code_then_text_then_unknown() {
        let c = Classifier::new(&[table()]);
        assert_eq!(
            c.classify("70", "whatever"),
            Classification::Trigger { category: Category::Burglary, rule: "t:code:70".into() }
        );
        assert!(matches!(
            c.classify("", "Shots Fired near park"),
            Classification::Trigger { category: Category::ShotsFired, .. }
        ));
        assert_eq!(c.classify("99", "SUSPICIOUS PERSON"), Classification::Unknown, "PERSON must not match ARSON");
    }

    #[test]
    fn alarm_marker_makes_alarm_category() {
        let c = Classifier::new(&[table()]);
        assert!(matches!(
            c.classify("70", "BURGLARY - RESIDENCE / ALARM"),
            Classification::Trigger { category: Category::Alarm, .. }
        ));
    }

    #[test]
    fn hard_block_beats_every_table_rule() {
        let c = Classifier::new(&[table()]);
        assert!(matches!(c.classify("70", "CIVIL UNREST; REQUEST MUTUAL AID"), Classification::Blocked { .. }));
        assert!(matches!(c.classify("", "shots fired at protest"), Classification::Blocked { .. }));
        assert!(matches!(c.classify("", "ICE enforcement assist"), Classification::Blocked { .. }));
        assert!(matches!(c.classify("CU1", ""), Classification::Blocked { .. }));
        // Whole words only: "PATRIOT" is not "RIOT", "PRICE" is not "ICE".
        assert!(!matches!(c.classify("70", "BURGLARY PATRIOT PRICE ST"), Classification::Blocked { .. }));
    }

    #[test]
    fn rule_needs_code_or_text() {
        let bad = "name = \"x\"\n[[rule]]\ncategory = \"burglary\"\n";
        assert!(matches!(CodeTable::from_toml(bad), Err(TableError::RuleShape { .. })));
        let unknown_key = "name = \"x\"\nfoo = 1\n";
        assert!(CodeTable::from_toml(unknown_key).is_err());
    }

    #[test]
    fn phrase_matching_handles_unicode() {
        assert!(has_phrase("ÉTÉ RIOT", "RIOT"));
        // Stepping past a multi-byte character after a partial match must not panic.
        assert!(!has_phrase("RÉRÉ", "RX"));
        assert!(!has_phrase("PATRIOT", "RIOT"));
    }
}
