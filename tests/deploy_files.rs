//! deploy/ names only what exists: every command and flag it runs is one the binary has (its `--help` says
//! so), every configuration it ships loads (`--print-config`: unknown keys are errors), and every `DT_*`
//! variable it sets is a key of the command's configuration.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn deploy_files() -> Vec<PathBuf> {
    let root = common::root().join("deploy");
    let mut files = vec![root.join("compose.yaml"), root.join("Dockerfile")];
    let mut k8s: Vec<PathBuf> = std::fs::read_dir(root.join("k8s")).unwrap().flatten().map(|e| e.path()).collect();
    k8s.sort();
    files.extend(k8s);
    files
}

/// Every invocation of the binary in a file: JSON arrays after `args:`, `command:` or `CMD`, and shell lines
/// that run `dispatch-trigger`.
fn invocations(text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        let array = ["args:", "command:", "CMD"].iter().find_map(|k| line.strip_prefix(k)).map(str::trim);
        if let Some(a) = array.filter(|a| a.starts_with('[')) {
            out.push(serde_json::from_str::<Vec<String>>(a).unwrap_or_else(|e| panic!("{line}: {e}")));
        } else if let Some(rest) = line.strip_prefix("exec ").unwrap_or(line).strip_prefix("dispatch-trigger ") {
            let words = rest.split_whitespace().take_while(|w| !["|", ">", "\\", "&&", ";"].contains(w));
            out.push(words.map(str::to_string).collect());
        } else if let Some(i) = line.find("|| dispatch-trigger ") {
            let rest = &line[i + "|| dispatch-trigger ".len()..];
            out.push(
                rest.split_whitespace().take_while(|w| !["|", ">", "\\"].contains(w)).map(str::to_string).collect(),
            );
        }
    }
    out
}

fn help(words: &[&str]) -> String {
    let out = Command::new(common::BIN).args(words).arg("--help").output().unwrap();
    assert!(out.status.success(), "dispatch-trigger {words:?} --help: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn every_command_and_flag_deploy_runs_exists() {
    let mut checked = 0;
    for file in deploy_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        for inv in invocations(&text) {
            let mut words: Vec<&str> = inv.iter().map(String::as_str).collect();
            if words.first() == Some(&"--policy") {
                assert!(help(&[]).contains("--policy"), "the binary has no --policy");
                words.drain(..2);
            }
            let command: Vec<&str> = words.iter().take_while(|w| !w.starts_with('-')).copied().collect();
            let said = help(&command);
            for flag in words.iter().filter(|w| w.starts_with("--")) {
                assert!(
                    said.contains(flag),
                    "{}: `dispatch-trigger {}` has no {flag}",
                    file.display(),
                    command.join(" ")
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 8, "only {checked} invocations found in deploy/");
}

/// The command a `DT_*` variable configures, by its prefix.
fn command_of(var: &str) -> &'static str {
    if var.starts_with("DT_BRIDGE_") {
        "bridge"
    } else if var.starts_with("DT_INGEST_") {
        "ingest"
    } else {
        "serve"
    }
}

/// `command --config file --print-config` with `env` set: the configuration loads.
fn loads(command: &str, file: &Path, env: &[(String, String)], what: &str) {
    let out = Command::new(common::BIN)
        .current_dir(common::root())
        .args([command, "--config"])
        .arg(file)
        .arg("--print-config")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap();
    assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The TOML files a manifest's ConfigMaps carry: (command, text).
fn config_maps(text: &str) -> Vec<(&'static str, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let Some(command) = ["serve", "bridge", "ingest"].into_iter().find(|c| l.trim() == format!("{c}.toml: |"))
        else {
            continue;
        };
        let indent = lines[i + 1].len() - lines[i + 1].trim_start().len();
        let body: Vec<&str> = lines[i + 1..]
            .iter()
            .take_while(|b| b.trim().is_empty() || b.len() - b.trim_start().len() >= indent)
            .map(|b| b.get(indent..).unwrap_or(""))
            .collect();
        out.push((command, body.join("\n")));
    }
    out
}

#[test]
fn every_configuration_and_variable_deploy_sets_is_one_the_command_reads() {
    let dir = tempfile::tempdir().unwrap();
    let mut vars: BTreeSet<String> = BTreeSet::new();
    for file in deploy_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        for line in text.lines().map(str::trim) {
            let name =
                line.strip_prefix("- name: ").or_else(|| line.split(':').next().filter(|n| n.starts_with("DT_")));
            if let Some(n) = name.filter(|n| n.starts_with("DT_")) {
                vars.insert(n.trim().to_string());
            }
        }
        for (i, (command, toml)) in config_maps(&text).into_iter().enumerate() {
            let f = dir.path().join(format!("{command}-{i}.toml"));
            std::fs::write(&f, toml).unwrap();
            loads(command, &f, &[], &format!("{}: the {command}.toml it ships", file.display()));
        }
    }
    assert!(vars.len() >= 6, "{vars:?}");
    let shipped = |c: &str| common::root().join(format!("config/{c}.toml"));
    for var in &vars {
        let command = command_of(var);
        loads(command, &shipped(command), &[(var.clone(), "x".into())], &format!("{var} ({command})"));
    }
}
