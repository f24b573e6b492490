//! `cameras generate` and `cameras publish`.

use super::{decode_file, event_points};
use crate::cli::{GenerateArgs, PublishArgs};
use anyhow::{bail, Result};
use dispatch_trigger::{cameras, config, kafka_tools};
use std::path::Path;
use trigger_cad::DecodeOptions;

pub(super) fn generate(policy: &Path, a: GenerateArgs) -> Result<()> {
    let profile = a.profile.as_deref().map(|p| config::load_profile(p, policy)).transpose()?;
    let tz = a.time_zone.or(profile.as_ref().map(|p| p.time_zone)).unwrap_or(chrono_tz::UTC);
    let placement = match (&a.placement.around, &a.placement.bbox) {
        (Some(f), _) => {
            let d = decode_file(f, a.placement.around_format, profile.as_ref(), &DecodeOptions::default())?;
            cameras::Placement::Around(event_points(&d))
        }
        (None, Some(b)) => match b[..] {
            [min_lat, min_lon, max_lat, max_lon] => cameras::Placement::BBox([min_lat, min_lon, max_lat, max_lon]),
            _ => bail!("--bbox takes four numbers, MIN_LAT,MIN_LON,MAX_LAT,MAX_LON (got {})", b.len()),
        },
        (None, None) => bail!("say where: --around CAD_FILE --profile P, or --bbox MIN_LAT,MIN_LON,MAX_LAT,MAX_LON"),
    };
    let cams = cameras::generate(a.count, a.seed, &placement, tz)?;
    cameras::save(&a.out, &cams)?;
    println!("wrote {} cameras to {}", cams.len(), a.out.display());
    Ok(())
}

pub(super) fn publish(a: PublishArgs) -> Result<()> {
    // The file is checked whole before any broker is contacted.
    let cams = cameras::load(&a.cameras)?;
    let settings = a.target.settings()?;
    let stop = dispatch_trigger::runtime::shutdown_flag()?;
    let n = kafka_tools::publish_cameras(&settings, &cams, &stop)?;
    println!("published {n} cameras to {} at {}", settings.topics.registry, settings.bootstrap_servers);
    Ok(())
}
