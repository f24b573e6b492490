//! Break-glass: an override that widens the policy's scope (search radius, most cameras) for one incident,
//! for a bounded time, when an agency officer and a supervisor both sign it with keys listed in the policy.
//!
//! It never widens an owner's consent: categories, the owner's own radius, quiet hours, the daily cap and
//! live streaming still decide every camera. Granted and refused requests are both audited; cameras started
//! under an override say so in their decision record and owner notice.

use crate::types::Millis;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The requesting agency's officer.
    Agency,
    /// A supervisor who must co-sign.
    Supervisor,
}

/// A public key allowed to authorise break-glass requests (`[[break_glass_key]]` in the policy).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakGlassKey {
    pub id: String,
    pub role: Role,
    /// Who holds the key (an opaque staff reference); the two signatures must come from two identities.
    pub identity: String,
    /// Ed25519 public key, 32 bytes in hex.
    pub public_key: String,
    /// The only agency whose incidents this key may authorise (None: any partner agency).
    #[serde(default)]
    pub agency_id: Option<String>,
}

/// One signature of a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Authorisation {
    pub key_id: String,
    /// Ed25519 signature of [`BreakGlassRequest::message`], 64 bytes in hex.
    pub signature: String,
}

/// A request to widen the scope of one incident until `expires_at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BreakGlassRequest {
    pub agency_id: String,
    pub incident_id: String,
    pub radius_m: f64,
    pub max_cameras: usize,
    pub expires_at: Millis,
    /// A short code for why (no free text: it is published in the audit).
    pub reason_code: String,
    pub authorisations: Vec<Authorisation>,
}

impl BreakGlassRequest {
    /// The bytes every authorisation signs: every field but the signatures, one per line.
    pub fn message(&self) -> Vec<u8> {
        format!(
            "dispatch-trigger/break-glass/v1\n{}\n{}\n{}\n{}\n{}\n{}",
            self.agency_id, self.incident_id, self.radius_m, self.max_cameras, self.expires_at, self.reason_code
        )
        .into_bytes()
    }
}

/// Why a request was refused (audited as the decision's rule).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("agency_not_partner")]
    NotPartner,
    #[error("unknown_key:{0}")]
    UnknownKey(String),
    #[error("bad_signature:{0}")]
    BadSignature(String),
    #[error("missing_authorisation:{0}")]
    MissingRole(&'static str),
    #[error("key_not_for_this_agency:{0}")]
    KeyNotForAgency(String),
    #[error("same_identity_twice")]
    SameIdentity,
    #[error("expired")]
    Expired,
    #[error("longer_than_allowed")]
    TooLong,
    #[error("beyond_break_glass_caps")]
    BeyondCaps,
}

/// The limits of any override (policy keys `break_glass_max_*`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub max_radius_m: f64,
    pub max_cameras: usize,
    pub max_duration_ms: Millis,
}

/// Check a request against the keys and limits: both roles, two distinct identities, valid signatures,
/// not expired, not longer or wider than allowed.
pub fn check(req: &BreakGlassRequest, keys: &[BreakGlassKey], limits: Limits, now: Millis) -> Result<(), Refusal> {
    if req.expires_at <= now {
        return Err(Refusal::Expired);
    }
    if req.expires_at.saturating_sub(now) > limits.max_duration_ms {
        return Err(Refusal::TooLong);
    }
    if !(req.radius_m.is_finite() && req.radius_m > 0.0 && req.radius_m <= limits.max_radius_m)
        || req.max_cameras == 0
        || req.max_cameras > limits.max_cameras
    {
        return Err(Refusal::BeyondCaps);
    }
    let msg = req.message();
    let mut signed: Vec<&BreakGlassKey> = Vec::new();
    for a in &req.authorisations {
        let key = keys.iter().find(|k| k.id == a.key_id).ok_or_else(|| Refusal::UnknownKey(a.key_id.clone()))?;
        if key.agency_id.as_deref().is_some_and(|ag| ag != req.agency_id) {
            return Err(Refusal::KeyNotForAgency(key.id.clone()));
        }
        let bad = || Refusal::BadSignature(a.key_id.clone());
        let pk: [u8; 32] = hex::decode(&key.public_key).ok().and_then(|b| b.try_into().ok()).ok_or_else(bad)?;
        let sig: [u8; 64] = hex::decode(&a.signature).ok().and_then(|b| b.try_into().ok()).ok_or_else(bad)?;
        VerifyingKey::from_bytes(&pk)
            .map_err(|_| bad())?
            .verify(&msg, &Signature::from_bytes(&sig))
            .map_err(|_| bad())?;
        signed.push(key);
    }
    let by = |role| signed.iter().find(|k| k.role == role);
    let (Some(agency), Some(supervisor)) = (by(Role::Agency), by(Role::Supervisor)) else {
        let missing = if by(Role::Agency).is_none() { "agency" } else { "supervisor" };
        return Err(Refusal::MissingRole(missing));
    };
    if agency.identity == supervisor.identity {
        return Err(Refusal::SameIdentity);
    }
    Ok(())
}

/// An active override of one incident.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Override {
    pub radius_m: f64,
    pub max_cameras: usize,
    pub until: Millis,
}
