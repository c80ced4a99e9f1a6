//! The look-back report and handover list of an offboarding: every customer-data event of
//! the user in the window before the effective time, the records they exported, real
//! customers (EDM hits), the top files and the devices; and the customer files they held,
//! and where, so a manager can reassign those customers. Built from stored events (counts,
//! paths and hashes: the collector never has the content), as JSON or CSV.

use crate::store::StoredEvent;
use holdfast_shared::time::UnixMs;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// Events read for one report, at most.
pub const MAX_EVENTS: usize = 1_000_000;

/// One customer-data event in the window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct ReportEvent {
    /// When the agent saw it.
    pub time_ms: UnixMs,
    /// The device that saw it.
    pub device_id: String,
    /// Its sequence number on that device.
    pub seq: u64,
    /// What happened to the file (`created`, `modified`, `renamed`, …), or the event's kind.
    pub action: String,
    /// The file's path on the device.
    pub path: String,
    /// Where it was before, for a rename.
    pub old_path: Option<String>,
    /// The content's hash, when the file was read whole.
    pub sha256: Option<String>,
    /// Customer records counted in it.
    pub records: u64,
    /// Rows holding the company's real customers (exact data match).
    pub edm: u64,
    /// The ids of the rules it matched.
    pub rules: Vec<String>,
}

/// A file, by content, with the most records seen in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct TopFile {
    pub path: String,
    pub device_id: String,
    pub sha256: Option<String>,
    pub records: u64,
    pub edm: u64,
    pub events: u64,
}

/// A customer file the user held at the effective time, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Held {
    pub device_id: String,
    pub hostname: String,
    pub path: String,
    pub sha256: Option<String>,
    pub records: u64,
    pub edm: u64,
    pub last_seen_ms: UnixMs,
}

/// Per device: how many customer-data events and records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct DeviceLine {
    pub device_id: String,
    pub hostname: String,
    pub events: u64,
    pub records: u64,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Report {
    pub user: String,
    pub from_ms: UnixMs,
    pub to_ms: UnixMs,
    /// Customer records in files created, modified or renamed in the window (the exports),
    /// each content once: a copy, a rename or a re-save of the same bytes adds nothing, and
    /// a file saved again with more rows counts its largest version.
    pub records_exported: u64,
    /// The distinct files (by content) those records are in.
    pub files_exported: u64,
    /// Of those, rows holding real customers (exact data match).
    pub edm_hits: u64,
    pub events: Vec<ReportEvent>,
    pub top_files: Vec<TopFile>,
    pub devices: Vec<DeviceLine>,
    pub handover: Handover,
}

/// What the leaver hands over.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Handover {
    /// Customer files still on their devices as last reported (a file quarantined or
    /// deleted since is not held), most records first.
    pub files: Vec<Held>,
    /// Who takes their customers over (`offboard --successor`), if anyone was named.
    pub successor: Option<String>,
    /// The customers connectors handed to the successor (企业微信), with their state.
    pub customers: Vec<crate::store::HandedCustomer>,
}

/// Customer data, as the policy judged it: a rule matched, or rows of the company's real
/// customers were found (exact data match). Records alone are not enough: a team roster of
/// five names and emails has records and is nobody's customer list.
fn is_customer(e: &StoredEvent) -> bool {
    !e.rules.is_empty() || e.findings.get("edm").is_some_and(|n| *n > 0)
}

fn exported(action: &str) -> bool {
    matches!(action, "created" | "modified" | "renamed")
}

/// Builds the report from the user's events in `from_ms..=to_ms` (`window`) and all their
/// events reported so far (`history`, for what they still hold). `hostnames` maps device ids.
pub fn build(
    user: &str,
    from_ms: UnixMs,
    to_ms: UnixMs,
    window: &[StoredEvent],
    history: &[StoredEvent],
    hostnames: &BTreeMap<String, String>,
) -> Report {
    let host = |d: &str| hostnames.get(d).cloned().unwrap_or_default();
    let mut events = Vec::new();
    let mut top: BTreeMap<(String, String), TopFile> = BTreeMap::new();
    let mut devices: BTreeMap<String, DeviceLine> = BTreeMap::new();
    // Exports, each content once: the largest version of each file, and no copy of
    // content already counted (a copy to a stick, a rename, the same bytes saved again).
    let mut counted_content: BTreeSet<&str> = BTreeSet::new();
    let mut exports: BTreeMap<(&str, &str), (u64, u64)> = BTreeMap::new();
    for e in window.iter().filter(|e| is_customer(e)) {
        let action = e.action.clone().unwrap_or_else(|| e.kind.clone());
        let path = e.path.clone().unwrap_or_default();
        let records = e.records.unwrap_or(0);
        let edm = e.findings.get("edm").copied().unwrap_or(0);
        let mut copy = || {
            e.sha256
                .as_deref()
                .is_some_and(|h| !counted_content.insert(h))
        };
        if exported(&action) && !copy() {
            let file = exports
                .entry((e.device_id.as_str(), e.path.as_deref().unwrap_or("")))
                .or_default();
            *file = (file.0.max(records), file.1.max(edm));
        }
        let d = devices
            .entry(e.device_id.clone())
            .or_insert_with(|| DeviceLine {
                device_id: e.device_id.clone(),
                hostname: host(&e.device_id),
                events: 0,
                records: 0,
            });
        d.events += 1;
        d.records += records;
        let key = (
            e.device_id.clone(),
            e.sha256.clone().unwrap_or_else(|| path.clone()),
        );
        let t = top.entry(key).or_insert_with(|| TopFile {
            path: path.clone(),
            device_id: e.device_id.clone(),
            sha256: e.sha256.clone(),
            records: 0,
            edm: 0,
            events: 0,
        });
        t.events += 1;
        t.path = path.clone();
        t.records = t.records.max(records);
        t.edm = t.edm.max(edm);
        events.push(ReportEvent {
            time_ms: e.corrected_ms,
            device_id: e.device_id.clone(),
            seq: e.seq,
            action,
            path,
            old_path: e.old_path.clone(),
            sha256: e.sha256.clone(),
            records,
            edm,
            rules: e.rules.clone(),
        });
    }
    let records_exported = exports.values().map(|f| f.0).sum();
    let edm_hits = exports.values().map(|f| f.1).sum();
    let files_exported = exports.values().filter(|f| f.0 > 0).count() as u64;
    let mut top_files: Vec<TopFile> = top.into_values().collect();
    top_files.sort_by(|a, b| b.records.cmp(&a.records).then(a.path.cmp(&b.path)));
    top_files.truncate(10);
    // What was held: the last word on each (device, path) up to the effective time.
    let mut last: BTreeMap<(String, String), &StoredEvent> = BTreeMap::new();
    for e in history {
        let Some(path) = &e.path else { continue };
        if let (Some("renamed"), Some(old)) = (e.action.as_deref(), &e.old_path) {
            last.remove(&(e.device_id.clone(), old.clone()));
        }
        last.insert((e.device_id.clone(), path.clone()), e);
    }
    let mut files: Vec<Held> = last
        .into_iter()
        .filter(|(_, e)| e.action.as_deref() != Some("deleted") && is_customer(e))
        .map(|((device_id, path), e)| Held {
            hostname: host(&device_id),
            device_id,
            path,
            sha256: e.sha256.clone(),
            records: e.records.unwrap_or(0),
            edm: e.findings.get("edm").copied().unwrap_or(0),
            last_seen_ms: e.corrected_ms,
        })
        .collect();
    files.sort_by(|a, b| b.records.cmp(&a.records).then(a.path.cmp(&b.path)));
    Report {
        user: user.to_string(),
        from_ms,
        to_ms,
        records_exported,
        files_exported,
        edm_hits,
        events,
        top_files,
        devices: devices.into_values().collect(),
        handover: Handover {
            files,
            ..Handover::default()
        },
    }
}

/// Whether a spreadsheet would read `s` as a formula (or a DDE call): it starts, after any
/// spaces, with `=`, `+`, `-`, `@`, `|` or their full-width forms, or with a tab, CR or LF
/// (which some programs skip before looking).
fn formula_like(s: &str) -> bool {
    s.starts_with(['\t', '\r', '\n'])
        || s.trim_start_matches(' ').starts_with([
            '=', '+', '-', '@', '|', '\u{ff1d}', '\u{ff0b}', '\u{ff0d}', '\u{ff20}',
        ])
}

/// Appends one CSV line of `fields`.
fn csv_line(out: &mut String, fields: &[String]) {
    let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
    out.push_str(&line.join(","));
    out.push('\n');
}

fn csv_field(s: &str) -> String {
    // Quote everything that needs it, and defuse spreadsheet formulas.
    let s = if formula_like(s) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// The report as CSV: one row per event (`section` = `event`) and per held file
/// (`section` = `handover`), with the same columns.
pub fn to_csv(r: &Report) -> String {
    let mut out = String::from(
        "section,time,device,hostname,action,path,old_path,sha256,records,edm,rules\n",
    );
    let host = |d: &str| {
        r.devices
            .iter()
            .find(|l| l.device_id == d)
            .map(|l| l.hostname.clone())
            .unwrap_or_default()
    };
    for e in &r.events {
        let row = [
            "event".to_string(),
            crate::fmt_ms(e.time_ms),
            e.device_id.clone(),
            host(&e.device_id),
            e.action.clone(),
            e.path.clone(),
            e.old_path.clone().unwrap_or_default(),
            e.sha256.clone().unwrap_or_default(),
            e.records.to_string(),
            e.edm.to_string(),
            e.rules.join(" "),
        ];
        csv_line(&mut out, &row);
    }
    for h in &r.handover.files {
        let row = [
            "handover".to_string(),
            crate::fmt_ms(h.last_seen_ms),
            h.device_id.clone(),
            h.hostname.clone(),
            "held".to_string(),
            h.path.clone(),
            String::new(),
            h.sha256.clone().unwrap_or_default(),
            h.records.to_string(),
            h.edm.to_string(),
            String::new(),
        ];
        csv_line(&mut out, &row);
    }
    out
}

/// The report for people: a summary, then one table per section (events in the window,
/// top files, devices, files still held, customers handed over), times in UTC.
pub fn to_text(r: &Report) -> String {
    use crate::table::{escape, Column, Table};
    let fmt = crate::fmt_ms;
    let days = (r.to_ms.0 - r.from_ms.0) / 86_400_000;
    let mut out = format!(
        "Offboarding report for {}\n  look-back   {} to {} ({} days)\n  exported    {} customer \
         records in {} files, {} of them real customers\n  devices     {}\n",
        escape(&r.user),
        fmt(r.from_ms),
        fmt(r.to_ms),
        days,
        r.records_exported,
        r.files_exported,
        r.edm_hits,
        r.devices.len(),
    );
    if let Some(s) = &r.handover.successor {
        out.push_str(&format!("  successor   {}\n", escape(s)));
    }
    let host = |d: &str| -> String {
        r.devices
            .iter()
            .find(|l| l.device_id == d)
            .map(|l| l.hostname.clone())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| d.to_string())
    };
    let mut section = |title: &str, table: Option<Table>| {
        out.push_str(&format!("\n{title}\n"));
        match table {
            Some(t) => out.push_str(&t.render()),
            None => out.push_str("  (none)\n"),
        }
    };
    let events: Vec<(String, &ReportEvent)> =
        r.events.iter().map(|e| (host(&e.device_id), e)).collect();
    section(
        "Customer-data events in the look-back window",
        (!events.is_empty()).then(|| {
            Table::of(
                &events,
                &[
                    Column::left("TIME", |(_, e)| crate::fmt_ms(e.time_ms)),
                    Column::left("DEVICE", |(h, _)| h.clone()),
                    Column::left("ACTION", |(_, e)| e.action.clone()),
                    Column::right("RECORDS", |(_, e)| e.records.to_string()),
                    Column::right("REAL", |(_, e)| e.edm.to_string()),
                    Column::left("RULES", |(_, e)| e.rules.join(" ")),
                    Column::left("PATH", |(_, e)| e.path.clone()),
                ],
            )
        }),
    );
    let top: Vec<(String, &TopFile)> = r
        .top_files
        .iter()
        .map(|t| (host(&t.device_id), t))
        .collect();
    section(
        "Top files",
        (!top.is_empty()).then(|| {
            Table::of(
                &top,
                &[
                    Column::right("RECORDS", |(_, t)| t.records.to_string()),
                    Column::right("REAL", |(_, t)| t.edm.to_string()),
                    Column::right("EVENTS", |(_, t)| t.events.to_string()),
                    Column::left("DEVICE", |(h, _)| h.clone()),
                    Column::left("PATH", |(_, t)| t.path.clone()),
                ],
            )
        }),
    );
    section(
        "Devices",
        (!r.devices.is_empty()).then(|| {
            Table::of(
                &r.devices,
                &[
                    Column::left("DEVICE", |d| d.device_id.clone()),
                    Column::left("HOSTNAME", |d| d.hostname.clone()),
                    Column::right("EVENTS", |d| d.events.to_string()),
                    Column::right("RECORDS", |d| d.records.to_string()),
                ],
            )
        }),
    );
    section(
        "Customer files still held (to hand over)",
        (!r.handover.files.is_empty()).then(|| {
            Table::of(
                &r.handover.files,
                &[
                    Column::left("DEVICE", |h| {
                        if h.hostname.is_empty() {
                            h.device_id.clone()
                        } else {
                            h.hostname.clone()
                        }
                    }),
                    Column::right("RECORDS", |h| h.records.to_string()),
                    Column::right("REAL", |h| h.edm.to_string()),
                    Column::left("LAST SEEN", |h| crate::fmt_ms(h.last_seen_ms)),
                    Column::left("PATH", |h| h.path.clone()),
                ],
            )
        }),
    );
    if !r.handover.customers.is_empty() {
        section(
            "Customers handed to the successor",
            Some(Table::of(
                &r.handover.customers,
                &[
                    Column::left("CONNECTOR", |c| c.connector.clone()),
                    Column::left("CUSTOMER", |c| c.customer.clone()),
                    Column::left("SUCCESSOR", |c| c.successor.clone()),
                    Column::left("STATE", |c| c.state.clone()),
                    Column::left("SINCE", |c| crate::fmt_ms(c.time_ms)),
                ],
            )),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(seq: u64, t: i64, action: &str, path: &str, records: u64, rules: &[&str]) -> StoredEvent {
        StoredEvent {
            id: seq as i64,
            destination: None,
            origin: None,
            process: None,
            message: None,
            device_id: "d1".into(),
            seq,
            user: "kim".into(),
            time_ms: UnixMs(t),
            received_ms: UnixMs(t),
            corrected_ms: UnixMs(t),
            kind: "file".into(),
            action: Some(action.into()),
            path: Some(path.into()),
            sha256: Some(format!("h-{path}")),
            size: Some(10),
            records: Some(records),
            rules: rules.iter().map(|r| r.to_string()).collect(),
            old_path: None,
            findings: [("edm".to_string(), records / 2)].into_iter().collect(),
        }
    }

    #[test]
    fn report_totals_top_files_and_handover() {
        let history = vec![
            ev(
                1,
                10,
                "created",
                "/h/a.csv",
                300,
                &["crm-export.bulk-contacts"],
            ),
            ev(2, 20, "created", "/h/notes.txt", 0, &[]),
            ev(
                3,
                30,
                "created",
                "/h/b.csv",
                80,
                &["crm-export.bulk-contacts"],
            ),
            ev(4, 40, "deleted", "/h/b.csv", 0, &[]),
            ev(5, 50, "created", "/h/c.csv", 20, &[]),
        ];
        let window: Vec<StoredEvent> = history[1..].to_vec();
        let hosts = [("d1".to_string(), "laptop".to_string())]
            .into_iter()
            .collect();
        let r = build("kim", UnixMs(15), UnixMs(60), &window, &history, &hosts);
        let paths: Vec<(&str, &str)> = r
            .events
            .iter()
            .map(|e| (e.action.as_str(), e.path.as_str()))
            .collect();
        // The note (no records, no rule) is not customer data; a.csv is outside the window.
        assert_eq!(paths, [("created", "/h/b.csv"), ("created", "/h/c.csv")]);
        assert_eq!((r.records_exported, r.edm_hits), (100, 50));
        assert_eq!(r.top_files[0].path, "/h/b.csv");
        assert_eq!(r.devices[0].hostname, "laptop");
        // Held at the end: a.csv and c.csv; b.csv was deleted.
        let held: Vec<&str> = r.handover.files.iter().map(|h| h.path.as_str()).collect();
        assert_eq!(held, ["/h/a.csv", "/h/c.csv"]);
        let csv = to_csv(&r);
        assert_eq!(csv.lines().count(), 1 + 2 + 2);
        assert!(csv.contains("handover,"));
        assert_eq!(csv_field("=cmd|' /C calc'!A0"), "'=cmd|' /C calc'!A0");
        assert_eq!(csv_field("a,\"b\""), "\"a,\"\"b\"\"\"");
        for f in [
            "\t=1+1",
            "\r=1",
            "\n@SUM(A1)",
            "  =1",
            "|calc",
            "\u{ff1d}1+1",
            "-2+3",
        ] {
            assert!(
                csv_field(f).trim_start_matches('"').starts_with('\''),
                "{f:?}"
            );
        }
        assert_eq!(csv_field("report.csv"), "report.csv");
    }

    #[test]
    fn copies_count_once_a_roster_not_at_all_and_what_was_removed_is_not_held() {
        let bulk = &["crm-export.bulk-contacts"];
        let mut roster = ev(4, 40, "created", "/h/team-roster.csv", 5, &[]);
        roster.findings.clear();
        let mut copy = ev(2, 20, "created", "/media/usb/a.csv", 300, bulk);
        copy.sha256 = Some("h-/h/a.csv".into());
        let mut renamed = ev(3, 30, "renamed", "/h/a-final.csv", 300, bulk);
        renamed.sha256 = Some("h-/h/a.csv".into());
        renamed.old_path = Some("/h/a.csv".into());
        let mut bigger = ev(6, 60, "modified", "/h/b.csv", 120, bulk);
        bigger.sha256 = Some("h-/h/b.csv-2".into());
        let history = vec![
            ev(1, 10, "created", "/h/a.csv", 300, bulk),
            copy,
            renamed,
            roster,
            ev(5, 50, "created", "/h/b.csv", 80, bulk),
            bigger,
            // Quarantined after the effective time: gone from where it was.
            ev(7, 200, "deleted", "/media/usb/a.csv", 0, &[]),
        ];
        let window: Vec<StoredEvent> = history[..6].to_vec();
        let hosts = BTreeMap::new();
        let r = build("kim", UnixMs(0), UnixMs(100), &window, &history, &hosts);
        // a.csv once (not its copy, not its rename), b.csv at its largest; no roster.
        assert_eq!((r.records_exported, r.files_exported), (300 + 120, 2));
        assert!(r.events.iter().all(|e| !e.path.contains("roster")));
        let held: Vec<&str> = r.handover.files.iter().map(|h| h.path.as_str()).collect();
        assert_eq!(held, ["/h/a-final.csv", "/h/b.csv"]);
        let text = to_text(&r);
        for line in [
            "Offboarding report for kim",
            "420 customer records in 2 files",
            "Customer files still held (to hand over)",
        ] {
            assert!(text.contains(line), "{line}\n{text}");
        }
        assert!(text.contains("1970-01-01T00:00:00Z"), "{text}");
        assert!(!text.contains("team-roster"), "{text}");
    }
}
