//! Security on the reference broker: an Apache Kafka of this test's own with a SASL_SSL listener (TLS with
//! certificates this test generates, SCRAM-SHA-512 users created when the storage is formatted). The service
//! and every command that talks to Kafka connect through it; a wrong password and an untrusted certificate
//! stop start-up with the reason; the password appears in no log line, output, `Debug` or metric.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use trigger_kafka::{inspect, KafkaSettings, Secret, Security};

const PASSWORD: &str = "s3cret-Scram-pw-7731";
const USER: &str = "dispatch";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A CA and a broker certificate for 127.0.0.1 signed by it; a second CA that signed nothing.
fn certificates(dir: &Path) {
    common::tls::Certs::make(dir);
    // Kafka's PEM key store: the (PKCS#8, unencrypted) key and the certificate chain in one file.
    let pem = [dir.join("server.key"), dir.join("server.crt")].map(|p| std::fs::read_to_string(p).unwrap()).concat();
    std::fs::write(dir.join("broker.pem"), pem).unwrap();
}

struct Stop(PathBuf);
impl Drop for Stop {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(root().join("scripts/kafka.sh")).args(["stop", "--dir"]).arg(&self.0).status();
    }
}

/// Start the secured broker; None when Java or Maven is missing (and Apache Kafka is not required).
fn secured_broker(dir: &Path) -> Option<(Stop, String)> {
    if common::fast_tier_skips("a SASL_SSL Apache Kafka broker of the test's own") {
        return None;
    }
    let kafka = dir.join("kafka");
    std::fs::create_dir_all(&kafka).unwrap();
    std::fs::write(
        kafka.join("extra.properties"),
        format!(
            "sasl.enabled.mechanisms=SCRAM-SHA-512\n\
             listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=\
             org.apache.kafka.common.security.scram.ScramLoginModule required;\n\
             ssl.keystore.type=PEM\nssl.keystore.location={}\n",
            dir.join("broker.pem").display()
        ),
    )
    .unwrap();
    let o = Command::new("bash")
        .arg(root().join("scripts/kafka.sh"))
        .args(["start", "--dir"])
        .arg(&kafka)
        .env("KAFKA_SASL_SSL", "1")
        .env("FORMAT_ARGS", format!("--add-scram SCRAM-SHA-512=[name={USER},password={PASSWORD}]"))
        .output()
        .unwrap();
    if !o.status.success() {
        let why = String::from_utf8_lossy(&o.stderr);
        assert!(std::env::var("KAFKA_REQUIRED").is_err(), "Apache Kafka is required: {why}");
        eprintln!("skipped: scripts/kafka.sh start failed: {why}");
        return None;
    }
    let port = std::fs::read_to_string(kafka.join("sasl_ssl_port")).unwrap();
    Some((Stop(kafka), format!("127.0.0.1:{}", port.trim())))
}

fn secure(bootstrap: &str, ca: &Path, password: &str) -> KafkaSettings {
    KafkaSettings {
        bootstrap_servers: bootstrap.into(),
        security: Security {
            protocol: Some("sasl_ssl".into()),
            ssl_ca_location: Some(ca.display().to_string()),
            sasl_mechanism: Some("SCRAM-SHA-512".into()),
            sasl_username: Some(USER.into()),
            sasl_password: Some(Secret::new(password)),
            ..Security::default()
        },
        ..KafkaSettings::default()
    }
}

/// A serve.toml whose kafka section has every security setting but the password (it comes from the
/// environment, as the README says to deploy it).
fn config(dir: &Path, name: &str, bootstrap: &str, ca: &Path, port: u16) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "policy = \"config/policy.toml\"\n[kafka]\nbootstrap_servers = \"{bootstrap}\"\n\
             [kafka.security]\nprotocol = \"sasl_ssl\"\nssl_ca_location = \"{}\"\nsasl_mechanism = \"SCRAM-SHA-512\"\n\
             sasl_username = \"{USER}\"\n[service]\npoll_timeout_ms = 20\n\
             [http]\nlisten = \"127.0.0.1:{port}\"\n[log]\nformat = \"json\"\nlevel = \"debug\"\n",
            ca.display()
        ),
    )
    .unwrap();
    path
}

fn bin(args: &[&str], password: &str) -> Output {
    Command::new(common::BIN)
        .current_dir(root())
        .args(args)
        .env("DT_KAFKA__SECURITY__SASL_PASSWORD", password)
        .output()
        .unwrap()
}

fn ok(args: &[&str], seen: &mut Vec<u8>) -> String {
    let o = bin(args, PASSWORD);
    seen.extend(&o.stdout);
    seen.extend(&o.stderr);
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn tls_and_scram_on_apache_kafka_for_the_service_and_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    certificates(d);
    let Some((_stop, b)) = secured_broker(d) else { return };
    let (ca, other_ca) = (d.join("ca.pem"), d.join("other-ca.pem"));
    let settings = secure(&b, &ca, PASSWORD);
    trigger_kafka::connect::check_connection(&settings, Duration::from_secs(30)).expect("TLS + SCRAM connect");
    trigger_kafka::admin::create_topics(&settings, &settings.topics, 2, 1, 1).expect("topics over SASL_SSL");
    let port = common::unique::port();
    let cfg_path = config(d, "serve.toml", &b, &ca, port);
    let cfg = cfg_path.to_str().unwrap();
    let mut seen = Vec::new();

    let cams = d.join("cams.csv");
    let cams = cams.to_str().unwrap();
    ok(
        &["cameras", "generate", "--count", "300", "--seed", "5", "--bbox", "36.1,-86.9,36.2,-86.7", "--out", cams],
        &mut seen,
    );
    // A wrong password and an untrusted certificate stop start-up at once, with the reason.
    let wrong = bin(&["cameras", "publish", "--cameras", cams, "--to", &b, "--config", cfg], "nope-wrong-pw");
    let why = String::from_utf8_lossy(&wrong.stderr);
    assert!(!wrong.status.success() && why.contains("cannot connect to Kafka") && why.contains("uthenticat"), "{why}");
    let untrusted = config(d, "untrusted.toml", &b, &other_ca, port);
    let o = bin(&["audit", "verify", "--from-kafka", &b, "--config", untrusted.to_str().unwrap()], PASSWORD);
    let why = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && why.contains("cannot connect to Kafka") && why.contains("certificate"), "{why}");
    seen.extend(&o.stderr);

    assert!(ok(&["cameras", "publish", "--cameras", cams, "--to", &b, "--config", cfg], &mut seen)
        .contains("published 300"));

    let log_path = d.join("service.log");
    let mut child =
        common::serve_until_ready(&cfg_path, &log_path, port, &[("DT_KAFKA__SECURITY__SASL_PASSWORD", PASSWORD)]);
    let replay = ok(
        &["replay", common::WEEK, "--format", "csv", "--profile", "nashville-mnpd", "--to-kafka", &b, "--config", cfg],
        &mut seen,
    );
    let events = serde_json::from_str::<serde_json::Value>(&replay).unwrap()["events"].as_i64().unwrap();
    let bg = d.join("bg.jsonl");
    let req = common::signed_break_glass("NOPE-1", 300.0, 5, common::now_ms() + 600_000, &[("officer", 1), ("sup", 2)]);
    std::fs::write(&bg, serde_json::to_string(&req).unwrap() + "\n").unwrap();
    assert!(
        ok(&["break-glass", "send", bg.to_str().unwrap(), "--to", &b, "--config", cfg], &mut seen).contains("sent 1")
    );

    let t0 = Instant::now();
    let metrics = loop {
        let m = common::http_get(port, "/metrics").unwrap_or_default();
        let handled = m
            .lines()
            .find(|l| l.starts_with("dispatch_trigger_events_total "))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            .unwrap_or(0.0);
        if handled >= (events + 1) as f64 {
            break m;
        }
        assert!(t0.elapsed() < Duration::from_secs(120), "handled {handled} of {}", events + 1);
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    assert!(child.wait().unwrap().success());
    let verified = ok(&["audit", "verify", "--from-kafka", &b, "--config", cfg], &mut seen);
    assert!(verified.contains("ok"), "{verified}");
    assert!(inspect::topic_record_count(&settings, &settings.topics.audit).unwrap() > 0);
    let shown = ok(&["serve", "--config", cfg, "--print-config"], &mut seen);
    assert!(shown.contains("<redacted>"), "{shown}");

    let logs = std::fs::read(&log_path).unwrap();
    assert!(logs.len() > 1000, "debug logs were written");
    for (what, bytes) in
        [("the service's logs", &logs[..]), ("command output", &seen[..]), ("/metrics", metrics.as_bytes())]
    {
        assert!(!String::from_utf8_lossy(bytes).contains(PASSWORD), "the password appears in {what}");
    }
    assert!(!format!("{settings:?}").contains(PASSWORD), "Debug shows the password");
}
