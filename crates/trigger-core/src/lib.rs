//! trigger-core: every decision dispatch-trigger makes, with no I/O.
//!
//! Given a call-for-service revision, the camera registry (through [`CameraSource`]) and a clock value, the
//! [`Engine`] classifies the call type, checks the agency and its jurisdiction, applies the latency budget,
//! selects cameras within the category radius (nearest first, at most k) whose owners' consent covers the
//! event, and plans START / STOP commands against the incident's state. Each event yields a [`Decision`]:
//! commands, owner notices and one [`DecisionRecord`] that explains it. Bad input yields a [`Reject`].
//!
//! Nothing here reads files, sockets or clocks; callers pass text and time in.

pub mod breakglass;
pub mod camera;
pub mod classify;
pub mod consent;
pub mod engine;
pub mod geodesy;
pub mod policy;
pub mod reject;
pub mod scan;
pub mod secret;
pub mod signing;
pub mod tally;
pub mod text;
pub mod types;
pub mod vocabulary;

pub use breakglass::{Authorisation, BreakGlassKey, BreakGlassRequest, Refusal};
pub use camera::{camera_problems, camera_ref_problems, CameraProblem};
pub use classify::{Classification, Classifier, CodeTable, TableProblem, UnknownPolicy};
pub use engine::{
    command_id, CameraSource, Candidate, Commanded, Decision, DecisionRecord, Engine, Excluded, Exclusion,
    IncidentSnapshot, IncidentState, Outcome, SentCommand, Started, StopReason,
};
pub use policy::{Jurisdiction, JurisdictionError, Policy, PolicyConfig, PolicyError, PolicyProblem};
pub use reject::{Reject, RejectReason};
pub use scan::{RawBlock, Scanner};
pub use secret::Secret;
pub use signing::{CommandKeys, CommandRefusal, CommandSignature, CommandSigner, SeenWindow};
pub use tally::{counts, pass_on, Count, DecisionSink, Tally};
pub use types::*;
