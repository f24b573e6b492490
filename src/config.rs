//! Loading the policy, its code tables, jurisdictions and CSV profiles from disk.
//!
//! Layout (relative to the policy file's folder): `codes/*.toml` are code tables, the policy's
//! `jurisdiction` paths are GeoJSON files, `profiles/NAME.toml` are CSV profiles.

use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use trigger_cad::CsvProfile;
use trigger_core::{CodeTable, Policy, PolicyConfig, PolicyError, PolicyProblem};

pub const DEFAULT_POLICY: &str = "config/policy.toml";
/// The bundled sample: one week of real Nashville calls (see fixtures/README.md for its origin).
pub const BUNDLED_SAMPLE: &str = "fixtures/nashville-mnpd-2024-07-01_07.csv";

static CONFIG_DIR: include_dir::Dir<'static> = include_dir::include_dir!("$CARGO_MANIFEST_DIR/config");
static SAMPLE: &[u8] = include_bytes!("../fixtures/nashville-mnpd-2024-07-01_07.csv");

/// A file of the source tree (`config/policy.toml`, the bundled sample), as found: in the working directory;
/// else beside the installation (the executable's folder and its parents, so `target/release/` finds the
/// repository); else the copy compiled into this binary, written once to a cache folder.
pub fn installed(rel: &str) -> PathBuf {
    let rel_path = Path::new(rel);
    if rel_path.exists() {
        return rel_path.to_path_buf();
    }
    let exe = std::env::current_exe().ok().and_then(|p| p.canonicalize().ok());
    if let Some(found) =
        exe.iter().flat_map(|e| e.ancestors().skip(1).take(4)).map(|d| d.join(rel)).find(|p| p.exists())
    {
        return found;
    }
    compiled_in().map(|root| root.join(rel)).unwrap_or_else(|_| rel_path.to_path_buf())
}

/// The default policy: `config/policy.toml`, found as [`installed`] says.
pub fn default_policy() -> PathBuf {
    installed(DEFAULT_POLICY)
}

/// The configuration compiled into this binary (`config/policy.toml` of the source tree it was built from),
/// whatever folder it runs in; the working directory's when the copy cannot be written.
pub fn bundled_policy() -> PathBuf {
    compiled_in().map(|root| root.join(DEFAULT_POLICY)).unwrap_or_else(|_| default_policy())
}

/// Write the compiled-in config and sample into a cache folder named after their content (once; files are
/// written whole and renamed into place, so concurrent runs agree).
fn compiled_in() -> Result<PathBuf> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    SAMPLE.hash(&mut h);
    let mut files: Vec<(PathBuf, &[u8])> = vec![(PathBuf::from(BUNDLED_SAMPLE), SAMPLE)];
    fn walk<'a>(d: &'a include_dir::Dir<'a>, out: &mut Vec<(PathBuf, &'a [u8])>) {
        for f in d.files() {
            out.push((Path::new("config").join(f.path()), f.contents()));
        }
        for sub in d.dirs() {
            walk(sub, out);
        }
    }
    walk(&CONFIG_DIR, &mut files);
    for (p, c) in &files {
        p.hash(&mut h);
        c.hash(&mut h);
    }
    let root = std::env::temp_dir().join(format!("dispatch-trigger-{}-{:016x}", env!("CARGO_PKG_VERSION"), h.finish()));
    for (p, c) in files {
        let dest = root.join(&p);
        if dest.exists() {
            continue;
        }
        let dir = dest.parent().expect("a file in a folder");
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let tmp = dest.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, c).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &dest).with_context(|| format!("cannot write {}", dest.display()))?;
    }
    Ok(root)
}

/// An input path as given; the bundled sample's own relative path also works outside the repository.
pub fn input_path(p: &Path) -> PathBuf {
    if !p.exists() && p == Path::new(BUNDLED_SAMPLE) {
        installed(BUNDLED_SAMPLE)
    } else {
        p.to_path_buf()
    }
}

/// Read and decode a CAD file (found as [`input_path`] says).
pub fn decode_file(
    path: &Path,
    format: trigger_cad::Format,
    profile: Option<&CsvProfile>,
    opts: &trigger_cad::DecodeOptions,
) -> Result<trigger_cad::Decoded> {
    let path = input_path(path);
    let data = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    trigger_cad::decode(format, &data, profile, opts).map_err(anyhow::Error::msg)
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Every code table in `dir`, sorted by file name.
pub fn load_code_tables(dir: &Path) -> Result<Vec<CodeTable>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list code tables in {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files.iter().map(|f| CodeTable::from_toml(&read(f)?).with_context(|| format!("in {}", f.display()))).collect()
}

/// The policy with its tables and jurisdictions; every problem is reported at once.
pub fn load_policy(policy_path: &Path) -> Result<Policy> {
    load_policy_with(policy_path, |_| {})
}

/// As [`load_policy`], with the configuration adjusted before it is validated (what-if runs).
pub fn load_policy_with(policy_path: &Path, adjust: impl FnOnce(&mut PolicyConfig)) -> Result<Policy> {
    let base = policy_path.parent().unwrap_or(Path::new("."));
    let mut config =
        PolicyConfig::from_toml(&read(policy_path)?).map_err(|e| anyhow::anyhow!("{}: {e}", policy_path.display()))?;
    adjust(&mut config);
    let tables = load_code_tables(&base.join("codes"))?;
    let mut errs = Vec::new();
    let mut jurisdictions = BTreeMap::new();
    for a in &config.agencies {
        match read(&base.join(&a.jurisdiction)) {
            Ok(text) => {
                jurisdictions.insert(a.id.clone(), text);
            }
            Err(e) => {
                errs.push(PolicyProblem::Unreadable { who: format!("agency {:?}", a.id), error: format!("{e:#}") })
            }
        }
    }
    match Policy::new(config, &tables, &jurisdictions) {
        Ok(p) if errs.is_empty() => Ok(p),
        Ok(_) => bail!("{}: {}", policy_path.display(), PolicyError(errs)),
        Err(PolicyError(more)) => {
            errs.extend(more);
            bail!("{}: {}", policy_path.display(), PolicyError(errs))
        }
    }
}

/// A profile by name (looked up in `profiles/` beside the policy) or by path.
pub fn load_profile(name_or_path: &str, policy_path: &Path) -> Result<CsvProfile> {
    let as_path = PathBuf::from(name_or_path);
    let path = if as_path.extension().is_some_and(|x| x == "toml") || as_path.components().count() > 1 {
        as_path
    } else {
        policy_path.parent().unwrap_or(Path::new(".")).join("profiles").join(format!("{name_or_path}.toml"))
    };
    CsvProfile::from_toml(&read(&path)?).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// What `check-config` found in the CSV profiles beside a policy.
#[derive(Debug, Default)]
pub struct CheckedProfiles {
    pub profiles: Vec<String>,
    pub warnings: Vec<String>,
    /// Configurations that still decide and audit but can never start a camera (check-config fails on them).
    pub errors: Vec<String>,
}

/// Where a profile's events can never start a camera, because they carry no type text for the shipped
/// vocabularies to corroborate: an error naming the categories that can never fire.
pub fn type_text_errors(p: &CsvProfile, policy: &Policy) -> Vec<String> {
    let enabled: Vec<&str> =
        policy.config.categories.iter().filter(|(_, c)| c.enabled).map(|(c, _)| c.as_str()).collect();
    match p.reads_type_text() {
        (false, false) => vec![format!(
            "profile {} reads no type text (columns.type_text): a code or a label alone never starts a camera, \
             so {} can never fire. Map the export's call-type description column as type_text",
            p.name,
            enabled.join(", ")
        )],
        (true, false) => vec![format!(
            "profile {} maps a final type but no final_type_text: revisions after the first carry no type text, \
             so {} can never fire on them. Map the final type's description as final_type_text",
            p.name,
            enabled.join(", ")
        )],
        (false, true) => vec![format!(
            "profile {} reads no type_text for the first revision: {} can never fire on it",
            p.name,
            enabled.join(", ")
        )],
        (true, true) => vec![],
    }
}

/// Load every profile in `profiles/` beside the policy (every problem of every profile is reported at once)
/// and say where a profile and the code tables of its agency do not fit together.
pub fn check_profiles(policy_path: &Path, policy: &Policy) -> Result<CheckedProfiles> {
    let base = policy_path.parent().unwrap_or(Path::new("."));
    let dir = base.join("profiles");
    let mut out = CheckedProfiles::default();
    if !dir.is_dir() {
        return Ok(out);
    }
    let tables = load_code_tables(&base.join("codes"))?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let mut errs = Vec::new();
    for f in files {
        match read(&f).and_then(|t| CsvProfile::from_toml(&t).map_err(anyhow::Error::msg)) {
            Err(e) => errs.push(format!("{}: {e:#}", f.display())),
            Ok(p) => {
                out.warnings.extend(profile_warnings(&p, policy, &tables));
                out.errors.extend(type_text_errors(&p, policy));
                out.profiles.push(p.name);
            }
        }
    }
    if !errs.is_empty() {
        bail!("{} of the CSV profiles are invalid:\n  - {}", errs.len(), errs.join("\n  - "));
    }
    Ok(out)
}

/// Where a profile and its agency's code tables do not fit: the columns it maps decide what the tables' rules
/// can see (a profile that reads no type text is an error: [`type_text_errors`]).
fn profile_warnings(p: &CsvProfile, policy: &Policy, tables: &[CodeTable]) -> Vec<String> {
    let c = &p.columns;
    let maps_code = !(c.type_code.names().is_empty() && c.final_type_code.names().is_empty());
    let maps_text = !(c.type_text.names().is_empty() && c.final_type_text.names().is_empty());
    let cfg = &policy.config;
    let names: Vec<&String> = match &p.agency_id {
        Some(id) => match cfg.agencies.iter().find(|a| &a.id == id) {
            Some(a) if a.code_tables.is_empty() => cfg.default_code_tables.iter().collect(),
            Some(a) => a.code_tables.iter().collect(),
            None => return vec![format!("profile {}: agency_id {id:?} is not a partner agency of the policy", p.name)],
        },
        // An agency column: any partner's tables may apply.
        None => cfg.agencies.iter().flat_map(|a| &a.code_tables).chain(&cfg.default_code_tables).collect(),
    };
    let used: Vec<&CodeTable> = tables.iter().filter(|t| names.contains(&&t.name)).collect();
    let mut w = Vec::new();
    if maps_text && !maps_code && !used.is_empty() && used.iter().all(|t| t.code_only()) {
        w.push(format!(
            "profile {} maps type text but no code, and its tables have only code rules: no event can match a rule",
            p.name
        ));
    }
    w
}
