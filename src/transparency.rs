//! The public transparency report, from the audit trail alone: per agency x category x month, incidents that
//! triggered, cameras activated (total, median and max per incident) and refusals by reason; activations per
//! coarse H3 cell; per category, the distinct CAD type texts that started cameras (what each category stood
//! for) and the classifications in force (their digests). Counts only: no camera, owner or incident identifier
//! leaves this module.

use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::Path;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Row {
    pub agency: String,
    /// Trigger category; empty for calls that have none (blocked or non-trigger types).
    pub category: String,
    /// YYYY-MM (UTC) of the decision; an incident counts in the month it first triggered.
    pub month: String,
    pub incidents_triggered: u64,
    pub cameras_activated: u64,
    pub cameras_per_incident_median: f64,
    pub cameras_per_incident_max: u64,
    pub refused_blocked_type: u64,
    /// A rule mapped the call to the category but the CAD's type text did not corroborate it.
    pub refused_uncorroborated: u64,
    /// Refused by the backlog guard (decided more than `max_lag_s` after the CAD emitted it).
    pub refused_stale: u64,
    /// Emitted after the category's incident window.
    pub refused_outside_incident_window: u64,
    pub refused_outside_jurisdiction: u64,
    /// Scope-widening overrides granted, and refused (missing or invalid authorisation, expired, too wide).
    pub break_glass_uses: u64,
    pub break_glass_refused: u64,
}

#[derive(Debug, Serialize)]
pub struct Area {
    pub h3_cell: String,
    /// Incidents that triggered in the cell; None when fewer than the report's minimum count.
    pub incidents_triggered: Option<u64>,
}

/// One CAD type text that started cameras under a category: what the category stood for.
#[derive(Debug, Clone, Serialize)]
pub struct TypeText {
    pub agency: String,
    pub category: String,
    pub type_text: String,
    /// Decisions with this text that started at least one camera.
    pub decisions: u64,
    pub cameras_activated: u64,
}

/// A classification in force over the trail (`dispatch-trigger classification` prints what it digests).
#[derive(Debug, Clone, Serialize)]
pub struct ClassificationUse {
    pub agency: String,
    pub classification: String,
    pub records: u64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub audit_records: usize,
    /// Head hash of the verified audit trail the report was built from.
    pub audit_head: String,
    pub h3_resolution: u8,
    /// Cells with fewer triggered incidents than this are not given a count.
    pub min_count: u64,
    pub rows: Vec<Row>,
    pub areas: Vec<Area>,
    /// Per agency and category, every distinct type text that started cameras, commonest first.
    pub type_texts: Vec<TypeText>,
    pub classifications: Vec<ClassificationUse>,
}

/// (agency, category, month): one row of the report.
type RowKey = (String, String, String);

fn month(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map(|t| t.format("%Y-%m").to_string()).unwrap_or_default()
}

/// The area of a decision at the report's resolution (coarser cells as they are).
fn coarse_cell(area_h3: &str, res: h3o::Resolution) -> Option<String> {
    let c = area_h3.parse::<h3o::CellIndex>().ok()?;
    Some(if c.resolution() > res { c.parent(res).unwrap_or(c) } else { c }.to_string())
}

/// The type texts that started cameras, per agency and category, most decisions first.
fn type_texts(texts: BTreeMap<(String, String, String), (u64, u64)>) -> Vec<TypeText> {
    let mut out: Vec<TypeText> = texts
        .into_iter()
        .map(|((agency, category, type_text), (decisions, cameras_activated))| TypeText {
            agency,
            category,
            type_text,
            decisions,
            cameras_activated,
        })
        .collect();
    out.sort_by(|a, b| (&a.agency, &a.category, b.decisions).cmp(&(&b.agency, &b.category, a.decisions)));
    out
}

impl Row {
    /// A refusal or an override, by the decision's outcome.
    fn count_outcome(&mut self, outcome: &str) {
        match outcome {
            "blocked_type" => self.refused_blocked_type += 1,
            "uncorroborated" => self.refused_uncorroborated += 1,
            "refused_stale" => self.refused_stale += 1,
            "outside_incident_window" => self.refused_outside_incident_window += 1,
            "outside_jurisdiction" => self.refused_outside_jurisdiction += 1,
            "break_glass_granted" => self.break_glass_uses += 1,
            "break_glass_refused" => self.break_glass_refused += 1,
            _ => {}
        }
    }
}

/// Build the report from a verified audit trail.
pub fn build(audit: &Path, resolution: u8, min_count: u64) -> Result<Report> {
    let res =
        h3o::Resolution::try_from(resolution).map_err(|_| anyhow::anyhow!("resolution {resolution} is not 0..=15"))?;
    let (records, head) = crate::report::read_verified_audit(audit)?;
    let mut rows: BTreeMap<RowKey, Row> = BTreeMap::new();
    // incident_ref -> (row of its first trigger, STARTs over its life, its coarse cell)
    let mut incidents: HashMap<&str, (RowKey, u64, Option<String>)> = HashMap::new();
    let mut texts: BTreeMap<(String, String, String), (u64, u64)> = BTreeMap::new();
    let mut classifications: BTreeMap<(String, String), u64> = BTreeMap::new();
    for r in &records {
        *classifications.entry((r.agency_id.clone(), r.classification.clone())).or_default() += 1;
        let key = (r.agency_id.clone(), r.category.clone(), month(r.decided_at_ms));
        let row = rows.entry(key.clone()).or_insert_with(|| Row {
            agency: key.0.clone(),
            category: key.1.clone(),
            month: key.2.clone(),
            ..Row::default()
        });
        row.count_outcome(&r.outcome);
        // The count, not the per-camera detail: it outlives the detail's retention.
        let starts = r.cameras_started as u64;
        if starts > 0 {
            let t = texts.entry((r.agency_id.clone(), r.category.clone(), r.type_text.clone())).or_default();
            (t.0, t.1) = (t.0 + 1, t.1 + starts);
            let e = incidents.entry(&r.incident_ref).or_insert((key, 0, coarse_cell(&r.area_h3, res)));
            e.1 += starts;
        }
    }
    let per_cell = fill_incident_counts(&mut rows, incidents);
    let areas = per_cell
        .into_iter()
        .map(|(h3_cell, n)| Area { h3_cell, incidents_triggered: (n >= min_count).then_some(n) })
        .collect();
    Ok(Report {
        type_texts: type_texts(texts),
        classifications: classifications
            .into_iter()
            .map(|((agency, classification), records)| ClassificationUse { agency, classification, records })
            .collect(),
        audit_records: records.len(),
        audit_head: head,
        h3_resolution: resolution,
        min_count,
        rows: rows.into_values().collect(),
        areas,
    })
}

/// Per row: incidents triggered, cameras activated, median and max per incident; returns incidents per cell.
fn fill_incident_counts(
    rows: &mut BTreeMap<RowKey, Row>,
    incidents: HashMap<&str, (RowKey, u64, Option<String>)>,
) -> BTreeMap<String, u64> {
    let mut per_row: BTreeMap<RowKey, Vec<u64>> = BTreeMap::new();
    let mut per_cell: BTreeMap<String, u64> = BTreeMap::new();
    for (key, starts, cell) in incidents.into_values() {
        per_row.entry(key).or_default().push(starts);
        if let Some(c) = cell {
            *per_cell.entry(c).or_default() += 1;
        }
    }
    for (key, mut v) in per_row {
        v.sort_unstable();
        let row = rows.get_mut(&key).expect("every incident's row exists");
        row.incidents_triggered = v.len() as u64;
        row.cameras_activated = v.iter().sum();
        row.cameras_per_incident_max = *v.last().unwrap_or(&0);
        row.cameras_per_incident_median = match v.len() {
            0 => 0.0,
            n if n % 2 == 1 => v[n / 2] as f64,
            n => (v[n / 2 - 1] + v[n / 2]) as f64 / 2.0,
        };
    }
    per_cell
}

/// A horizontal bar chart as inline SVG (two or three bar charts do not justify a plotting library and the
/// font stack it needs to measure labels).
fn bar_chart(title: &str, bars: &[(String, u64)]) -> String {
    let (w, row_h, label_w) = (720.0, 22.0, 170.0);
    let max = bars.iter().map(|b| b.1).max().unwrap_or(0).max(1) as f64;
    let h = 40.0 + row_h * bars.len() as f64;
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" aria-label="{title}"><text x="0" y="18" font-size="15" font-weight="bold">{title}</text>"#
    );
    for (i, (label, v)) in bars.iter().enumerate() {
        let y = 30.0 + row_h * i as f64;
        let bw = (w - label_w - 60.0) * (*v as f64) / max;
        let _ = write!(
            s,
            r##"<text x="{lx}" y="{ty}" font-size="12" text-anchor="end">{label}</text><rect x="{label_w}" y="{y}" width="{bw:.1}" height="{bh}" fill="#3b6ea5"/><text x="{vx:.1}" y="{ty}" font-size="12">{v}</text>"##,
            lx = label_w - 6.0,
            ty = y + 14.0,
            bh = row_h - 6.0,
            vx = label_w + bw + 4.0,
        );
    }
    s.push_str("</svg>");
    s
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Write transparency.csv, transparency.json and a self-contained transparency.html into `dir`.
pub fn write(report: &Report, dir: &Path) -> Result<()> {
    if report.rows.is_empty() {
        bail!("the audit trail has no records");
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut w = csv::Writer::from_path(dir.join("transparency.csv"))?;
    for r in &report.rows {
        w.serialize(r)?;
    }
    w.flush()?;
    let mut w = csv::Writer::from_path(dir.join("transparency-type-texts.csv"))?;
    for t in &report.type_texts {
        w.serialize(t)?;
    }
    w.flush()?;
    std::fs::write(dir.join("transparency.json"), serde_json::to_string_pretty(report)? + "\n")?;

    let mut html = html_head(report);
    html.push_str(&charts(report));
    html.push_str(&tables(report));
    std::fs::write(dir.join("transparency.html"), html)?;
    Ok(())
}

/// The page's head and introduction: what it is built from, and what it leaves out.
fn html_head(report: &Report) -> String {
    let agencies: BTreeSet<&str> = report.rows.iter().map(|r| r.agency.as_str()).collect();
    let mut html = String::from(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>dispatch-trigger transparency report</title>
<style>body{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}th{background:#eee}td:first-child,td:nth-child(2),td:nth-child(3){text-align:left}.note{color:#555;font-size:13px}</style></head><body>"#,
    );
    let _ = write!(
        html,
        "<h1>Camera activations for 911 calls: transparency report</h1><p class=\"note\">Built from the \
         tamper-evident audit trail only ({} records, chain verified, head <code>{}</code>). Agencies: {}. Counts \
         only: no camera, owner or incident identifiers; places only as H3 cells at resolution {}, and cells with \
         fewer than {} triggered incidents are not counted.</p>",
        report.audit_records,
        &report.audit_head[..report.audit_head.len().min(16)],
        esc(&agencies.into_iter().collect::<Vec<_>>().join(", ")),
        report.h3_resolution,
        report.min_count
    );
    html
}

/// The four bar charts (inline SVG).
fn charts(report: &Report) -> String {
    let sum_by = |f: &dyn Fn(&Row) -> (String, u64)| -> Vec<(String, u64)> {
        let mut m: BTreeMap<String, u64> = BTreeMap::new();
        for r in &report.rows {
            let (k, v) = f(r);
            *m.entry(k).or_default() += v;
        }
        m.into_iter().filter(|(_, v)| *v > 0).collect()
    };
    let by_month = sum_by(&|r| (r.month.clone(), r.incidents_triggered));
    let cams_by_month = sum_by(&|r| (r.month.clone(), r.cameras_activated));
    let by_category = sum_by(&|r| (r.category.clone(), r.incidents_triggered));
    let refusals: Vec<(String, u64)> = [
        ("blocked type", report.rows.iter().map(|r| r.refused_blocked_type).sum::<u64>()),
        ("not corroborated by the CAD's text", report.rows.iter().map(|r| r.refused_uncorroborated).sum()),
        ("stale (backlog over max_lag_s)", report.rows.iter().map(|r| r.refused_stale).sum()),
        ("outside the incident window", report.rows.iter().map(|r| r.refused_outside_incident_window).sum()),
        ("outside jurisdiction", report.rows.iter().map(|r| r.refused_outside_jurisdiction).sum()),
        ("break-glass granted", report.rows.iter().map(|r| r.break_glass_uses).sum()),
        ("break-glass refused", report.rows.iter().map(|r| r.break_glass_refused).sum()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();

    let mut html = String::new();
    for chart in [
        bar_chart("Incidents that triggered cameras, by month", &by_month),
        bar_chart("Cameras activated, by month", &cams_by_month),
        bar_chart("Incidents that triggered, by category", &by_category),
        bar_chart("Refusals and overrides", &refusals),
    ] {
        let _ = write!(html, "<p>{chart}</p>");
    }
    html
}

/// The table by agency, category and month (rows with anything to say).
fn rows_table(report: &Report) -> String {
    let mut html = String::new();
    html.push_str("<h2>By agency, category and month</h2><table><tr><th>agency</th><th>category</th><th>month</th><th>incidents triggered</th><th>cameras activated</th><th>median per incident</th><th>max per incident</th><th>blocked types</th><th>not corroborated</th><th>stale (backlog)</th><th>outside incident window</th><th>outside jurisdiction</th><th>break-glass granted</th><th>break-glass refused</th></tr>");
    for r in report.rows.iter().filter(|r| {
        r.incidents_triggered
            + r.refused_blocked_type
            + r.refused_uncorroborated
            + r.refused_stale
            + r.refused_outside_incident_window
            + r.refused_outside_jurisdiction
            + r.break_glass_uses
            + r.break_glass_refused
            > 0
    }) {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&r.agency),
            esc(if r.category.is_empty() { "(none)" } else { &r.category }),
            r.month,
            r.incidents_triggered,
            r.cameras_activated,
            r.cameras_per_incident_median,
            r.cameras_per_incident_max,
            r.refused_blocked_type,
            r.refused_uncorroborated,
            r.refused_stale,
            r.refused_outside_incident_window,
            r.refused_outside_jurisdiction,
            r.break_glass_uses,
            r.break_glass_refused
        );
    }
    html
}

/// The tables: by agency x category x month, and by area.
fn tables(report: &Report) -> String {
    let mut html = rows_table(report);
    html.push_str(
        "</table><h2>What each category stood for</h2><p class=\"note\">Every call-type text, as the CAD \
        sent it, under which cameras were started.</p><table><tr><th>agency</th><th>category</th><th>CAD type text</th>\
        <th>decisions that started cameras</th><th>cameras activated</th></tr>",
    );
    for t in &report.type_texts {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&t.agency),
            esc(&t.category),
            esc(&t.type_text),
            t.decisions,
            t.cameras_activated
        );
    }
    html.push_str("</table><h2>Classifications in force</h2><table><tr><th>agency</th><th>classification</th><th>audit records</th></tr>");
    for c in &report.classifications {
        let _ = write!(
            html,
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
            esc(&c.agency),
            esc(&c.classification),
            c.records
        );
    }
    html.push_str("</table><h2>By area (H3 cell)</h2><table><tr><th>H3 cell</th><th>incidents triggered</th></tr>");
    for a in &report.areas {
        let n = a.incidents_triggered.map_or(format!("fewer than {}", report.min_count), |n| n.to_string());
        let _ = write!(html, "<tr><td>{}</td><td>{n}</td></tr>", a.h3_cell);
    }
    html.push_str("</table></body></html>\n");
    html
}
