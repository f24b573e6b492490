//! What the service is told (`ServiceOptions`), what it shows while it runs (`Health`, read by the health
//! endpoints and the demo) and what it returns when it stops (`RunStats`).

use crate::records::{DeadLetterPayload, DeadLetterRule, DEAD_LETTER_MAX_BYTES};
use crate::registry::Applied;
use crate::sink::RetryPolicy;
use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64};
use std::time::Duration;
use trigger_core::Tally;

#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// Most events decided per batch (one produce-acknowledge round per batch).
    pub max_batch: usize,
    /// How long one poll waits for the first event of a batch.
    pub poll_timeout: Duration,
    pub max_message_bytes: usize,
    /// How long start-up may take to read the registry to its end before it gives up.
    pub registry_bootstrap_timeout: Duration,
    /// Before each batch, read the registry to the end offsets it has at that moment (one ListOffsets round
    /// trip), so an opt-out acknowledged before an event was polled applies to that event. Waits at most this
    /// long; `None`: apply only what has already arrived (lower latency, consent changes lag by a fetch).
    pub registry_sync_timeout: Option<Duration>,
    /// No CFS for this long is logged and exported (`dispatch_trigger_cad_silent`).
    pub cad_silence: Duration,
    /// Longest pause between delivery retries.
    pub retry_backoff_max: Duration,
    pub dead_letter_payload: DeadLetterPayload,
    /// The largest dead letter (payload + key + headers); a larger one keeps only its digest headers.
    pub dead_letter_max_bytes: usize,
    /// Rounds a permanent produce error is retried before the service stops with it (see [`crate::sink`]).
    pub permanent_attempts: u32,
    /// `/readyz` answers 503 once no broker has answered for this long (and 200 again at the next answer).
    pub broker_grace: Duration,
}

impl ServiceOptions {
    pub fn dead_letters(&self) -> DeadLetterRule {
        DeadLetterRule { payload: self.dead_letter_payload, max_bytes: self.dead_letter_max_bytes }
    }

    pub fn retry(&self) -> RetryPolicy {
        RetryPolicy { backoff_max: self.retry_backoff_max, permanent_attempts: self.permanent_attempts }
    }
}

impl Default for ServiceOptions {
    fn default() -> Self {
        Self {
            max_batch: 256,
            poll_timeout: Duration::from_millis(100),
            max_message_bytes: trigger_cad::DEFAULT_MAX_MESSAGE_BYTES,
            registry_bootstrap_timeout: Duration::from_secs(120),
            registry_sync_timeout: Some(Duration::from_secs(2)),
            cad_silence: Duration::from_secs(600),
            retry_backoff_max: Duration::from_secs(5),
            dead_letter_payload: DeadLetterPayload::Original,
            dead_letter_max_bytes: DEAD_LETTER_MAX_BYTES,
            permanent_attempts: RetryPolicy::default().permanent_attempts,
            broker_grace: Duration::from_secs(10),
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
    /// Only records produced at or after this instant (Unix ms) are counted in `RunStats::end_to_end_us`
    /// (benchmarks leave their warm-up out).
    pub measure_from_ms: AtomicI64,
}

impl Health {
    /// Whether the service can do its job at `now_ms` (Unix ms), and if not, why: `/readyz`.
    pub fn readiness(&self, now_ms: i64) -> Result<(), String> {
        use std::sync::atomic::Ordering::Relaxed;
        if !self.ready.load(Relaxed) {
            return Err("not ready: reading the camera registry or stopping".into());
        }
        let (seen, grace) = (self.broker_seen_ms.load(Relaxed), self.broker_grace_ms.load(Relaxed));
        let silent = now_ms.saturating_sub(seen);
        if grace > 0 && seen > 0 && silent > grace {
            return Err(format!("not ready: no answer from the Kafka brokers for {} s", silent / 1000));
        }
        Ok(())
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
    /// CFS record timestamp (when it was produced) -> every output acknowledged, microseconds.
    pub end_to_end_us: Histogram<u64>,
    /// Wall-clock time of `Engine::decide`, microseconds.
    pub decide_us: Histogram<u64>,
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
            end_to_end_us: h(),
            decide_us: h(),
        }
    }
}
