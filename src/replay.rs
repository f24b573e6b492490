//! Offline replay: decode a CAD log, decide every event in event-time order against a camera layout, and
//! write commands, decisions, owner notices, rejects and a summary.
//!
//! The engine's clock is event time: each event is decided "as it left the CAD" (`now = emitted_at`).
//! Outputs are byte-identical for the same input, layout and policy, except `decide_latency_us` in
//! summary.json, which is measured on the wall clock (`--no-wall-clock` leaves it null).

use anyhow::{Context, Result};
use base64::Engine as _;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;
use trigger_cad::replay::{event_time_order, Pace, Pacer};
use trigger_cad::{Decoded, Rejected};
use trigger_core::{Action, CameraSource, Category, Engine, Outcome};

pub struct ReplayOptions {
    pub out_dir: PathBuf,
    pub pace: Pace,
    pub wall_clock: bool,
    pub progress: bool,
    pub input_name: String,
    pub format: String,
    pub profile: Option<String>,
    /// Break-glass requests, each decided at its own time (`at`), among the events.
    pub break_glass: Vec<TimedBreakGlass>,
}

/// A break-glass request as it stands in a replay's `--break-glass` file (one JSON object per line).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct TimedBreakGlass {
    /// When the request reaches the engine, Unix ms.
    pub at: i64,
    #[serde(flatten)]
    pub request: trigger_core::BreakGlassRequest,
}

/// Read a `--break-glass` file; every bad line is reported at once.
pub fn load_break_glass(path: &Path) -> Result<Vec<TimedBreakGlass>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = Vec::new();
    let mut errs = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        match serde_json::from_str::<TimedBreakGlass>(line) {
            Ok(r) => out.push(r),
            Err(e) => errs.push(format!("line {}: {e}", i + 1)),
        }
    }
    if !errs.is_empty() {
        anyhow::bail!("{}: {}", path.display(), errs.join("; "));
    }
    out.sort_by_key(|r| r.at);
    Ok(out)
}

/// Refused records of a decoded input, commonest reason first: (reason, count, where the first was, its detail).
fn top_rejects(rejects: &[Rejected]) -> Vec<String> {
    let mut by: BTreeMap<&str, (usize, &Rejected)> = BTreeMap::new();
    for r in rejects {
        by.entry(r.reason.as_str()).or_insert((0, r)).0 += 1;
    }
    let mut top: Vec<_> = by.into_iter().collect();
    top.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then(a.0.cmp(b.0)));
    top.iter()
        .take(3)
        .map(|(reason, (n, r))| format!("{n} x {reason} (first at {}: {})", r.position, r.detail))
        .collect()
}

/// What a decoded input says before it is decided: fallbacks (priorities read as 0), and a warning when more
/// than half of the records were refused. Returns `Err` with the commonest reasons when every record was: such
/// a run is a misconfiguration (a wrong `timestamp_format`, the wrong profile), not a result. The caller still
/// writes its outputs (rejects.jsonl says what each record was) before failing.
pub fn check_decoded(d: &Decoded) -> std::result::Result<(), String> {
    let (bad, total) = (d.rejects.len(), d.rejects.len() + d.events.len());
    for (kind, w) in &d.warnings {
        eprintln!("warning: {} records: {kind} (e.g. {:?}); see README, \"Adding a city\"", w.count, w.examples);
    }
    if bad == 0 {
        return Ok(());
    }
    let top = top_rejects(&d.rejects).join("\n  ");
    if d.events.is_empty() {
        return Err(format!("every record was refused ({bad} of {total}):\n  {top}"));
    }
    if bad * 2 > total {
        eprintln!("warning: {bad} of {total} records were refused:\n  {top}");
    }
    Ok(())
}

#[derive(Debug, Default, Serialize)]
pub struct CategoryStats {
    pub events: u64,
    pub triggered_incidents: u64,
    pub start_commands: u64,
}

#[derive(Debug, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub input: String,
    pub format: String,
    pub profile: Option<String>,
    pub cameras: usize,
    pub index: String,
    /// Records read: decoded events plus rejects.
    pub events_decoded: u64,
    pub decisions: u64,
    pub first_event_at: Option<String>,
    pub last_event_at: Option<String>,
    pub outcomes: BTreeMap<&'static str, u64>,
    pub by_category: BTreeMap<&'static str, CategoryStats>,
    pub triggered_incidents: u64,
    pub commands: BTreeMap<&'static str, u64>,
    pub owner_notices: u64,
    pub exclusions: BTreeMap<&'static str, u64>,
    pub rejects_total: u64,
    pub rejects: BTreeMap<&'static str, u64>,
    /// Values read with a documented fallback instead of refused (`unreadable_priority`: read as 0).
    pub decode_warnings: BTreeMap<&'static str, trigger_cad::Warned>,
    /// Records in audit.pb (one per decision) and the hash of the last: publish it, and anyone can check
    /// later with `audit verify` that the file was not rewritten.
    pub audit_records: u64,
    pub audit_head: String,
    /// Wall-clock time of `Engine::decide` per event, microseconds (null with --no-wall-clock).
    pub decide_latency_us: Option<Latency>,
}

#[derive(Serialize)]
struct RejectLine<'a> {
    position: &'a str,
    reason: &'a str,
    detail: &'a str,
    original_b64: String,
}

fn writer(dir: &Path, name: &str) -> Result<BufWriter<std::fs::File>> {
    let p = dir.join(name);
    Ok(BufWriter::new(std::fs::File::create(&p).with_context(|| format!("cannot create {}", p.display()))?))
}

fn json_line(w: &mut impl Write, v: &impl Serialize) -> Result<()> {
    serde_json::to_writer(&mut *w, v)?;
    w.write_all(b"\n")?;
    Ok(())
}

fn iso(ms: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(ms).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Where each decision goes: its line in decisions.jsonl and its sealed record in audit.pb.
struct Trail {
    decisions: BufWriter<std::fs::File>,
    audit: BufWriter<std::fs::File>,
    chain: trigger_audit::Chain,
}

impl Trail {
    fn write(&mut self, rec: &trigger_core::DecisionRecord) -> Result<()> {
        json_line(&mut self.decisions, rec)?;
        let sealed = self.chain.seal(trigger_audit::activation(rec));
        self.audit.write_all(&prost::Message::encode_length_delimited_to_vec(&sealed))?;
        Ok(())
    }
}

/// Run a replay. `index_name` is reported in the summary.
pub fn run(
    engine: &mut Engine,
    cams: &(impl CameraSource + ?Sized),
    cameras: usize,
    index_name: &str,
    mut decoded: Decoded,
    opts: &ReplayOptions,
) -> Result<Summary> {
    std::fs::create_dir_all(&opts.out_dir).with_context(|| format!("cannot create {}", opts.out_dir.display()))?;
    let mut commands = writer(&opts.out_dir, "commands.jsonl")?;
    let mut trail = Trail {
        decisions: writer(&opts.out_dir, "decisions.jsonl")?,
        audit: writer(&opts.out_dir, "audit.pb")?,
        chain: trigger_audit::Chain::new(),
    };
    let mut notices = writer(&opts.out_dir, "notices.jsonl")?;
    let mut rejects = writer(&opts.out_dir, "rejects.jsonl")?;

    let mut s = Summary {
        input: opts.input_name.clone(),
        format: opts.format.clone(),
        profile: opts.profile.clone(),
        cameras,
        index: index_name.to_string(),
        events_decoded: decoded.events.len() as u64,
        decisions: 0,
        first_event_at: None,
        last_event_at: None,
        outcomes: BTreeMap::new(),
        by_category: Category::ALL.iter().map(|c| (c.as_str(), CategoryStats::default())).collect(),
        triggered_incidents: 0,
        commands: BTreeMap::from([("start", 0), ("stop", 0)]),
        owner_notices: 0,
        exclusions: BTreeMap::new(),
        rejects_total: 0,
        rejects: BTreeMap::new(),
        decode_warnings: std::mem::take(&mut decoded.warnings),
        audit_records: 0,
        audit_head: String::new(),
        decide_latency_us: None,
    };
    let mut reject = |r: &Rejected, s: &mut Summary| -> Result<()> {
        s.rejects_total += 1;
        *s.rejects.entry(r.reason.as_str()).or_default() += 1;
        json_line(
            &mut rejects,
            &RejectLine {
                position: &r.position,
                reason: r.reason.as_str(),
                detail: &r.detail,
                original_b64: base64::engine::general_purpose::STANDARD.encode(&r.original),
            },
        )
    };
    for r in &decoded.rejects {
        reject(r, &mut s)?;
    }
    event_time_order(&mut decoded.events);
    s.first_event_at = decoded.events.first().and_then(|e| iso(e.event.emitted_at));
    s.last_event_at = decoded.events.last().and_then(|e| iso(e.event.emitted_at));

    let bar = if opts.progress {
        crate::progress_bar(decoded.events.len() as u64, "events")
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut pacer = Pacer::new(opts.pace);
    let started = Instant::now();
    let mut lat_us: Vec<f64> = Vec::with_capacity(decoded.events.len());
    let mut triggered: BTreeSet<String> = BTreeSet::new();
    let mut overrides = opts.break_glass.iter().peekable();
    // A break-glass decision is recorded like any other: decisions.jsonl, audit.pb, the outcome counts.
    let decide_break_glass = |engine: &mut Engine, trail: &mut Trail, r: &TimedBreakGlass, s: &mut Summary| {
        let rec = engine.break_glass(&r.request, r.at);
        s.decisions += 1;
        *s.outcomes.entry(rec.outcome.as_str()).or_default() += 1;
        trail.write(&rec)
    };
    for (i, de) in decoded.events.iter().enumerate() {
        let ev = &de.event;
        while let Some(r) = overrides.next_if(|r| r.at <= ev.emitted_at) {
            decide_break_glass(engine, &mut trail, r, &mut s)?;
        }
        let wait = pacer.wait_before(ev.emitted_at, started.elapsed());
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
        let t = Instant::now();
        let result = engine.decide(ev, cams, ev.emitted_at);
        lat_us.push(t.elapsed().as_secs_f64() * 1e6);
        match result {
            Err(r) => reject(&Rejected::new(&de.source, r), &mut s)?,
            Ok(d) => {
                s.decisions += 1;
                let rec = &d.record;
                *s.outcomes.entry(rec.outcome.as_str()).or_default() += 1;
                if let Some(c) = rec.category {
                    let cs = s.by_category.get_mut(c.as_str()).expect("all categories");
                    cs.events += 1;
                    cs.start_commands += d.commands.iter().filter(|c| c.action == Action::Start).count() as u64;
                    if rec.outcome == Outcome::Triggered && triggered.insert(rec.incident_ref.clone()) {
                        cs.triggered_incidents += 1;
                    }
                }
                for x in &rec.excluded {
                    *s.exclusions.entry(x.reason.as_str()).or_default() += 1;
                }
                for c in &d.commands {
                    *s.commands.entry(c.action.as_str()).or_default() += 1;
                    json_line(&mut commands, c)?;
                }
                for n in &d.notices {
                    json_line(&mut notices, n)?;
                }
                s.owner_notices += d.notices.len() as u64;
                trail.write(rec)?;
            }
        }
        if i % 256 == 0 {
            bar.set_position(i as u64);
        }
    }
    for r in overrides {
        decide_break_glass(engine, &mut trail, r, &mut s)?;
    }
    bar.finish_and_clear();
    s.triggered_incidents = triggered.len() as u64;
    if opts.wall_clock {
        lat_us.sort_by(f64::total_cmp);
        let r = |x: f64| (x * 100.0).round() / 100.0;
        s.decide_latency_us = Some(Latency {
            p50: r(percentile(&lat_us, 0.50)),
            p99: r(percentile(&lat_us, 0.99)),
            max: r(lat_us.last().copied().unwrap_or(0.0)),
        });
    }
    s.audit_records = s.decisions;
    s.audit_head = trail.chain.head().to_string();
    for mut w in [commands, trail.decisions, notices, rejects, trail.audit] {
        w.flush()?;
    }
    let mut sw = writer(&opts.out_dir, "summary.json")?;
    serde_json::to_writer_pretty(&mut sw, &s)?;
    sw.write_all(b"\n")?;
    sw.flush()?;
    Ok(s)
}
