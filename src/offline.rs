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
use trigger_cad::pacing::{event_time_order, Pace, Pacer};
use trigger_cad::{Decoded, Rejected, Source};
use trigger_core::{
    pass_on, Action, CameraSource, Category, Decision, DecisionRecord, DecisionSink, Engine, Outcome, Reject,
    RejectReason, Tally,
};

#[derive(Debug)]
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
        eprintln!("warning: {} records: {kind} (e.g. {:?}); see docs/adding-a-city.md", w.count, w.examples);
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
    /// Rows (records) of the input, and those none of whose events was decided, by the reason of the first
    /// refusal: a refusal that takes most rows is a misconfiguration, not a result.
    pub rows: u64,
    pub rows_refused: BTreeMap<&'static str, u64>,
    /// Decisions whose type text corroborated a trigger category (whatever came of them after).
    pub corroborated_decisions: u64,
    /// Every distinct type text a rule maps to a trigger category that can never fire as the CAD writes
    /// it (uncorroborated): its category, the words nothing explains (none: no phrase of the category at
    /// all) and how many decisions it took. What a city asks to have added to the vocabularies.
    pub never_fire: BTreeMap<String, NeverFires>,
    /// Agency -> digest of the classification in force (classification.json holds what each digests).
    pub classification: BTreeMap<String, String>,
}

/// A type text that cannot start a camera (see [`Summary::never_fire`]).
#[derive(Debug, Clone, Default, Serialize)]
pub struct NeverFires {
    pub category: String,
    pub unexplained: String,
    pub decisions: u64,
}

/// The run's silent partial failures, made loud: more than half of the rows refused for one reason; every
/// decision for an agency that is not a partner; no decision corroborated by the CAD's own type text.
pub fn check_summary(s: &Summary) -> std::result::Result<(), String> {
    let mut problems = Vec::new();
    if let Some((reason, n)) = s.rows_refused.iter().max_by_key(|(_, n)| **n) {
        if n * 2 > s.rows {
            problems.push(format!(
                "{n} of {} rows were refused as {reason} (rejects.jsonl has each with its detail): check the \
                 profile (timestamp_format, columns) against the export",
                s.rows
            ));
        }
    }
    let not_partner = s.outcomes.get(Outcome::NotPartner.as_str()).copied().unwrap_or(0);
    if s.decisions > 0 && not_partner == s.decisions {
        problems.push(format!(
            "every one of the {} decisions was not_partner: the events' agency is not an [[agency]] of the policy \
             (the profile's agency_id, or --agency)",
            s.decisions
        ));
    } else if s.decisions > 0 && s.corroborated_decisions == 0 {
        problems.push(format!(
            "no event's type text corroborated a trigger category ({} decisions; outcomes {:?}): nothing could \
             start a camera. If the export has such calls, the profile's type_text does not read the column that \
             names them (docs/adding-a-city.md, \"The vocabularies\")",
            s.decisions, s.outcomes
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
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

/// The replay's decision sink: files. Each decision is a line in decisions.jsonl and a sealed record in
/// audit.pb; commands, notices and refused records go to their own JSON-lines files.
struct FileSink {
    commands: BufWriter<std::fs::File>,
    notices: BufWriter<std::fs::File>,
    rejects: BufWriter<std::fs::File>,
    decisions: BufWriter<std::fs::File>,
    audit: BufWriter<std::fs::File>,
    chain: trigger_audit::Chain,
}

impl FileSink {
    fn create(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Self {
            commands: writer(dir, "commands.jsonl")?,
            notices: writer(dir, "notices.jsonl")?,
            rejects: writer(dir, "rejects.jsonl")?,
            decisions: writer(dir, "decisions.jsonl")?,
            audit: writer(dir, "audit.pb")?,
            chain: trigger_audit::Chain::new(),
        })
    }

    fn record(&mut self, rec: &DecisionRecord) -> Result<()> {
        json_line(&mut self.decisions, rec)?;
        let sealed = self.chain.seal(trigger_audit::activation(rec));
        self.audit.write_all(&prost::Message::encode_length_delimited_to_vec(&sealed))?;
        Ok(())
    }

    /// A record the decoder refused (it never reached the engine).
    fn undecodable(&mut self, r: &Rejected) -> Result<()> {
        self.reject_line(&r.position, r.reason, &r.detail, &r.original)
    }

    fn reject_line(&mut self, position: &str, reason: RejectReason, detail: &str, original: &[u8]) -> Result<()> {
        let line = RejectLine {
            position,
            reason: reason.as_str(),
            detail,
            original_b64: base64::engine::general_purpose::STANDARD.encode(original),
        };
        json_line(&mut self.rejects, &line)
    }

    /// Flush every file; the audit chain's head.
    fn finish(self) -> Result<String> {
        for mut w in [self.commands, self.decisions, self.notices, self.rejects, self.audit] {
            w.flush()?;
        }
        Ok(self.chain.head().to_string())
    }
}

impl DecisionSink<Source> for FileSink {
    type Error = anyhow::Error;

    fn decided(&mut self, _: &Source, d: &Decision) -> Result<()> {
        for c in &d.commands {
            json_line(&mut self.commands, c)?;
        }
        for n in &d.notices {
            json_line(&mut self.notices, n)?;
        }
        self.record(&d.record)
    }

    fn refused(&mut self, source: &Source, r: &Reject) -> Result<()> {
        self.reject_line(&source.position, r.reason, &r.detail, &source.bytes)
    }
}

/// What the summary counts beyond the [`Tally`]: per category, and distinct incidents triggered.
struct Counts {
    tally: Tally,
    by_category: BTreeMap<&'static str, CategoryStats>,
    triggered: BTreeSet<String>,
    decide_us: Vec<f64>,
    corroborated: u64,
    never_fire: BTreeMap<String, NeverFires>,
    /// Per row (source position): whether any of its events was decided, else the first refusal's reason.
    rows: BTreeMap<String, Result<(), RejectReason>>,
}

impl Counts {
    fn new(events: usize) -> Self {
        Self {
            tally: Tally::default(),
            by_category: Category::ALL.iter().map(|c| (c.as_str(), CategoryStats::default())).collect(),
            triggered: BTreeSet::new(),
            decide_us: Vec::with_capacity(events),
            corroborated: 0,
            never_fire: BTreeMap::new(),
            rows: BTreeMap::new(),
        }
    }

    /// What became of a row: decided wins over refused; the first refusal names a refused row.
    fn row(&mut self, position: &str, fate: Result<(), RejectReason>) {
        let e = self.rows.entry(position.to_string()).or_insert(fate);
        if fate.is_ok() {
            *e = Ok(());
        }
    }

    fn rows_refused(&self) -> BTreeMap<&'static str, u64> {
        let mut by = BTreeMap::new();
        for reason in self.rows.values().filter_map(|f| f.err()) {
            *by.entry(reason.as_str()).or_default() += 1;
        }
        by
    }

    /// Per category and distinct incidents (the tally counts the rest, through [`pass_on`]).
    fn by_category(&mut self, d: &Decision) {
        let rec = &d.record;
        if rec.category.is_some() && rec.outcome != Outcome::Uncorroborated {
            self.corroborated += 1;
        }
        if let (Outcome::Uncorroborated, Some(c)) = (rec.outcome, rec.category) {
            let unexplained = rec.rule.as_deref().and_then(|r| r.split_once(";unexplained:")).map(|(_, w)| w);
            let n = self.never_fire.entry(rec.type_text.clone()).or_insert_with(|| NeverFires {
                category: c.as_str().to_string(),
                unexplained: unexplained.unwrap_or_default().to_string(),
                decisions: 0,
            });
            n.decisions += 1;
        }
        if let Some(c) = rec.category {
            let cs = self.by_category.get_mut(c.as_str()).expect("all categories");
            cs.events += 1;
            cs.start_commands += d.commands.iter().filter(|c| c.action == Action::Start).count() as u64;
            if rec.outcome == Outcome::Triggered && self.triggered.insert(rec.incident_ref.clone()) {
                cs.triggered_incidents += 1;
            }
        }
    }

    fn latency(&mut self) -> Latency {
        self.decide_us.sort_by(f64::total_cmp);
        let r = |x: f64| (x * 100.0).round() / 100.0;
        Latency {
            p50: r(crate::stats::percentile(&self.decide_us, 0.50)),
            p99: r(crate::stats::percentile(&self.decide_us, 0.99)),
            max: r(self.decide_us.last().copied().unwrap_or(0.0)),
        }
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
    let mut sink = FileSink::create(&opts.out_dir)?;
    let mut counts = Counts::new(decoded.events.len());
    for r in &decoded.rejects {
        counts.tally.refused(r.reason);
        counts.row(&r.position, Err(r.reason));
        sink.undecodable(r)?;
    }
    let classification = write_classification(engine, &opts.out_dir)?;
    event_time_order(&mut decoded.events);
    decide_all(engine, cams, &decoded.events, opts, &mut sink, &mut counts)?;
    let s = Summary {
        input: opts.input_name.clone(),
        format: opts.format.clone(),
        profile: opts.profile.clone(),
        cameras,
        index: index_name.to_string(),
        events_decoded: decoded.events.len() as u64,
        decisions: counts.tally.decision_count(),
        first_event_at: decoded.events.first().and_then(|e| iso(e.event.emitted_at)),
        last_event_at: decoded.events.last().and_then(|e| iso(e.event.emitted_at)),
        outcomes: counts.tally.decisions.clone(),
        triggered_incidents: counts.triggered.len() as u64,
        commands: BTreeMap::from([("start", counts.tally.start_commands), ("stop", counts.tally.stop_commands)]),
        owner_notices: counts.tally.owner_notices,
        exclusions: counts.tally.exclusions.clone(),
        rejects_total: counts.tally.reject_count(),
        rejects: counts.tally.rejects.clone(),
        decode_warnings: std::mem::take(&mut decoded.warnings),
        audit_records: counts.tally.decision_count(),
        decide_latency_us: opts.wall_clock.then(|| counts.latency()),
        rows: counts.rows.len() as u64,
        rows_refused: counts.rows_refused(),
        corroborated_decisions: counts.corroborated,
        never_fire: std::mem::take(&mut counts.never_fire),
        classification,
        by_category: counts.by_category,
        audit_head: sink.finish()?,
    };
    write_json(&opts.out_dir, "summary.json", &s)?;
    Ok(s)
}

/// classification.json: the classification in force per agency, keyed by the digest every audit record
/// carries; returns agency -> digest.
fn write_classification(engine: &Engine, out_dir: &Path) -> Result<BTreeMap<String, String>> {
    let policy = engine.policy();
    let classification: BTreeMap<String, String> = policy
        .config
        .agencies
        .iter()
        .map(|a| (a.id.clone(), policy.classification_digest(&a.id).to_string()))
        .collect();
    let documents: BTreeMap<&str, serde_json::Value> =
        classification.iter().map(|(id, digest)| (digest.as_str(), policy.classification(id))).collect();
    write_json(out_dir, "classification.json", &documents)?;
    Ok(classification)
}

/// `value` as pretty JSON in `out_dir/name`, with a final newline.
fn write_json(out_dir: &Path, name: &str, value: &impl Serialize) -> Result<()> {
    let mut w = writer(out_dir, name)?;
    serde_json::to_writer_pretty(&mut w, value)?;
    w.write_all(b"\n")?;
    w.flush()?;
    Ok(())
}

/// Decide every event in order (break-glass requests at their own times among them), paced as asked.
fn decide_all(
    engine: &mut Engine,
    cams: &(impl CameraSource + ?Sized),
    events: &[trigger_cad::DecodedEvent],
    opts: &ReplayOptions,
    sink: &mut FileSink,
    counts: &mut Counts,
) -> Result<()> {
    let bar = if opts.progress {
        crate::progress_bar(events.len() as u64, "events")
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut pacer = Pacer::new(opts.pace);
    let started = Instant::now();
    let mut overrides = opts.break_glass.iter().peekable();
    // A break-glass decision is recorded like any other: decisions.jsonl, audit.pb, the outcome counts.
    let break_glass = |engine: &mut Engine, r: &TimedBreakGlass, sink: &mut FileSink, counts: &mut Counts| {
        let d = Decision { record: engine.break_glass(&r.request, r.at), commands: vec![], notices: vec![] };
        counts.tally.decided(&d);
        sink.record(&d.record)
    };
    for (i, de) in events.iter().enumerate() {
        let ev = &de.event;
        while let Some(r) = overrides.next_if(|r| r.at <= ev.emitted_at) {
            break_glass(engine, r, sink, counts)?;
        }
        let wait = pacer.wait_before(ev.emitted_at, started.elapsed());
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
        let t = Instant::now();
        let result = engine.decide(ev, cams, ev.emitted_at);
        counts.decide_us.push(t.elapsed().as_secs_f64() * 1e6);
        if let Ok(d) = &result {
            counts.by_category(d);
        }
        counts.row(&de.source.position, result.as_ref().map(|_| ()).map_err(|r| r.reason));
        pass_on(sink, &mut counts.tally, &de.source, &result)?;
        if i % 256 == 0 {
            bar.set_position(i as u64);
        }
    }
    for r in overrides {
        break_glass(engine, r, sink, counts)?;
    }
    bar.finish_and_clear();
    Ok(())
}
