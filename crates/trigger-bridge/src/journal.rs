//! The bridge's memory across restarts: which commands reached an end (delivered, failed, expired, refused),
//! which were begun and not finished when the process died (in doubt), and which Frigate events are open.
//!
//! One append-only text file, one entry per line (`B id`, `D id outcome`, `E camera incident event`, `e camera
//! incident`), written with write(2) before the next command is taken (a SIGKILL loses nothing written) and
//! fsynced when `fsync` is set (a power cut loses nothing either). It is rewritten from memory when it grows
//! past three windows, so it stays bounded.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use trigger_core::SeenWindow;

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
    seen: SeenWindow,
    in_doubt: HashSet<String>,
    events: HashMap<(String, String), String>,
    lines: usize,
}

impl Journal {
    /// Open (or create) `dir/journal.log`, remembering at most `window` finished commands.
    pub fn open(dir: &Path, window: usize, fsync: bool) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("journal.log");
        let mut j = Self {
            file: OpenOptions::new().create(true).append(true).open(&path)?,
            path,
            fsync,
            window,
            seen: SeenWindow::new(window),
            in_doubt: HashSet::new(),
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
        if j.lines > 3 * j.window {
            j.compact()?;
        }
        Ok(j)
    }

    fn replay(&mut self, line: &str) {
        self.lines += 1;
        let mut f = line.split('\t');
        match (f.next(), f.next(), f.next(), f.next()) {
            (Some("B"), Some(id), ..) => {
                self.in_doubt.insert(id.to_string());
            }
            (Some("D"), Some(id), ..) => {
                self.in_doubt.remove(id);
                self.seen.insert(id);
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

    /// The command reached an end before (within the window).
    pub fn finished(&self, command_id: &str) -> bool {
        self.seen.contains(command_id)
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

    pub fn done(&mut self, command_id: &str, outcome: &str) -> std::io::Result<()> {
        self.append(format!("D\t{command_id}\t{outcome}\n"))?;
        self.in_doubt.remove(command_id);
        self.seen.insert(command_id);
        if self.lines > 3 * self.window {
            self.compact()?;
        }
        Ok(())
    }

    /// Rewrite the file from memory (finished ids in order, open events, in-doubt ids), then swap it in.
    fn compact(&mut self) -> std::io::Result<()> {
        let tmp = self.path.with_extension("log.tmp");
        let mut out = std::io::BufWriter::new(File::create(&tmp)?);
        let mut lines = 0;
        for id in self.seen.iter() {
            writeln!(out, "D\t{id}\tkept")?;
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
            j.done("a", "delivered").unwrap();
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
            j.done(&format!("c{i}"), "delivered").unwrap();
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
        j.done("d", "delivered").unwrap();
        let j = Journal::open(dir.path(), 10, false).unwrap();
        assert!(j.finished("d"));
    }
}
