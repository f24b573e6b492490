//! Building the camera index the configuration chose, once: whatever its spatial backend, the caller's job
//! receives a `CameraIndex<B>` (the index is generic over its backend, so the job is a trait, not a closure).

use trigger_core::CameraRecord;
use trigger_index::{CameraIndex, H3Backend, IndexError, RTreeBackend, SpatialBackend};

/// The spatial structure behind the camera registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum IndexKind {
    /// rstar R-tree (the default).
    #[default]
    Rtree,
    /// h3o H3 cells.
    H3,
}

impl IndexKind {
    /// The backend's name, as summaries report it.
    pub fn name(self) -> &'static str {
        match self {
            IndexKind::Rtree => "rstar",
            IndexKind::H3 => "h3o",
        }
    }
}

/// Something done with a camera index, whatever its backend.
pub trait IndexJob {
    type Output;
    fn run<B: SpatialBackend>(self, index: CameraIndex<B>, kind: IndexKind) -> Self::Output;
}

/// Load `cameras` into the index `kind` names and run `job` with it. Cameras that cannot be loaded are
/// returned, not loaded.
pub fn with_index<J: IndexJob>(kind: IndexKind, cameras: Vec<CameraRecord>, job: J) -> (J::Output, Vec<IndexError>) {
    match kind {
        IndexKind::Rtree => {
            let (index, errors) = CameraIndex::<RTreeBackend>::bulk_load(cameras);
            (job.run(index, kind), errors)
        }
        IndexKind::H3 => {
            let (index, errors) = CameraIndex::<H3Backend>::bulk_load(cameras);
            (job.run(index, kind), errors)
        }
    }
}
