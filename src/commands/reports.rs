//! `check-config`, `ref`, `report transparency`, `report owner`, `simulate`.

use super::{decode_file, event_points};
use crate::cli::{
    CheckConfigArgs, ClassificationArgs, InputFormat, OwnerArgs, RefArgs, SimulateArgs, TransparencyArgs,
};
use anyhow::{bail, Context, Result};
use dispatch_trigger::{cameras, config};
use std::io::IsTerminal;
use std::path::Path;
use trigger_cad::DecodeOptions;
use trigger_core::Engine;

pub(super) fn check_config(policy: &Path, a: CheckConfigArgs) -> Result<()> {
    let p = config::load_policy(policy)?;
    if let Some(export) = &a.export {
        never_fire(&p, policy, export, &a)?;
    }
    let checked = config::check_profiles(policy, &p)?;
    for w in p.warnings().iter().chain(&checked.warnings) {
        eprintln!("warning: {w}");
    }
    for a in &p.config.agencies {
        eprintln!("classification of agency {:?}: {}", a.id, p.classification_digest(&a.id));
    }
    if !checked.errors.is_empty() {
        bail!(
            "{}: {} configuration(s) can never start a camera:\n  - {}",
            policy.display(),
            checked.errors.len(),
            checked.errors.join("\n  - ")
        );
    }
    println!(
        "{}: ok ({} agencies, {} CSV profiles: {})",
        policy.display(),
        p.config.agencies.len(),
        checked.profiles.len(),
        checked.profiles.join(", ")
    );
    Ok(())
}

/// The export's distinct type texts that a rule maps to a trigger category and that can never fire.
fn never_fire(p: &trigger_core::Policy, policy: &Path, export: &Path, a: &CheckConfigArgs) -> Result<()> {
    let profile = a.profile.as_deref().map(|n| config::load_profile(n, policy)).transpose()?;
    let decoded = decode_file(export, a.format, profile.as_ref(), &DecodeOptions::default())?;
    let mut found: std::collections::BTreeMap<(String, &str), (Vec<String>, u64)> = Default::default();
    for d in &decoded.events {
        if let Some(trigger_core::Classification::Uncorroborated { category, unexplained, .. }) =
            p.classify_event(&d.event)
        {
            let e = found.entry((d.event.call_type_text.clone(), category.as_str())).or_insert((unexplained, 0));
            e.1 += 1;
        }
    }
    println!("{}: {} type text(s) that can never fire:", export.display(), found.len());
    for ((text, category), (words, n)) in &found {
        let why = if words.is_empty() { "no phrase of the category".to_string() } else { words.join(" ") };
        println!("  {text:?} ({category}, {n} events): unexplained: {why}");
    }
    Ok(())
}

pub(super) fn classification(policy: &Path, a: ClassificationArgs) -> Result<()> {
    let mut p = config::load_policy(policy)?;
    if let Some(name) = &a.profile {
        p.set_input_mapping(config::load_profile(name, policy)?.type_mapping());
    }
    let docs: std::collections::BTreeMap<&str, serde_json::Value> =
        p.config.agencies.iter().map(|x| (p.classification_digest(&x.id), p.classification(&x.id))).collect();
    println!("{}", serde_json::to_string_pretty(&docs)?);
    Ok(())
}

pub(super) fn transparency(a: TransparencyArgs) -> Result<()> {
    let r = dispatch_trigger::transparency::build(&a.audit, a.resolution, a.min_count)?;
    dispatch_trigger::transparency::write(&r, &a.out)?;
    println!(
        "{} rows, {} areas from {} audit records -> {}/transparency.{{csv,json,html}}",
        r.rows.len(),
        r.areas.len(),
        r.audit_records,
        a.out.display()
    );
    Ok(())
}

pub(super) fn owner(a: OwnerArgs) -> Result<()> {
    let cams = cameras::load(&a.cameras)?;
    let r = dispatch_trigger::report::owner(&a.owner, &cams, &a.audit)?;
    println!("{}", serde_json::to_string_pretty(&r)?);
    Ok(())
}

pub(super) fn simulate(policy_path: &Path, a: SimulateArgs) -> Result<()> {
    let (knob, values) = dispatch_trigger::simulate::parse_vary(&a.vary)?;
    let profile = config::load_profile(&a.profile, policy_path)?;
    let mut decoded = decode_file(&a.cad, InputFormat::Csv, Some(&profile), &DecodeOptions::default())?;
    let cams = match (&a.cameras, a.generate_cameras) {
        (Some(f), _) => cameras::load(f)?,
        (None, Some(n)) => {
            cameras::generate(n, a.seed, &cameras::Placement::Around(event_points(&decoded)), profile.time_zone)?
        }
        (None, None) => bail!("--cameras FILE or --generate-cameras N is required"),
    };
    let settings = dispatch_trigger::simulate::run(
        &mut decoded,
        cams,
        &dispatch_trigger::simulate::SimulateOptions {
            policy: policy_path,
            knob,
            values,
            out: a.out.clone(),
            progress: std::io::stderr().is_terminal(),
        },
    )?;
    println!("| {:?} | incidents triggered | recordings started | per incident (mean) | activations per camera p99 / max | cameras ever activated | activated per month |", knob);
    println!("|---|---|---|---|---|---|---|");
    for s in &settings {
        println!(
            "| {} | {} | {} | {} | {} / {} | {:.1}% | {:.2}% |",
            s.value,
            s.incidents_triggered,
            s.recordings_started,
            s.recordings_per_incident.mean,
            s.activations_per_camera.p99,
            s.activations_per_camera.max,
            100.0 * s.share_of_cameras_ever_activated,
            100.0 * s.share_of_cameras_activated_per_month
        );
    }
    eprintln!("wrote {}/simulation.{{json,csv}} and {} maps", a.out.display(), settings.len());
    Ok(())
}

pub(super) fn incident_refs(policy: &Path, a: RefArgs) -> Result<()> {
    let engine = Engine::new(config::load_policy(policy)?);
    if engine.policy().config.incident_ref_key.expose() == trigger_core::policy::DEV_INCIDENT_REF_KEY {
        eprintln!("warning: incident_ref_key is the development default: these are not your deployment's references");
    }
    if !engine.policy().is_partner(&a.agency) {
        let known: Vec<&str> = engine.policy().config.agencies.iter().map(|x| x.id.as_str()).collect();
        bail!(
            "agency {:?} is not defined in {} (agencies: {}): its incidents are never decided, so a reference \
             for it matches no audit record",
            a.agency,
            policy.display(),
            known.join(", ")
        );
    }
    if let Some(id) = &a.incident {
        println!("{}", engine.incident_ref(&a.agency, id));
        return Ok(());
    }
    let (path, column) = (a.csv.expect("clap: --incident or --csv"), a.column.expect("clap: --csv needs --column"));
    let mut r = csv::Reader::from_path(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let header = r.headers()?.clone();
    let at = header
        .iter()
        .position(|h| h.trim_start_matches('\u{feff}') == column)
        .with_context(|| format!("{}: no column {column:?} (columns: {:?})", path.display(), header))?;
    let mut w = csv::Writer::from_writer(std::io::stdout().lock());
    w.write_record(header.iter().chain(["incident_ref"]))?;
    for (i, row) in r.records().enumerate() {
        let row = row.with_context(|| format!("{} row {}", path.display(), i + 2))?;
        let id = row.get(at).unwrap_or_default().trim();
        let reference = if id.is_empty() { String::new() } else { engine.incident_ref(&a.agency, id) };
        w.write_record(row.iter().chain([reference.as_str()]))?;
    }
    w.flush()?;
    Ok(())
}
