//! The configuration loader of every long-running command: built-in defaults, then the TOML file, then
//! environment variables with the command's prefix (double underscore between levels). Unknown keys are
//! errors, every one named at once; so are values of the wrong type.

use anyhow::{bail, Result};
use figment::providers::{Env, Format as _, Serialized, Toml};
use figment::Figment;
use serde::{de::DeserializeOwned, Serialize};
use std::path::Path;

/// Defaults of `T`, then `file` (if given; it must exist), then `env`. `what` names the configuration in
/// errors ("configuration", "bridge configuration").
pub fn load<T: Serialize + DeserializeOwned + Default>(what: &str, file: Option<&Path>, env: Env) -> Result<T> {
    let mut fig = Figment::from(Serialized::defaults(T::default()));
    if let Some(f) = file {
        if !f.exists() {
            bail!("config file {} does not exist", f.display());
        }
        fig = fig.merge(Toml::file_exact(f));
    }
    let fig = fig.merge(env);
    // serde stops at the first unknown key; name them all first.
    let unknown = unknown_keys(&fig, &T::default());
    if !unknown.is_empty() {
        let all: Vec<String> = unknown.iter().map(|k| format!("unknown key {k:?}")).collect();
        bail!("invalid {what}:\n  - {}", all.join("\n  - "));
    }
    fig.extract().map_err(|e| {
        let all: Vec<String> = e.into_iter().map(|e| e.to_string()).collect();
        anyhow::anyhow!("invalid {what}:\n  - {}", all.join("\n  - "))
    })
}

/// `errs` as the loader reports problems: nothing when empty, else every one at once.
pub fn check(what: &str, errs: Vec<String>) -> Result<()> {
    if errs.is_empty() {
        return Ok(());
    }
    bail!("invalid {what}:\n  - {}", errs.join("\n  - "))
}

/// Every key of the merged configuration that `defaults` does not have (dotted paths). The known keys are
/// those of the defaults, serialised; a table that is empty by default (raw librdkafka properties) takes any
/// key; an array of tables (the bridge's `[[target]]`) is checked by its own type's `deny_unknown_fields`.
fn unknown_keys<T: Serialize>(fig: &Figment, defaults: &T) -> Vec<String> {
    fn walk(given: &figment::value::Value, known: &serde_json::Value, path: &str, out: &mut Vec<String>) {
        let (Some(given), Some(known)) = (given.as_dict(), known.as_object()) else { return };
        if known.is_empty() {
            return;
        }
        for (k, v) in given {
            let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
            match known.get(k) {
                None => out.push(p),
                Some(kv) => walk(v, kv, &p, out),
            }
        }
    }
    let known = serde_json::to_value(defaults).unwrap_or_default();
    let mut out = Vec::new();
    if let Ok(given) = fig.extract::<figment::value::Value>() {
        walk(&given, &known, "", &mut out);
    }
    out
}
