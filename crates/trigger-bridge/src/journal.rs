//! The bridge's memory across restarts: which commands reached an end (delivered, failed, expired, refused),
//! which were begun and not finished when the process died (in doubt), and which Frigate events are open.
//!
//! One append-only text file, one entry per line (`B id`, `D id outcome keep_until`, `P id record`, `E camera
//! incident event`, `e camera incident`), written with write(2) before the next command is taken (a SIGKILL
//! loses nothing written) and fsynced when `fsync` is set (a power cut loses nothing either). It is rewritten
//! from memory when it grows past three times what it holds, so it stays bounded.
//!
//! A finished command id is remembered until its `keep_until` (Unix ms: at least a command's longest allowed
//! life after it finished), by time, not by count: `window` is only how many may be kept beyond that. A
//! parked command (`P`: its record, base64) is one whose offset was stored before it finished, so that one
//! stuck target does not hold the offsets of every other: the next run resumes it from here.

use base64::Engine as _;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use trigger_core::Millis;

/// Where the open events of a target live (Frigate's START returns an event id its STOP needs).
pub trait EventIds {
    fn open_event(&self, camera_id: &str, incident_ref: &str) -> Option<String>;
    fn event_started(&mut self, camera_id: &str, incident_ref: &str, event_id: &str) -> std::io::Result<()>;
    fn event_ended(&mut self, camera_id: &str, incident_ref: &str) -> std::io::Result<()>;
}

#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    fsync: bool,
    window: usize,
    now: fn() -> Millis,
    /// Finished ids, with when each may be forgotten; `order` the same by that time.
    seen: HashMap<String, Millis>,
    order: BTreeSet<(Millis, String)>,
    in_doubt: HashSet<String>,
    parked: HashMap<String, Vec<u8>>,
    events: HashMap<(String, String), String>,
    lines: usize,
}

impl Journal {
    /// Open (or create) `dir/journal.log`, the wall clock telling when a finished id may be forgotten.
    pub fn open(dir: &Path, window: usize, fsync: bool) -> std::io::Result<Self> {
        Self::open_with_clock(dir, window, fsync, crate::wall_ms)
    }

    /// Open (or create) `dir/journal.log`; a finished id is forgotten once `now()` is past its `keep_until`
    /// and more than `window` are kept.
    pub fn open_with_clock(dir: &Path, window: usize, fsync: bool, now: fn() -> Millis) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("journal.log");
        let mut j = Self {
            file: OpenOptions::new().create(true).append(true).open(&path)?,
            path,
            fsync,
            window,
            now,
            seen: HashMap::new(),
            order: BTreeSet::new(),
            in_doubt: HashSet::new(),
            parked: HashMap::new(),
            events: HashMap::new(),
            lines: 0,
        };
        let text = std::fs::read_to_string(&j.path)?;
        let complete = if text.ends_with('\n') { &text[..] } else { &text[..text.rfind('\n').map_or(0, |i| i + 1)] };
        for line in complete.lines() {
            j.replay(line);
        }
        if complete.len() < text.len() {
            // A line cut short by a crash mid-write: nothing it said happened for sure; end it.
            j.file.write_all(b"\n")?;
        }
        j.forget_old();
        if j.lines > j.compact_at() {
            j.compact()?;
        }
        Ok(j)
    }

    /// Lines past which the file is rewritten.
    fn compact_at(&self) -> usize {
        3 * self.window.max(self.seen.len()).max(1) + self.parked.len() + self.in_doubt.len()
    }

    fn remember(&mut self, id: &str, keep_until: Millis) {
        if let Some(old) = self.seen.insert(id.to_string(), keep_until) {
            self.order.remove(&(old, id.to_string()));
        }
        self.order.insert((keep_until, id.to_string()));
    }

    /// Forget the finished ids whose time is up, soonest first, while more than `window` are kept (an id is
    /// kept past its time only while fewer than `window` are kept).
    fn forget_old(&mut self) {
        let now = (self.now)();
        while self.order.len() > self.window {
            match self.order.first() {
                Some((until, _)) if *until <= now => {
                    let (_, id) = self.order.pop_first().expect("a first");
                    self.seen.remove(&id);
                }
                _ => break,
            }
        }
    }

    fn replay(&mut self, line: &str) {
        self.lines += 1;
        let mut f = line.split('\t');
        match (f.next(), f.next(), f.next(), f.next()) {
            (Some("B"), Some(id), ..) => {
                self.in_doubt.insert(id.to_string());
            }
            (Some("D"), Some(id), _, until) => {
                self.in_doubt.remove(id);
                self.parked.remove(id);
                // A line of an older journal has no time: kept as the window allows.
                self.remember(id, until.and_then(|u| u.parse().ok()).unwrap_or(0));
            }
            (Some("P"), Some(id), Some(record), _) => {
                if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(record) {
                    self.parked.insert(id.to_string(), bytes);
                }
            }
            (Some("E"), Some(cam), Some(inc), Some(ev)) => {
                self.events.insert((cam.into(), inc.into()), ev.into());
            }
            (Some("e"), Some(cam), Some(inc), _) => {
                self.events.remove(&(cam.to_string(), inc.to_string()));
            }
            _ => {}
        }
    }

    fn append(&mut self, line: String) -> std::io::Result<()> {
        self.file.write_all(line.as_bytes())?;
        if self.fsync {
            self.file.sync_data()?;
        }
        self.lines += 1;
        Ok(())
    }

    /// The command reached an end before (and its time is not up).
    pub fn finished(&self, command_id: &str) -> bool {
        self.seen.contains_key(command_id)
    }

    /// How many finished ids are remembered.
    pub fn finished_count(&self) -> usize {
        self.seen.len()
    }

    /// The records of the commands parked and not finished (the last run stored their offsets).
    pub fn parked(&self) -> Vec<(String, Vec<u8>)> {
        let mut v: Vec<_> = self.parked.iter().map(|(id, b)| (id.clone(), b.clone())).collect();
        v.sort();
        v
    }

    /// Park a begun command: its record kept here, so its offset may be stored before it finishes.
    pub fn park(&mut self, command_id: &str, record: &[u8]) -> std::io::Result<()> {
        let b64 = base64::engine::general_purpose::STANDARD.encode(record);
        self.append(format!("P\t{command_id}\t{b64}\n"))?;
        self.parked.insert(command_id.to_string(), record.to_vec());
        Ok(())
    }

    /// The command was begun by an earlier run that died before it ended: a target may or may not have it.
    pub fn in_doubt(&self, command_id: &str) -> bool {
        self.in_doubt.contains(command_id)
    }

    pub fn in_doubt_count(&self) -> usize {
        self.in_doubt.len()
    }

    /// Before a delivery: until `done`, the command counts as in doubt (also for a compaction meanwhile).
    pub fn begin(&mut self, command_id: &str) -> std::io::Result<()> {
        self.append(format!("B\t{command_id}\n"))?;
        self.in_doubt.insert(command_id.to_string());
        Ok(())
    }

    /// The command reached an end; its id is remembered at least until `keep_until` (Unix ms).
    pub fn done(&mut self, command_id: &str, outcome: &str, keep_until: Millis) -> std::io::Result<()> {
        self.append(format!("D\t{command_id}\t{outcome}\t{keep_until}\n"))?;
        self.in_doubt.remove(command_id);
        self.parked.remove(command_id);
        self.remember(command_id, keep_until);
        self.forget_old();
        if self.lines > self.compact_at() {
            self.compact()?;
        }
        Ok(())
    }

    /// Rewrite the file from memory (finished ids in order, open events, in-doubt ids), then swap it in.
    fn compact(&mut self) -> std::io::Result<()> {
        let tmp = self.path.with_extension("log.tmp");
        let mut out = std::io::BufWriter::new(File::create(&tmp)?);
        let mut lines = 0;
        for (until, id) in &self.order {
            writeln!(out, "D\t{id}\tkept\t{until}")?;
            lines += 1;
        }
        for (id, record) in &self.parked {
            writeln!(out, "P\t{id}\t{}", base64::engine::general_purpose::STANDARD.encode(record))?;
            lines += 1;
        }
        for ((cam, inc), ev) in &self.events {
            writeln!(out, "E\t{cam}\t{inc}\t{ev}")?;
            lines += 1;
        }
        for id in &self.in_doubt {
            writeln!(out, "B\t{id}")?;
            lines += 1;
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        self.lines = lines;
        Ok(())
    }
}

impl EventIds for Journal {
    fn open_event(&self, camera_id: &str, incident_ref: &str) -> Option<String> {
        self.events.get(&(camera_id.to_string(), incident_ref.to_string())).cloned()
    }

    fn event_started(&mut self, camera_id: &str, incident_ref: &str, event_id: &str) -> std::io::Result<()> {
        self.append(format!("E\t{camera_id}\t{incident_ref}\t{event_id}\n"))?;
        self.events.insert((camera_id.into(), incident_ref.into()), event_id.into());
        Ok(())
    }

    fn event_ended(&mut self, camera_id: &str, incident_ref: &str) -> std::io::Result<()> {
        self.append(format!("e\t{camera_id}\t{incident_ref}\n"))?;
        self.events.remove(&(camera_id.to_string(), incident_ref.to_string()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finished_in_doubt_and_events_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut j = Journal::open(dir.path(), 100, false).unwrap();
            j.begin("a").unwrap();
            j.done("a", "delivered", 0).unwrap();
            j.begin("b").unwrap(); // dies here
            j.event_started("cam", "inc", "ev-1").unwrap();
            j.event_started("cam", "inc2", "ev-2").unwrap();
            j.event_ended("cam", "inc2").unwrap();
        }
        let j = Journal::open(dir.path(), 100, false).unwrap();
        assert!(j.finished("a") && !j.in_doubt("a"));
        assert!(j.in_doubt("b") && !j.finished("b"));
        assert_eq!(j.open_event("cam", "inc").as_deref(), Some("ev-1"));
        assert_eq!(j.open_event("cam", "inc2"), None);
    }

    #[test]
    fn the_file_stays_bounded_and_keeps_the_window() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path(), 10, false).unwrap();
        j.begin("open").unwrap();
        for i in 0..100 {
            j.begin(&format!("c{i}")).unwrap();
            j.done(&format!("c{i}"), "delivered", 0).unwrap();
        }
        let lines = std::fs::read_to_string(dir.path().join("journal.log")).unwrap().lines().count();
        assert!(lines <= 31, "{lines} lines");
        let j = Journal::open(dir.path(), 10, false).unwrap();
        assert!(j.finished("c99") && j.finished("c90") && !j.finished("c50"));
        assert!(j.in_doubt("open"));
    }

    #[test]
    fn a_torn_last_line_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("journal.log"), "D\ta\tdelivered\nD\tbc").unwrap();
        let mut j = Journal::open(dir.path(), 10, false).unwrap();
        assert!(j.finished("a") && !j.finished("bc"));
        j.done("d", "delivered", 0).unwrap();
        let j = Journal::open(dir.path(), 10, false).unwrap();
        assert!(j.finished("d"));
    }

    #[test]
    fn an_id_is_kept_until_its_time_whatever_the_count() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open_with_clock(dir.path(), 10, false, || 1_000).unwrap();
        j.done("long", "delivered", 5_000).unwrap();
        for i in 0..100 {
            j.done(&format!("c{i}"), "delivered", 0).unwrap();
        }
        assert!(j.finished("long"), "kept until 5 000 although 100 more finished after it");
        assert!(j.finished_count() <= 12, "{}", j.finished_count());
        let j = Journal::open_with_clock(dir.path(), 10, false, || 1_000).unwrap();
        assert!(j.finished("long"), "and across a reopen and its compaction");
        let mut j = Journal::open_with_clock(dir.path(), 10, false, || 6_000).unwrap();
        for i in 0..20 {
            j.done(&format!("d{i}"), "delivered", 10_000).unwrap();
        }
        assert!(!j.finished("long"), "forgotten once its time is up and the window is full");
    }

    #[test]
    fn a_parked_record_survives_until_done() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut j = Journal::open(dir.path(), 10, false).unwrap();
            j.begin("p").unwrap();
            j.park("p", b"\x00record\xff").unwrap();
        }
        let mut j = Journal::open(dir.path(), 10, false).unwrap();
        assert_eq!(j.parked(), vec![("p".to_string(), b"\x00record\xff".to_vec())]);
        j.done("p", "delivered", 0).unwrap();
        let j = Journal::open(dir.path(), 10, false).unwrap();
        assert!(j.parked().is_empty() && j.finished("p"));
    }
}
