//! What the service is told (`ServiceOptions`), what it shows while it runs (`Health`, read by the health
//! endpoints and the demo) and what it returns when it stops (`RunStats`).

use crate::records::{DeadLetterPayload, DeadLetterRule, DEAD_LETTER_MAX_BYTES};
use crate::registry::Applied;
use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64};
use std::time::Duration;
use trigger_core::Tally;

/// How the registry is brought up to date before a batch is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistrySync {
    /// Before each batch, read the registry to its current end (an opt-out applies to the next event).
    #[default]
    Strict,
    /// Apply registry updates as they arrive (lower latency; consent changes lag by a fetch).
    Eventual,
}

/// The `[service]` section of the configuration, deserialised as it is: values in the units their names
/// say (`_ms`, `_s`); the service reads them as durations through the methods below.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceOptions {
    /// Most events decided per batch (one produce-acknowledge round per batch).
    pub max_batch: usize,
    /// How long one poll waits for the first event of a batch.
    pub poll_timeout_ms: u64,
    /// Larger CFS records are dead-lettered as `oversized_message`.
    pub max_message_bytes: usize,
    /// How long start-up may take to read the registry to its end before it gives up.
    pub registry_bootstrap_timeout_s: u64,
    /// Strict: before each batch, read the registry to the end offsets it has at that moment (one ListOffsets
    /// round trip), so an opt-out acknowledged before an event was polled applies to that event. A batch whose
    /// events cannot touch a camera (`trigger_core::Engine::may_use_cameras`) skips the round trip.
    pub registry_sync: RegistrySync,
    /// Strict sync waits at most this long.
    pub registry_sync_timeout_ms: u64,
    /// No CFS for this long is logged and exported (`dispatch_trigger_cad_silent`).
    pub cad_silence_s: u64,
    /// What a dead letter keeps of the refused record: original | redacted | digest.
    pub dead_letter_payload: DeadLetterPayload,
    /// The largest dead letter (payload + key + headers); a larger one keeps only its digest headers.
    pub dead_letter_max_bytes: usize,
    /// Longest pause between delivery retries.
    pub retry_backoff_max_ms: u64,
    /// Rounds a permanent produce error is retried before the service stops with it (see [`crate::sink`]).
    pub permanent_attempts: u32,
    /// `/readyz` answers 503 once no broker has answered for this long (and 200 again at the next answer).
    pub broker_grace_ms: u64,
    /// The membership watchdog: a leadership-group consumer that lost its group membership (its assignment was
    /// lost, not handed over) and has not joined the group again within this long is closed and created anew.
    pub membership_watchdog_ms: u64,
    /// The decider's lease (see [`crate::leader`]): the decider stops deciding when no renewal was accepted for
    /// this long, and a new decider waits this long after it was handed the leadership. Failover takes the
    /// leadership group's session timeout (6 s) plus this.
    pub leader_lease_ms: u64,
}

impl ServiceOptions {
    pub fn poll_timeout(&self) -> Duration {
        Duration::from_millis(self.poll_timeout_ms)
    }

    pub fn registry_bootstrap_timeout(&self) -> Duration {
        Duration::from_secs(self.registry_bootstrap_timeout_s)
    }

    /// How long to wait for the registry before a batch; `None`: no wait (eventual).
    pub fn registry_sync_wait(&self) -> Option<Duration> {
        match self.registry_sync {
            RegistrySync::Strict => Some(Duration::from_millis(self.registry_sync_timeout_ms)),
            RegistrySync::Eventual => None,
        }
    }

    pub fn cad_silence(&self) -> Duration {
        Duration::from_secs(self.cad_silence_s)
    }

    pub fn broker_grace(&self) -> Duration {
        Duration::from_millis(self.broker_grace_ms)
    }

    pub fn membership_watchdog(&self) -> Duration {
        Duration::from_millis(self.membership_watchdog_ms)
    }

    pub fn lease(&self) -> crate::leader::LeaseOptions {
        crate::leader::LeaseOptions {
            lease: Duration::from_millis(self.leader_lease_ms),
            watchdog: self.membership_watchdog(),
        }
    }

    pub fn dead_letters(&self) -> DeadLetterRule {
        DeadLetterRule { payload: self.dead_letter_payload, max_bytes: self.dead_letter_max_bytes }
    }

    pub fn retry(&self) -> RetryPolicy {
        RetryPolicy {
            backoff_max: Duration::from_millis(self.retry_backoff_max_ms),
            permanent_attempts: self.permanent_attempts,
        }
    }

    /// Every value that cannot work, at once.
    pub fn validate(&self) -> Vec<String> {
        let mut errs = Vec::new();
        if self.max_batch == 0 {
            errs.push("service.max_batch must be at least 1".to_string());
        }
        if self.max_message_bytes < 64 {
            errs.push(format!("service.max_message_bytes {} is too small", self.max_message_bytes));
        }
        if self.permanent_attempts == 0 {
            errs.push("service.permanent_attempts must be at least 1".to_string());
        }
        if self.dead_letter_max_bytes < 4096 {
            errs.push(format!(
                "service.dead_letter_max_bytes {} leaves no room for headers",
                self.dead_letter_max_bytes
            ));
        }
        if self.cad_silence_s == 0 {
            errs.push("service.cad_silence_s must be at least 1".to_string());
        }
        if self.leader_lease_ms < 100 {
            errs.push(format!("service.leader_lease_ms {} is below 100", self.leader_lease_ms));
        }
        if self.registry_bootstrap_timeout_s == 0 {
            errs.push("service.registry_bootstrap_timeout_s must be at least 1".to_string());
        }
        errs
    }
}

impl Default for ServiceOptions {
    fn default() -> Self {
        Self {
            max_batch: 256,
            poll_timeout_ms: 100,
            max_message_bytes: trigger_cad::DEFAULT_MAX_MESSAGE_BYTES,
            registry_bootstrap_timeout_s: 120,
            registry_sync: RegistrySync::Strict,
            registry_sync_timeout_ms: 2000,
            cad_silence_s: 600,
            dead_letter_payload: DeadLetterPayload::Original,
            dead_letter_max_bytes: DEAD_LETTER_MAX_BYTES,
            retry_backoff_max_ms: 5000,
            permanent_attempts: RetryPolicy::default().permanent_attempts,
            broker_grace_ms: 10_000,
            membership_watchdog_ms: 30_000,
            leader_lease_ms: 1500,
        }
    }
}

/// What the health endpoints and the demo read while the service runs.
#[derive(Debug, Default)]
pub struct Health {
    /// The registry has been read to its end at start-up and the CFS consumer is subscribed.
    pub ready: AtomicBool,
    /// CFS partitions currently assigned to this instance by the consumer group.
    pub assigned_partitions: AtomicI64,
    /// Events taken from the CFS topic and fully handled (outputs acknowledged, offsets stored).
    pub handled: AtomicU64,
    /// Wall clock of the last CFS event, Unix ms (0: none yet).
    pub last_cfs_ms: AtomicI64,
    pub cad_silent: AtomicBool,
    /// Wall clock of the last answer from the brokers (an acknowledged batch, a registry offsets reply), Unix ms.
    pub broker_seen_ms: AtomicI64,
    /// How long without an answer `/readyz` tolerates, ms (0: not checked).
    pub broker_grace_ms: AtomicI64,
    /// Since when (Unix ms) the process has been waiting for the brokers to acknowledge what it wrote (0: it
    /// waits for nothing). Waiting longer than `broker_grace_ms` is not ready: an `ingest` source learns the
    /// brokers are gone only from a write that does not end.
    pub awaiting_brokers_since_ms: AtomicI64,
    /// Leadership-group consumers the membership watchdog closed and created anew.
    pub consumers_recreated: AtomicU64,
    /// Where the service stands in the leadership group (None: a process without one, such as the bridge).
    pub standing: std::sync::Mutex<Option<crate::leader::Standing>>,
    /// A process that holds no partitions (`ingest`): readiness does not ask for any.
    pub partitionless: AtomicBool,
    /// Why the process cannot do its job for a reason outside Kafka (`ingest`: the CAD source does not answer);
    /// None when it can.
    pub source_down: std::sync::Mutex<Option<String>>,
}

impl Health {
    /// Whether the service can do its job at `now_ms` (Unix ms), and if not, why: `/readyz`, and the
    /// `dispatch_trigger_ready` gauge, which is set from it at every scrape. Ready: the registry is loaded, the
    /// brokers answer, and the consumer group has assigned this instance partitions to decide.
    pub fn readiness(&self, now_ms: i64) -> Result<(), String> {
        use std::sync::atomic::Ordering::Relaxed;
        if !self.ready.load(Relaxed) {
            return Err("not ready: reading the camera registry or stopping".into());
        }
        let (seen, grace) = (self.broker_seen_ms.load(Relaxed), self.broker_grace_ms.load(Relaxed));
        let waiting = self.awaiting_brokers_since_ms.load(Relaxed);
        if grace > 0 && waiting > 0 && now_ms.saturating_sub(waiting) > grace {
            let s = now_ms.saturating_sub(waiting) / 1000;
            return Err(format!("not ready: the Kafka brokers have not acknowledged the records for {s} s"));
        }
        if let Some(why) = self.source_down.lock().expect("not poisoned").as_ref() {
            return Err(format!("not ready: {why}"));
        }
        let silent = now_ms.saturating_sub(seen);
        if grace > 0 && seen > 0 && silent > grace {
            return Err(format!("not ready: no answer from the Kafka brokers for {} s", silent / 1000));
        }
        if !self.partitionless.load(Relaxed) && self.assigned_partitions.load(Relaxed) == 0 {
            return Err(match *self.standing.lock().expect("not poisoned") {
                Some(s) => format!(
                    "not ready: no partition assigned to this instance, so it decides nothing: {}",
                    s.why_not_deciding()
                ),
                None => "not ready: no partition assigned to this instance (joining the consumer group, or its \
                         group membership was lost)"
                    .into(),
            });
        }
        Ok(())
    }
}

impl Health {
    /// Whether the instance decides or stands by ready to take over at `now_ms` (`/standbyz`: what an
    /// orchestrator's readiness probe asks of a deployment with standbys): the registry is loaded, the brokers
    /// answer, and it is the decider or a standby in the leadership group.
    pub fn availability(&self, now_ms: i64) -> Result<(), String> {
        let why = match self.readiness(now_ms) {
            Ok(()) => return Ok(()),
            Err(why) => why,
        };
        let standby = *self.standing.lock().expect("not poisoned") == Some(crate::leader::Standing::Standby);
        let brokers_answer = !why.contains("Kafka brokers");
        if standby && brokers_answer && self.ready.load(std::sync::atomic::Ordering::Relaxed) {
            Ok(())
        } else {
            Err(why)
        }
    }
}

/// Counts and latencies of one run, returned when the service stops. The decision counts are a
/// [`trigger_core::Tally`] (the same the offline replay keeps), reachable as fields of `RunStats` itself.
#[derive(Debug, Clone)]
pub struct RunStats {
    pub tally: Tally,
    /// Dead letters produced: refused CFS records and bad registry records.
    pub dead_letters: u64,
    pub registry: Applied,
    pub delivery_retries: u64,
    pub registry_round_trips: RoundTrips,
    /// CFS record timestamp (when it was produced) -> every output acknowledged, microseconds.
    pub end_to_end_us: Histogram<u64>,
    /// Wall-clock time of `Engine::decide`, microseconds.
    pub decide_us: Histogram<u64>,
}

/// Strict registry sync: batches that took the ListOffsets round trip, and batches that needed none (no event
/// in them could touch a camera: `trigger_core::Engine::may_use_cameras`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RoundTrips {
    pub taken: u64,
    pub skipped: u64,
}

impl RoundTrips {
    /// A batch under strict registry sync: whether it needed the round trip.
    pub fn count(&mut self, needed: bool) {
        if needed {
            self.taken += 1;
        } else {
            self.skipped += 1;
        }
    }
}

impl std::ops::Deref for RunStats {
    type Target = Tally;
    fn deref(&self) -> &Tally {
        &self.tally
    }
}

impl Default for RunStats {
    fn default() -> Self {
        let h = || Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds");
        Self {
            tally: Tally::default(),
            dead_letters: 0,
            registry: Applied::default(),
            delivery_retries: 0,
            registry_round_trips: RoundTrips::default(),
            end_to_end_us: h(),
            decide_us: h(),
        }
    }
}

/// How deliveries are retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Longest pause between rounds (the first is 100 ms, doubling).
    pub backoff_max: Duration,
    /// Rounds with a permanent error before giving up with [`KafkaError::Delivery`].
    pub permanent_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { backoff_max: Duration::from_secs(5), permanent_attempts: 3 }
    }
}
