//! Consent: whether one camera may be started for one incident, now. [`exclusion`] is the one function that
//! decides it; the engine audits its answer for every candidate it does not start.

use crate::policy::Jurisdiction;
use crate::types::{CameraRecord, Category, Consent, Millis};
use chrono::{Datelike, Timelike};
use serde::Serialize;
use std::collections::HashMap;

/// Why a camera near an incident was not commanded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Exclusion {
    OutsideJurisdiction,
    OutOfScopeCategory,
    BeyondOwnerRadius,
    Offline,
    QuietHours,
    DailyCap,
    KCap,
}

impl Exclusion {
    pub fn as_str(self) -> &'static str {
        match self {
            Exclusion::OutsideJurisdiction => "outside_jurisdiction",
            Exclusion::OutOfScopeCategory => "out_of_scope_category",
            Exclusion::BeyondOwnerRadius => "beyond_owner_radius",
            Exclusion::Offline => "offline",
            Exclusion::QuietHours => "quiet_hours",
            Exclusion::DailyCap => "daily_cap",
            Exclusion::KCap => "k_cap",
        }
    }
}

/// STARTs per camera on the owner's local day: camera_id -> (day number, count).
pub(crate) type Caps = HashMap<String, (i32, u32)>;

/// What the incident asks of every candidate camera.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ask<'a> {
    pub category: Category,
    /// The partner agency's area: a camera outside it is never used for that agency.
    pub jurisdiction: &'a Jurisdiction,
    pub now: Millis,
    /// STARTs the incident may still make (the policy's k-cap, widened by a break-glass override).
    pub budget: usize,
}

/// What keeps `cam`, `distance_m` from the incident, from being started, in the order the audit names the
/// first that applies: outside the agency's area, a category the owner did not consent to, beyond the
/// owner's radius, offline, quiet hours, the owner's daily cap, the incident's k-cap. `None`: it may start.
pub(crate) fn exclusion(cam: &CameraRecord, distance_m: f64, ask: &Ask<'_>, caps: &Caps) -> Option<Exclusion> {
    if !ask.jurisdiction.contains(cam.point()) {
        Some(Exclusion::OutsideJurisdiction)
    } else if !cam.consent.categories.contains(ask.category) {
        Some(Exclusion::OutOfScopeCategory)
    } else if distance_m > cam.consent.max_radius_m {
        Some(Exclusion::BeyondOwnerRadius)
    } else if !cam.online {
        Some(Exclusion::Offline)
    } else if in_quiet_hours(&cam.consent, ask.now) {
        Some(Exclusion::QuietHours)
    } else if cap_reached(caps, cam, ask.now) {
        Some(Exclusion::DailyCap)
    } else if ask.budget == 0 {
        Some(Exclusion::KCap)
    } else {
        None
    }
}

fn owner_tz(consent: &Consent) -> chrono_tz::Tz {
    consent.quiet_hours.map_or(chrono_tz::UTC, |q| q.time_zone)
}

/// The owner-local day number of `at` (what the daily cap counts by).
pub fn owner_day(consent: &Consent, at: Millis) -> i32 {
    day_number(at, owner_tz(consent))
}

pub(crate) fn day_number(now: Millis, tz: chrono_tz::Tz) -> i32 {
    chrono::DateTime::from_timestamp_millis(now).map_or(0, |t| t.with_timezone(&tz).date_naive().num_days_from_ce())
}

/// Is `now` inside the owner's quiet hours, in the owner's time zone?
pub fn in_quiet_hours(consent: &Consent, now: Millis) -> bool {
    let Some(q) = consent.quiet_hours else { return false };
    let Some(t) = chrono::DateTime::from_timestamp_millis(now) else { return false };
    let local = t.with_timezone(&q.time_zone);
    q.contains((local.hour() * 60 + local.minute()) as u16)
}

fn cap_reached(caps: &Caps, cam: &CameraRecord, now: Millis) -> bool {
    let today = day_number(now, owner_tz(&cam.consent));
    let used = caps.get(&cam.camera_id).filter(|(d, _)| *d == today).map_or(0, |(_, n)| *n);
    used >= cam.consent.daily_cap
}

/// One more START today for `cam`.
pub(crate) fn bump_cap(caps: &mut Caps, cam: &CameraRecord, now: Millis) {
    let today = day_number(now, owner_tz(&cam.consent));
    let e = caps.entry(cam.camera_id.clone()).or_insert((today, 0));
    if e.0 != today {
        *e = (today, 0);
    }
    e.1 += 1;
}
