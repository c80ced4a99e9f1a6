//! Lineage by content: a bounded memory of where customer content was first seen on this
//! device (SHA-256 → path, time, records, event seq). When the same bytes turn up elsewhere
//! (a copy, a rename, a move to a USB stick) or inside an archive, the new event links back
//! to that first sighting, and the collector follows the links into a chain. The memory
//! outlives the agent: new sightings are handed to the spool ([`Lineage::take_fresh`]) and
//! given back at start ([`Lineage::restore`]), so a copy made after a reboot still links to
//! the export it came from.

use holdfast_shared::event::Origin;
use holdfast_shared::time::UnixMs;
use std::collections::{HashMap, VecDeque};

/// Sightings kept, at most (the oldest is forgotten first); about 200 bytes each.
pub const MAX_SIGHTINGS: usize = 50_000;

/// Where some customer content was first seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sighting {
    /// The content's SHA-256, hex.
    pub sha256: String,
    pub path: String,
    pub time_ms: UnixMs,
    /// Customer records it held.
    pub records: u64,
    /// The sequence number of its event, once spooled.
    pub seq: Option<u64>,
}

/// What [`Lineage::link`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub origin: Option<Origin>,
    /// Customer records of the first sighting (rules can hold a file to its origin's count,
    /// whatever it is called or packed in now).
    pub origin_records: u64,
    /// This file is now the first sighting of its content.
    pub first: bool,
}

/// The memory of first sightings.
#[derive(Debug, Default)]
pub struct Lineage {
    seen: HashMap<String, Sighting>,
    order: VecDeque<String>,
    /// First sightings not yet handed to the spool (the newest [`MAX_SIGHTINGS`]).
    fresh: VecDeque<String>,
}

impl Lineage {
    /// The memory as the spool kept it, oldest first (the newest [`MAX_SIGHTINGS`] kept).
    pub fn restore(sightings: Vec<Sighting>) -> Lineage {
        let mut l = Lineage::default();
        for s in sightings {
            l.remember(s);
        }
        l
    }

    /// The first sightings made since the last call, with their sequence numbers as known
    /// now: for the spool to keep.
    pub fn take_fresh(&mut self) -> Vec<Sighting> {
        std::mem::take(&mut self.fresh)
            .into_iter()
            .filter_map(|sha| self.seen.get(&sha).cloned())
            .collect()
    }

    fn remember(&mut self, s: Sighting) {
        if self.seen.contains_key(&s.sha256) {
            return;
        }
        if self.order.len() >= MAX_SIGHTINGS {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        self.order.push_back(s.sha256.clone());
        self.seen.insert(s.sha256.clone(), s);
    }

    /// Links a file just read to where its content was first seen, and remembers it when it
    /// is the first sighting of customer content. `entries` are an archive's customer entries
    /// (name, SHA-256).
    pub fn link(
        &mut self,
        sha256: &str,
        path: &str,
        time_ms: UnixMs,
        records: u64,
        entries: &[(String, String)],
    ) -> Link {
        let as_origin = |s: &Sighting, via: &str, entry: Option<&str>| Origin {
            path: s.path.clone(),
            time_ms: s.time_ms,
            seq: s.seq,
            via: via.to_string(),
            entry: entry.map(str::to_string),
        };
        let mut link = Link {
            origin: None,
            origin_records: 0,
            first: false,
        };
        match self.seen.get(sha256) {
            Some(s) if s.path != path => {
                link.origin = Some(as_origin(s, "copy", None));
                link.origin_records = s.records;
            }
            Some(_) => {}
            None => {
                if let Some((name, s)) = entries
                    .iter()
                    .find_map(|(name, h)| self.seen.get(h).map(|s| (name, s)))
                {
                    link.origin = Some(as_origin(s, "archive", Some(name)));
                    link.origin_records = s.records;
                }
            }
        }
        if !self.seen.contains_key(sha256) && (records > 0 || link.origin.is_some()) {
            self.remember(Sighting {
                sha256: sha256.to_string(),
                path: path.to_string(),
                time_ms,
                records: records.max(link.origin_records),
                seq: None,
            });
            if self.fresh.len() >= MAX_SIGHTINGS {
                self.fresh.pop_front();
            }
            self.fresh.push_back(sha256.to_string());
            link.first = true;
        }
        link
    }

    /// Where content read again (an upload: the same bytes, at the same path or not) was
    /// first seen, as an origin (`copy`), with its records; remembers nothing.
    pub fn sighting(&self, sha256: &str) -> Option<(Origin, u64)> {
        self.seen.get(sha256).map(|s| {
            (
                Origin {
                    path: s.path.clone(),
                    time_ms: s.time_ms,
                    seq: s.seq,
                    via: "copy".to_string(),
                    entry: None,
                },
                s.records,
            )
        })
    }

    /// Notes the event sequence number of a first sighting once it is spooled.
    pub fn set_seq(&mut self, sha256: &str, seq: u64) {
        if let Some(s) = self.seen.get_mut(sha256) {
            s.seq.get_or_insert(seq);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(l: &Link, want: Option<(&str, &str, Option<&str>)>, records: u64) {
        let got = l
            .origin
            .as_ref()
            .map(|o| (o.path.as_str(), o.via.as_str(), o.entry.as_deref()));
        assert_eq!(got, want);
        assert_eq!(l.origin_records, records);
    }

    #[test]
    fn copies_renames_and_archives_link_back_to_the_first_sighting() {
        let mut l = Lineage::default();
        let first = l.link("aa", "/d/export.csv", UnixMs(100), 240, &[]);
        check(&first, None, 0);
        assert!(first.first);
        l.set_seq("aa", 7);
        // The same bytes elsewhere: a rename or a copy.
        let renamed = l.link("aa", "/d/clients.csv", UnixMs(200), 240, &[]);
        check(&renamed, Some(("/d/export.csv", "copy", None)), 240);
        assert_eq!(renamed.origin.as_ref().unwrap().seq, Some(7));
        // Zipped: the entry's hash links back; the zip becomes a sighting of its own.
        let entries = vec![("clients.csv".to_string(), "aa".to_string())];
        let zip = l.link("zz", "/d/clients.zip", UnixMs(300), 240, &entries);
        check(
            &zip,
            Some(("/d/export.csv", "archive", Some("clients.csv"))),
            240,
        );
        assert!(zip.first);
        // The zip copied to a stick links to the zip.
        let usb = l.link("zz", "/media/KINGSTON/q3.zip", UnixMs(400), 0, &[]);
        check(&usb, Some(("/d/clients.zip", "copy", None)), 240);
        // Rewriting the same file is not a copy; content never seen is not linked.
        check(
            &l.link("aa", "/d/export.csv", UnixMs(500), 240, &[]),
            None,
            0,
        );
        let other = l.link("bb", "/d/notes.txt", UnixMs(600), 0, &[]);
        check(&other, None, 0);
        assert!(!other.first, "content without customers is not remembered");
    }

    /// What the spool is handed (each new sighting once, with its seq) is what a restarted
    /// agent links to.
    #[test]
    fn the_memory_handed_to_the_spool_survives_a_restart() {
        let mut l = Lineage::default();
        l.link("aa", "/d/export.csv", UnixMs(100), 240, &[]);
        l.link("bb", "/d/notes.txt", UnixMs(150), 0, &[]);
        l.set_seq("aa", 7);
        let kept = l.take_fresh();
        assert_eq!(
            kept,
            vec![Sighting {
                sha256: "aa".into(),
                path: "/d/export.csv".into(),
                time_ms: UnixMs(100),
                records: 240,
                seq: Some(7),
            }]
        );
        assert_eq!(l.take_fresh(), vec![], "handed over once");
        l.link("aa", "/d/copy.csv", UnixMs(200), 240, &[]);
        assert_eq!(l.take_fresh(), vec![], "a copy is not a first sighting");

        let mut after = Lineage::restore(kept);
        let copy = after.link("aa", "/media/KINGSTON/c.csv", UnixMs(300), 240, &[]);
        check(&copy, Some(("/d/export.csv", "copy", None)), 240);
        assert_eq!(copy.origin.as_ref().unwrap().seq, Some(7));
        assert_eq!(copy.origin.as_ref().unwrap().time_ms, UnixMs(100));
    }

    #[test]
    fn the_memory_is_bounded() {
        let mut l = Lineage::default();
        for i in 0..MAX_SIGHTINGS + 10 {
            l.link(&format!("{i:x}"), &format!("/f{i}"), UnixMs(0), 1, &[]);
        }
        assert_eq!(l.seen.len(), MAX_SIGHTINGS);
        assert_eq!(
            l.take_fresh().len(),
            MAX_SIGHTINGS,
            "the hand-over is bounded too"
        );
        assert!(
            l.link("0", "/elsewhere", UnixMs(0), 1, &[])
                .origin
                .is_none(),
            "the oldest was forgotten"
        );
    }
}
