//! One decider per deployment. Every instance follows the registry (a hot standby); one of them decides every
//! CFS partition. Which one is settled by a consumer group of its own, `<group_id>.leader`, over a topic of one
//! partition (`kafka.topics.leader`, never written): its holder leads. With the cooperative-sticky assignor
//! the one partition stays where it is when standbys join or leave, so the leadership moves only when its
//! holder leaves, is killed (its session expires) or loses its membership.
//!
//! **A lease against a leader that does not know it was replaced.** A member learns that the group took its
//! partitions away at its next heartbeat or poll; a process that was frozen or cut off would keep deciding
//! meanwhile. So the leader renews a lease: every `lease / 5` it commits an offset in the leadership group, which
//! the coordinator accepts only from a current member holding its generation. The leader decides only while
//! its last accepted renewal was *sent* less than `lease` ago, and a new leader starts deciding only `lease`
//! after it was handed partition 0. The old leader's last renewal was accepted before the group could hand the
//! partition on, so its lease ends before the new leader's wait does (both measured on monotonic clocks).
//! What a lease cannot stop, exactly-once mode stops at the broker: every leader uses the same transactional
//! id, so the new one fences the old one's producer (see `service`).
//!
//! This module only tells [`Standing`]; the service loop takes partitions over and gives them up.

use crate::settings::{KafkaSettings, Role};
use crate::KafkaError;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Where this instance stands in the leadership group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Not a member yet (joining the leadership group).
    Joining,
    /// A member that does not lead: it follows the registry and is ready to take over.
    Standby,
    /// Its membership was lost (a session that expired, a coordinator that no longer knows it).
    Lost,
    /// Handed the leadership (`epoch`), waiting out the lease of whoever held it before.
    Waiting { epoch: u64 },
    /// Deciding: the leadership of `epoch` with a lease renewed less than a lease ago.
    Leading { epoch: u64 },
    /// Still holding `epoch` but the lease has not been renewed in time (the coordinator did not answer): it
    /// decides nothing until a renewal is accepted or the leadership is gone.
    Lapsed { epoch: u64 },
}

impl Standing {
    pub fn as_str(self) -> &'static str {
        match self {
            Standing::Joining => "joining",
            Standing::Standby => "standby",
            Standing::Lost => "lost",
            Standing::Waiting { .. } => "taking_over",
            Standing::Leading { .. } => "deciding",
            Standing::Lapsed { .. } => "lease_lapsed",
        }
    }

    /// Why an instance in this standing decides nothing (for `/readyz`).
    pub fn why_not_deciding(self) -> &'static str {
        match self {
            Standing::Joining => "joining the leadership group",
            Standing::Standby => "a standby (another instance decides; this one takes over if it goes)",
            Standing::Lost => "its group membership was lost and is not regained yet",
            Standing::Waiting { .. } => "taking over: waiting out the previous decider's lease, restoring state",
            Standing::Leading { .. } => "deciding",
            Standing::Lapsed { .. } => "the leadership lease was not renewed in time (is the coordinator reachable?)",
        }
    }
}

/// What the leadership thread shares with the service loop. Times are ms on the process's monotonic clock.
#[derive(Debug)]
struct Shared {
    base: Instant,
    lease_ms: u64,
    holds: AtomicBool,
    epoch: AtomicU64,
    gained_ms: AtomicU64,
    /// When the last renewal the coordinator accepted was sent (0: none in this epoch).
    confirmed_ms: AtomicU64,
    member: AtomicBool,
    lost: AtomicBool,
    /// Memberships lost so far (each starts the watchdog's clock).
    losses: AtomicU64,
    /// Consumers the membership watchdog closed and created anew.
    recreated: AtomicU64,
}

impl Shared {
    fn now_ms(&self) -> u64 {
        self.base.elapsed().as_millis() as u64 + 1
    }
}

/// Follows the leadership group on a thread of its own (so its heartbeats, renewals and rebalances never wait
/// on a batch) and tells the service loop where this instance stands.
pub struct Leadership {
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leadership").field("standing", &self.standing()).finish_non_exhaustive()
    }
}

/// How the leadership thread runs.
#[derive(Debug, Clone, Copy)]
pub struct LeaseOptions {
    pub lease: Duration,
    /// A membership lost and not regained within this long: the consumer is closed and created anew.
    pub watchdog: Duration,
}

impl Leadership {
    /// Join the leadership group.
    pub fn start(settings: &KafkaSettings, opts: LeaseOptions) -> Result<Self, KafkaError> {
        let shared = Arc::new(Shared {
            base: Instant::now(),
            lease_ms: opts.lease.as_millis().max(1) as u64,
            holds: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            gained_ms: AtomicU64::new(0),
            confirmed_ms: AtomicU64::new(0),
            member: AtomicBool::new(false),
            lost: AtomicBool::new(false),
            losses: AtomicU64::new(0),
            recreated: AtomicU64::new(0),
        });
        let consumer = join(settings, &shared)?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (settings, shared, stop) = (settings.clone(), shared.clone(), stop.clone());
            std::thread::Builder::new()
                .name("leadership".into())
                .spawn(move || follow(consumer, &settings, &shared, &stop, opts.watchdog))
                .map_err(|e| KafkaError::Internal(format!("cannot start the leadership thread: {e}")))?
        };
        Ok(Self { shared, stop, thread: Some(thread) })
    }

    pub fn standing(&self) -> Standing {
        let s = &self.shared;
        if !s.holds.load(Relaxed) {
            return match (s.member.load(Relaxed), s.lost.load(Relaxed)) {
                (true, _) => Standing::Standby,
                (false, true) => Standing::Lost,
                (false, false) => Standing::Joining,
            };
        }
        let epoch = s.epoch.load(Relaxed);
        let now = s.now_ms();
        let confirmed = s.confirmed_ms.load(Relaxed);
        if now < s.gained_ms.load(Relaxed) + s.lease_ms {
            Standing::Waiting { epoch }
        } else if confirmed > 0 && now < confirmed + s.lease_ms {
            Standing::Leading { epoch }
        } else {
            Standing::Lapsed { epoch }
        }
    }

    /// Consumers the membership watchdog closed and created anew.
    pub fn recreated(&self) -> u64 {
        self.shared.recreated.load(Relaxed)
    }

    /// Whether the leadership of `epoch` is still held (lapsed or not): what an unfinished delivery checks.
    pub fn holds(&self, epoch: u64) -> bool {
        self.shared.holds.load(Relaxed) && self.shared.epoch.load(Relaxed) == epoch
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct LeaderContext {
    shared: Arc<Shared>,
    topic: String,
}

impl ClientContext for LeaderContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        crate::log_client_error("leadership", error, reason);
    }
}

fn holds_first(tpl: &TopicPartitionList) -> bool {
    tpl.elements().iter().any(|e| e.partition() == 0)
}

impl ConsumerContext for LeaderContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let lost = consumer.assignment_lost();
            if holds_first(tpl) {
                self.shared.holds.store(false, Relaxed);
                let epoch = self.shared.epoch.load(Relaxed);
                if lost {
                    tracing::warn!(epoch, "leadership lost with the group membership");
                } else {
                    tracing::info!(epoch, "leadership handed over");
                }
            }
            if lost {
                self.shared.member.store(false, Relaxed);
                self.shared.lost.store(true, Relaxed);
                self.shared.losses.fetch_add(1, Relaxed);
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                self.shared.member.store(true, Relaxed);
                self.shared.lost.store(false, Relaxed);
                if tpl.count() > 0 {
                    // Never read: the group only says who leads.
                    if let Err(e) = consumer.pause(tpl) {
                        tracing::warn!(error = %e, "cannot pause the leadership group's partitions");
                    }
                }
                if holds_first(tpl) {
                    let s = &self.shared;
                    s.confirmed_ms.store(0, Relaxed);
                    s.gained_ms.store(s.now_ms(), Relaxed);
                    let epoch = s.epoch.fetch_add(1, Relaxed) + 1;
                    s.holds.store(true, Relaxed);
                    tracing::info!(epoch, topic = %self.topic, "leadership taken: deciding once the lease is waited out");
                }
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => tracing::warn!(error = %e, "leadership rebalance error"),
        }
    }
}

fn join(settings: &KafkaSettings, shared: &Arc<Shared>) -> Result<BaseConsumer<LeaderContext>, KafkaError> {
    let topic = settings.topics.leader.clone();
    let consumer: BaseConsumer<LeaderContext> = settings
        .client_config(Role::Leadership)
        .create_with_context(LeaderContext { shared: shared.clone(), topic: topic.clone() })?;
    consumer.subscribe(&[&topic])?;
    Ok(consumer)
}

/// Renew the lease: an offset commit, which the coordinator accepts only from a current member of its
/// generation. Synchronous (librdkafka reports an asynchronous commit's result only to a callback API the
/// event-based client does not serve); it blocks only this thread.
fn renew(consumer: &BaseConsumer<LeaderContext>, shared: &Shared, topic: &str) {
    let mut tpl = TopicPartitionList::new();
    if tpl.add_partition_offset(topic, 0, Offset::Offset(0)).is_err() {
        return;
    }
    let sent = shared.now_ms();
    match consumer.commit(&tpl, CommitMode::Sync) {
        // The leadership may have gone while the commit was in flight (a revocation runs inside poll, on this
        // thread, so it has not: checked all the same).
        Ok(()) if shared.holds.load(Relaxed) => {
            shared.confirmed_ms.fetch_max(sent, Relaxed);
        }
        Ok(()) => {}
        Err(e) => tracing::debug!(error = %e, "leadership lease not renewed"),
    }
}

fn follow(
    mut consumer: BaseConsumer<LeaderContext>,
    settings: &KafkaSettings,
    shared: &Arc<Shared>,
    stop: &AtomicBool,
    watchdog: Duration,
) {
    let every = Duration::from_millis((shared.lease_ms / 5).max(1));
    let mut lost_since: Option<Instant> = None;
    let mut losses_seen = 0;
    let mut last_renewal = Instant::now() - every;
    while !stop.load(Relaxed) {
        if let Some(Err(e)) = consumer.poll(Duration::from_millis(20)) {
            tracing::debug!(error = %e, "leadership consumer");
        }
        if shared.holds.load(Relaxed) && last_renewal.elapsed() >= every {
            renew(&consumer, shared, &settings.topics.leader);
            last_renewal = Instant::now();
        }
        // The membership watchdog: librdkafka's own rejoining can wait on a coordinator that still holds the
        // old member until its session expires.
        // The clock starts at each loss; a consumer created anew gets the same bound once it loses again.
        let losses = shared.losses.load(Relaxed);
        if losses > losses_seen {
            losses_seen = losses;
            lost_since = Some(Instant::now());
        }
        match (shared.lost.load(Relaxed), lost_since) {
            (false, _) => lost_since = None,
            (true, Some(t)) if t.elapsed() >= watchdog => {
                tracing::warn!(
                    after_ms = watchdog.as_millis() as u64,
                    "the leadership consumer lost its group membership and did not regain it: creating it anew"
                );
                drop(consumer);
                shared.recreated.fetch_add(1, Relaxed);
                crate::telemetry::consumer_recreated();
                lost_since = None;
                consumer = loop {
                    match join(settings, shared) {
                        Ok(c) => break c,
                        Err(e) if !stop.load(Relaxed) => {
                            tracing::error!(error = %e, "cannot create the leadership consumer; retrying");
                            std::thread::sleep(Duration::from_secs(1));
                        }
                        Err(_) => return,
                    }
                };
            }
            (true, _) => {}
        }
    }
    // Leaving the group hands the leadership on at once (a standby need not wait for a session to expire).
    consumer.unsubscribe();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded::EmbeddedCluster;
    use crate::settings::Topics;

    fn wait(what: &str, ok: impl Fn() -> bool) {
        let t = Instant::now();
        while !ok() {
            assert!(t.elapsed() < Duration::from_secs(60), "{what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Two members: exactly one leads (after the lease), the other stands by; when the leader leaves, the
    /// standby leads under a later epoch.
    #[test]
    fn one_member_leads_and_a_standby_takes_over_when_it_leaves() {
        let cluster = EmbeddedCluster::start(1).expect("mock cluster");
        let topics = Topics::default();
        cluster.create_topics(&topics, 3).expect("topics");
        let settings = KafkaSettings { bootstrap_servers: cluster.bootstrap_servers(), topics, ..Default::default() };
        let opts = LeaseOptions { lease: Duration::from_millis(300), watchdog: Duration::from_secs(30) };
        let a = Leadership::start(&settings, opts).unwrap();
        wait("a leads", || matches!(a.standing(), Standing::Leading { .. }));
        let Standing::Leading { epoch: first } = a.standing() else { unreachable!() };
        let b = Leadership::start(&settings, opts).unwrap();
        wait("b stands by", || b.standing() == Standing::Standby);
        std::thread::sleep(Duration::from_secs(2));
        assert!(matches!(a.standing(), Standing::Leading { epoch } if epoch == first), "{:?}", a.standing());
        assert_eq!(b.standing(), Standing::Standby);
        drop(a);
        wait("b leads", || matches!(b.standing(), Standing::Leading { .. }));
    }
}
