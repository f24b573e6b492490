//! `bench-kafka`: a bare consume -> produce relay and the engine, on the in-process broker or Apache Kafka,
//! at fixed rates and flat out (BENCHMARKS.md).

use super::{embedded_service_config, leaving_now, publish_cameras, Percentiles};
use anyhow::{Context, Result};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};
use trigger_cad::replay::{Pace, Pacer};
use trigger_core::{CallForService, CameraRecord};
use trigger_kafka::{wall_ms, EmbeddedCluster, Health, KafkaSettings, Publisher};

/// What `bench-kafka` measures with.
pub struct BenchOptions {
    pub rates: Vec<f64>,
    pub seconds: f64,
    /// Events in the as-fast-as-possible run that measures the highest sustained rate.
    pub max_events: usize,
    pub partitions: i32,
    /// Partitions of the engine's commands and owner-notices topics (`None`: `partitions`).
    pub fanout_partitions: Option<i32>,
    /// The engine in exactly-once mode (the relay is never transactional).
    pub exactly_once: bool,
    pub cameras: Vec<CameraRecord>,
    /// Real CAD events, cycled (with a new incident id each cycle) as long as a run needs.
    pub events: Vec<CallForService>,
    pub policy: std::path::PathBuf,
    /// An external cluster (Apache Kafka) instead of the in-process mock cluster.
    pub bootstrap: Option<String>,
    /// Runs per rate and processor, pooled into one row each: a shared machine's slow minute then falls on
    /// both sides rather than on one. Rounds alternate which side goes first (relay-engine, engine-relay, ...),
    /// so a drift over the runs (a broker warming up) favours neither, and with more than one round an
    /// uncounted pair at the first rate warms the broker up before anything is counted.
    pub rounds: usize,
}

/// One run's raw result; rounds of the same rate and processor are pooled into one row.
struct Measured {
    histogram: hdrhistogram::Histogram<u64>,
    events: u64,
    elapsed_s: f64,
}

impl Measured {
    fn pool(&mut self, other: Measured) -> Result<()> {
        self.histogram.add(&other.histogram).map_err(|e| anyhow::anyhow!("pooling histograms: {e:?}"))?;
        self.events += other.events;
        self.elapsed_s += other.elapsed_s;
        Ok(())
    }

    fn row(&self, p: Processor, rate: Option<f64>) -> BenchRow {
        BenchRow {
            processor: if p == Processor::Relay { "relay" } else { "engine" },
            offered: rate.map_or("max".into(), |r| format!("{r}")),
            events: self.events,
            achieved_per_s: (self.events as f64 / self.elapsed_s).round(),
            end_to_end_ms: Percentiles::of(&self.histogram, 1e3),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct BenchRow {
    pub processor: &'static str,
    /// Offered rate, events/s ("max": as fast as the generator goes).
    pub offered: String,
    pub events: u64,
    /// Events handled per second, first send to last acknowledgement.
    pub achieved_per_s: f64,
    /// CFS record timestamp -> every output acknowledged, milliseconds.
    pub end_to_end_ms: Option<Percentiles>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Processor {
    Relay,
    Engine,
}

/// A bare consume -> produce relay and the engine, on one in-process broker, at fixed rates and flat out.
/// Where the benchmark runs: the in-process mock cluster, or an external broker (Apache Kafka).
enum Target {
    Embedded(EmbeddedCluster),
    External(String),
}

impl Target {
    fn bootstrap(&self) -> String {
        match self {
            Target::Embedded(c) => c.bootstrap_servers(),
            Target::External(b) => b.clone(),
        }
    }
}

pub fn bench_kafka(o: &BenchOptions) -> Result<Vec<BenchRow>> {
    let cluster = match &o.bootstrap {
        Some(b) => Target::External(b.clone()),
        None => Target::Embedded(EmbeddedCluster::start(1)?),
    };
    // (rate, processor, counted)
    let mut runs: Vec<(Option<f64>, Processor, bool)> = Vec::new();
    let pair = |round: usize| {
        if round.is_multiple_of(2) {
            [Processor::Relay, Processor::Engine]
        } else {
            [Processor::Engine, Processor::Relay]
        }
    };
    if let (Some(&first), true) = (o.rates.first(), o.rounds > 1) {
        runs.extend(pair(0).map(|p| (Some(first), p, false)));
    }
    for r in &o.rates {
        for round in 0..o.rounds.max(1) {
            runs.extend(pair(round).map(|p| (Some(*r), p, true)));
        }
    }
    runs.extend(pair(0).map(|p| (None, p, true)));
    let mut pooled: Vec<(Option<f64>, Processor, Measured)> = Vec::new();
    for (i, (rate, p, counted)) in runs.into_iter().enumerate() {
        let n = rate.map_or(o.max_events, |r| (r * o.seconds).round() as usize);
        let m = measure(&cluster, i, p, rate, n, o)?;
        let row = m.row(p, rate);
        let p99 = row.end_to_end_ms.as_ref().map(|x| x.p99);
        // benches/batch_breakdown.py splits the debug log into runs at these lines.
        eprintln!(
            "{:>6} {:>8}: {} events, {:.0}/s, p99 {p99:?} ms{}",
            row.processor,
            row.offered,
            row.events,
            row.achieved_per_s,
            if counted { "" } else { " (broker warm-up, not counted)" }
        );
        if !counted {
            continue;
        }
        match pooled.iter_mut().find(|(r, q, _)| *r == rate && *q == p) {
            Some((_, _, acc)) => acc.pool(m)?,
            None => pooled.push((rate, p, m)),
        }
    }
    Ok(pooled.iter().map(|(rate, p, m)| m.row(*p, *rate)).collect())
}

fn measure(
    cluster: &Target,
    run: usize,
    p: Processor,
    rate: Option<f64>,
    n: usize,
    o: &BenchOptions,
) -> Result<Measured> {
    let (settings, relayed) = bench_topics(cluster, run, p, o)?;
    let measured = measure_on(&settings, &relayed, p, rate, n, o);
    if let Target::External(_) = cluster {
        // A broker keeping every run's topics slows down: one holding ~5,800 partitions of earlier runs stalled
        // the engine for 100+ ms at times, which a fresh broker does not (BENCHMARKS.md).
        let mut topics = settings.topics.all().to_vec();
        topics.push(&relayed);
        super::delete_topics_or_warn(&settings, &topics);
    }
    measured
}

/// One run on `settings`' topics (and `relayed`, the relay's output).
fn measure_on(
    settings: &KafkaSettings,
    relayed: &str,
    p: Processor,
    rate: Option<f64>,
    n: usize,
    o: &BenchOptions,
) -> Result<Measured> {
    let label = settings.group_id.clone();
    let cfg = embedded_service_config(settings, &o.policy)?;
    let health = Health::default();
    // Nothing counts until the warm-up is over: the warm-up's records wait for the consumer group to form
    // and for the first fetch (about a second), and counting them was the "~0.5 s outliers" of earlier runs.
    health.measure_from_ms.store(i64::MAX, Relaxed);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| -> Result<Measured> {
        let worker = s.spawn(|| -> Result<hdrhistogram::Histogram<u64>> {
            Ok(match p {
                Processor::Relay => trigger_kafka::relay::run_relay(settings, relayed, &cfg.service, &health, &stop)?,
                Processor::Engine => crate::serve::run(&cfg, &health, &stop)?.end_to_end_us,
            })
        });
        let by = Instant::now() + Duration::from_secs(60);
        while !health.ready.load(Relaxed) || health.assigned_partitions.load(Relaxed) == 0 {
            anyhow::ensure!(!worker.is_finished() && Instant::now() < by, "the {label} processor did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut sender =
            Sender { publisher: Publisher::new(settings)?, topic: &settings.topics.cfs, events: &o.events };
        warm_up(&mut sender, n, &health, || !worker.is_finished() && Instant::now() < by)
            .with_context(|| format!("the {label} processor did not warm up"))?;
        health.measure_from_ms.store(wall_ms(), Relaxed);
        let started = Instant::now();
        sender.offer(n, rate)?;
        let by = Instant::now() + Duration::from_secs(300);
        let total = (n + WARM_UP) as u64;
        while health.handled.load(Relaxed) < total && Instant::now() < by && !worker.is_finished() {
            std::thread::sleep(Duration::from_millis(2));
        }
        let elapsed = started.elapsed().as_secs_f64();
        stop.store(true, Relaxed);
        let histogram = worker.join().expect("processor thread")?;
        Ok(Measured { histogram, events: health.handled.load(Relaxed) - WARM_UP as u64, elapsed_s: elapsed })
    })
}

const WARM_UP: usize = 100;

/// Warm-up, left out of the figures: the first records to each topic wait for metadata, the first fetches for
/// offsets. Returns once the processor has handled them; `alive` says whether it is still worth waiting.
fn warm_up(sender: &mut Sender<'_>, n: usize, health: &Health, alive: impl Fn() -> bool) -> Result<()> {
    sender.publisher.settle();
    for k in 0..WARM_UP {
        sender.send(n + k)?;
        std::thread::sleep(Duration::from_millis(5));
    }
    sender.publisher.wait()?;
    while health.handled.load(Relaxed) < WARM_UP as u64 {
        anyhow::ensure!(alive(), "no answer to the warm-up's {WARM_UP} events");
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// Topics and consumer group of one run, named for it (on a shared external broker), created, the registry
/// loaded for the engine. Returns the settings and the relay's output topic.
fn bench_topics(cluster: &Target, run: usize, p: Processor, o: &BenchOptions) -> Result<(KafkaSettings, String)> {
    // Names of their own on a shared external broker.
    let label = format!("bench{run}-{}", wall_ms());
    let t = |what: &str| format!("{label}.{what}");
    let settings = KafkaSettings {
        bootstrap_servers: cluster.bootstrap(),
        group_id: label.clone(),
        topics: trigger_kafka::Topics {
            cfs: t("cfs"),
            registry: t("registry"),
            status: t("status"),
            commands: t("commands"),
            audit: t("audit"),
            notices: t("notices"),
            dead_letter: t("dlq"),
            changelog: t("changelog"),
            leader: t("leader"),
        },
        // The relay is never transactional.
        delivery: match (o.exactly_once, p) {
            (true, Processor::Engine) => trigger_kafka::Delivery::ExactlyOnce,
            _ => trigger_kafka::Delivery::AtLeastOnce,
        },
        ..KafkaSettings::default()
    };
    let layout = trigger_kafka::admin::TopicLayout {
        fanout_partitions: o.fanout_partitions,
        ..trigger_kafka::admin::TopicLayout::new(o.partitions, 1, 1)
    };
    match cluster {
        Target::Embedded(c) => {
            c.create_fanout_topics(&settings.topics, o.partitions, layout.fanout())?;
            c.mock().create_topic(&t("relayed"), o.partitions, 1)?;
        }
        Target::External(_) => {
            trigger_kafka::admin::create_topics_with(&settings, &settings.topics, &layout)?;
            trigger_kafka::admin::create_topic(&settings, &t("relayed"), o.partitions)?;
        }
    }
    if p == Processor::Engine {
        publish_cameras(&settings, &o.cameras, &super::NOT_STOPPED)?;
    }
    Ok((settings, t("relayed")))
}

/// The CAD side of a run: real events cycled, each with a new incident id per cycle, sent as leaving the CAD
/// now.
struct Sender<'a> {
    publisher: Publisher,
    topic: &'a str,
    events: &'a [CallForService],
}

impl Sender<'_> {
    fn send(&mut self, k: usize) -> Result<()> {
        let mut ev = leaving_now(&self.events[k % self.events.len()]);
        ev.incident_id = format!("{}#{}", ev.incident_id, k / self.events.len());
        Ok(self.publisher.cfs(self.topic, &ev)?)
    }

    /// `n` events at `rate` per second (as fast as possible without one), every one acknowledged.
    fn offer(&mut self, n: usize, rate: Option<f64>) -> Result<()> {
        let mut pacer = Pacer::new(rate.map_or(Pace::AsFastAsPossible, Pace::Rate));
        let started = Instant::now();
        for k in 0..n {
            let wait = pacer.wait_before(0, started.elapsed());
            if !wait.is_zero() {
                std::thread::sleep(wait);
            }
            self.send(k)?;
            if k % 1024 == 1023 {
                self.publisher.wait()?;
            }
        }
        self.publisher.wait()?;
        Ok(())
    }
}
