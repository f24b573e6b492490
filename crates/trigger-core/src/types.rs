//! Domain types shared by every crate. Plain data, serde-serialisable, no I/O.

use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a type is blocked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockKind {
    /// Protest and other First Amendment activity, civil unrest.
    FirstAmendment,
    /// Immigration enforcement.
    Immigration,
}

impl BlockKind {
    /// The kind a verdict on the wire names; a name this build does not know still blocks (fail closed).
    pub fn parse(s: &str) -> BlockKind {
        if s == "immigration" {
            BlockKind::Immigration
        } else {
            BlockKind::FirstAmendment
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BlockKind::FirstAmendment => "first_amendment",
            BlockKind::Immigration => "immigration",
        }
    }
}

/// A blocked term found in the raw record (`crate::scan`): what it names, the term, and the field it stood in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawBlock {
    pub kind: BlockKind,
    pub term: String,
    pub field: String,
}

impl RawBlock {
    /// `raw:KIND:TERM@FIELD`, as a decision's rule names it.
    pub fn rule(&self) -> String {
        format!("raw:{}:{}@{}", self.kind.as_str(), self.term, self.field)
    }
}

/// Unix epoch milliseconds, UTC.
pub type Millis = i64;

/// A WGS 84 position in degrees.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LatLon {
    pub lat: f64,
    pub lon: f64,
}

impl LatLon {
    pub const fn new(lat: f64, lon: f64) -> Self {
        Self { lat, lon }
    }
}

/// An incident location with its uncertainty radius in metres (0 = unknown / exact).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Location {
    pub lat: f64,
    pub lon: f64,
    #[serde(default)]
    pub uncertainty_m: f64,
}

impl Location {
    pub fn point(&self) -> LatLon {
        LatLon::new(self.lat, self.lon)
    }
}

/// Lifecycle status of one CAD revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    New,
    Updated,
    Dispatched,
    OnScene,
    Closed,
    Cancelled,
}

impl Status {
    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Closed | Status::Cancelled)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Status::New => "new",
            Status::Updated => "updated",
            Status::Dispatched => "dispatched",
            Status::OnScene => "on_scene",
            Status::Closed => "closed",
            Status::Cancelled => "cancelled",
        }
    }
}

/// One revision of a call for service, after ingest. It carries no caller, person or narrative data:
/// decoders drop those before they build this value, and there is no field to put them in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallForService {
    pub incident_id: String,
    pub agency_id: String,
    /// Monotonic per incident, starting at 1.
    pub revision: u32,
    pub status: Status,
    #[serde(default)]
    pub call_type_code: String,
    #[serde(default)]
    pub call_type_text: String,
    #[serde(default)]
    pub priority: u32,
    pub location: Option<Location>,
    /// Call received at the PSAP.
    pub received_at: Millis,
    /// This revision left the CAD.
    pub emitted_at: Millis,
    /// The raw record's scan ([`crate::scan`]): a blocked term in any value the CAD sent for this revision,
    /// with the field it was in. Set by the decoder that read the raw record; never the value itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked: Option<RawBlock>,
    /// The type text's values as the CAD sent them, one per field, when it sent several (`call_type_text`
    /// is them joined, for reading): corroboration reads each value on its own, never across a join.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub type_fields: Vec<String>,
}

impl CallForService {
    /// The type text's values, each on its own: `type_fields`, else `call_type_text` as one value.
    pub fn type_values(&self) -> Vec<&str> {
        if self.type_fields.is_empty() {
            vec![self.call_type_text.as_str()]
        } else {
            self.type_fields.iter().map(String::as_str).collect()
        }
    }
}

/// Trigger categories. `Alarm` is an alarm-only call (e.g. an unverified burglar alarm) and is off by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Burglary,
    VehicleBreakIn,
    Robbery,
    ShotsFired,
    Shooting,
    Stabbing,
    Hostage,
    Alarm,
}

impl Category {
    pub const ALL: [Category; 8] = [
        Category::Burglary,
        Category::VehicleBreakIn,
        Category::Robbery,
        Category::ShotsFired,
        Category::Shooting,
        Category::Stabbing,
        Category::Hostage,
        Category::Alarm,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Burglary => "burglary",
            Category::VehicleBreakIn => "vehicle_break_in",
            Category::Robbery => "robbery",
            Category::ShotsFired => "shots_fired",
            Category::Shooting => "shooting",
            Category::Stabbing => "stabbing",
            Category::Hostage => "hostage",
            Category::Alarm => "alarm",
        }
    }

    pub fn parse(s: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|c| c.as_str() == s)
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A compact set of categories (one bit each); serialised as a list of names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct CategorySet(u16);

impl CategorySet {
    pub fn contains(self, c: Category) -> bool {
        self.0 & c.bit() != 0
    }
    pub fn insert(&mut self, c: Category) {
        self.0 |= c.bit();
    }
    pub fn iter(self) -> impl Iterator<Item = Category> {
        Category::ALL.into_iter().filter(move |c| self.contains(*c))
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl FromIterator<Category> for CategorySet {
    fn from_iter<I: IntoIterator<Item = Category>>(iter: I) -> Self {
        let mut s = CategorySet::default();
        for c in iter {
            s.insert(c);
        }
        s
    }
}

impl Serialize for CategorySet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for CategorySet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v: Vec<Category> = Vec::deserialize(d)?;
        Ok(v.into_iter().collect())
    }
}

/// Minutes after local midnight, written "HH:MM".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct MinuteOfDay(pub u16);

impl MinuteOfDay {
    pub fn parse(s: &str) -> Option<MinuteOfDay> {
        let (h, m) = s.trim().split_once(':')?;
        let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
        (h < 24 && m < 60).then_some(MinuteOfDay(h * 60 + m))
    }
}

impl fmt::Display for MinuteOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 60, self.0 % 60)
    }
}

impl Serialize for MinuteOfDay {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MinuteOfDay {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        MinuteOfDay::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("expected HH:MM, got {s:?}")))
    }
}

/// Hours during which the owner does not want the camera triggered, in the owner's time zone.
/// `start > end` wraps past midnight (22:00–07:00); `start == end` means no quiet hours.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct QuietHours {
    pub start: MinuteOfDay,
    pub end: MinuteOfDay,
    pub time_zone: Tz,
}

impl QuietHours {
    pub fn contains(&self, minute: u16) -> bool {
        let (s, e) = (self.start.0, self.end.0);
        match s.cmp(&e) {
            std::cmp::Ordering::Equal => false,
            std::cmp::Ordering::Less => (s..e).contains(&minute),
            std::cmp::Ordering::Greater => minute >= s || minute < e,
        }
    }
}

/// What the owner agreed to. Nothing outside it is ever commanded.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Consent {
    pub categories: CategorySet,
    pub max_radius_m: f64,
    #[serde(default)]
    pub quiet_hours: Option<QuietHours>,
    /// Most STARTs per local day (the quiet-hours time zone, else UTC). 0 = camera never triggered.
    pub daily_cap: u32,
    #[serde(default)]
    pub live_stream_allowed: bool,
}

/// A registry entry: one opted-in camera.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CameraRecord {
    pub camera_id: String,
    /// Opaque owner reference; never a name or address.
    pub owner_ref: String,
    pub lat: f64,
    pub lon: f64,
    pub consent: Consent,
    #[serde(default = "yes")]
    pub online: bool,
    #[serde(default)]
    pub updated_at: Millis,
}

fn yes() -> bool {
    true
}

impl CameraRecord {
    pub fn point(&self) -> LatLon {
        LatLon::new(self.lat, self.lon)
    }

    pub fn view(&self) -> CameraRef<'_> {
        let (camera_id, owner_ref) = (self.camera_id.as_str(), self.owner_ref.as_str());
        let Self { lat, lon, consent, online, updated_at, .. } = *self;
        CameraRef { camera_id, owner_ref, lat, lon, consent, online, updated_at }
    }
}

/// A [`CameraRecord`] whose two strings are borrowed (from the bytes it was read from): what the registry's
/// start-up read hands the index without allocating per camera.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CameraRef<'a> {
    pub camera_id: &'a str,
    pub owner_ref: &'a str,
    pub lat: f64,
    pub lon: f64,
    pub consent: Consent,
    pub online: bool,
    pub updated_at: Millis,
}

impl CameraRef<'_> {
    pub fn point(&self) -> LatLon {
        LatLon::new(self.lat, self.lon)
    }

    pub fn to_record(&self) -> CameraRecord {
        let Self { lat, lon, consent, online, updated_at, .. } = *self;
        let (camera_id, owner_ref) = (self.camera_id.to_string(), self.owner_ref.to_string());
        CameraRecord { camera_id, owner_ref, lat, lon, consent, online, updated_at }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Start,
    Stop,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Stop => "stop",
        }
    }
}

/// A record-and-stream command for one camera (key = camera_id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CameraCommand {
    /// Deterministic from (incident_ref, camera_id, action), so retries can be deduplicated.
    pub command_id: String,
    pub camera_id: String,
    pub action: Action,
    /// Opaque token derived from the incident; not the CAD number.
    pub incident_ref: String,
    pub category: Category,
    pub record_seconds: u32,
    pub live_stream: bool,
    pub issued_at: Millis,
    /// A camera ignores a command received after this instant.
    pub expires_at: Millis,
}

/// Tells an owner that their camera was activated, and how to stop it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OwnerNotice {
    pub owner_ref: String,
    pub camera_id: String,
    pub category: Category,
    pub area_h3: String,
    pub at: Millis,
    pub how_to_stop: String,
    /// The camera was started under a break-glass override (wider scope than the policy's usual).
    #[serde(default)]
    pub break_glass: bool,
}
