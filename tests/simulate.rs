//! The privacy-impact simulation agrees with a replay under the same policy, and its knob does what it says.

mod common;

use common::{replay_week, run, WEEK as LOG};

#[test]
fn simulation_matches_a_replay_and_the_knob_binds() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, rep) = (dir.path().join("sim"), dir.path().join("rep"));
    let table = run(&[
        "simulate",
        "--cad",
        LOG,
        "--profile",
        "nashville-mnpd",
        "--generate-cameras",
        "20000",
        "--seed",
        "7",
        "--vary",
        "max_cameras=8,1",
        "--out",
        sim.to_str().unwrap(),
    ]);
    assert!(table.contains("| 8 |") && table.contains("| 1 |"), "{table}");
    replay_week(&rep, &["--no-wall-clock"]);
    let settings: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sim.join("simulation.json")).unwrap()).unwrap();
    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(rep.join("summary.json")).unwrap()).unwrap();
    // max_cameras = 8 is the shipped policy: the simulation must count what the replay did.
    let same = &settings[0];
    assert_eq!(same["value"], 8.0);
    assert_eq!(same["recordings_started"], summary["commands"]["start"]);
    assert_eq!(same["incidents_triggered"], summary["triggered_incidents"]);
    assert!(same["activations_per_camera"]["max"].as_f64().unwrap() >= 1.0);
    let share = same["share_of_cameras_ever_activated"].as_f64().unwrap();
    assert!(share > 0.0 && share < 1.0);
    // One camera per incident at most.
    assert_eq!(settings[1]["recordings_per_incident"]["max"], 1.0);
    assert_eq!(settings[1]["incidents_triggered"], same["incidents_triggered"]);
    for s in settings.as_array().unwrap() {
        let png = std::fs::read(sim.join(s["map"].as_str().unwrap())).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG map per setting");
    }
    assert_eq!(std::fs::read_to_string(sim.join("simulation.csv")).unwrap().lines().count(), 3);
}
