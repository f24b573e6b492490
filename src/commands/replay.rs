//! `replay`: offline through the engine into files, or `--to-kafka` into the CFS topic.

use super::{decode_file, event_points, kafka_target};
use crate::cli::ReplayArgs;
use anyhow::{bail, Result};
use dispatch_trigger::index::{with_index, IndexJob, IndexKind};
use dispatch_trigger::{cameras, config, kafka_tools, offline, runtime};
use std::io::IsTerminal;
use std::path::Path;
use trigger_cad::pacing::Pace;
use trigger_cad::DecodeOptions;
use trigger_core::{CameraRecord, Engine};

/// The offline replay, once the index is built.
struct Replay<'a> {
    engine: Engine,
    decoded: trigger_cad::Decoded,
    opts: &'a offline::ReplayOptions,
}

impl IndexJob for Replay<'_> {
    type Output = Result<offline::Summary>;
    fn run<B: trigger_index::SpatialBackend>(
        mut self,
        index: trigger_index::CameraIndex<B>,
        kind: IndexKind,
    ) -> Self::Output {
        offline::run(&mut self.engine, &index, index.len(), kind.name(), self.decoded, self.opts)
    }
}

pub(super) fn to_kafka(policy_path: &Path, a: ReplayArgs) -> Result<()> {
    let stop = runtime::shutdown_flag()?;
    let settings = kafka_target(a.config.as_deref(), a.to_kafka.as_deref().expect("checked by the caller"))?;
    let profile = a.profile.as_deref().map(|p| config::load_profile(p, policy_path)).transpose()?;
    let opts = DecodeOptions { max_message_bytes: a.max_message_bytes, agency_id: a.agency.clone() };
    let decoded = decode_file(&a.file, a.format, profile.as_ref(), &opts)?;
    // Sending only refused records is what --include-rejects is for (dead-letter tests); otherwise it is a
    // misconfiguration.
    if let (Err(why), false) = (offline::check_decoded(&decoded), a.include_rejects) {
        bail!("{why}\n(nothing sent; --include-rejects sends refused records as their original bytes)");
    }
    let pace = match (a.speed, a.rate) {
        (Some(x), _) => Pace::speed(x).map_err(anyhow::Error::msg)?,
        (_, Some(r)) => Pace::rate(r).map_err(anyhow::Error::msg)?,
        (None, None) => Pace::AsFastAsPossible,
    };
    let times = if a.recorded_times { kafka_tools::Times::Recorded } else { kafka_tools::Times::Rebased };
    let r = kafka_tools::send_cad_log(&settings, decoded, pace, times, a.include_rejects, &stop)?;
    println!("{}", serde_json::to_string_pretty(&r)?);
    eprintln!(
        "sent {} events and {} bad records to {} in {:.1} s",
        r.events, r.bad_records, settings.topics.cfs, r.seconds
    );
    Ok(())
}

pub(super) fn offline(policy_path: &Path, a: ReplayArgs) -> Result<()> {
    let out = a.out.clone().expect("clap requires --out without --to-kafka");
    let mut policy = config::load_policy(policy_path)?;
    let profile = a.profile.as_deref().map(|p| config::load_profile(p, policy_path)).transpose()?;
    if let Some(p) = &profile {
        policy.set_input_mapping(p.type_mapping());
        for e in config::type_text_errors(p, &policy) {
            eprintln!("error: {e}");
        }
    }
    for w in policy.warnings() {
        eprintln!("warning: {w}");
    }
    let opts = DecodeOptions { max_message_bytes: a.max_message_bytes, agency_id: a.agency.clone() };
    let decoded = decode_file(&a.file, a.format, profile.as_ref(), &opts)?;
    let refused_all = offline::check_decoded(&decoded).err();
    let cams: Vec<CameraRecord> = match (&a.cameras, a.generate_cameras) {
        (Some(f), _) => cameras::load(f)?,
        // Nothing was decoded, so there is nothing to place cameras around (the run fails after its outputs).
        (None, Some(_)) if refused_all.is_some() => vec![],
        (None, Some(n)) => {
            let tz = profile.as_ref().map_or(chrono_tz::UTC, |p| p.time_zone);
            cameras::generate(n, a.seed, &cameras::Placement::Around(event_points(&decoded)), tz)?
        }
        (None, None) => {
            bail!("a camera layout is required: --cameras FILE (.jsonl, .csv or .geojson) or --generate-cameras N")
        }
    };
    let pace = a.speed.map(Pace::speed).transpose().map_err(anyhow::Error::msg)?.unwrap_or(Pace::AsFastAsPossible);
    let opts = offline::ReplayOptions {
        out_dir: out.clone(),
        pace,
        wall_clock: !a.no_wall_clock,
        progress: std::io::stderr().is_terminal(),
        input_name: a.file.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        format: a.format.as_str().to_string(),
        profile: profile.as_ref().map(|p| p.name.clone()),
        break_glass: a.break_glass.as_deref().map(offline::load_break_glass).transpose()?.unwrap_or_default(),
    };
    let (summary, errs) =
        with_index(a.index.unwrap_or_default(), cams, Replay { engine: Engine::new(policy), decoded, opts: &opts });
    report_camera_errors(&errs);
    let summary = summary?;
    println!("{}", serde_json::to_string_pretty(&summary)?);
    eprintln!(
        "{} decisions and {} rejects against {} cameras: {} incidents triggered, {} commands -> {}",
        summary.decisions,
        summary.rejects_total,
        summary.cameras,
        summary.triggered_incidents,
        summary.commands.values().sum::<u64>(),
        out.display()
    );
    match refused_all.or_else(|| offline::check_summary(&summary).err()) {
        Some(why) => bail!("{why}\n(outputs written to {}; rejects.jsonl has every record)", out.display()),
        None => Ok(()),
    }
}

fn report_camera_errors(errs: &[trigger_index::IndexError]) {
    for e in errs.iter().take(10) {
        eprintln!("warning: camera not loaded: {e}");
    }
    if errs.len() > 10 {
        eprintln!("warning: {} more cameras not loaded", errs.len() - 10);
    }
}
