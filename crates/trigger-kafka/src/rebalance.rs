//! The CFS consumer's rebalance callbacks. They only record what happened; the service loop acts on it
//! right after the poll that ran them (resume audit chains, restore or forget incident state).

use crate::settings::Delivery;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::{ClientContext, TopicPartitionList};
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// A rebalance seen by the consumer, handled by the service loop right after the poll that ran it.
#[derive(Debug)]
pub(crate) enum Rebalanced {
    Assigned(Vec<i32>),
    /// Taken away; `lost`: not handed over in a rebalance but lost with the group membership (a session that
    /// expired, a member the coordinator no longer knows).
    Revoked {
        partitions: Vec<i32>,
        lost: bool,
    },
}

/// Records rebalances for the service loop. At-least-once: commits stored offsets before partitions are
/// taken away, so the next owner starts after what this instance has finished (nothing is in flight when
/// the callback runs: see the module docs). Exactly-once: offsets only move inside transactions.
pub(crate) struct CfsContext {
    pub(crate) delivery: Delivery,
    pub(crate) assigned: Arc<AtomicI64>,
    pub(crate) events: Mutex<Vec<Rebalanced>>,
}

impl CfsContext {
    pub(crate) fn take_events(&self) -> Vec<Rebalanced> {
        std::mem::take(&mut *self.events.lock().expect("not poisoned"))
    }
    pub(crate) fn has_events(&self) -> bool {
        !self.events.lock().expect("not poisoned").is_empty()
    }
}

fn partitions_of(tpl: &TopicPartitionList) -> Vec<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

impl ClientContext for CfsContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        crate::log_client_error("cfs-consumer", error, reason);
    }
}

impl ConsumerContext for CfsContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let lost = consumer.assignment_lost();
                tracing::info!(partitions = ?partitions_of(tpl), lost, "partitions revoked");
                // A lost assignment's offsets can no longer be committed by this member.
                if self.delivery == Delivery::AtLeastOnce && !lost {
                    commit(consumer);
                }
                self.assigned.store(0, Relaxed);
                let partitions = partitions_of(tpl);
                self.events.lock().expect("not poisoned").push(Rebalanced::Revoked { partitions, lost });
            }
            Rebalance::Assign(_) => {}
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            tracing::info!(partitions = ?partitions_of(tpl), "partitions assigned");
            self.assigned.store(tpl.count() as i64, Relaxed);
            self.events.lock().expect("not poisoned").push(Rebalanced::Assigned(partitions_of(tpl)));
        }
    }
}

pub(crate) fn commit(consumer: &BaseConsumer<CfsContext>) {
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) => {}
        // Nothing stored since the last commit.
        Err(rdkafka::error::KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => tracing::warn!(error = %e, "offset commit failed (the events will be decided again)"),
    }
}
