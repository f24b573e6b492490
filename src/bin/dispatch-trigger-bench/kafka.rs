//! `kafka`: a bare consume -> produce relay and the engine, on the in-process broker or Apache Kafka, at
//! fixed rates and flat out (BENCHMARKS.md). Latencies come from the loops' own batch events
//! ([`trigger_kafka::BatchTiming`]), counted only once the warm-up is over.

use crate::breakdown::{Breakdown, Side};
use crate::KafkaArgs;
use anyhow::{Context, Result};
use dispatch_trigger::kafka_tools::{embedded_service_config, leaving_now, publish_cameras, Percentiles};
use dispatch_trigger::{cameras, config};
use serde::Serialize;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use trigger_cad::pacing::{Pace, Pacer};
use trigger_core::{CallForService, CameraRecord};
use trigger_kafka::{wall_ms, BatchTiming, EmbeddedCluster, Health, KafkaSettings, Publisher};

/// `dispatch-trigger-bench kafka`: the rows, printed as a table (and written as JSON with --out).
pub(crate) fn run(policy: &Path, a: KafkaArgs) -> Result<()> {
    let profile = config::load_profile(&a.profile, policy)?;
    let cad = if a.cad.exists() { a.cad.clone() } else { config::installed(config::BUNDLED_SAMPLE) };
    let mut decoded =
        config::decode_file(&cad, trigger_cad::Format::Csv, Some(&profile), &trigger_cad::DecodeOptions::default())?;
    trigger_cad::pacing::event_time_order(&mut decoded.events);
    let points = cameras::Placement::Around(cameras::event_points(&decoded));
    let cams = cameras::generate(a.cameras, 42, &points, profile.time_zone)?;
    eprintln!("{}: {} events, {} cameras", cad.display(), decoded.events.len(), cams.len());
    let opts = BenchOptions {
        rates: a.rates,
        seconds: a.seconds,
        max_events: a.max_events,
        partitions: a.partitions,
        fanout_partitions: a.fanout_partitions,
        exactly_once: a.exactly_once,
        cameras: cams,
        events: decoded.events.into_iter().map(|e| e.event).collect(),
        policy: policy.to_path_buf(),
        bootstrap: a.bootstrap,
        rounds: a.rounds,
    };
    let (rows, breakdown) = bench_kafka(&opts)?;
    print_table(&rows);
    if a.breakdown {
        println!();
        breakdown.print();
    }
    if let Some(out) = &a.out {
        crate::write_json(out, &rows)?;
    }
    Ok(())
}

fn print_table(rows: &[BenchRow]) {
    println!("| processor | offered (events/s) | events | achieved (events/s) | p50 ms | p99 ms | p99.9 ms | max ms |");
    println!("|---|---|---|---|---|---|---|---|");
    for r in rows {
        let p = r.end_to_end_ms.as_ref();
        let f = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.2}"));
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.processor,
            r.offered,
            r.events,
            r.achieved_per_s,
            f(p.map(|p| p.p50)),
            f(p.map(|p| p.p99)),
            f(p.map(|p| p.p999)),
            f(p.map(|p| p.max))
        );
    }
}

/// What `kafka` measures with.
struct BenchOptions {
    rates: Vec<f64>,
    seconds: f64,
    /// Events in the as-fast-as-possible run that measures the highest sustained rate.
    max_events: usize,
    partitions: i32,
    /// Partitions of the engine's commands and owner-notices topics (`None`: `partitions`).
    fanout_partitions: Option<i32>,
    /// The engine in exactly-once mode (the relay is never transactional).
    exactly_once: bool,
    cameras: Vec<CameraRecord>,
    /// Real CAD events, cycled (with a new incident id each cycle) as long as a run needs.
    events: Vec<CallForService>,
    policy: std::path::PathBuf,
    /// An external cluster (Apache Kafka) instead of the in-process mock cluster.
    bootstrap: Option<String>,
    /// Runs per rate and processor, pooled into one row each: a shared machine's slow minute then falls on
    /// both sides rather than on one. Rounds alternate which side goes first (relay-engine, engine-relay, ...),
    /// so a drift over the runs (a broker warming up) favours neither, and with more than one round an
    /// uncounted pair at the first rate warms the broker up before anything is counted.
    rounds: usize,
}

/// One run's raw result; rounds of the same rate and processor are pooled into one row.
#[derive(Debug)]
struct Measured {
    histogram: hdrhistogram::Histogram<u64>,
    breakdown: Breakdown,
    events: u64,
    elapsed_s: f64,
}

impl Measured {
    fn pool(&mut self, other: Measured) -> Result<()> {
        self.histogram.add(&other.histogram).map_err(|e| anyhow::anyhow!("pooling histograms: {e:?}"))?;
        self.breakdown.extend(other.breakdown);
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

/// What the loop's batch events say, from the instant the warm-up ended (Unix ms; before that, nothing counts:
/// the warm-up's records wait for the consumer group to form and for the first fetch, about a second).
#[derive(Debug)]
struct Observed {
    side: Side,
    from_ms: AtomicI64,
    seen: Mutex<(hdrhistogram::Histogram<u64>, Breakdown)>,
}

impl Observed {
    fn new(side: Side) -> Self {
        let h = hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds");
        Self { side, from_ms: AtomicI64::new(i64::MAX), seen: Mutex::new((h, Breakdown::default())) }
    }

    fn observe(&self, t: &BatchTiming) {
        let from = self.from_ms.load(Relaxed);
        let mut seen = self.seen.lock().expect("not poisoned");
        let counted: Vec<i64> = t.produced_ms.iter().flatten().copied().filter(|ms| *ms >= from).collect();
        for ms in &counted {
            let _ = seen.0.record(t.acknowledged_us.saturating_sub(ms.saturating_mul(1000)).max(1) as u64);
        }
        if counted.len() == t.events {
            seen.1.observe(self.side, t);
        }
    }
}

#[derive(Debug, Serialize)]
struct BenchRow {
    processor: &'static str,
    /// Offered rate, events/s ("max": as fast as the generator goes).
    offered: String,
    events: u64,
    /// Events handled per second, first send to last acknowledgement.
    achieved_per_s: f64,
    /// CFS record timestamp -> every output acknowledged, milliseconds.
    end_to_end_ms: Option<Percentiles>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// Every run in order (an uncounted broker warm-up pair first, with more than one round), pooled into rows;
/// and the one-event batches' breakdown of every counted run.
fn bench_kafka(o: &BenchOptions) -> Result<(Vec<BenchRow>, Breakdown)> {
    let cluster = match &o.bootstrap {
        Some(b) => Target::External(b.clone()),
        None => Target::Embedded(EmbeddedCluster::start(1)?),
    };
    let mut pooled: Vec<(Option<f64>, Processor, Measured)> = Vec::new();
    let mut breakdown = Breakdown::default();
    for (i, (rate, p, counted)) in runs(o).into_iter().enumerate() {
        let n = rate.map_or(o.max_events, |r| (r * o.seconds).round() as usize);
        let mut m = measure(&cluster, i, p, rate, n, o)?;
        let row = m.row(p, rate);
        let p99 = row.end_to_end_ms.as_ref().map(|x| x.p99);
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
        breakdown.extend(std::mem::take(&mut m.breakdown));
        match pooled.iter_mut().find(|(r, q, _)| *r == rate && *q == p) {
            Some((_, _, acc)) => acc.pool(m)?,
            None => pooled.push((rate, p, m)),
        }
    }
    Ok((pooled.iter().map(|(rate, p, m)| m.row(*p, *rate)).collect(), breakdown))
}

/// (rate, processor, counted) of every run: rounds alternate which side goes first, so a drift over the runs
/// (a broker warming up) favours neither; the flat-out pair last.
fn runs(o: &BenchOptions) -> Vec<(Option<f64>, Processor, bool)> {
    let pair = |round: usize| {
        if round.is_multiple_of(2) {
            [Processor::Relay, Processor::Engine]
        } else {
            [Processor::Engine, Processor::Relay]
        }
    };
    let mut runs = Vec::new();
    if let (Some(&first), true) = (o.rates.first(), o.rounds > 1) {
        runs.extend(pair(0).map(|p| (Some(first), p, false)));
    }
    for r in &o.rates {
        for round in 0..o.rounds.max(1) {
            runs.extend(pair(round).map(|p| (Some(*r), p, true)));
        }
    }
    runs.extend(pair(0).map(|p| (None, p, true)));
    runs
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
        dispatch_trigger::kafka_tools::delete_topics_or_warn(&settings, &topics);
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
    let observed = Observed::new(if p == Processor::Relay { Side::Relay } else { Side::Engine });
    let observer = |t: &BatchTiming| observed.observe(t);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| -> Result<Measured> {
        let worker = s.spawn(|| -> Result<()> {
            match p {
                Processor::Relay => {
                    trigger_kafka::relay::run_relay(settings, relayed, &cfg.service, &health, &stop, &observer)?
                }
                Processor::Engine => {
                    dispatch_trigger::serve::run_observed(&cfg, &health, &stop, Some(&observer))?;
                }
            }
            Ok(())
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
        observed.from_ms.store(wall_ms(), Relaxed);
        let started = Instant::now();
        sender.offer(n, rate)?;
        let by = Instant::now() + Duration::from_secs(300);
        let total = (n + WARM_UP) as u64;
        while health.handled.load(Relaxed) < total && Instant::now() < by && !worker.is_finished() {
            std::thread::sleep(Duration::from_millis(2));
        }
        let elapsed = started.elapsed().as_secs_f64();
        stop.store(true, Relaxed);
        worker.join().expect("processor thread")?;
        let mut seen = observed.seen.lock().expect("not poisoned");
        let (histogram, breakdown) = (seen.0.clone(), std::mem::take(&mut seen.1));
        let events = health.handled.load(Relaxed) - WARM_UP as u64;
        Ok(Measured { histogram, breakdown, events, elapsed_s: elapsed })
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
    let settings = KafkaSettings {
        bootstrap_servers: cluster.bootstrap(),
        group_id: label.clone(),
        topics: trigger_kafka::Topics::tagged(&label),
        // The relay is never transactional.
        delivery: match (o.exactly_once, p) {
            (true, Processor::Engine) => trigger_kafka::Delivery::ExactlyOnce,
            _ => trigger_kafka::Delivery::AtLeastOnce,
        },
        ..KafkaSettings::default()
    };
    let relayed = format!("cad.cfs.relayed.{label}");
    let layout = trigger_kafka::admin::TopicLayout {
        fanout_partitions: o.fanout_partitions,
        ..trigger_kafka::admin::TopicLayout::new(o.partitions, 1, 1)
    };
    match cluster {
        Target::Embedded(c) => {
            c.create_fanout_topics(&settings.topics, o.partitions, layout.fanout())?;
            c.mock().create_topic(&relayed, o.partitions, 1)?;
        }
        Target::External(_) => {
            trigger_kafka::admin::create_topics_with(&settings, &settings.topics, &layout)?;
            trigger_kafka::admin::create_topic(&settings, &relayed, o.partitions)?;
        }
    }
    if p == Processor::Engine {
        publish_cameras(&settings, &o.cameras, &dispatch_trigger::kafka_tools::NOT_STOPPED)?;
    }
    Ok((settings, relayed))
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
