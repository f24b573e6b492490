//! The registry's records, packed: one row of fixed-size columns per slot, the two strings of a camera in
//! one byte arena, consents interned, and an id lookup that stores only slots.
//!
//! Per camera: point 8 B, arena offset 4 B, consent handle + online bit 4 B, `updated_at` 8 B, the arena
//! entry (`len id len owner`: 2 B + the strings), the id table's slot (4 B + 1 control byte, at hashbrown's
//! load factor). A `CameraRecord` is rebuilt on demand, for the few cameras a query returns.

use crate::{QPoint, Slot};
use hashbrown::{DefaultHashBuilder, HashTable};
use std::collections::HashMap;
use std::hash::BuildHasher;
use trigger_core::{CameraRecord, CameraRef, CategorySet, Consent, Millis};

/// `text` of a free slot.
const FREE: u32 = u32::MAX;
/// The online flag, in the consent column's top bit.
const ONLINE: u32 = 1 << 31;

/// Consents by value: a fleet has few distinct ones (a product offers presets), so a camera holds a handle.
#[derive(Debug, Default)]
struct Consents {
    table: Vec<(Consent, u32)>,
    by_key: HashMap<ConsentKey, u32>,
    free: Vec<u32>,
}

/// What makes two consents the same (`Consent` has an `f64`, so it is neither `Eq` nor `Hash`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ConsentKey {
    categories: CategorySet,
    radius_bits: u64,
    quiet: Option<(u16, u16, chrono_tz::Tz)>,
    daily_cap: u32,
    live: bool,
}

impl ConsentKey {
    fn of(c: &Consent) -> Self {
        Self {
            categories: c.categories,
            radius_bits: c.max_radius_m.to_bits(),
            quiet: c.quiet_hours.map(|q| (q.start.0, q.end.0, q.time_zone)),
            daily_cap: c.daily_cap,
            live: c.live_stream_allowed,
        }
    }
}

impl Consents {
    fn intern(&mut self, c: &Consent) -> u32 {
        let key = ConsentKey::of(c);
        if let Some(&h) = self.by_key.get(&key) {
            self.table[h as usize].1 += 1;
            return h;
        }
        let h = match self.free.pop() {
            Some(h) => {
                self.table[h as usize] = (*c, 1);
                h
            }
            None => {
                self.table.push((*c, 1));
                (self.table.len() - 1) as u32
            }
        };
        assert!(h < ONLINE, "more than 2^31 distinct consents");
        self.by_key.insert(key, h);
        h
    }

    fn release(&mut self, h: u32) {
        let e = &mut self.table[h as usize];
        e.1 -= 1;
        if e.1 == 0 {
            self.by_key.remove(&ConsentKey::of(&e.0));
            self.free.push(h);
        }
    }
}

/// The packed records, by slot.
pub(crate) struct Store {
    pub(crate) points: Vec<QPoint>,
    /// Offset of the slot's `len id len owner` entry in `arena`; FREE for a free slot.
    text: Vec<u32>,
    /// Consent handle | ONLINE.
    consent: Vec<u32>,
    updated: Vec<Millis>,
    /// `len id len owner` per camera, each length one ASCII byte (ids are at most 127 bytes), so the whole
    /// arena is UTF-8 and an id is a slice of it, never validated again.
    arena: String,
    /// Arena bytes no slot points to any more (compacted when they are half of it and over `compact_min`).
    garbage: usize,
    compact_min: usize,
    consents: Consents,
    by_id: HashTable<Slot>,
    hasher: DefaultHashBuilder,
    free: Vec<Slot>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("cameras", &self.by_id.len())
            .field("consents", &self.consents.by_key.len())
            .finish()
    }
}

/// The id table's hash of a slot: its camera id's, the id read from the arena (what the table rehashes with).
fn slot_hash<'a>(arena: &'a str, text: &'a [u32], hasher: &'a DefaultHashBuilder) -> impl Fn(&Slot) -> u64 + 'a {
    move |&s| hasher.hash_one(entry(arena, text, s).0)
}

fn entry<'a>(arena: &'a str, text: &[u32], slot: Slot) -> (&'a str, &'a str) {
    let o = text[slot as usize] as usize;
    let b = arena.as_bytes();
    let n = b[o] as usize;
    let m = b[o + 1 + n] as usize;
    (&arena[o + 1..o + 1 + n], &arena[o + 2 + n..o + 2 + n + m])
}

impl Store {
    pub(crate) fn new() -> Self {
        Self {
            points: Vec::new(),
            text: Vec::new(),
            consent: Vec::new(),
            updated: Vec::new(),
            arena: String::new(),
            garbage: 0,
            compact_min: 1 << 20,
            consents: Consents::default(),
            by_id: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
            free: Vec::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Room for `cameras` cameras in all in the id table. (Only there: a column grows by a copy, but the
    /// table grows by hashing every id again, each read from the arena at random.)
    pub(crate) fn reserve(&mut self, cameras: usize) {
        let rehash = slot_hash(&self.arena, &self.text, &self.hasher);
        self.by_id.reserve(cameras.saturating_sub(self.by_id.len()), rehash);
    }

    pub(crate) fn slot_of(&self, camera_id: &str) -> Option<Slot> {
        self.find(self.hasher.hash_one(camera_id), camera_id)
    }

    /// [`slot_of`](Self::slot_of) with the id's hash already taken.
    fn find(&self, h: u64, camera_id: &str) -> Option<Slot> {
        self.by_id.find(h, |&s| entry(&self.arena, &self.text, s).0 == camera_id).copied()
    }

    pub(crate) fn id(&self, slot: Slot) -> &str {
        entry(&self.arena, &self.text, slot).0
    }

    pub(crate) fn is_live(&self, slot: Slot) -> bool {
        self.text.get(slot as usize).is_some_and(|&t| t != FREE)
    }

    /// Live slots, in slot order.
    pub(crate) fn live(&self) -> impl Iterator<Item = Slot> + '_ {
        (0..self.text.len() as Slot).filter(|&s| self.is_live(s))
    }

    /// The record of a live slot, rebuilt.
    pub(crate) fn record(&self, slot: Slot) -> CameraRecord {
        let (id, owner) = entry(&self.arena, &self.text, slot);
        let ll = self.points[slot as usize].to_latlon();
        let c = self.consent[slot as usize];
        CameraRecord {
            camera_id: id.to_string(),
            owner_ref: owner.to_string(),
            lat: ll.lat,
            lon: ll.lon,
            consent: self.consents.table[(c & !ONLINE) as usize].0,
            online: c & ONLINE != 0,
            updated_at: self.updated[slot as usize],
        }
    }

    /// Append `len id len owner` to the arena; its offset. Lengths are checked by `camera_problems`.
    fn push_text(&mut self, id: &str, owner: &str) -> u32 {
        let o = u32::try_from(self.arena.len()).ok().filter(|&o| o != FREE).expect("camera id arena over 4 GiB");
        for s in [id, owner] {
            let len = u8::try_from(s.len()).ok().filter(u8::is_ascii).expect("length checked by camera_problems");
            self.arena.push(char::from(len));
            self.arena.push_str(s);
        }
        o
    }

    fn text_len(&self, slot: Slot) -> usize {
        let (id, owner) = entry(&self.arena, &self.text, slot);
        2 + id.len() + owner.len()
    }

    /// Rewrite the arena with the live entries only, in slot order.
    fn compact(&mut self) {
        self.arena = compacted(&self.arena, &mut self.text, self.garbage);
        self.garbage = 0;
    }

    /// Insert or replace a (checked, quantised) record. Returns its slot and, for a replaced camera, its
    /// previous point.
    pub(crate) fn upsert(&mut self, r: &CameraRef<'_>, q: QPoint) -> (Slot, Option<QPoint>) {
        if self.garbage > self.compact_min && self.garbage * 2 > self.arena.len() {
            self.compact();
        }
        let handle = self.consents.intern(&r.consent) | if r.online { ONLINE } else { 0 };
        let h = self.hasher.hash_one(r.camera_id);
        if let Some(slot) = self.find(h, r.camera_id) {
            let i = slot as usize;
            if entry(&self.arena, &self.text, slot).1 != r.owner_ref {
                self.garbage += self.text_len(slot);
                self.text[i] = self.push_text(r.camera_id, r.owner_ref);
            }
            self.consents.release(self.consent[i] & !ONLINE);
            self.consent[i] = handle;
            self.updated[i] = r.updated_at;
            let before = std::mem::replace(&mut self.points[i], q);
            return (slot, Some(before));
        }
        let text = self.push_text(r.camera_id, r.owner_ref);
        let slot = match self.free.pop() {
            Some(s) => {
                let i = s as usize;
                (self.points[i], self.text[i], self.consent[i], self.updated[i]) = (q, text, handle, r.updated_at);
                s
            }
            None => {
                self.points.push(q);
                self.text.push(text);
                self.consent.push(handle);
                self.updated.push(r.updated_at);
                (self.points.len() - 1) as Slot
            }
        };
        self.by_id.insert_unique(h, slot, slot_hash(&self.arena, &self.text, &self.hasher));
        (slot, None)
    }

    /// Remove a camera: its slot, its stored point and the record it held (one id lookup).
    pub(crate) fn remove(&mut self, camera_id: &str) -> Option<(Slot, QPoint, CameraRecord)> {
        let h = self.hasher.hash_one(camera_id);
        let (arena, texts) = (&self.arena, &self.text);
        let Ok(e) = self.by_id.find_entry(h, |&s| entry(arena, texts, s).0 == camera_id) else { return None };
        let (slot, _) = e.remove();
        let record = self.record(slot);
        self.garbage += self.text_len(slot);
        let i = slot as usize;
        self.text[i] = FREE;
        self.consents.release(self.consent[i] & !ONLINE);
        self.free.push(slot);
        Some((slot, self.points[i], record))
    }

    pub(crate) fn set_consent(&mut self, slot: Slot, c: &Consent) {
        let h = self.consents.intern(c);
        let i = slot as usize;
        self.consents.release(self.consent[i] & !ONLINE);
        self.consent[i] = h | (self.consent[i] & ONLINE);
    }

    pub(crate) fn set_online(&mut self, slot: Slot, online: bool) {
        let c = &mut self.consent[slot as usize];
        *c = if online { *c | ONLINE } else { *c & !ONLINE };
    }

    pub(crate) fn updated(&self, slot: Slot) -> Millis {
        self.updated[slot as usize]
    }

    pub(crate) fn set_updated(&mut self, slot: Slot, at: Millis) {
        self.updated[slot as usize] = at;
    }

    /// Renumber the slots in the order of `key(point)` (after a bulk load), so that cameras near each other
    /// sit near each other in every column and in the arena; and give back what growth left unused. Every
    /// slot is live after it, so the points column is the whole spatial picture: `beside` gets it while this
    /// thread rewrites the arena and the id table (the spatial structure is built there, on the other core).
    pub(crate) fn cluster(&mut self, key: impl Fn(QPoint) -> u64, beside: impl FnOnce(&[QPoint]) + Send) {
        let keyed: Vec<(u64, Slot)> = self.live().map(|s| (key(self.points[s as usize]), s)).collect();
        let order = sorted_slots(keyed);
        let ((points, updated), (text, consent)) = std::thread::scope(|scope| {
            let other = scope.spawn(|| (gather(&self.points, &order), gather(&self.updated, &order)));
            let here = (gather(&self.text, &order), gather(&self.consent, &order));
            (other.join().expect("gathering columns"), here)
        });
        (self.points, self.updated, self.text, self.consent) = (points, updated, text, consent);
        self.free.clear();
        std::thread::scope(|scope| {
            let points = &self.points;
            scope.spawn(move || beside(points));
            self.arena = compacted(&self.arena, &mut self.text, self.garbage);
            self.garbage = 0;
            // The id table's entries renumbered in place: the ids, and so their hashes, are unchanged.
            let mut new_of_old = vec![FREE; order.iter().max().map_or(0, |&s| s as usize + 1)];
            for (n, &s) in order.iter().enumerate() {
                new_of_old[s as usize] = n as Slot;
            }
            for s in self.by_id.iter_mut() {
                *s = new_of_old[*s as usize];
            }
            self.by_id.shrink_to_fit(slot_hash(&self.arena, &self.text, &self.hasher));
        });
    }
}

/// The slots of `keyed` in (key, slot) order: each half sorted on a core of its own, then merged.
fn sorted_slots(mut keyed: Vec<(u64, Slot)>) -> Vec<Slot> {
    let (n, mid) = (keyed.len(), keyed.len() / 2);
    let (a, b) = keyed.split_at_mut(mid);
    std::thread::scope(|scope| {
        scope.spawn(|| a.sort_unstable());
        b.sort_unstable();
    });
    let (mut a, mut b) = (a.iter().peekable(), b.iter().peekable());
    let mut order = Vec::with_capacity(n);
    loop {
        let next = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) if x <= y => a.next(),
            (Some(_), Some(_)) | (None, Some(_)) => b.next(),
            (Some(_), None) => a.next(),
            (None, None) => break,
        };
        order.extend(next.map(|&(_, s)| s));
    }
    order
}

/// `col`'s entries in `order`.
fn gather<T: Copy>(col: &[T], order: &[Slot]) -> Vec<T> {
    order.iter().map(|&s| col[s as usize]).collect()
}

/// A new arena holding the live entries of `text` (FREE: none) in slot order; `text` rewritten to point
/// into it. `garbage`: the bytes of `arena` no live entry uses.
fn compacted(arena: &str, text: &mut [u32], garbage: usize) -> String {
    let mut out = String::with_capacity(arena.len() - garbage);
    for t in text.iter_mut().filter(|t| **t != FREE) {
        let o = *t as usize;
        let b = arena.as_bytes();
        let len = 2 + b[o] as usize + b[o + 1 + b[o] as usize] as usize;
        *t = out.len() as u32;
        out.push_str(&arena[o..o + len]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use trigger_core::{Category, LatLon};

    fn cam(i: usize, owner: usize, radius: f64) -> CameraRecord {
        CameraRecord {
            camera_id: format!("cam-{i}"),
            owner_ref: format!("owner-{owner}"),
            lat: 36.0 + i as f64 * 1e-4,
            lon: -86.0,
            consent: Consent {
                categories: [Category::Burglary].into_iter().collect(),
                max_radius_m: radius,
                quiet_hours: None,
                daily_cap: 3,
                live_stream_allowed: false,
            },
            online: i.is_multiple_of(2),
            updated_at: i as i64,
        }
    }

    #[test]
    fn churn_compacts_the_arena_and_releases_consents_and_keeps_every_record() {
        let mut s = Store::new();
        s.compact_min = 0;
        let mut want = std::collections::BTreeMap::new();
        for round in 0..50 {
            for i in 0..20 {
                let c = cam(i, round * 100 + i, 100.0 + (round % 4) as f64);
                s.upsert(&c.view(), QPoint::from_latlon(LatLon::new(c.lat, c.lon)));
                want.insert(c.camera_id.clone(), c);
            }
            let gone = format!("cam-{}", round % 20);
            assert!(s.remove(&gone).is_some());
            want.remove(&gone);
        }
        assert_eq!(s.len(), want.len());
        for (id, c) in &want {
            let mut r = s.record(s.slot_of(id).expect("kept"));
            (r.lat, r.lon) = (c.lat, c.lon);
            assert_eq!(&r, c);
        }
        // 50 rounds of new owners for 20 cameras: the arena holds about one round, not fifty.
        let live: usize = s.live().map(|slot| s.text_len(slot)).sum();
        assert!(s.arena.len() <= 2 * live + 64, "arena {} for {live} live bytes", s.arena.len());
        // Only the radii still in use are interned.
        assert!(s.consents.by_key.len() <= 4, "{} consents", s.consents.by_key.len());
        assert_eq!(s.consents.table.iter().map(|e| e.1 as usize).sum::<usize>() - freed(&s), want.len());
    }

    fn freed(s: &Store) -> usize {
        s.consents.free.iter().map(|&h| s.consents.table[h as usize].1 as usize).sum()
    }
}
