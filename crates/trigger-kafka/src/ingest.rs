//! Where a live CAD source (`dispatch-trigger ingest`) writes: its CFS records and dead letters, and with
//! them its watermark (how far it has read, on the watermark topic, keyed by the source's name), so that the
//! watermark never runs ahead of the records it stands for.
//!
//! At-least-once: the records are produced and every one acknowledged, then the watermark; a source killed
//! between the two reads those rows again and writes their revisions a second time (same incident, same
//! revision: the service refuses the second as `duplicate_revision`). Exactly-once: records and watermark in
//! one transaction, on a transactional id of the source's own (`<group_id>.ingest.<source>`), so a source
//! killed at any point leaves either both or neither; a restarted one fences the old producer first.

use crate::options::RetryPolicy;
use crate::records::OutRecord;
use crate::settings::{Delivery, KafkaSettings, Role};
use crate::sink::Delivering;
use crate::KafkaError;
use crate::Producer;
use rdkafka::producer::Producer as _;
use std::time::Duration;

/// The producing side of one source.
#[derive(Debug)]
pub struct IngestSink {
    source: String,
    settings: KafkaSettings,
    out: Out,
}

enum Out {
    AtLeastOnce(Box<Delivering>),
    ExactlyOnce(Producer),
}

impl std::fmt::Debug for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Out::AtLeastOnce(_) => "AtLeastOnce",
            Out::ExactlyOnce(_) => "ExactlyOnce",
        })
    }
}

impl IngestSink {
    /// The sink of the source named `source`. Exactly-once, this fences whichever producer of the same source
    /// ran before (its open transaction is aborted).
    pub fn new(settings: &KafkaSettings, source: &str, retry: RetryPolicy) -> Result<Self, KafkaError> {
        let out = match settings.delivery {
            Delivery::AtLeastOnce => Out::AtLeastOnce(Box::new(Delivering::new(settings, Role::SideProducer, retry)?)),
            Delivery::ExactlyOnce => {
                let ours = KafkaSettings {
                    transactional_id: Some(format!("{}.ingest.{source}", settings.group_id)),
                    ..settings.clone()
                };
                let p: Producer =
                    ours.client_config(Role::Producer).create_with_context(crate::Ctx("ingest-producer"))?;
                p.init_transactions(Duration::from_secs(60))?;
                Out::ExactlyOnce(p)
            }
        };
        Ok(Self { source: source.to_string(), settings: settings.clone(), out })
    }

    /// The source's last committed watermark (None: it has never written one).
    pub fn watermark(&self) -> Result<Option<Vec<u8>>, KafkaError> {
        let topic = &self.settings.topics.watermark;
        let records = crate::inspect::read_topic(&self.settings, topic, true, Duration::from_secs(60))?;
        Ok(records.into_iter().rev().find(|r| r.key.as_deref() == Some(self.source.as_bytes())).and_then(|r| r.payload))
    }

    /// Write `records`, then `watermark` (the source's position after them), as the delivery mode says.
    /// Ok(false): `stop` said so before every record was acknowledged (at-least-once; the watermark was not
    /// written). An error of the exactly-once transaction aborts it: nothing of it is visible, and the caller
    /// starts again from the stored watermark with a new sink.
    pub fn commit(
        &mut self,
        records: &[OutRecord],
        watermark: &[u8],
        stop: &dyn Fn() -> bool,
    ) -> Result<bool, KafkaError> {
        let mark = OutRecord::keyed(&self.settings.topics.watermark, self.source.as_bytes(), Some(watermark.to_vec()));
        match &mut self.out {
            Out::AtLeastOnce(d) => Ok(d.deliver(records, stop)? && d.deliver(std::slice::from_ref(&mark), stop)?),
            Out::ExactlyOnce(p) => {
                crate::sink::produce_transaction(p, records.iter().chain(std::iter::once(&mark)))?;
                Ok(true)
            }
        }
    }
}
