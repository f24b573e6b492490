//! The one registry path, for both feeds: decode a record (`decode`), apply it to the index (`apply_change`).
//! No Kafka here: the registry bench drives it with protobuf bytes.

use crate::codec::{camera_from_pb, status_from_pb, BadCamera, BadCameraReason};
use trigger_core::CameraRef;
use trigger_index::{CameraIndex, SpatialBackend, StatusChange};

/// Which compacted topic a follower reads, and so what its records may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    /// `CameraRecord`s: location, owner, consent (tombstone: the camera left).
    Registry,
    /// `CameraStatus` heartbeats: online and last seen only.
    Status,
}

/// A registry or status record that could not be applied.
#[derive(Debug, Clone)]
pub struct BadRegistryRecord {
    /// The topic it was read from.
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub reason: BadCameraReason,
    pub detail: String,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub upserts: u64,
    pub removals: u64,
    pub bad: u64,
    /// Heartbeats applied.
    pub status: u64,
    /// Heartbeats ignored: older than what the index holds, or for a camera it does not hold.
    pub status_ignored: u64,
}

/// A registry or status record, decoded and checked against its key, not yet applied.
#[derive(Debug, Clone)]
pub enum Change {
    Upsert(trigger_core::CameraRecord),
    /// A registry tombstone: the camera left.
    Remove,
    Status(crate::codec::CameraStatus),
    /// A status tombstone: says nothing.
    Nothing,
}

/// Decode one record of `feed` (`payload` None: a tombstone).
pub fn decode(feed: Feed, key: &str, payload: Option<&[u8]>) -> Result<Change, BadCamera> {
    let mismatch = |id: &str| BadCamera {
        reason: BadCameraReason::KeyMismatch,
        detail: format!("key {key:?} is not the record's camera_id {id:?}"),
    };
    match (feed, payload) {
        (Feed::Registry, None) => Ok(Change::Remove),
        (Feed::Registry, Some(bytes)) => {
            let rec = camera_from_pb(bytes)?;
            if rec.camera_id != key {
                return Err(mismatch(&rec.camera_id));
            }
            Ok(Change::Upsert(rec))
        }
        (Feed::Status, None) => Ok(Change::Nothing),
        (Feed::Status, Some(bytes)) => {
            let st = status_from_pb(bytes)?;
            if st.camera_id != key {
                return Err(mismatch(&st.camera_id));
            }
            Ok(Change::Status(st))
        }
    }
}

/// Apply a decoded record (or its decoding error) to the index. A registry record that cannot be applied
/// removes the camera: an unreadable update must not leave it under the consent it was meant to replace. A bad
/// heartbeat changes nothing.
pub fn apply_change<B: SpatialBackend>(
    index: &mut CameraIndex<B>,
    feed: Feed,
    key: &str,
    change: Result<Change, BadCamera>,
    applied: &mut Applied,
) -> Result<(), BadCamera> {
    let result = change.and_then(|c| match c {
        Change::Remove => {
            applied.removals += u64::from(index.remove(key).is_some());
            Ok(())
        }
        Change::Upsert(rec) => upsert(index, rec.view(), applied),
        Change::Status(st) => {
            match index.set_status(key, st.online, st.last_seen_ms) {
                StatusChange::Applied => applied.status += 1,
                StatusChange::Stale | StatusChange::UnknownCamera => applied.status_ignored += 1,
            }
            Ok(())
        }
        Change::Nothing => Ok(()),
    });
    settle(index, feed, key, result, applied)
}

/// Apply a registry record already read without a copy ([`crate::codec::camera_ref_from_pb`]; its camera
/// id is its key): [`apply_change`] of its upsert, without building a `CameraRecord`.
pub fn apply_ref<B: SpatialBackend>(
    index: &mut CameraIndex<B>,
    rec: CameraRef<'_>,
    applied: &mut Applied,
) -> Result<(), BadCamera> {
    let result = upsert(index, rec, applied);
    settle(index, Feed::Registry, rec.camera_id, result, applied)
}

fn upsert<B: SpatialBackend>(
    index: &mut CameraIndex<B>,
    rec: CameraRef<'_>,
    applied: &mut Applied,
) -> Result<(), BadCamera> {
    index.upsert_ref(rec).map_err(|e| {
        let detail = e.to_string();
        let trigger_index::IndexError::InvalidCamera { problems, .. } = e;
        let first = problems.into_iter().next().unwrap_or(trigger_core::CameraProblem::EmptyId);
        BadCamera::invalid(first, detail)
    })?;
    applied.upserts += 1;
    Ok(())
}

/// A record that could not be applied is counted, and a registry camera it was meant to change removed.
fn settle<B: SpatialBackend>(
    index: &mut CameraIndex<B>,
    feed: Feed,
    key: &str,
    result: Result<(), BadCamera>,
    applied: &mut Applied,
) -> Result<(), BadCamera> {
    if result.is_err() {
        applied.bad += 1;
        if feed == Feed::Registry {
            index.remove(key);
        }
    }
    result
}

/// Decode one record of `feed` and apply it to the index: the registry path, [`decode`] then
/// [`apply_change`].
pub fn apply<B: SpatialBackend>(
    index: &mut CameraIndex<B>,
    feed: Feed,
    key: &str,
    payload: Option<&[u8]>,
    applied: &mut Applied,
) -> Result<(), BadCamera> {
    apply_change(index, feed, key, decode(feed, key, payload), applied)
}
