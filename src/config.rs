//! Loading the policy, its code tables, jurisdictions and CSV profiles from disk.
//!
//! Layout (relative to the policy file's folder): `codes/*.toml` are code tables, the policy's
//! `jurisdiction` paths are GeoJSON files, `profiles/NAME.toml` are CSV profiles.

use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use trigger_cad::CsvProfile;
use trigger_core::{CodeTable, Policy, PolicyConfig, PolicyError};

pub const DEFAULT_POLICY: &str = "config/policy.toml";

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
            Err(e) => errs.push(format!("agency {:?}: {e:#}", a.id)),
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
