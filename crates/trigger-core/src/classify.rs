//! Call type -> category, from code tables loaded from config (TOML), with the CAD's own words as the
//! evidence that decides whether a category may start cameras (see [`crate::vocabulary`]).
//!
//! Order of evaluation, for each event:
//! 1. The built-in block: a blocked term ([`crate::vocabulary::BLOCKED`]) in the event's code or type text,
//!    or one of the shipped standards' blocked codes ([`HARD_BLOCKED_CODES`]); then the `blocked` markers of
//!    the tables. A blocked type never triggers, whatever else matches; config cannot remove a built-in block.
//! 2. Exact code rules of the agency's tables, in table order (codes compare case-insensitively).
//! 3. Text rules, in file order: a case-insensitive whole-word phrase match on the call type text
//!    ("ARSON" does not match "PERSON").
//! 4. Nothing matched: the table's `unknown` policy decides (reject the event, or ignore it).
//! 5. The matched rule's label passes the same blocks as the event's own text.
//! 6. A trigger category needs corroboration: the event's type text holds a phrase of the category's shipped
//!    vocabulary ([`crate::vocabulary::CORROBORATING`]). Without it the event is `Uncorroborated`: decided,
//!    audited, and it starts nothing. A code or a label alone never starts a camera.
//!
//! A match in a trigger category becomes `alarm` when the code or text also carries an alarm marker
//! (`[alarm]` in the table) — alarm-only calls are their own category, off by default in policy.

use crate::types::Category;
use crate::vocabulary;
use serde::{Deserialize, Serialize};

pub use crate::vocabulary::HARD_BLOCKED_CODES;

/// Why a type is hard-blocked, if it is: `KIND:code:CODE` for a code of [`HARD_BLOCKED_CODES`], or
/// `KIND:PHRASE` for a blocked phrase in the code or in any of `texts` (KIND is `first_amendment` or
/// `immigration`).
pub fn hard_block(code: &str, texts: &[&str]) -> Option<String> {
    if let Some((kind, c)) = vocabulary::blocked_code(code) {
        return Some(format!("{}:code:{c}", kind.as_str()));
    }
    std::iter::once(code)
        .chain(texts.iter().copied())
        .find_map(vocabulary::blocked_in)
        .map(|(kind, phrase)| format!("{}:{phrase}", kind.as_str()))
}

/// What a code or text rule maps to: a trigger category, or `none` (a known type that never triggers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target(pub Option<Category>);

impl Target {
    fn category(self) -> Option<Category> {
        self.0
    }
}

impl Serialize for Target {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.map_or("none", Category::as_str))
    }
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s == "none" {
            return Ok(Target(None));
        }
        Category::parse(&s).map(|c| Target(Some(c))).ok_or_else(|| {
            let names: Vec<&str> = std::iter::once("none").chain(Category::ALL.map(Category::as_str)).collect();
            serde::de::Error::custom(format!("unknown category `{s}`, expected one of {}", names.join(", ")))
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

/// One rule of a code table.
#[derive(Debug, Clone)]
pub struct Rule {
    pub code: Option<String>,
    pub text: Option<String>,
    /// The type's description in the agency's code book. Required on a code rule whose target is a trigger
    /// category: the hard block checks it, so a code whose description is a protest or immigration type can
    /// never be mapped to a trigger, even when events carry only the code.
    pub label: Option<String>,
    pub category: Target,
    /// Line of the rule's `code` / `text` in the table's TOML (1-based), for error messages.
    pub line: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(default)]
    code: Option<toml::Spanned<String>>,
    #[serde(default)]
    text: Option<toml::Spanned<String>>,
    #[serde(default)]
    label: Option<String>,
    category: Target,
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
#[derive(Debug, Clone)]
pub struct CodeTable {
    pub name: String,
    pub description: String,
    pub unknown: UnknownPolicy,
    pub alarm: Markers,
    pub blocked: Markers,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    unknown: UnknownPolicy,
    #[serde(default)]
    alarm: Markers,
    #[serde(default)]
    blocked: Markers,
    #[serde(default, rename = "rule")]
    rules: Vec<RawRule>,
}

/// One thing wrong with a code table's rule. Each names the table, the line, the code or text, and the label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableProblem {
    #[error("table {table}, line {line}: a rule needs exactly one of `code` or `text`")]
    RuleShape { table: String, line: usize },
    #[error(
        "table {table}, line {line}: code {code:?} maps to the trigger category {category} but has no `label` \
         (the code's description from the agency's code book; the hard block checks it)"
    )]
    MissingLabel { table: String, line: usize, code: String, category: &'static str },
    #[error(
        "table {table}, line {line}: {kind} {value:?} (label {label:?}) maps to the trigger category {category}, \
         but it is a blocked type ({why}): protests, civil unrest and immigration enforcement never trigger"
    )]
    BlockedReachesTrigger {
        table: String,
        line: usize,
        kind: &'static str,
        value: String,
        label: String,
        category: &'static str,
        why: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("code table is not valid TOML: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("code table {table} is refused:\n  - {}", .problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  - "))]
    Invalid { table: String, problems: Vec<TableProblem> },
}

fn line_of(text: &str, byte: usize) -> usize {
    text[..byte.min(text.len())].bytes().filter(|b| *b == b'\n').count() + 1
}

impl CodeTable {
    /// Parse and check a table: every problem is reported at once, and a table in which a blocked type can
    /// reach a trigger category is refused (see [`CodeTable::problems`]).
    pub fn from_toml(s: &str) -> Result<Self, TableError> {
        let raw: RawTable = toml::from_str(s)?;
        let mut problems = Vec::new();
        let mut rules = Vec::with_capacity(raw.rules.len());
        for r in raw.rules {
            let span = r.code.as_ref().or(r.text.as_ref()).map_or(0, |x| x.span().start);
            let line = line_of(s, span);
            if r.code.is_some() == r.text.is_some() {
                problems.push(TableProblem::RuleShape { table: raw.name.clone(), line });
                continue;
            }
            rules.push(Rule {
                code: r.code.map(toml::Spanned::into_inner),
                text: r.text.map(toml::Spanned::into_inner),
                label: r.label,
                category: r.category,
                line,
            });
        }
        let t = CodeTable {
            name: raw.name,
            description: raw.description,
            unknown: raw.unknown,
            alarm: raw.alarm,
            blocked: raw.blocked,
            rules,
        };
        problems.extend(t.problems(std::slice::from_ref(&t)));
        if problems.is_empty() {
            Ok(t)
        } else {
            Err(TableError::Invalid { table: t.name.clone(), problems })
        }
    }

    /// The rules of this table through which a blocked type could reach a trigger category, given the
    /// `blocked` markers of every table consulted with it (`with`, which may include this one): a code
    /// rule without a label; a code that is hard-blocked or blocked by a table; a label or text phrase that
    /// holds a hard-blocked phrase or a table's blocked phrase.
    pub fn problems(&self, with: &[CodeTable]) -> Vec<TableProblem> {
        let blocked_codes: Vec<String> = with.iter().flat_map(|t| t.blocked.codes.iter().map(|c| norm(c))).collect();
        let blocked_text: Vec<String> = with.iter().flat_map(|t| t.blocked.text.iter().map(|c| norm(c))).collect();
        let mut out = Vec::new();
        for r in &self.rules {
            let Some(category) = r.category.category() else { continue };
            let (kind, value) = match (&r.code, &r.text) {
                (Some(c), _) => ("code", c.clone()),
                (None, Some(t)) => ("text", t.clone()),
                (None, None) => continue,
            };
            if kind == "code" && r.label.as_deref().is_none_or(|l| l.trim().is_empty()) {
                out.push(TableProblem::MissingLabel {
                    table: self.name.clone(),
                    line: r.line,
                    code: value,
                    category: category.as_str(),
                });
                continue;
            }
            let label = r.label.clone().unwrap_or_else(|| value.clone());
            let (v, l) = (norm(&value), norm(&label));
            let why = if kind == "code" {
                hard_block(&v, &[&l])
                    .or_else(|| blocked_codes.contains(&v).then(|| "a table's [blocked] code".to_string()))
            } else {
                hard_block("", &[&v, &l])
            }
            .or_else(|| {
                blocked_text
                    .iter()
                    .find(|p| has_phrase(&l, p) || has_phrase(&v, p))
                    .map(|p| format!("a table's [blocked] text {p:?}"))
            });
            if let Some(why) = why {
                out.push(TableProblem::BlockedReachesTrigger {
                    table: self.name.clone(),
                    line: r.line,
                    kind,
                    value,
                    label,
                    category: category.as_str(),
                    why,
                });
            }
        }
        out
    }

    /// True when every rule matches on a code (events that carry only a type text can match nothing).
    pub fn code_only(&self) -> bool {
        self.rules.iter().all(|r| r.text.is_none())
    }
}

/// The result of classifying one call type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Classification {
    /// A trigger category, corroborated by the event's type text; `rule` names what matched, e.g.
    /// `nashville-mnpd:code:70`.
    Trigger { category: Category, rule: String },
    /// A rule maps the call to a trigger category, but no value of the event's type text is made of the
    /// category's vocabulary and the neutral qualifiers: it starts nothing. `unexplained`: the words that
    /// neither explains (empty: no value holds a phrase of the category at all).
    Uncorroborated {
        category: Category,
        rule: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        unexplained: Vec<String>,
    },
    /// Never triggers (`builtin:first_amendment:PROTEST`, `TABLE:blocked`, ...).
    Blocked { rule: String },
    /// A known type that does not trigger.
    NotTrigger { rule: String },
    /// Nothing matched and the table says to reject.
    Unknown,
}

impl Classification {
    /// The category a rule mapped the call to (corroborated or not).
    pub fn category(&self) -> Option<Category> {
        match self {
            Classification::Trigger { category, .. } | Classification::Uncorroborated { category, .. } => {
                Some(*category)
            }
            _ => None,
        }
    }

    /// The rule that matched or blocked.
    pub fn rule(&self) -> Option<&str> {
        match self {
            Classification::Trigger { rule, .. }
            | Classification::Uncorroborated { rule, .. }
            | Classification::Blocked { rule }
            | Classification::NotTrigger { rule } => Some(rule),
            Classification::Unknown => None,
        }
    }
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
    /// (code, target, label, what the label blocks), upper-cased.
    codes: Vec<(String, Target, String, Option<LabelBlock>)>,
    /// (phrase, target, what the phrase, as a label, blocks), upper-cased.
    texts: Vec<(String, Target, Option<LabelBlock>)>,
    alarm_codes: Vec<String>,
    alarm_text: Vec<String>,
    blocked_codes: Vec<String>,
    blocked_text: Vec<String>,
}

/// Why a rule's label (a text rule's phrase) is a blocked type: found once, when the tables are compiled.
#[derive(Debug, Clone)]
enum LabelBlock {
    /// A built-in blocked term (`KIND:PHRASE`).
    Builtin(String),
    /// A `[blocked]` text marker of one of the tables.
    Table,
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
        let blocked_text: Vec<String> = tables.iter().flat_map(|t| t.blocked.text.iter().map(|s| norm(s))).collect();
        // The matched rule's label passes the same blocks as the event's own text (see `classify`); labels are
        // fixed, so that is settled here, once.
        let label_block = |label: &str| -> Option<LabelBlock> {
            hard_block("", &[label])
                .map(LabelBlock::Builtin)
                .or_else(|| blocked_text.iter().any(|p| has_phrase(label, p)).then_some(LabelBlock::Table))
        };
        let tables = tables
            .iter()
            .map(|t| Compiled {
                name: t.name.clone(),
                unknown: t.unknown,
                codes: t
                    .rules
                    .iter()
                    .filter_map(|r| {
                        let label = norm(r.label.as_deref().unwrap_or_default());
                        r.code.as_deref().map(|c| (norm(c), r.category, label.clone(), label_block(&label)))
                    })
                    .collect(),
                texts: t
                    .rules
                    .iter()
                    .filter_map(|r| r.text.as_deref().map(norm).map(|p| (p.clone(), r.category, label_block(&p))))
                    .collect(),
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

    /// Every rule that maps to a trigger category: (the rule's name, its category, its label; a text rule's
    /// label is its phrase).
    pub fn trigger_rules(&self) -> impl Iterator<Item = (String, Category, &str)> {
        self.tables.iter().flat_map(|t| {
            let codes = t.codes.iter().map(|(c, target, l, _)| (format!("{}:code:{c}", t.name), *target, l.as_str()));
            let texts = t.texts.iter().map(|(p, target, _)| (format!("{}:text:{p}", t.name), *target, p.as_str()));
            codes.chain(texts).filter_map(|(rule, target, label)| target.category().map(|c| (rule, c, label)))
        })
    }

    /// True when some table marks codes or text as alarms (a trigger rule can then yield `alarm`).
    pub fn has_alarm_markers(&self) -> bool {
        self.tables.iter().any(|t| !t.alarm_codes.is_empty() || !t.alarm_text.is_empty())
    }

    /// The tables as they are matched (upper-cased, in order): part of the published classification.
    pub fn describe(&self) -> serde_json::Value {
        let tables: Vec<serde_json::Value> = self
            .tables
            .iter()
            .map(|t| {
                serde_json::json!({
                    "name": t.name,
                    "unknown": t.unknown,
                    "code_rules": t.codes.iter().map(|(c, target, label, _)| serde_json::json!([c, target, label])).collect::<Vec<_>>(),
                    "text_rules": t.texts.iter().map(|(p, target, _)| serde_json::json!([p, target])).collect::<Vec<_>>(),
                    "alarm": {"codes": t.alarm_codes, "text": t.alarm_text},
                    "blocked": {"codes": t.blocked_codes, "text": t.blocked_text},
                })
            })
            .collect();
        serde_json::Value::Array(tables)
    }

    /// Every problem of [`CodeTable::problems`] across these tables together (a code blocked by one table
    /// and mapped to a trigger by another is found here).
    pub fn problems(tables: &[CodeTable]) -> Vec<TableProblem> {
        tables.iter().flat_map(|t| t.problems(tables)).collect()
    }

    /// Classify a call type whose text is one value.
    pub fn classify(&self, code: &str, text: &str) -> Classification {
        self.classify_values(code, text, &[text])
    }

    /// Classify an event: its code, its type text and the text's values, each read on its own.
    pub fn classify_event(&self, ev: &crate::CallForService) -> Classification {
        self.classify_values(&ev.call_type_code, &ev.call_type_text, &ev.type_values())
    }

    /// Classify a call type: `text` is the whole type text (what text rules match), `values` its values as
    /// the CAD sent them (what blocks and corroborates, each on its own).
    pub fn classify_values(&self, code: &str, text: &str, values: &[&str]) -> Classification {
        let (code, text) = (norm(code), norm(text));
        let builtin = hard_block(&code, values).or_else(|| hard_block("", &[&text]));
        if let Some(why) = builtin {
            return Classification::Blocked { rule: format!("builtin:{why}") };
        }
        for t in &self.tables {
            if t.blocked_codes.contains(&code) || t.blocked_text.iter().any(|p| has_phrase(&text, p)) {
                return Classification::Blocked { rule: format!("{}:blocked", t.name) };
            }
        }
        let found = self.tables.iter().find_map(|t| {
            let by_code = (!code.is_empty())
                .then(|| t.codes.iter().find(|(c, _, _, _)| *c == code))
                .flatten()
                .map(|(c, target, _, block)| (t, format!("{}:code:{c}", t.name), *target, block));
            by_code.or_else(|| {
                t.texts
                    .iter()
                    .find(|(p, _, _)| has_phrase(&text, p))
                    .map(|(p, target, block)| (t, format!("{}:text:{p}", t.name), *target, block))
            })
        });
        let Some((t, rule, target, label_block)) = found else {
            return match self.tables.first().map(|t| t.unknown).unwrap_or_default() {
                UnknownPolicy::Reject => Classification::Unknown,
                UnknownPolicy::Ignore => Classification::NotTrigger { rule: "unknown:ignored".into() },
            };
        };
        // The matched rule's label is the type's name in the code book: it passes the same blocks as the
        // event's own text, so a code-only event cannot slip a protest code past them.
        match label_block {
            Some(LabelBlock::Builtin(why)) => return Classification::Blocked { rule: format!("builtin:{why}:{rule}") },
            Some(LabelBlock::Table) => return Classification::Blocked { rule: format!("{}:blocked:{rule}", t.name) },
            None => {}
        }
        let Some(mut category) = target.category() else { return Classification::NotTrigger { rule } };
        let alarm = t.alarm_codes.contains(&code) || t.alarm_text.iter().any(|p| has_phrase(&text, p));
        if alarm {
            category = Category::Alarm;
        }
        let rule = if alarm { format!("{rule}+alarm") } else { rule };
        // Evidence from the CAD, not from the operator: only the event's own type text corroborates, one
        // value at a time, every word of it explained.
        match vocabulary::explain(category, values) {
            Ok(_) => Classification::Trigger { category, rule },
            Err(why) => {
                let unexplained = match why {
                    vocabulary::NotExplained::NoPhrase => vec![],
                    vocabulary::NotExplained::Words(w) => w,
                };
                Classification::Uncorroborated { category, rule, unexplained }
            }
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
label = "BURGLARY - RESIDENCE"
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
            c.classify("70", "BURGLARY - RESIDENCE"),
            Classification::Trigger { category: Category::Burglary, rule: "t:code:70".into() }
        );
        // The code alone classifies; without the CAD's own words for the category it starts nothing.
        assert_eq!(
            c.classify("70", "whatever"),
            Classification::Uncorroborated {
                category: Category::Burglary,
                rule: "t:code:70".into(),
                unexplained: vec![]
            }
        );
        assert!(matches!(
            c.classify("", "Shots Fired"),
            Classification::Trigger { category: Category::ShotsFired, .. }
        ));
        // Every word of the value must be explained: unknown ones are named, and nothing starts.
        assert_eq!(
            c.classify("", "Shots Fired near park"),
            Classification::Uncorroborated {
                category: Category::ShotsFired,
                rule: "t:text:SHOTS FIRED".into(),
                unexplained: vec!["NEAR".into(), "PARK".into()]
            }
        );
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
        let Err(TableError::Invalid { problems, .. }) = CodeTable::from_toml(bad) else { panic!("accepted") };
        assert!(matches!(problems[..], [TableProblem::RuleShape { .. }]));
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
