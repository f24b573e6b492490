//! Producing: sending records with acknowledgement futures, and the
//! publishers behind `cameras publish` and `replay --to-kafka`.

use crate::codec::camera_to_pb;
use crate::settings::{KafkaSettings, Role};
use crate::KafkaError;
use crate::Producer as FutureProducer;
use futures_executor::block_on;
use prost::Message;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use std::time::Duration;
use trigger_core::{CallForService, CameraRecord};

pub use crate::records::{cfs_key, OutRecord};

pub fn create_producer(settings: &KafkaSettings) -> Result<FutureProducer, KafkaError> {
    Ok(settings.client_config(Role::Producer).create_with_context(crate::Ctx("producer"))?)
}

/// Enqueue one record; waits (serving delivery reports) while librdkafka's queue is full.
pub fn enqueue(producer: &FutureProducer, r: &OutRecord) -> Result<DeliveryFuture, KafkaError> {
    let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
    for (k, v) in &r.headers {
        headers = headers.insert(Header { key: k, value: Some(v.as_slice()) });
    }
    let mut rec = FutureRecord::<[u8], [u8]>::to(&r.topic).key(&r.key).headers(headers);
    if let Some(p) = &r.payload {
        rec = rec.payload(p.as_slice());
    }
    if let Some(p) = r.partition {
        rec = rec.partition(p);
    }
    loop {
        match producer.send_result(rec) {
            Ok(f) => return Ok(f),
            Err((rdkafka::error::KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                producer.poll(Duration::from_millis(10));
                rec = back;
            }
            Err((e, _)) => return Err(e.into()),
        }
    }
}

/// Wait for one acknowledgement.
pub fn acked(f: DeliveryFuture) -> Result<(), KafkaError> {
    match block_on(f) {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => Err(e.into()),
        Err(_) => Err(KafkaError::Internal("producer closed before the delivery report".into())),
    }
}

/// How long a new idempotent producer takes to have its producer id: librdkafka's 500 ms PID timer and a
/// round trip (see [`Publisher::settle`]).
pub const IDEMPOTENT_START: Duration = Duration::from_millis(650);

/// Produces records and waits for acknowledgements: for tools and tests, not the service's hot path.
///
/// A publisher never drops a record: librdkafka's local delivery timeout is off (`message.timeout.ms = 0`,
/// whatever the configuration says), so a record is retried through a broker outage of any length until it
/// is acknowledged or refused for good; [`Publisher::wait_until`] waits for that, or until it is told to stop,
/// and then names every record that was not acknowledged.
pub struct Publisher {
    producer: FutureProducer,
    /// Each record sent and not yet collected: what it is (for a report), and its acknowledgement.
    pending: Vec<(String, DeliveryFuture)>,
    created: std::time::Instant,
}

/// Records a publisher could not deliver: refused by the brokers for good, or still unacknowledged when it
/// was told to stop.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{} of {} records not confirmed delivered ({} refused by the brokers; {} unacknowledged when stopped, which \
     may or may not have reached them):\n  {}",
    .refused.len() + .unacknowledged.len(),
    .total,
    .refused.len(),
    .unacknowledged.len(),
    .refused.iter().map(|(r, e)| format!("{r}: {e}")).chain(.unacknowledged.iter().map(|r| format!("{r}: not acknowledged"))).collect::<Vec<_>>().join("\n  ")
)]
pub struct Undelivered {
    pub total: usize,
    /// (record, the brokers' reason).
    pub refused: Vec<(String, String)>,
    pub unacknowledged: Vec<String>,
}

/// The acknowledgement, if it has come (never blocks).
fn ready(f: &mut DeliveryFuture) -> Option<Result<(), KafkaError>> {
    use std::future::Future;
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::Pin::new(f).poll(&mut cx) {
        std::task::Poll::Pending => None,
        std::task::Poll::Ready(Ok(Ok(_))) => Some(Ok(())),
        std::task::Poll::Ready(Ok(Err((e, _)))) => Some(Err(e.into())),
        std::task::Poll::Ready(Err(_)) => {
            Some(Err(KafkaError::Internal("producer closed before the delivery report".into())))
        }
    }
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher").field("pending", &self.pending.len()).finish_non_exhaustive()
    }
}

impl Publisher {
    pub fn new(settings: &KafkaSettings) -> Result<Self, KafkaError> {
        // Never transactional, whatever the service's delivery mode.
        let plain =
            KafkaSettings { delivery: crate::Delivery::AtLeastOnce, transactional_id: None, ..settings.clone() };
        let mut config = plain.client_config(Role::Producer);
        config.set("message.timeout.ms", "0");
        Ok(Self {
            producer: config.create_with_context(crate::Ctx("publisher"))?,
            pending: Vec::new(),
            created: std::time::Instant::now(),
        })
    }

    /// Wait until the producer can send at once. A new idempotent producer asks the broker for its producer
    /// id on a 500 ms timer (librdkafka's `rd_kafka_idemp_init`), and nothing is sent before it has one:
    /// records produced in the meantime wait, with the timestamp of the moment they were produced. A tool
    /// that measures latency from those timestamps settles its publisher first.
    pub fn settle(&self) {
        let ready_at = self.created + IDEMPOTENT_START;
        if let Some(wait) = ready_at.checked_duration_since(std::time::Instant::now()) {
            std::thread::sleep(wait);
        }
    }

    /// Enqueue without waiting; `wait` collects every acknowledgement. The record is named in a report by its
    /// topic and key.
    pub fn send(&mut self, r: &OutRecord) -> Result<(), KafkaError> {
        let label = format!("{} key {}", r.topic, String::from_utf8_lossy(&r.key));
        self.send_named(r, label)
    }

    /// As [`Publisher::send`], naming the record `label` in a report.
    pub fn send_named(&mut self, r: &OutRecord, label: String) -> Result<(), KafkaError> {
        let f = enqueue(&self.producer, r)?;
        self.pending.push((label, f));
        Ok(())
    }

    /// Wait for every record sent so far; the first failure is returned.
    pub fn wait(&mut self) -> Result<usize, KafkaError> {
        let n = self.pending.len();
        let mut first_err = None;
        for (_, f) in self.pending.drain(..) {
            if let Err(e) = acked(f) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(n), Err)
    }

    /// Wait until every record sent so far is acknowledged or refused for good, or until `stop` is set;
    /// `waiting` is told, every `every`, how many records are still unacknowledged (a broker outage). Returns
    /// how many were acknowledged, or every record that was not.
    pub fn wait_until(
        &mut self,
        stop: &std::sync::atomic::AtomicBool,
        every: Duration,
        mut waiting: impl FnMut(usize),
    ) -> Result<usize, Undelivered> {
        let total = self.pending.len();
        let mut refused = Vec::new();
        let mut last_said = std::time::Instant::now();
        loop {
            self.pending.retain_mut(|(label, f)| match ready(f) {
                None => true,
                Some(Ok(())) => false,
                Some(Err(e)) => {
                    refused.push((std::mem::take(label), e.to_string()));
                    false
                }
            });
            if self.pending.is_empty() || stop.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
            if last_said.elapsed() >= every {
                waiting(self.pending.len());
                last_said = std::time::Instant::now();
            }
            // The producer's own thread serves delivery reports: nothing to poll here.
            std::thread::sleep(Duration::from_millis(50));
        }
        let unacknowledged: Vec<String> = self.pending.drain(..).map(|(label, _)| label).collect();
        if refused.is_empty() && unacknowledged.is_empty() {
            Ok(total)
        } else {
            Err(Undelivered { total, refused, unacknowledged })
        }
    }

    pub fn camera(&mut self, topic: &str, c: &CameraRecord) -> Result<(), KafkaError> {
        self.send(&OutRecord::keyed(topic, c.camera_id.as_bytes(), Some(camera_to_pb(c).encode_to_vec())))
    }

    /// A heartbeat on the status topic.
    pub fn status(&mut self, topic: &str, s: &crate::codec::CameraStatus) -> Result<(), KafkaError> {
        let bytes = crate::codec::status_to_pb(s).encode_to_vec();
        self.send(&OutRecord::keyed(topic, s.camera_id.as_bytes(), Some(bytes)))
    }

    /// A tombstone: the camera leaves the registry (removed or opted out).
    pub fn remove_camera(&mut self, topic: &str, camera_id: &str) -> Result<(), KafkaError> {
        self.send(&OutRecord::keyed(topic, camera_id.as_bytes(), None))
    }

    pub fn cfs(&mut self, topic: &str, ev: &CallForService) -> Result<(), KafkaError> {
        let r = OutRecord::keyed(topic, cfs_key(ev), Some(trigger_cad::pb::to_pb(ev).encode_to_vec()));
        self.send_named(
            &r,
            format!("{topic}: incident {} of {} revision {}", ev.incident_id, ev.agency_id, ev.revision),
        )
    }

    /// A break-glass request onto the CFS topic, keyed like its incident (the service decides it on the
    /// incident's partition, in order with the incident's revisions).
    pub fn break_glass(&mut self, cfs_topic: &str, req: &trigger_core::BreakGlassRequest) -> Result<(), KafkaError> {
        let mut r = OutRecord::keyed(
            cfs_topic,
            crate::records::incident_key(&req.agency_id, &req.incident_id),
            Some(serde_json::to_vec(req).expect("serialisable")),
        );
        r.headers.push((crate::records::H_KIND, crate::records::KIND_BREAK_GLASS.to_vec()));
        self.send(&r)
    }

    /// Arbitrary bytes on a topic (a bad message, for dead-letter tests and demos).
    pub fn raw(&mut self, topic: &str, key: &[u8], bytes: &[u8]) -> Result<(), KafkaError> {
        self.send(&OutRecord::keyed(topic, key, Some(bytes.to_vec())))
    }

    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        Ok(self.producer.flush(timeout)?)
    }
}
