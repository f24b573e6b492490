//! Errors of a whole input (not of one record: a bad record is a named reject, and the input goes on).
//! Each holds the bad value, so a caller can say exactly what to fix.

/// A CSV profile that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProfileError {
    /// Not TOML of the profile's shape; the parser's message says where.
    #[error("CSV profile is not valid: {0}")]
    Toml(String),
    /// Parsed, but some settings cannot work together.
    #[error("CSV profile {profile}: {}", join(problems))]
    Invalid { profile: String, problems: Vec<ProfileProblem> },
}

/// One thing wrong with a parsed CSV profile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileProblem {
    #[error("columns: set latitude and longitude, or point_wkt")]
    NoLocationColumns,
    #[error("columns: set type_code and/or type_text")]
    NoTypeColumns,
    #[error("set agency_id, or columns.agency")]
    NoAgency,
    #[error("delimiter {0:?} must be one ASCII character")]
    Delimiter(char),
    #[error("join {0:?} may hold only spaces and punctuation: no configuration contributes a word to the CAD's text")]
    JoinHoldsWords(String),
}

fn join(problems: &[ProfileProblem]) -> String {
    problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// An input that cannot be decoded at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("--format csv needs a profile (--profile)")]
    CsvNeedsProfile,
    /// The CSV header row cannot be read.
    #[error("CSV header: {0}")]
    Header(String),
    /// The profile names columns the export does not have.
    #[error("profile {profile} names columns the CSV does not have: {missing:?} (header: {header:?})")]
    MissingColumns { profile: String, missing: Vec<String>, header: Vec<String> },
}

/// A format name that is not one of csv, eido, jsonl, pb.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown format {0:?}: expected csv, eido, jsonl or pb")]
pub struct UnknownFormat(pub String);

/// A replay pace that is not a finite number > 0.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{option} must be a finite number > 0, got {value}")]
pub struct BadPace {
    pub option: &'static str,
    pub value: f64,
}
