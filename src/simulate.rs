//! Privacy-impact simulation: replay a long CAD log under several settings of one policy knob and measure
//! what each setting does to the people whose cameras are in the program.

use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use trigger_cad::pacing::event_time_order;
use trigger_cad::Decoded;
use trigger_core::{Action, CameraRecord, Engine, PolicyConfig};
use trigger_index::RTreeIndex;

/// The policy knob a simulation varies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Knob {
    /// Search radius of every category, metres.
    Radius,
    /// At most this many cameras per incident.
    MaxCameras,
    /// Cap of the radius after widening by location uncertainty, metres.
    RadiusCap,
}

impl Knob {
    pub const ALL: [Knob; 3] = [Knob::Radius, Knob::MaxCameras, Knob::RadiusCap];

    /// Its one name: in `--vary`, simulation.json and .csv, and the map files.
    pub fn as_str(self) -> &'static str {
        match self {
            Knob::Radius => "radius",
            Knob::MaxCameras => "max_cameras",
            Knob::RadiusCap => "radius_cap",
        }
    }

    fn apply(self, cfg: &mut PolicyConfig, v: f64) {
        match self {
            Knob::Radius => cfg.categories.values_mut().for_each(|c| c.radius_m = v),
            Knob::MaxCameras => cfg.max_cameras = v as usize,
            Knob::RadiusCap => cfg.radius_cap_m = v,
        }
        if self == Knob::Radius {
            cfg.radius_cap_m = cfg.radius_cap_m.max(v);
        }
    }
}

/// `--vary radius=100,250,500`.
pub fn parse_vary(s: &str) -> Result<(Knob, Vec<f64>)> {
    let names = Knob::ALL.map(Knob::as_str).join(", ");
    let (k, vs) = s.split_once('=').with_context(|| format!("--vary takes KNOB=V1,V2,... ({names})"))?;
    let Some(knob) = Knob::ALL.into_iter().find(|n| n.as_str() == k.trim()) else {
        bail!("--vary: unknown knob {:?} ({names})", k.trim())
    };
    let values = vs
        .split(',')
        .map(|v| v.trim().parse::<f64>().map_err(|_| anyhow::anyhow!("--vary: {v:?} is not a number")))
        .collect::<Result<Vec<_>>>()?;
    if values.is_empty() || values.iter().any(|v| !v.is_finite() || *v <= 0.0) {
        bail!("--vary: values must be positive numbers");
    }
    Ok((knob, values))
}

#[derive(Debug, Serialize)]
pub struct Distribution {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

fn distribution(mut v: Vec<f64>) -> Distribution {
    v.sort_by(f64::total_cmp);
    let q = |p: f64| crate::stats::percentile(&v, p);
    let mean = if v.is_empty() { 0.0 } else { v.iter().sum::<f64>() / v.len() as f64 };
    Distribution { p50: q(0.5), p90: q(0.9), p99: q(0.99), max: q(1.0), mean: (mean * 100.0).round() / 100.0 }
}

#[derive(Debug, Serialize)]
pub struct Setting {
    pub knob: Knob,
    pub value: f64,
    pub incidents_triggered: u64,
    pub recordings_started: u64,
    /// Recordings started per triggered incident.
    pub recordings_per_incident: Distribution,
    /// Activations per camera over the whole log, every camera counted (most are never activated).
    pub activations_per_camera: Distribution,
    /// Cameras activated at least once over the whole log.
    pub share_of_cameras_ever_activated: f64,
    /// Mean over the log's months of the share of cameras activated at least once that month.
    pub share_of_cameras_activated_per_month: f64,
    pub map: String,
}

#[derive(Debug)]
pub struct SimulateOptions<'a> {
    pub policy: &'a Path,
    pub knob: Knob,
    pub values: Vec<f64>,
    pub out: PathBuf,
    pub progress: bool,
}

/// Run every setting over the decoded log against the layout; write simulation.json, simulation.csv and a
/// density map per setting.
pub fn run(decoded: &mut Decoded, cameras: Vec<CameraRecord>, o: &SimulateOptions) -> Result<Vec<Setting>> {
    std::fs::create_dir_all(&o.out).with_context(|| format!("cannot create {}", o.out.display()))?;
    event_time_order(&mut decoded.events);
    let (index, errs) = RTreeIndex::bulk_load(cameras);
    if !errs.is_empty() {
        bail!("{} cameras could not be loaded, the first: {}", errs.len(), errs[0]);
    }
    let total = (decoded.events.len() * o.values.len()) as u64;
    let bar = if o.progress { crate::progress_bar(total, "events") } else { indicatif::ProgressBar::hidden() };
    let months: BTreeSet<String> = decoded
        .events
        .iter()
        .filter_map(|e| chrono::DateTime::from_timestamp_millis(e.event.emitted_at))
        .map(|t| t.format("%Y-%m").to_string())
        .collect();
    let mut settings = Vec::new();
    for &v in &o.values {
        settings.push(one_setting(decoded, &index, &months, o, v, &bar)?);
    }
    bar.finish_and_clear();
    write_outputs(&settings, &o.out)?;
    Ok(settings)
}

/// Replay the log under one value of the knob; its impact, and its density map.
fn one_setting(
    decoded: &Decoded,
    index: &RTreeIndex,
    months: &BTreeSet<String>,
    o: &SimulateOptions,
    v: f64,
    bar: &indicatif::ProgressBar,
) -> Result<Setting> {
    let policy = crate::config::load_policy_with(o.policy, |cfg| o.knob.apply(cfg, v))?;
    let mut engine = Engine::new(policy);
    let mut per_camera: HashMap<String, u64> = HashMap::new();
    let mut per_camera_month: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut per_incident: HashMap<String, u64> = HashMap::new();
    for (i, de) in decoded.events.iter().enumerate() {
        if let Ok(d) = engine.decide(&de.event, index, de.event.emitted_at) {
            for c in d.commands.iter().filter(|c| c.action == Action::Start) {
                *per_camera.entry(c.camera_id.clone()).or_default() += 1;
                *per_incident.entry(c.incident_ref.clone()).or_default() += 1;
                if let Some(t) = chrono::DateTime::from_timestamp_millis(c.issued_at) {
                    per_camera_month.entry(t.format("%Y-%m").to_string()).or_default().insert(c.camera_id.clone());
                }
            }
        }
        if i % 1024 == 0 {
            bar.inc(1024);
        }
    }
    let n = index.len() as f64;
    let map = format!("map-{}-{}.png", o.knob.as_str(), v);
    density_map(index, &per_camera, &o.out.join(&map))?;
    Ok(Setting {
        knob: o.knob,
        value: v,
        incidents_triggered: per_incident.len() as u64,
        recordings_started: per_incident.values().sum(),
        recordings_per_incident: distribution(per_incident.values().map(|&x| x as f64).collect()),
        activations_per_camera: distribution(
            index.iter().map(|c| per_camera.get(&c.camera_id).copied().unwrap_or(0) as f64).collect(),
        ),
        share_of_cameras_ever_activated: round4(per_camera.len() as f64 / n),
        share_of_cameras_activated_per_month: round4(
            months.iter().map(|m| per_camera_month.get(m).map_or(0, |s| s.len()) as f64 / n).sum::<f64>()
                / months.len().max(1) as f64,
        ),
        map,
    })
}

/// simulation.json and simulation.csv.
fn write_outputs(settings: &[Setting], out: &Path) -> Result<()> {
    std::fs::write(out.join("simulation.json"), serde_json::to_string_pretty(&settings)? + "\n")?;
    let mut w = csv::Writer::from_path(out.join("simulation.csv"))?;
    w.write_record([
        "knob",
        "value",
        "incidents_triggered",
        "recordings_started",
        "recordings_per_incident_mean",
        "activations_per_camera_p99",
        "activations_per_camera_max",
        "share_ever_activated",
        "share_activated_per_month",
    ])?;
    for s in settings {
        w.write_record([
            s.knob.as_str().to_string(),
            s.value.to_string(),
            s.incidents_triggered.to_string(),
            s.recordings_started.to_string(),
            s.recordings_per_incident.mean.to_string(),
            s.activations_per_camera.p99.to_string(),
            s.activations_per_camera.max.to_string(),
            s.share_of_cameras_ever_activated.to_string(),
            s.share_of_cameras_activated_per_month.to_string(),
        ])?;
    }
    w.flush()?;
    Ok(())
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// Activations per ~200 m cell over the cameras' extent, as a PNG heat map: grey dots are cameras never
/// activated, white to dark red is activations (square-root scale). No base map: nothing is fetched.
fn density_map(index: &RTreeIndex, per_camera: &HashMap<String, u64>, path: &Path) -> Result<()> {
    const W: usize = 600;
    let (mut lat0, mut lat1, mut lon0, mut lon1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for c in index.iter() {
        (lat0, lat1, lon0, lon1) = (lat0.min(c.lat), lat1.max(c.lat), lon0.min(c.lon), lon1.max(c.lon));
    }
    let kx = (lat0.to_radians().cos()).max(0.1);
    let (wd, hd) = (((lon1 - lon0) * kx).max(1e-6), (lat1 - lat0).max(1e-6));
    let h = ((W as f64 * hd / wd).round() as usize).clamp(50, 1200);
    let (mut heat, mut cams) = (vec![0u64; W * h], vec![false; W * h]);
    for c in index.iter() {
        let x = (((c.lon - lon0) * kx / wd) * (W - 1) as f64).round() as usize;
        let y = (((lat1 - c.lat) / hd) * (h - 1) as f64).round() as usize;
        cams[y * W + x] = true;
        heat[y * W + x] += per_camera.get(&c.camera_id).copied().unwrap_or(0);
    }
    // A 5x5 box blur so density reads as areas, not single pixels.
    let mut blurred = vec![0f64; W * h];
    for y in 0..h {
        for x in 0..W {
            let mut s = 0u64;
            for dy in y.saturating_sub(2)..(y + 3).min(h) {
                for dx in x.saturating_sub(2)..(x + 3).min(W) {
                    s += heat[dy * W + dx];
                }
            }
            blurred[y * W + x] = s as f64;
        }
    }
    let max = blurred.iter().copied().fold(0.0, f64::max).max(1.0).sqrt();
    let mut rgb = Vec::with_capacity(W * h * 3);
    for i in 0..W * h {
        let t = blurred[i].sqrt() / max;
        let px = if t > 0.0 {
            [255, (235.0 * (1.0 - t)) as u8 + 10, (235.0 * (1.0 - t)) as u8 + 10]
        } else if cams[i] {
            [200, 200, 200]
        } else {
            [255, 255, 255]
        };
        let px = if t > 0.5 { [(255.0 * (1.5 - t)) as u8, px[1] / 2, px[2] / 2] } else { px };
        rgb.extend_from_slice(&px);
    }
    let file = std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), W as u32, h as u32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.write_header()?.write_image_data(&rgb)?;
    Ok(())
}
