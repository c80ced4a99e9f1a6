//! Lineage by content: a bounded memory of where customer content was first seen on this
//! device (SHA-256 → path, time, records, event seq). When the same bytes turn up elsewhere
//! (a copy, a rename, a move to a USB stick) or inside an archive, the new event links back
//! to that first sighting, and the collector follows the links into a chain.

use holdfast_shared::event::Origin;
use std::collections::{HashMap, VecDeque};

/// Sightings kept, at most (the oldest is forgotten first); about 200 bytes each.
pub const MAX_SIGHTINGS: usize = 50_000;

#[derive(Debug, Clone)]
struct Sighting {
    path: String,
    time_ms: i64,
    records: u64,
    seq: Option<u64>,
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
}

impl Lineage {
    /// Links a file just read to where its content was first seen, and remembers it when it
    /// is the first sighting of customer content. `entries` are an archive's customer entries
    /// (name, SHA-256).
    pub fn link(
        &mut self,
        sha256: &str,
        path: &str,
        time_ms: i64,
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
            if self.order.len() >= MAX_SIGHTINGS {
                if let Some(old) = self.order.pop_front() {
                    self.seen.remove(&old);
                }
            }
            self.seen.insert(
                sha256.to_string(),
                Sighting {
                    path: path.to_string(),
                    time_ms,
                    records: records.max(link.origin_records),
                    seq: None,
                },
            );
            self.order.push_back(sha256.to_string());
            link.first = true;
        }
        link
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
        let first = l.link("aa", "/d/export.csv", 100, 240, &[]);
        check(&first, None, 0);
        assert!(first.first);
        l.set_seq("aa", 7);
        // The same bytes elsewhere: a rename or a copy.
        let renamed = l.link("aa", "/d/clients.csv", 200, 240, &[]);
        check(&renamed, Some(("/d/export.csv", "copy", None)), 240);
        assert_eq!(renamed.origin.as_ref().unwrap().seq, Some(7));
        // Zipped: the entry's hash links back; the zip becomes a sighting of its own.
        let entries = vec![("clients.csv".to_string(), "aa".to_string())];
        let zip = l.link("zz", "/d/clients.zip", 300, 240, &entries);
        check(
            &zip,
            Some(("/d/export.csv", "archive", Some("clients.csv"))),
            240,
        );
        assert!(zip.first);
        // The zip copied to a stick links to the zip.
        let usb = l.link("zz", "/media/KINGSTON/q3.zip", 400, 0, &[]);
        check(&usb, Some(("/d/clients.zip", "copy", None)), 240);
        // Rewriting the same file is not a copy; content never seen is not linked.
        check(&l.link("aa", "/d/export.csv", 500, 240, &[]), None, 0);
        let other = l.link("bb", "/d/notes.txt", 600, 0, &[]);
        check(&other, None, 0);
        assert!(!other.first, "content without customers is not remembered");
    }

    #[test]
    fn the_memory_is_bounded() {
        let mut l = Lineage::default();
        for i in 0..MAX_SIGHTINGS + 10 {
            l.link(&format!("{i:x}"), &format!("/f{i}"), 0, 1, &[]);
        }
        assert_eq!(l.seen.len(), MAX_SIGHTINGS);
        assert!(
            l.link("0", "/elsewhere", 0, 1, &[]).origin.is_none(),
            "the oldest was forgotten"
        );
    }
}
