//! The service's side of the camera registry: read it to its end at start-up, keep applying it before each
//! batch (strictly: to the end offsets of that moment), count what was applied, dead-letter what could not be.
//! The status topic (heartbeats) is read to its end at start-up too, then drained before each batch without
//! a round trip: liveness may lag by a fetch, consent never does.

use super::Service;
use crate::records::{registry_dead_letter, OutRecord};
use crate::registry::{Applied, BadRegistryRecord, Feed, RegistryFollower};
use crate::settings::KafkaSettings;
use crate::sink::Delivering;
use crate::KafkaError;
use crate::{telemetry, wall_ms};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};
use trigger_index::SpatialBackend;

/// The most cameras the id table is sized for before a start-up read: 2^24 buckets (~84 MB). A national
/// fleet fits; a topic whose end offsets say more grows the table as it reads.
const RESERVE_AT_MOST: usize = 14_000_000;

/// The registry follower, and the status follower when the deployment has a status topic.
#[derive(Debug)]
pub(super) struct Feeds {
    registry: RegistryFollower,
    status: Option<RegistryFollower>,
}

impl Feeds {
    pub(super) fn open(settings: &KafkaSettings) -> Result<Self, KafkaError> {
        let registry = RegistryFollower::new(settings)?;
        let status = RegistryFollower::status(settings)?;
        if status.is_none() {
            tracing::info!(topic = %settings.topics.status, "no camera status topic: liveness from registry records only");
        }
        Ok(Self { registry, status })
    }
}

impl<B: SpatialBackend> Service<'_, B> {
    /// Read the registry, then the status topic, to the end offsets they have now. Returns false when asked
    /// to stop first.
    pub(super) fn bootstrap_registry(
        &mut self,
        feeds: &mut Feeds,
        sink: &mut Delivering,
        shutdown: &AtomicBool,
    ) -> Result<bool, KafkaError> {
        // The registry is read from its beginning into an empty index: records first, the spatial structure
        // built once at the end (trigger_index::CameraIndex::start_loading).
        self.index.start_loading();
        let read = self.bootstrap_one(&mut feeds.registry, sink, shutdown);
        self.index.finish_loading();
        if !read? {
            return Ok(false);
        }
        match &mut feeds.status {
            Some(status) => self.bootstrap_one(status, sink, shutdown),
            None => Ok(true),
        }
    }

    fn bootstrap_one(
        &mut self,
        registry: &mut RegistryFollower,
        sink: &mut Delivering,
        shutdown: &AtomicBool,
    ) -> Result<bool, KafkaError> {
        let started = Instant::now();
        let target = registry.end_offsets(Duration::from_secs(30))?;
        let total: i64 = target.values().sum();
        tracing::info!(topic = %registry.topic(), records = total, "reading the camera registry");
        if registry.feed() == Feed::Registry {
            // The end offsets count every record the topic ever held, and compaction leaves gaps: so at most
            // this many cameras, capped so that a long-lived topic cannot make the id table huge.
            self.index.reserve(usize::try_from(total).unwrap_or(0).min(RESERVE_AT_MOST));
        }
        let mut bad = Vec::new();
        loop {
            let step = Instant::now() + Duration::from_secs(1);
            let mut applied = Applied::default();
            let done = registry.load(self.index, &target, step, &mut applied, &mut bad)?;
            self.count_registry(applied);
            self.dead_letter_registry(sink, &mut bad)?;
            if done {
                tracing::info!(
                    cameras = self.index.len(),
                    seconds = started.elapsed().as_secs_f64(),
                    "camera registry loaded"
                );
                return Ok(true);
            }
            if shutdown.load(Relaxed) {
                return Ok(false);
            }
            if started.elapsed() > self.opts.registry_bootstrap_timeout() {
                return Err(KafkaError::Timeout {
                    what: format!("reading the camera registry ({}) to its end", registry.topic()),
                    after: self.opts.registry_bootstrap_timeout(),
                });
            }
            tracing::info!(cameras = self.index.len(), "still reading the camera registry");
        }
    }

    pub(super) fn apply_registry(
        &mut self,
        feeds: &mut Feeds,
        sink: &mut Delivering,
        sync: Option<Duration>,
    ) -> Result<(), KafkaError> {
        let mut applied = Applied::default();
        let mut bad = Vec::new();
        if let Some(status) = &mut feeds.status {
            status.drain(self.index, &mut applied, &mut bad)?;
        }
        let registry = &mut feeds.registry;
        match sync {
            None => {
                registry.drain(self.index, &mut applied, &mut bad)?;
                // While idle, one cheap ListOffsets round trip a second tells /readyz the brokers answer.
                let since = wall_ms().saturating_sub(self.health.broker_seen_ms.load(Relaxed));
                if since > 1000 && registry.end_offsets(Duration::from_millis(500)).is_ok() {
                    self.broker_answered();
                }
            }
            Some(wait) => {
                let caught_up = match registry.end_offsets(wait) {
                    Ok(target) => {
                        self.broker_answered();
                        registry.catch_up(self.index, &target, Instant::now() + wait, &mut applied, &mut bad)?
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "registry end offsets unavailable");
                        false
                    }
                };
                if !caught_up {
                    registry.drain(self.index, &mut applied, &mut bad)?;
                    telemetry::registry_sync_timeout();
                }
            }
        }
        self.count_registry(applied);
        self.dead_letter_registry(sink, &mut bad)
    }

    fn count_registry(&mut self, a: Applied) {
        let r = &mut self.stats.registry;
        (r.upserts, r.removals, r.bad) = (r.upserts + a.upserts, r.removals + a.removals, r.bad + a.bad);
        (r.status, r.status_ignored) = (r.status + a.status, r.status_ignored + a.status_ignored);
        telemetry::registry_applied(a, self.index.len());
    }

    fn dead_letter_registry(
        &mut self,
        sink: &mut Delivering,
        bad: &mut Vec<BadRegistryRecord>,
    ) -> Result<(), KafkaError> {
        if bad.is_empty() {
            return Ok(());
        }
        let t = &self.settings.topics;
        let records: Vec<OutRecord> = bad
            .drain(..)
            .map(|b| {
                telemetry::registry_rejected(&b);
                registry_dead_letter(&t.dead_letter, &b, self.opts.dead_letters())
            })
            .collect();
        self.stats.dead_letters += records.len() as u64;
        sink.deliver(&records, &|| false).map(|_| ())
    }
}
