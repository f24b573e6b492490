//! A new city's configuration works the first time, or says exactly why not: check-config reads every
//! profile, a camera file that cannot be true is refused whole with every bad entry named, a replay that
//! refuses everything fails with its reasons, the bundled config and sample work from any directory, and
//! auditors can turn CAD numbers into the opaque references of the audit trail.

mod common;

use common::{run, run_fails, run_fails_in, BIN, WEEK};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A copy of the shipped config folder to change.
fn config_copy(dir: &Path) -> PathBuf {
    for sub in ["codes", "jurisdictions", "profiles"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
        for e in std::fs::read_dir(root().join("config").join(sub)).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), dir.join(sub).join(e.file_name())).unwrap();
        }
    }
    let p = dir.join("policy.toml");
    std::fs::copy(root().join("config/policy.toml"), &p).unwrap();
    p
}

#[test]
fn check_config_validates_every_profile_and_fails_on_one_that_can_never_start_a_camera() {
    let out = std::process::Command::new(BIN).current_dir(root()).arg("check-config").output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("2 CSV profiles: example-city, nashville-mnpd"), "{stdout}");
    assert!(!stderr.contains("profile "), "{stderr}");
    assert!(stderr.contains("classification of agency \"nashville-mnpd\": cls_"), "{stderr}");

    // A profile that reads codes only: it still decides, but nothing it feeds can start a camera.
    let dir = tempfile::tempdir().unwrap();
    let policy = config_copy(dir.path());
    let codes_only = dir.path().join("profiles/nashville-mnpd.toml");
    let text = std::fs::read_to_string(&codes_only).unwrap();
    std::fs::write(
        &codes_only,
        text.replace("type_text = [\"Tencode Description\", \"Tencode Suffix Description\"]\n", ""),
    )
    .unwrap();
    let err = run_fails(&["check-config", "--policy", s(&policy)]);
    assert!(err.contains("profile nashville-mnpd reads no type text"), "{err}");
    assert!(
        err.contains("burglary, vehicle_break_in, robbery, shots_fired, shooting, stabbing, hostage can never fire"),
        "{err}"
    );
    drop(dir);

    // A broken profile and a code table that maps a protest code to a trigger: every problem, named.
    let dir = tempfile::tempdir().unwrap();
    let policy = config_copy(dir.path());
    std::fs::write(dir.path().join("profiles/broken.toml"), "name = \"broken\"\ntime_zone = \"Mars/Olympus\"\n")
        .unwrap();
    let err = run_fails(&["check-config", "--policy", s(&policy)]);
    assert!(err.contains("broken.toml"), "{err}");
    std::fs::remove_file(dir.path().join("profiles/broken.toml")).unwrap();
    let table = dir.path().join("codes/nashville-mnpd.toml");
    let text = std::fs::read_to_string(&table).unwrap();
    std::fs::write(
        &table,
        format!("{text}[[rule]]\ncode = \"9901\"\nlabel = \"PROTEST\"\ncategory = \"shots_fired\"\n"),
    )
    .unwrap();
    let err = run_fails(&["check-config", "--policy", s(&policy)]);
    assert!(err.contains("nashville-mnpd.toml"), "the file is named: {err}");
    assert!(err.contains("code \"9901\" (label \"PROTEST\") maps to the trigger category shots_fired"), "{err}");
    assert!(err.contains(&format!("line {}", text.lines().count() + 2)), "the line is named: {err}");
    // Start-up refuses the same table: a replay does not run on it.
    let out = tempfile::tempdir().unwrap();
    let args = [
        "replay",
        WEEK,
        "--format",
        "csv",
        "--profile",
        "nashville-mnpd",
        "--generate-cameras",
        "10",
        "--out",
        s(out.path()),
    ];
    let err = run_fails(&[&args[..], &["--policy", s(&policy)]].concat());
    assert!(err.contains("9901"), "{err}");
}

#[test]
fn a_replay_that_refuses_every_row_fails_with_the_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let policy = config_copy(dir.path());
    let profile = dir.path().join("profiles/nashville-mnpd.toml");
    let text = std::fs::read_to_string(&profile).unwrap().replace("%Y-%m-%d %H:%M:%S", "%m/%d/%Y %H:%M");
    std::fs::write(&profile, text).unwrap();
    let out = dir.path().join("out");
    let err = run_fails(&[
        "replay",
        WEEK,
        "--format",
        "csv",
        "--profile",
        "nashville-mnpd",
        "--generate-cameras",
        "10",
        "--out",
        s(&out),
        "--policy",
        s(&policy),
    ]);
    assert!(err.contains("every record was refused"), "{err}");
    assert!(err.contains("unparseable_timestamp (first at row 2"), "{err}");
    assert!(out.join("rejects.jsonl").exists(), "the outputs are still written");
}

/// A copy of the shipped config with the Nashville profile changed by `edit`.
fn with_profile(dir: &Path, edit: impl Fn(String) -> String) -> PathBuf {
    let policy = config_copy(dir);
    let profile = dir.join("profiles/nashville-mnpd.toml");
    std::fs::write(&profile, edit(std::fs::read_to_string(&profile).unwrap())).unwrap();
    policy
}

fn replay_fails(file: &str, policy: &Path, out: &Path, extra: &[&str]) -> String {
    let args = ["replay", file, "--format", "csv", "--profile", "nashville-mnpd", "--generate-cameras", "200"];
    run_fails(&[&args[..], &["--out", s(out), "--policy", s(policy)], extra].concat())
}

#[test]
fn silent_partial_failures_are_loud() {
    let full = "../shared/data/cad/nashville_mnpd_calls_2024_sample.csv";
    // Day and month swapped: every row dated after the 12th is refused (most of them), the rest decide on
    // wrong dates. The run writes its outputs, then fails with the reason.
    let dir = tempfile::tempdir().unwrap();
    let policy = with_profile(dir.path(), |t| t.replace("%Y-%m-%d %H:%M:%S", "%Y-%d-%m %H:%M:%S"));
    let out = dir.path().join("swapped");
    let err = replay_fails(full, &policy, &out, &[]);
    assert!(err.contains("rows were refused as unparseable_timestamp"), "{err}");
    assert!(out.join("summary.json").exists());
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let (rows, refused) =
        (summary["rows"].as_u64().unwrap(), summary["rows_refused"]["unparseable_timestamp"].as_u64().unwrap());
    assert_eq!(rows, 26_935);
    assert!(refused * 2 > rows && refused < rows, "{refused} of {rows}");

    // Every event for an agency the policy does not know.
    let err = replay_fails(WEEK, &root().join("config/policy.toml"), &dir.path().join("np"), &["--agency", "nobody"]);
    assert!(err.contains("was not_partner"), "{err}");

    // A profile that reads the codes only: decided and audited, nothing can start; named at start and at the end.
    let codes_only = tempfile::tempdir().unwrap();
    let policy = with_profile(codes_only.path(), |t| {
        t.replace("type_text = [\"Tencode Description\", \"Tencode Suffix Description\"]\n", "")
    });
    let out = codes_only.path().join("out");
    let err = replay_fails(WEEK, &policy, &out, &[]);
    assert!(err.contains("error: profile nashville-mnpd reads no type text"), "{err}");
    assert!(err.contains("no event's type text corroborated a trigger category"), "{err}");
    let decisions = std::fs::read_to_string(out.join("decisions.jsonl")).unwrap();
    assert!(decisions.contains("\"outcome\":\"uncorroborated\""), "still decided and audited");
    assert!(std::fs::read_to_string(out.join("commands.jsonl")).unwrap().is_empty());

    // The type text read from an unrelated column (the disposition): nothing corroborates either.
    let wrong = tempfile::tempdir().unwrap();
    let policy = with_profile(wrong.path(), |t| {
        t.replace("[\"Tencode Description\", \"Tencode Suffix Description\"]", "\"Disposition Description\"")
    });
    let err = replay_fails(WEEK, &policy, &wrong.path().join("out"), &[]);
    assert!(err.contains("no event's type text corroborated a trigger category"), "{err}");
}

#[test]
fn demo_runs_its_bundled_configuration_wherever_it_starts_and_ref_knows_its_agencies() {
    // A folder with a deployment's own (here: broken) policy: the demo takes its bundled one and says so.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("config")).unwrap();
    std::fs::write(dir.path().join("config/policy.toml"), "this is = not [a policy").unwrap();
    let o = std::process::Command::new(BIN)
        .current_dir(dir.path())
        .args(["demo", "--rate", "5000", "--cameras", "500"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("(the bundled configuration)"), "{stderr}");
    // Told to use that policy, it says which and why it fails.
    let err = run_fails_in(dir.path(), &["demo", "--policy", "config/policy.toml", "--rate", "5000"]);
    assert!(err.contains("demo: the policy config/policy.toml (--policy) cannot be used"), "{err}");
    // ref: an agency the policy does not define has no references.
    let err = run_fails(&["ref", "--agency", "nashville", "--incident", "PD1"]);
    assert!(err.contains("agency \"nashville\" is not defined") && err.contains("nashville-mnpd"), "{err}");
}

#[test]
fn replay_says_what_it_needs() {
    let help = run(&["replay", "--help"]);
    assert!(help.contains("Required: FILE and --format"), "{help}");
    let out = tempfile::tempdir().unwrap();
    let out = out.path().join("out");
    let err =
        run_fails(&["replay", WEEK, "--format", "csv", "--profile", "nashville-mnpd", "--out", out.to_str().unwrap()]);
    assert!(err.contains("--cameras FILE") && err.contains("--generate-cameras N"), "{err}");
}

#[test]
fn the_bundled_config_and_sample_work_from_any_directory() {
    let elsewhere = tempfile::tempdir().unwrap();
    let ok = |args: &[&str]| {
        let o = std::process::Command::new(BIN).current_dir(elsewhere.path()).args(args).output().unwrap();
        assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    assert!(ok(&["check-config"]).contains("ok (2 agencies"));
    let out = elsewhere.path().join("out");
    let args = ["replay", WEEK, "--format", "csv", "--profile", "nashville-mnpd", "--generate-cameras", "500"];
    let summary: serde_json::Value = serde_json::from_str(&ok(&[&args[..], &["--out", s(&out)]].concat())).unwrap();
    assert!(summary["decisions"].as_u64().unwrap() > 100, "{summary}");
    let demo: serde_json::Value = serde_json::from_str(&ok(&["demo", "--rate", "5000", "--cameras", "2000"])).unwrap();
    assert!(demo["decisions"].as_u64().unwrap_or(0) > 0 || demo.to_string().contains("decisions"), "{demo}");
    // A path that is not the bundled sample is not guessed at.
    let err = run_fails_in(
        elsewhere.path(),
        &[
            "replay",
            "nowhere.csv",
            "--format",
            "csv",
            "--profile",
            "nashville-mnpd",
            "--generate-cameras",
            "5",
            "--out",
            "o",
        ],
    );
    assert!(err.contains("cannot read nowhere.csv"), "{err}");
}

#[test]
fn camera_files_that_cannot_be_true_are_refused_whole_by_replay_and_publish() {
    let dir = tempfile::tempdir().unwrap();
    let cams = dir.path().join("cams.csv");
    std::fs::write(
        &cams,
        "camera_id,owner_ref,lat,lon,categories,max_radius_m,daily_cap\n\
         a,o1,36.16,-86.78,burglary,100,2\n\
         b,o2,129.95,-86.78,burglary,100,2\n\
         c,o3,36.16,-900,burglary,100,2\n\
         d,o4,0,0,burglary,100,2\n\
         e,o5,36.16,-86.78,burglary,-5,2\n\
         f,o6,36.16,-86.78,burglary,100,0\n\
         a,o7,36.16,-86.78,burglary,100,2\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let err = run_fails(&[
        "replay",
        WEEK,
        "--format",
        "csv",
        "--profile",
        "nashville-mnpd",
        "--cameras",
        s(&cams),
        "--out",
        s(&out),
    ]);
    for want in [
        "6 bad camera entries",
        "row 3: invalid_coordinates",
        "row 4: invalid_coordinates",
        "row 5: null_island",
        "row 6: invalid_radius",
        "row 7: zero_daily_cap",
        "row 8 (camera \"a\"): duplicate_camera_id: the same camera_id as row 2",
    ] {
        assert!(err.contains(want), "{want}: {err}");
    }
    assert!(!out.join("summary.json").exists(), "nothing was decided");
    // cameras publish refuses the file before it talks to any broker.
    let err = run_fails(&["cameras", "publish", "--cameras", s(&cams), "--to", "127.0.0.1:1"]);
    assert!(err.contains("6 bad camera entries"), "{err}");
    // A bbox upside down or off the globe: a clear error, not a panic.
    for bbox in ["36.3,-86.6,36.0,-87.0", "100,-87,108,-86"] {
        let err =
            run_fails(&["cameras", "generate", "--count", "5", "--bbox", bbox, "--out", s(&dir.path().join("g.csv"))]);
        assert!(err.contains("--bbox") && !err.contains("panicked"), "{err}");
    }
}

#[test]
fn holders_of_the_key_join_audit_records_to_cad_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    common::replay_week(&out, &["--no-wall-clock"]);
    // The bundled week's first decided incident, by its CAD number.
    let week = std::fs::read_to_string(root().join(WEEK)).unwrap();
    let mut rdr = csv::Reader::from_reader(week.as_bytes());
    let header = rdr.headers().unwrap().clone();
    let col = header.iter().position(|h| h == "Event Number").unwrap();
    let numbers: Vec<String> = rdr.records().map(|r| r.unwrap()[col].to_string()).collect();
    let decisions = std::fs::read_to_string(out.join("decisions.jsonl")).unwrap();
    let refs: std::collections::BTreeSet<String> = decisions
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["incident_ref"].as_str().unwrap().to_string())
        .collect();
    let one = run(&["ref", "--agency", "nashville-mnpd", "--incident", &numbers[0]]);
    assert!(one.trim().starts_with("inc_"), "{one}");
    // Batch: every row of the export gets its reference; the decided ones are exactly the audit's.
    let batch = run(&["ref", "--agency", "nashville-mnpd", "--csv", WEEK, "--column", "Event Number"]);
    let mut b = csv::Reader::from_reader(batch.as_bytes());
    let h = b.headers().unwrap().clone();
    assert_eq!(h.iter().next_back(), Some("incident_ref"));
    let mapped: std::collections::BTreeSet<String> =
        b.records().map(|r| r.unwrap().iter().next_back().unwrap().to_string()).collect();
    assert!(refs.is_subset(&mapped), "every audited incident is found by its CAD number");
    assert!(mapped.contains(one.trim()));
    // Without the key (another key), the references differ: nothing to invert.
    let other = dir.path().join("policy.toml");
    let policy = std::fs::read_to_string(root().join("config/policy.toml"))
        .unwrap()
        .replace("incident_ref_key = \"dev-only-incident-ref-key\"", "incident_ref_key = \"another\"");
    std::fs::write(&other, policy).unwrap();
    for d in ["codes", "jurisdictions", "profiles"] {
        let _ = std::os::unix::fs::symlink(root().join("config").join(d), dir.path().join(d));
    }
    let theirs = run(&["ref", "--agency", "nashville-mnpd", "--incident", &numbers[0], "--policy", s(&other)]);
    assert_ne!(theirs.trim(), one.trim());
}
