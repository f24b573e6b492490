//! Policy: partner agencies and their jurisdictions, per-category radius and recording, the latency budget.
//! Parsed from TOML text handed in by the caller (this crate reads no files).

use crate::classify::{Classification, Classifier, CodeTable};
use crate::types::{CallForService, Category, LatLon};
use geo::{BoundingRect, Intersects};
use serde::Deserialize;
use sha2::Digest as _;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategoryPolicy {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Search radius around the incident, metres, before widening by location uncertainty.
    pub radius_m: f64,
    /// How long a STARTed camera records.
    pub record_seconds: u32,
    /// Whether this category may ask for a live stream (still only where the owner allowed it).
    #[serde(default)]
    pub live_stream: bool,
    /// Higher goes first under backlog.
    #[serde(default)]
    pub priority: u8,
    /// Incident window, seconds: a revision emitted more than this after the call was received starts
    /// nothing (`outside_incident_window`). Default per category: [`default_window_s`].
    #[serde(default)]
    pub window_s: Option<u64>,
}

/// The default incident window of a category, seconds. Cameras record what happens *next*; past these
/// times a recording is unlikely to show the people involved, while a call reclassified at dispatch (minutes
/// after it came in) still gets its cameras. Property crime and shots fired: 15 min (a burglar or shooter is
/// gone within minutes; most reclassifications happen at dispatch). Shooting and stabbing: 30 min (scenes with
/// injured people and a suspect nearby stay active longer). Hostage: 30 min (an ongoing situation, but a
/// longer window would keep starting cameras around a standoff long after the call; an override is the tool
/// for that). Alarm: 15 min.
pub fn default_window_s(c: Category) -> u64 {
    match c {
        Category::Shooting | Category::Stabbing | Category::Hostage => 1800,
        Category::Burglary | Category::VehicleBreakIn | Category::Robbery | Category::ShotsFired | Category::Alarm => {
            900
        }
    }
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgencyConfig {
    pub id: String,
    #[serde(default)]
    pub name: String,
    /// Code tables consulted for this agency, in order (by table `name`). Empty = the policy's defaults.
    #[serde(default)]
    pub code_tables: Vec<String>,
    /// Path of a GeoJSON file (Polygon / MultiPolygon, Feature or FeatureCollection), relative to the
    /// policy file. Resolved and read by the caller.
    pub jurisdiction: String,
}

/// The policy file (`config/policy.toml`). Every field but `agency` and `categories` has a default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// The backlog guard: a revision that reaches the engine more than this after it left the CAD
    /// (now - emitted_at) starts nothing and is audited as `refused_stale`.
    #[serde(default = "d_max_lag")]
    pub max_lag_s: u64,
    /// Replaced by `max_lag_s` and `categories.*.window_s`; set, it is an error that says so.
    #[serde(default, rename = "max_age_s")]
    pub removed_max_age_s: Option<u64>,
    /// Timestamps further ahead of the clock than this are rejected.
    #[serde(default = "d_skew")]
    pub max_future_skew_s: u64,
    /// Incident state is forgotten this long after its last revision.
    #[serde(default = "d_ttl")]
    pub state_ttl_s: u64,
    /// Most cameras commanded per incident (nearest first).
    #[serde(default = "d_k")]
    pub max_cameras: usize,
    /// Widening by location uncertainty never takes the radius past this.
    #[serde(default = "d_cap")]
    pub radius_cap_m: f64,
    /// A command not received by the camera within this many seconds is void.
    #[serde(default = "d_cmd_ttl")]
    pub command_ttl_s: u64,
    /// H3 resolution of the coarse area in audit records and owner notices (7 ~ 5 km²).
    #[serde(default = "d_res")]
    pub area_resolution: u8,
    /// Key for the opaque incident reference (HMAC-SHA-256 of agency + incident id). Set it per deployment.
    #[serde(default = "d_key")]
    pub incident_ref_key: crate::Secret,
    /// Text in every owner notice.
    #[serde(default = "d_stop")]
    pub how_to_stop: String,
    #[serde(default)]
    pub default_code_tables: Vec<String>,
    pub categories: BTreeMap<Category, CategoryPolicy>,
    #[serde(rename = "agency")]
    pub agencies: Vec<AgencyConfig>,
    /// Keys that may authorise a break-glass override (both an agency and a supervisor key must sign).
    #[serde(default, rename = "break_glass_key")]
    pub break_glass_keys: Vec<crate::breakglass::BreakGlassKey>,
    /// The widest an override may make the search radius, metres.
    #[serde(default = "d_bg_radius")]
    pub break_glass_max_radius_m: f64,
    /// The most cameras an override may allow for one incident.
    #[serde(default = "d_bg_cameras")]
    pub break_glass_max_cameras: usize,
    /// The longest an override may last, seconds.
    #[serde(default = "d_bg_duration")]
    pub break_glass_max_duration_s: u64,
}

fn d_bg_radius() -> f64 {
    1000.0
}
fn d_bg_cameras() -> usize {
    24
}
fn d_bg_duration() -> u64 {
    3600
}

fn d_max_lag() -> u64 {
    120
}
fn d_skew() -> u64 {
    300
}
fn d_ttl() -> u64 {
    6 * 3600
}
fn d_k() -> usize {
    8
}
fn d_cap() -> f64 {
    600.0
}
fn d_cmd_ttl() -> u64 {
    30
}
fn d_res() -> u8 {
    7
}
/// The development key; `Policy::warnings` says so when it is in use.
pub const DEV_INCIDENT_REF_KEY: &str = "dev-only-incident-ref-key";
fn d_key() -> crate::Secret {
    crate::Secret::new(DEV_INCIDENT_REF_KEY)
}
fn d_stop() -> String {
    "Reply STOP in the app, or open Settings > Community program > Leave, to stop this and all future activations."
        .into()
}

impl PolicyConfig {
    pub fn from_toml(s: &str) -> Result<Self, PolicyError> {
        toml::from_str(s).map_err(|e| PolicyError(vec![PolicyProblem::Toml(e.to_string())]))
    }
}

/// Every problem found in a policy, reported together.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid policy:\n  - {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  - "))]
pub struct PolicyError(pub Vec<PolicyProblem>);

/// One problem of a policy, holding the bad value. `who` names the agency (`agency "nashville-mnpd"`) or
/// `default_code_tables`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyProblem {
    #[error("policy is not valid: {0}")]
    Toml(String),
    #[error("area_resolution {0} is not an H3 resolution (0..=15)")]
    AreaResolution(u8),
    #[error(
        "max_age_s was split in two: max_lag_s (the backlog guard: now - emitted_at) and \
         categories.NAME.window_s (the incident window: emitted_at - received_at); see docs/adding-a-city.md"
    )]
    RemovedMaxAge,
    #[error("command_ttl_s must be at least 1: 0 would void every command")]
    ZeroCommandTtl,
    #[error("max_lag_s must be at least 1")]
    ZeroMaxLag,
    #[error("max_cameras must be at least 1")]
    ZeroMaxCameras,
    #[error("radius_cap_m {0} must be > 0")]
    RadiusCap(f64),
    #[error("categories.{category}.radius_m {radius_m} must be in (0, radius_cap_m = {cap}]")]
    CategoryRadius { category: Category, radius_m: f64, cap: f64 },
    #[error("categories.{0}.record_seconds must be > 0")]
    ZeroRecordSeconds(Category),
    #[error("categories.{0}.window_s must be > 0")]
    ZeroWindow(Category),
    #[error(
        "state_ttl_s {ttl_s} is below the incident window of {category} ({window_s} s): an incident's state must \
         last as long as a revision of it may still start cameras"
    )]
    StateTtlBelowWindow { ttl_s: u64, category: Category, window_s: u64 },
    #[error("no [[agency]]: at least one partner agency is needed")]
    NoAgency,
    #[error("{who}: code table {table:?} is not loaded (loaded: {loaded:?})")]
    TableNotLoaded { who: String, table: String, loaded: Vec<String> },
    #[error("{0} is listed twice")]
    DuplicateAgency(String),
    #[error("{0} has no code tables and there are no default_code_tables")]
    NoCodeTables(String),
    #[error("{who}: {problem}")]
    CodeTable { who: String, problem: crate::TableProblem },
    #[error("{who}: jurisdiction {file}: {error}")]
    Jurisdiction { who: String, file: String, error: JurisdictionError },
    #[error("{who}: jurisdiction {file} was not provided")]
    NoJurisdiction { who: String, file: String },
    /// A file the policy names could not be read (the caller's I/O, reported with the rest).
    #[error("{who}: {error}")]
    Unreadable { who: String, error: String },
}

/// Why a jurisdiction file is not a usable area.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JurisdictionError {
    #[error("not GeoJSON: {0}")]
    NotGeoJson(String),
    #[error("bad geometry: {0}")]
    BadGeometry(String),
    /// A point, a line...: the name of the geometry type found.
    #[error("jurisdiction must be polygons, found a {0}")]
    NotPolygon(&'static str),
    #[error("no polygon in the jurisdiction file")]
    NoPolygon,
}

/// A partner agency's jurisdiction polygon.
#[derive(Debug, Clone)]
pub struct Jurisdiction {
    shape: geo::MultiPolygon<f64>,
    bbox: Option<geo::Rect<f64>>,
}

impl Jurisdiction {
    pub fn from_geojson(text: &str) -> Result<Self, JurisdictionError> {
        let gj: geojson::GeoJson = text.parse().map_err(|e| JurisdictionError::NotGeoJson(format!("{e}")))?;
        let geoms: Vec<geojson::Geometry> = match gj {
            geojson::GeoJson::Geometry(g) => vec![g],
            geojson::GeoJson::Feature(f) => f.geometry.into_iter().collect(),
            geojson::GeoJson::FeatureCollection(fc) => fc.features.into_iter().filter_map(|f| f.geometry).collect(),
        };
        let mut polys = Vec::new();
        for g in geoms {
            let g: geo::Geometry<f64> =
                g.try_into().map_err(|e: geojson::Error| JurisdictionError::BadGeometry(e.to_string()))?;
            match g {
                geo::Geometry::Polygon(p) => polys.push(p),
                geo::Geometry::MultiPolygon(mp) => polys.extend(mp.0),
                other => return Err(JurisdictionError::NotPolygon(geometry_kind(&other))),
            }
        }
        if polys.is_empty() {
            return Err(JurisdictionError::NoPolygon);
        }
        Ok(Self::from_polygons(polys))
    }

    pub fn from_polygons(polys: Vec<geo::Polygon<f64>>) -> Self {
        let shape = geo::MultiPolygon(polys);
        let bbox = shape.bounding_rect();
        Self { shape, bbox }
    }

    /// True when the point lies inside or on the boundary.
    pub fn contains(&self, p: LatLon) -> bool {
        let pt = geo::Point::new(p.lon, p.lat);
        match self.bbox {
            Some(b) if !b.intersects(&pt) => false,
            _ => self.shape.intersects(&pt),
        }
    }
}

#[derive(Clone)]
pub(crate) struct Agency {
    pub classifier: Classifier,
    pub jurisdiction: Jurisdiction,
}

/// A validated policy, ready for the engine.
#[derive(Clone)]
pub struct Policy {
    pub config: PolicyConfig,
    /// Shared: a policy is cloned for every engine (replay, service, simulation settings), and the
    /// jurisdiction polygons are the large part.
    pub(crate) agencies: std::sync::Arc<BTreeMap<String, Agency>>,
    pub(crate) area_resolution: h3o::Resolution,
    /// Where the input carries the call type (see [`Policy::set_input_mapping`]).
    input_mapping: String,
    /// Agency id -> digest of its classification; `""` -> the digest for events of no partner.
    digests: BTreeMap<String, String>,
}

/// The input mapping of a policy until its caller names one: the call type as the `CallForService` carries it
/// (the service's CFS topic, whose producers mapped the CAD's columns).
pub const DEFAULT_INPUT_MAPPING: &str = "CallForService.call_type_code + CallForService.call_type_text";

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("config", &self.config)
            .field("agencies", &self.agencies.keys().collect::<Vec<_>>())
            .field("area_resolution", &self.area_resolution)
            .field("input_mapping", &self.input_mapping)
            .finish()
    }
}

impl Policy {
    /// `tables`: every loaded code table. `jurisdictions`: agency id -> GeoJSON text.
    pub fn new(
        config: PolicyConfig,
        tables: &[CodeTable],
        jurisdictions: &BTreeMap<String, String>,
    ) -> Result<Self, PolicyError> {
        let mut errs = Vec::new();
        let area_resolution = h3o::Resolution::try_from(config.area_resolution).unwrap_or_else(|_| {
            errs.push(PolicyProblem::AreaResolution(config.area_resolution));
            h3o::Resolution::Seven
        });
        errs.extend(value_problems(&config));
        let agencies = agencies(&config, tables, jurisdictions, &mut errs);
        if errs.is_empty() {
            let mut p = Self {
                config,
                agencies: std::sync::Arc::new(agencies),
                area_resolution,
                input_mapping: String::new(),
                digests: BTreeMap::new(),
            };
            p.set_input_mapping(DEFAULT_INPUT_MAPPING);
            Ok(p)
        } else {
            Err(PolicyError(errs))
        }
    }

    /// Things that are allowed but that an operator should hear about.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if self.config.incident_ref_key.expose() == DEV_INCIDENT_REF_KEY {
            w.push("incident_ref_key is the development default: set a secret per deployment".into());
        }
        for (id, cats) in self.never_fire() {
            let names: Vec<&str> = cats.iter().map(|c| c.as_str()).collect();
            w.push(format!(
                "agency {id:?}: no rule of its code tables maps to {}: these categories can never fire",
                names.join(", ")
            ));
        }
        for (id, a) in self.agencies.iter() {
            for (rule, category, label) in a.classifier.trigger_rules() {
                let words = crate::vocabulary::normalize(label);
                if !label.is_empty() && crate::vocabulary::corroborates(category, &words).is_none() {
                    w.push(format!(
                        "agency {id:?}: rule {rule} (label {label:?}) maps to {} but its label holds no word of \
                         that category's shipped vocabulary: its events start cameras only when the CAD's type \
                         text does (docs/adding-a-city.md, \"The vocabularies\")",
                        category.as_str()
                    ));
                }
            }
        }
        w
    }

    /// Name where the input carries the call type (a CSV profile's type columns, say): it is part of the
    /// published classification, since the same tables read through another column decide differently.
    pub fn set_input_mapping(&mut self, mapping: impl Into<String>) {
        self.input_mapping = mapping.into();
        let ids = self.agencies.keys().cloned().chain([String::new()]).collect::<Vec<_>>();
        self.digests = ids
            .into_iter()
            .map(|id| {
                let doc = serde_json::to_vec(&self.classification(&id)).expect("JSON values serialise");
                let digest = format!("cls_{}", hex::encode(&sha2::Sha256::digest(doc)[..16]));
                (id, digest)
            })
            .collect();
    }

    /// The classification in force for an agency, as published: the shipped vocabularies, the agency's code
    /// tables as matched, and the input mapping. Its digest ([`Policy::classification_digest`]) is in every
    /// audit record.
    pub fn classification(&self, agency_id: &str) -> serde_json::Value {
        let tables = self.agencies.get(agency_id).map(|a| a.classifier.describe());
        serde_json::json!({
            "agency": agency_id,
            "input": self.input_mapping,
            "tables": tables,
            "vocabulary": crate::vocabulary::describe(),
        })
    }

    /// The digest of [`Policy::classification`] (`cls_` and 128 bits, hex).
    pub fn classification_digest(&self, agency_id: &str) -> &str {
        self.digests.get(agency_id).or_else(|| self.digests.get("")).map_or("", String::as_str)
    }

    /// Per agency, the enabled categories no event can ever start cameras for: no rule of the agency's tables
    /// maps to them (alarm: no alarm rule and no alarm marker beside a trigger rule).
    pub fn never_fire(&self) -> BTreeMap<String, Vec<Category>> {
        let enabled: Vec<Category> =
            self.config.categories.iter().filter(|(_, p)| p.enabled).map(|(c, _)| *c).collect();
        self.agencies
            .iter()
            .map(|(id, a)| {
                let mapped: Vec<Category> = a.classifier.trigger_rules().map(|(_, c, _)| c).collect();
                let reachable = |c: &Category| {
                    mapped.contains(c)
                        || (*c == Category::Alarm && !mapped.is_empty() && a.classifier.has_alarm_markers())
                };
                (id.clone(), enabled.iter().copied().filter(|c| !reachable(c)).collect())
            })
            .filter(|(_, cats): &(String, Vec<Category>)| !cats.is_empty())
            .collect()
    }

    /// The incident window of a category, milliseconds.
    pub fn window_ms(&self, c: Category) -> i64 {
        let s = self.category(c).and_then(|p| p.window_s).unwrap_or_else(|| default_window_s(c));
        (s as i64).saturating_mul(1000)
    }

    pub fn category(&self, c: Category) -> Option<&CategoryPolicy> {
        self.config.categories.get(&c)
    }

    pub fn is_partner(&self, agency_id: &str) -> bool {
        self.agencies.contains_key(agency_id)
    }

    /// Priority of a category under backlog (higher first); unknown or non-trigger = 0.
    pub fn priority_of(&self, c: Option<Category>) -> u8 {
        c.and_then(|c| self.category(c)).map_or(0, |p| p.priority)
    }

    /// How the event's agency classifies it (None: not a partner's).
    pub fn classify_event(&self, ev: &CallForService) -> Option<Classification> {
        self.agencies.get(&ev.agency_id).map(|a| a.classifier.classify_event(ev))
    }

    /// Priority of an event under backlog: its agency's classification of the call type, then
    /// [`Policy::priority_of`]. Non-partner agencies and non-trigger types are 0.
    pub fn priority_of_event(&self, ev: &CallForService) -> u8 {
        let category = self.agencies.get(&ev.agency_id).and_then(|a| match a.classifier.classify_event(ev) {
            Classification::Trigger { category, .. } => Some(category),
            _ => None,
        });
        self.priority_of(category)
    }
}

fn geometry_kind(g: &geo::Geometry<f64>) -> &'static str {
    match g {
        geo::Geometry::Point(_) => "Point",
        geo::Geometry::Line(_) => "Line",
        geo::Geometry::LineString(_) => "LineString",
        geo::Geometry::Polygon(_) => "Polygon",
        geo::Geometry::MultiPoint(_) => "MultiPoint",
        geo::Geometry::MultiLineString(_) => "MultiLineString",
        geo::Geometry::MultiPolygon(_) => "MultiPolygon",
        geo::Geometry::GeometryCollection(_) => "GeometryCollection",
        geo::Geometry::Rect(_) => "Rect",
        geo::Geometry::Triangle(_) => "Triangle",
    }
}

/// The problems of the configuration's own values (zero where a positive number is needed, a radius beyond the
/// cap, no agency).
fn value_problems(config: &PolicyConfig) -> Vec<PolicyProblem> {
    let mut errs = Vec::new();
    if config.removed_max_age_s.is_some() {
        errs.push(PolicyProblem::RemovedMaxAge);
    }
    if config.command_ttl_s == 0 {
        errs.push(PolicyProblem::ZeroCommandTtl);
    }
    if config.max_lag_s == 0 {
        errs.push(PolicyProblem::ZeroMaxLag);
    }
    if config.max_cameras == 0 {
        errs.push(PolicyProblem::ZeroMaxCameras);
    }
    if !(config.radius_cap_m.is_finite() && config.radius_cap_m > 0.0) {
        errs.push(PolicyProblem::RadiusCap(config.radius_cap_m));
    }
    for (cat, cp) in &config.categories {
        if !(cp.radius_m.is_finite() && cp.radius_m > 0.0 && cp.radius_m <= config.radius_cap_m) {
            errs.push(PolicyProblem::CategoryRadius {
                category: *cat,
                radius_m: cp.radius_m,
                cap: config.radius_cap_m,
            });
        }
        if cp.record_seconds == 0 {
            errs.push(PolicyProblem::ZeroRecordSeconds(*cat));
        }
        if cp.window_s == Some(0) {
            errs.push(PolicyProblem::ZeroWindow(*cat));
        }
    }
    if config.agencies.is_empty() {
        errs.push(PolicyProblem::NoAgency);
    }
    let windows = Category::ALL
        .map(|c| (c, config.categories.get(&c).and_then(|p| p.window_s).unwrap_or_else(|| default_window_s(c))));
    if let Some((category, window_s)) = windows.into_iter().max_by_key(|(_, w)| *w) {
        if config.state_ttl_s < window_s {
            errs.push(PolicyProblem::StateTtlBelowWindow { ttl_s: config.state_ttl_s, category, window_s });
        }
    }
    errs
}

/// Each agency's classifier (from its code tables, or the default ones) and jurisdiction; every problem on the
/// way goes to `errs`.
fn agencies(
    config: &PolicyConfig,
    tables: &[CodeTable],
    jurisdictions: &BTreeMap<String, String>,
    errs: &mut Vec<PolicyProblem>,
) -> BTreeMap<String, Agency> {
    let find = |name: &str, errs: &mut Vec<PolicyProblem>, who: &str| {
        let t = tables.iter().find(|t| t.name == name).cloned();
        if t.is_none() {
            let loaded = tables.iter().map(|t| t.name.clone()).collect();
            errs.push(PolicyProblem::TableNotLoaded { who: who.to_string(), table: name.to_string(), loaded });
        }
        t
    };
    let defaults: Vec<CodeTable> =
        config.default_code_tables.iter().filter_map(|n| find(n, errs, "default_code_tables")).collect();
    let mut agencies = BTreeMap::new();
    for a in &config.agencies {
        let who = format!("agency {:?}", a.id);
        if agencies.contains_key(&a.id) {
            errs.push(PolicyProblem::DuplicateAgency(who.clone()));
        }
        let mut ts: Vec<CodeTable> = a.code_tables.iter().filter_map(|n| find(n, errs, &who)).collect();
        if a.code_tables.is_empty() {
            ts = defaults.clone();
        }
        if ts.is_empty() {
            errs.push(PolicyProblem::NoCodeTables(who.clone()));
        }
        // Tables are checked one by one when loaded; together, one table's blocked code may be another's
        // trigger rule.
        errs.extend(
            Classifier::problems(&ts).into_iter().map(|problem| PolicyProblem::CodeTable { who: who.clone(), problem }),
        );
        let jurisdiction = match jurisdictions.get(&a.id).map(|t| Jurisdiction::from_geojson(t)) {
            Some(Ok(j)) => j,
            Some(Err(error)) => {
                errs.push(PolicyProblem::Jurisdiction { who, file: a.jurisdiction.clone(), error });
                continue;
            }
            None => {
                errs.push(PolicyProblem::NoJurisdiction { who, file: a.jurisdiction.clone() });
                continue;
            }
        };
        agencies.insert(a.id.clone(), Agency { classifier: Classifier::new(&ts), jurisdiction });
    }
    agencies
}
