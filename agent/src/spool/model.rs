//! Model-based test of the spool: random sequences of appends (every severity, files and
//! notices), acknowledgements of what was sent, drop reports, and crashes (the connection
//! dropped and the file opened again) against a simple model of what must be stored.
//!
//! The model is a list of pending events with their sizes, the bytes counted against the
//! bound, the drop counts by kind, and every sealed event's hash. After each step the spool
//! must agree with it exactly: the same pending events in order (bodies, users and sequence
//! numbers), an unbroken hash chain from the genesis, the same byte count and drop counts,
//! and a drop report (counts, episode start and end) exactly when room came back.

#![allow(clippy::unwrap_used)]

use super::*;
use holdfast_shared::time::UnixMs;
use proptest::prelude::*;

const MAX_BYTES: u64 = 6_000;
const USER: &str = "ada";

#[derive(Debug, Clone)]
enum Step {
    /// A file event whose most severe rule is `sev` (`None`: no rule), with a path of
    /// `len` characters (so events have different sizes).
    File { sev: Option<Severity>, len: usize },
    /// An agent notice.
    Notice { len: usize },
    /// The collector acknowledged the next `n` pending events (a batch it was sent).
    Ack { n: usize },
    /// The heartbeat's chance to write a pending drop report.
    ReportDrops,
    /// The agent died between two transactions and started again.
    Crash,
}

fn severity() -> impl Strategy<Value = Option<Severity>> {
    prop_oneof![
        Just(None),
        Just(Some(Severity::Low)),
        Just(Some(Severity::Medium)),
        Just(Some(Severity::High)),
        Just(Some(Severity::Critical)),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (severity(), 1usize..300).prop_map(|(sev, len)| Step::File { sev, len }),
        1 => (1usize..100).prop_map(|len| Step::Notice { len }),
        3 => (1usize..12).prop_map(|n| Step::Ack { n }),
        1 => Just(Step::ReportDrops),
        1 => Just(Step::Crash),
    ]
}

fn body(step: &Step, n: usize) -> EventBody {
    match step {
        Step::File { sev, len } => created_file(
            format!("/home/ada/{n}-{}", "x".repeat(*len)),
            *len as u64,
            *sev,
        ),
        _ => EventBody::Notice(AgentNotice {
            kind: "t".into(),
            message: "n".repeat(match step {
                Step::Notice { len } => *len,
                _ => 1,
            }),
            count: n as u64,
            counts: BTreeMap::new(),
        }),
    }
}

/// What the spool must hold.
#[derive(Debug, Default)]
struct Model {
    /// Pending events: sequence number, body, size counted against the bound.
    pending: Vec<(u64, EventBody, u64)>,
    last_seq: u64,
    used: u64,
    dropped: BTreeMap<String, u64>,
    /// When the first event of the current drop episode was refused.
    dropped_since_ms: Option<UnixMs>,
}

/// The share of the bound (percent) an event may fill, as the spool promises: events without
/// a rule or with a low one 80, medium 90, high and critical and every notice 100.
fn share(body: &EventBody) -> u64 {
    match body {
        EventBody::Notice(_) => 100,
        EventBody::File(f) => match f.rules.iter().map(|r| r.severity).max() {
            None | Some(Severity::Low) => 80,
            Some(Severity::Medium) => 90,
            Some(_) => 100,
        },
    }
}

/// What a refused event is counted under: `created/<its severity or none>`, `notice/<kind>`.
fn counted_as(body: &EventBody) -> String {
    match body {
        EventBody::Notice(n) => format!("notice/{}", n.kind),
        EventBody::File(f) => format!(
            "created/{}",
            f.rules
                .iter()
                .map(|r| r.severity)
                .max()
                .map_or("none", Severity::as_str)
        ),
    }
}

impl Model {
    fn size(body: &EventBody) -> u64 {
        body.to_bytes().unwrap().len() as u64 + USER.len() as u64 + ROW_OVERHEAD
    }

    /// Admits `body` as the spool's rules say: within its severity's share of the bound.
    fn admit(&mut self, now_ms: UnixMs, body: EventBody) -> Admit {
        let size = Model::size(&body);
        if self.used + size > MAX_BYTES / 100 * share(&body) {
            *self.dropped.entry(counted_as(&body)).or_insert(0) += 1;
            self.dropped_since_ms.get_or_insert(now_ms);
            return Admit::Dropped;
        }
        self.last_seq += 1;
        self.used += size;
        self.pending.push((self.last_seq, body, size));
        Admit::Stored(self.last_seq)
    }

    /// After an ack or at a heartbeat: the drop report, once there is room below the
    /// lowest share again. Returns whether one is due.
    fn flush(&mut self, now_ms: UnixMs) -> bool {
        if self.dropped.is_empty() || self.used >= MAX_BYTES / 100 * 80 {
            return false;
        }
        let counts = std::mem::take(&mut self.dropped);
        let total: u64 = counts.values().sum();
        let since = self.dropped_since_ms.take().unwrap_or_default();
        let report = EventBody::Notice(AgentNotice {
            kind: "spool_dropped".into(),
            message: format!(
                "spool full ({MAX_BYTES} bytes): {total} events were not kept, from {since} ms to {now_ms} ms"
            ),
            count: total,
            counts,
        });
        // The report is a notice and there is room: it is always stored.
        matches!(self.admit(now_ms, report), Admit::Stored(_))
    }
}

fn check(spool: &Spool, model: &Model, hashes: &BTreeMap<u64, [u8; 32]>) {
    let pending = spool.pending(usize::MAX >> 1).unwrap();
    assert_eq!(
        pending.iter().map(|e| e.seq).collect::<Vec<_>>(),
        model.pending.iter().map(|p| p.0).collect::<Vec<_>>(),
        "pending sequence numbers"
    );
    for (e, (seq, want, _)) in pending.iter().zip(&model.pending) {
        let got = EventBody::from_bytes(&e.body).unwrap();
        assert_eq!(&got, want, "event {seq}");
        assert_eq!(e.user, USER);
        // Chained to the event sealed before it, whether or not that one is still here.
        let prev = if *seq == 1 {
            GENESIS
        } else {
            hashes[&(seq - 1)]
        };
        assert_eq!(e.prev_hash, prev.to_vec(), "event {seq}'s link");
    }
    assert_eq!(spool.bytes().unwrap(), model.used, "bytes");
    assert_eq!(spool.dropped().unwrap(), model.dropped, "drop counts");
    assert_eq!(spool.last_seq().unwrap(), model.last_seq, "last seq");
    assert_eq!(spool.backlog().unwrap(), model.pending.len() as u64);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn the_spool_keeps_what_the_model_keeps(steps in prop::collection::vec(step(), 1..120)) {
        let (_dir, path) = holdfast_io::testing::scratch("spool.db");
        let mut spool = Spool::writer(&path, MAX_BYTES, USER).unwrap();
        let mut model = Model::default();
        // Every sealed event's hash, by sequence number: the chain the collector checks.
        let mut hashes: BTreeMap<u64, [u8; 32]> = BTreeMap::new();
        let mut now = 1_000i64;
        for (n, step) in steps.iter().enumerate() {
            now += 10;
            match step {
                Step::File { .. } | Step::Notice { .. } => {
                    let b = body(step, n);
                    let want = model.admit(UnixMs(now), b.clone());
                    let got = spool.append(UnixMs(now), &b).unwrap();
                    prop_assert_eq!(got, want);
                }
                Step::Ack { n } => {
                    let batch: Vec<u64> = model.pending.iter().take(*n).map(|p| p.0).collect();
                    if let (Some(&from), Some(&through)) = (batch.first(), batch.last()) {
                        let removed = spool.ack(from..=through, UnixMs(now)).unwrap();
                        prop_assert_eq!(removed, batch.len());
                        let freed: u64 = model.pending.drain(..batch.len()).map(|p| p.2).sum();
                        model.used -= freed;
                        model.flush(UnixMs(now));
                    }
                }
                Step::ReportDrops => {
                    spool.report_drops(UnixMs(now)).unwrap();
                    model.flush(UnixMs(now));
                }
                Step::Crash => {
                    drop(spool);
                    spool = Spool::writer(&path, MAX_BYTES, USER).unwrap();
                }
            }
            for e in spool.pending(usize::MAX >> 1).unwrap() {
                hashes.entry(e.seq).or_insert_with(|| e.hash());
            }
            check(&spool, &model, &hashes);
        }
        // However it went, what is pending can always be sent and acknowledged, and then
        // nothing is left but (perhaps) the drop report the freed room made possible.
        let pending = spool.pending(usize::MAX >> 1).unwrap();
        if let (Some(first), Some(last)) = (pending.first(), pending.last()) {
            spool.ack(first.seq..=last.seq, UnixMs(now + 1)).unwrap();
            model.pending.clear();
            model.used = 0;
            let report_due = model.flush(UnixMs(now + 1));
            prop_assert_eq!(spool.backlog().unwrap(), u64::from(report_due));
        }
    }
}
