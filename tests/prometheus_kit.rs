//! The operator's kit in deploy/: the alerting rules checked and unit-tested by Prometheus's own `promtool`
//! (Debian's `prometheus` package; skipped and said without it, required in CI with `PROMETHEUS_REQUIRED=1`),
//! and every metric the rules and the Grafana dashboard name is one the code writes.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

fn promtool() -> Option<&'static str> {
    if Command::new("promtool").arg("--version").output().is_ok_and(|o| o.status.success()) {
        return Some("promtool");
    }
    assert!(
        std::env::var("PROMETHEUS_REQUIRED").is_err(),
        "PROMETHEUS_REQUIRED is set but promtool is not installed (apt-get install prometheus)"
    );
    eprintln!("skipped: promtool is not installed (Debian's prometheus package)");
    None
}

#[test]
fn the_alerting_rules_are_valid_and_every_alert_fires_when_it_should() {
    let Some(promtool) = promtool() else { return };
    let dir = common::root().join("deploy/prometheus");
    for args in [["check", "rules", "alerts.yaml"], ["test", "rules", "alerts.test.yaml"]] {
        let out = Command::new(promtool).args(args).current_dir(&dir).output().unwrap();
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "promtool {args:?}:\n{said}");
    }
    // Every alert of the rules has a unit test.
    let rules = std::fs::read_to_string(dir.join("alerts.yaml")).unwrap();
    let tests = std::fs::read_to_string(dir.join("alerts.test.yaml")).unwrap();
    for alert in rules.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")) {
        assert!(tests.contains(&format!("alertname: {alert}")), "{alert} has no unit test");
    }
}

/// Every `dispatch_trigger_*` name the code passes to the `metrics` macros.
fn written_by_the_code() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut stack = vec![common::root().join("src"), common::root().join("crates")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() && !p.ends_with("target") {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                for part in text.split("!(\"dispatch_trigger_").skip(1) {
                    names.insert(format!("dispatch_trigger_{}", part.split('"').next().unwrap()));
                }
            }
        }
    }
    names
}

/// The metric names an expression reads (histogram series by their family's name).
fn read_by(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("dispatch_trigger_"))
        .map(|w| w.trim_end_matches("_bucket").trim_end_matches("_sum").trim_end_matches("_count").to_string())
        .collect()
}

#[test]
fn the_rules_and_the_dashboard_read_only_metrics_the_code_writes() {
    let written = written_by_the_code();
    assert!(written.len() > 20, "{written:?}");
    let rules = std::fs::read_to_string(common::root().join("deploy/prometheus/alerts.yaml")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(common::root().join("deploy/grafana/dispatch-trigger.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    let mut exprs: Vec<String> =
        rules.lines().filter_map(|l| l.trim().strip_prefix("expr: ")).map(str::to_string).collect();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for t in panel["targets"].as_array().expect("targets") {
            exprs.push(t["expr"].as_str().expect("an expression").to_string());
        }
    }
    assert!(exprs.len() >= 25, "{exprs:?}");
    for e in &exprs {
        let read = read_by(e);
        assert!(!read.is_empty(), "{e} reads no dispatch_trigger metric");
        for name in read {
            assert!(written.contains(&name), "{e}: the code writes no metric {name}");
        }
    }
}

/// A query of Prometheus's HTTP API: the number of series the result holds.
fn series(port: u16, query: &str) -> usize {
    let encoded: String = query
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let answer = common::http_get(port, &format!("/api/v1/query?query={encoded}")).unwrap_or_default();
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    assert_ne!(v["status"], "error", "{query}: {body}");
    v["data"]["result"].as_array().map_or(0, Vec::len)
}

/// A Frigate stand-in: answers every request as Frigate's events API does.
fn frigate() -> u16 {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let port = server.server_addr().to_ip().unwrap().port();
    std::thread::spawn(move || {
        for (n, req) in server.incoming_requests().enumerate() {
            let _ = req.respond(tiny_http::Response::from_string(format!(r#"{{"success":true,"event_id":"e{n}"}}"#)));
        }
    });
    port
}

/// Every expression of the dashboard, and every metric each alert reads, returns series from a real Prometheus
/// that scrapes a real `serve`, `bridge` and `ingest` (on Apache Kafka and the test's own PostgreSQL) after a
/// call that starts a camera, a record that is no call, and a database row.
#[test]
fn a_real_prometheus_scraping_the_processes_answers_every_query_of_the_kit() {
    let Some(_) = promtool() else { return };
    let Some(pg) = common::postgres::Postgres::start() else { return };
    let Some(broker) = common::Broker::apache() else { return };
    let settings = broker.settings(1);
    let dir = tempfile::tempdir().unwrap();
    let signer = trigger_core::CommandSigner::from_seed("engine-1", [7; 32]);
    let seed_hex: String = [7u8; 32].iter().map(|b| format!("{b:02x}")).collect();
    let mut p = trigger_kafka::Publisher::new(&settings).unwrap();
    p.camera(&settings.topics.registry, &common::camera("cam-1", 50.0)).unwrap();
    // Near enough to be a candidate, farther than its owner allows: an exclusion.
    let mut near = common::camera("cam-near", 100.0);
    near.consent.max_radius_m = 50.0;
    p.camera(&settings.topics.registry, &near).unwrap();
    p.wait().unwrap();

    let (serve_port, bridge_port, ingest_port, prom_port) =
        (common::unique::port(), common::unique::port(), common::unique::port(), common::unique::port());
    let section = common::kafka_section(&settings);
    let serve_cfg = dir.path().join("serve.toml");
    std::fs::write(&serve_cfg, format!("{section}[http]\nlisten = \"127.0.0.1:{serve_port}\"\n")).unwrap();
    let serve = common::serve_until_ready(
        &serve_cfg,
        &dir.path().join("serve.log"),
        serve_port,
        &[("DT_SIGNING__KEY_ID", "engine-1"), ("DT_SIGNING__KEY", &seed_hex)],
    );
    let bridge_cfg = dir.path().join("bridge.toml");
    std::fs::write(
        &bridge_cfg,
        format!(
            "{section}[http]\nlisten = \"127.0.0.1:{bridge_port}\"\n[bridge]\nstate_dir = {:?}\nfsync = false\n\
             [[verify.key]]\nid = \"engine-1\"\npublic_key = {:?}\n\
             [[target]]\nname = \"frigate\"\nkind = \"frigate\"\nurl = \"http://127.0.0.1:{}\"\nlabel = \"{{label}}\"\n\
             [[camera]]\nid = \"cam-1\"\ntarget = \"frigate\"\n",
            dir.path().join("bridge-state").display().to_string(),
            signer.public_key_hex(),
            frigate()
        )
        .replace("group_id = \"", "group_id = \"bridge-"),
    )
    .unwrap();
    let bridge = common::spawn_until_ready("bridge", &bridge_cfg, &dir.path().join("bridge.log"), bridge_port, &[]);
    pg.client()
        .batch_execute(
            "CREATE TABLE calls (id bigserial PRIMARY KEY, event_number text, tencode text, tencode_desc text, \
             lat double precision, lon double precision, received timestamptz, \
             updated_at timestamptz NOT NULL DEFAULT clock_timestamp()); \
             INSERT INTO calls (event_number, tencode, tencode_desc, lat, lon, received) \
             VALUES ('SQL-1', '93', 'TRAFFIC STOP', 36.16, -86.78, clock_timestamp())",
        )
        .unwrap();
    let profile = dir.path().join("p.toml");
    std::fs::write(
        &profile,
        "name = \"p\"\ndescription = \"\"\nagency_id = \"nashville-mnpd\"\ntime_zone = \"America/Chicago\"\n\
         timestamp_format = \"%Y-%m-%d %H:%M:%S\"\n[columns]\nincident_id = \"event_number\"\ntype_code = \"tencode\"\n\
         type_text = \"tencode_desc\"\nlatitude = \"lat\"\nlongitude = \"lon\"\n[lifecycle]\ncreated = \"received\"\n",
    )
    .unwrap();
    let ingest_cfg = dir.path().join("ingest.toml");
    std::fs::write(
        &ingest_cfg,
        format!(
            "{}[http]\nlisten = \"127.0.0.1:{ingest_port}\"\n[sql]\nconnection = {:?}\nprofile = {:?}\n\
             query = \"SELECT id::text AS row_id, updated_at, event_number, tencode, tencode_desc, lat, lon, received \
             FROM calls WHERE (updated_at, id::text) > ($1, $2) ORDER BY updated_at, id::text LIMIT $3\"\n\
             poll_interval_ms = 200\n",
            section.replace("group_id = \"", "group_id = \"ingest-"),
            pg.connection(),
            profile.display().to_string()
        ),
    )
    .unwrap();
    let ingest = common::spawn_until_ready("ingest", &ingest_cfg, &dir.path().join("ingest.log"), ingest_port, &[]);

    // A call that starts cam-1 (and leaves cam-near out), and a record that is no call.
    p.cfs(&settings.topics.cfs, &common::shots_fired("PROM-1", 1, trigger_core::Status::New)).unwrap();
    p.raw(&settings.topics.cfs, b"k", b"not a call").unwrap();
    p.wait().unwrap();

    let prom_dir = dir.path().join("prometheus");
    std::fs::create_dir_all(&prom_dir).unwrap();
    let rules = common::root().join("deploy/prometheus/alerts.yaml");
    let job = |name: &str, port: u16| {
        format!("  - job_name: {name}\n    scrape_interval: 1s\n    static_configs: [{{ targets: ['127.0.0.1:{port}'] }}]\n")
    };
    std::fs::write(
        prom_dir.join("prometheus.yml"),
        format!(
            "global: {{ evaluation_interval: 1s }}\nrule_files: [{:?}]\nscrape_configs:\n{}{}{}",
            rules.display().to_string(),
            job("dispatch-trigger", serve_port),
            job("dispatch-trigger-bridge", bridge_port),
            job("dispatch-trigger-ingest", ingest_port)
        ),
    )
    .unwrap();
    let mut prometheus = Command::new("prometheus")
        .arg(format!("--config.file={}", prom_dir.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", prom_dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(prom_dir.join("prometheus.log")).unwrap())
        .spawn()
        .expect("prometheus starts");

    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(common::root().join("deploy/grafana/dispatch-trigger.json")).unwrap(),
    )
    .unwrap();
    let mut queries: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter().map(|t| t["expr"].as_str().unwrap().to_string()))
        .collect();
    let alert_rules = std::fs::read_to_string(&rules).unwrap();
    for e in alert_rules.lines().filter_map(|l| l.trim().strip_prefix("expr: ")) {
        queries.extend(read_by(e).into_iter().map(|m| format!("{{__name__=~\"{m}(_bucket|_sum|_count)?\"}}")));
    }
    let by = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let mut empty: Vec<&String> = queries.iter().collect();
    while !empty.is_empty() && std::time::Instant::now() < by {
        std::thread::sleep(std::time::Duration::from_secs(2));
        empty.retain(|q| series(prom_port, q) == 0);
    }
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    for mut child in [serve, bridge, ingest] {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert!(empty.is_empty(), "queries with no series after 90 s: {empty:#?}");
}
