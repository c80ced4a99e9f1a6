//! Tests of the control-file parser (on control files encoded here as CUPS writes them) and
//! of the job state machine.

use super::*;

/// An attribute's value as IPP encodes it.
enum V<'a> {
    Int(u32),
    Enum(u32),
    Name(&'a str),
    Uri(&'a str),
    Keyword(&'a str),
}

/// A control file as CUPS writes one: an operation group, then the job group.
fn control(job: &[(&str, Vec<V<'_>>)]) -> Vec<u8> {
    let mut out = vec![2, 0, 0, 5, 0, 0, 0, 4, 0x01];
    let attr = |out: &mut Vec<u8>, name: &str, values: &[V<'_>]| {
        for (i, v) in values.iter().enumerate() {
            let (tag, bytes): (u8, Vec<u8>) = match v {
                V::Int(n) => (0x21, n.to_be_bytes().to_vec()),
                V::Enum(n) => (0x23, n.to_be_bytes().to_vec()),
                V::Name(s) => (0x42, s.as_bytes().to_vec()),
                V::Uri(s) => (0x45, s.as_bytes().to_vec()),
                V::Keyword(s) => (0x44, s.as_bytes().to_vec()),
            };
            out.push(tag);
            let name = if i == 0 { name } else { "" };
            out.extend((name.len() as u16).to_be_bytes());
            out.extend(name.as_bytes());
            out.extend((bytes.len() as u16).to_be_bytes());
            out.extend(bytes);
        }
    };
    attr(&mut out, "attributes-charset", &[V::Keyword("utf-8")]);
    attr(
        &mut out,
        "printer-uri",
        &[V::Uri("ipp://localhost/printers/office")],
    );
    out.push(0x02);
    for (name, values) in job {
        attr(&mut out, name, values);
    }
    out.push(0x03);
    out
}

fn full_job(state: u32, pages: u32) -> Vec<u8> {
    control(&[
        ("job-originating-user-name", vec![V::Name("ivy")]),
        ("job-name", vec![V::Name("salesforce_contacts.csv")]),
        ("copies", vec![V::Int(1)]),
        ("job-sheets", vec![V::Keyword("none"), V::Keyword("none")]),
        ("job-id", vec![V::Int(12)]),
        ("job-state", vec![V::Enum(state)]),
        ("job-impressions-completed", vec![V::Int(pages)]),
        (
            "job-media-sheets-completed",
            vec![V::Int(pages.div_ceil(2))],
        ),
        ("job-printer-uri", vec![V::Uri("ipp://vm/printers/pdf")]),
        ("document-name-supplied", vec![V::Name("contacts.csv")]),
    ])
}

fn check(bytes: &[u8], want: Result<Job, ControlError>) {
    assert_eq!(parse_control(bytes), want);
}

#[test]
fn a_control_file_names_the_job_printer_user_title_document_state_and_pages() {
    let want = Job {
        id: 12,
        printer: Some("pdf".into()),
        user: Some("ivy".into()),
        title: Some("salesforce_contacts.csv".into()),
        document: Some("contacts.csv".into()),
        state: Some(9),
        pages: Some(3),
    };
    check(&full_job(9, 3), Ok(want.clone()));
    assert!(want.is_done());
    // Pending, nothing printed: impressions 0, sheets 0.
    let pending = parse_control(&full_job(3, 0)).unwrap();
    assert_eq!(
        (pending.state, pending.pages, pending.is_done()),
        (Some(3), Some(0), false)
    );
    // Only the queue's URI (no job-printer-uri yet), and sheets where impressions are not
    // counted: sheets stand for pages.
    let early = control(&[
        ("job-id", vec![V::Int(4)]),
        ("job-media-sheets-completed", vec![V::Int(2)]),
    ]);
    let job = parse_control(&early).unwrap();
    assert_eq!(
        (job.printer.as_deref(), job.pages),
        (Some("office"), Some(2))
    );
}

#[test]
fn a_broken_control_file_is_a_clear_error() {
    let good = full_job(9, 3);
    // Cut anywhere inside: truncated, never a panic or a wrong job.
    for cut in [0, 3, 8, 9, 12, good.len() / 2, good.len() - 1] {
        check(&good[..cut], Err(ControlError::Truncated(cut)));
    }
    check(
        &control(&[("job-name", vec![V::Name("x")])]),
        Err(ControlError::NoJobId),
    );
    let huge = vec![0u8; MAX_CONTROL + 1];
    check(&huge, Err(ControlError::TooLarge(MAX_CONTROL + 1)));
    // Junk of every length parses or fails, within its bounds.
    let mut x: u32 = 7;
    for len in 0..400 {
        let junk: Vec<u8> = (0..len)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                (x >> 16) as u8
            })
            .collect();
        let _ = parse_control(&junk);
    }
}

#[test]
fn spool_file_names_say_which_job_and_document() {
    let cases = [
        ("c00012", Some(SpoolFile::Control { job: 12 })),
        ("c00012.N", Some(SpoolFile::Control { job: 12 })),
        (
            "d00012-001",
            Some(SpoolFile::Document {
                job: 12,
                document: 1,
            }),
        ),
        (
            "d123456-010",
            Some(SpoolFile::Document {
                job: 123_456,
                document: 10,
            }),
        ),
        ("0000001a", Some(SpoolFile::Request)),
        ("0000001", None),
        ("c1000000", Some(SpoolFile::Control { job: 1_000_000 })),
        ("cafe0001", Some(SpoolFile::Request)),
        ("cache", None),
        ("c", None),
        ("d00012", None),
        ("d00012-", None),
        ("d0001x-001", None),
        ("c99999999999", None),
        ("tmp", None),
    ];
    for (name, want) in cases {
        assert_eq!(SpoolFile::of(name), want, "{name}");
    }
}

fn job(id: u32, state: u32, pages: u32) -> Job {
    Job {
        id,
        printer: Some("pdf".into()),
        state: Some(state),
        pages: Some(pages),
        ..Job::default()
    }
}

#[test]
fn a_job_is_reported_once_when_its_documents_are_read_and_it_is_done() {
    let t = UnixMs(1_000_000);
    let mut p = PrintJobs::default();
    p.control(job(1, 3, 0), t);
    p.announce(1, t);
    assert!(p.due(t + 10).is_empty(), "the document is still being read");
    p.document(1, "doc", t + 20);
    assert!(p.due(t + 30).is_empty(), "still printing");
    p.control(job(1, 5, 1), t + 40);
    assert!(p.due(t + 50).is_empty());
    p.control(job(1, 9, 3), t + 60);
    let done = p.due(t + 70);
    assert_eq!(done.len(), 1);
    assert_eq!((done[0].job.pages, done[0].unfinished), (Some(3), false));
    assert_eq!(done[0].documents, ["doc"]);
    // CUPS rewrites the control file later (history): no second report.
    p.control(job(1, 9, 3), t + 80);
    assert!(p.due(t + 90).is_empty());
    assert!(p.is_empty());
}

#[test]
fn a_job_that_waits_is_reported_after_the_wait_with_what_is_known() {
    let t = UnixMs(5_000_000);
    let mut p = PrintJobs::default();
    // The document first, its job's control file later (or never).
    p.announce(2, t);
    p.document(2, "a", t);
    p.announce(2, t);
    p.document(2, "b", t + 5);
    assert!(p.due(t + WAIT_MS).is_empty(), "not waited long enough");
    let late = p.due(t + 5 + WAIT_MS);
    assert_eq!(late.len(), 1);
    assert_eq!(
        late[0].job,
        Job {
            id: 2,
            ..Job::default()
        }
    );
    assert!(late[0].unfinished);
    assert_eq!(late[0].documents, ["a", "b"]);
    // A held job: known, pending, reported after the wait as unfinished.
    p.control(job(3, 4, 0), t);
    p.announce(3, t);
    p.document(3, "c", t);
    let held = p.due(t + WAIT_MS);
    assert_eq!((held.len(), held[0].unfinished), (1, true));
}

#[test]
fn jobs_with_nothing_to_report_are_forgotten_and_a_lost_document_is_counted() {
    let t = UnixMs(9_000_000);
    let mut p: PrintJobs<&str> = PrintJobs::default();
    // Done before the agent saw its document: forgotten after the wait, nothing lost.
    p.control(job(4, 9, 1), t);
    assert!(p.due(t + WAIT_MS).is_empty());
    assert!(p.is_empty());
    assert_eq!(p.lost, 0);
    // A document announced and never read: forgotten after FORGET_MS, counted.
    p.announce(5, t);
    assert!(p.due(t + FORGET_MS - 1).is_empty());
    assert!(!p.is_empty());
    assert!(p.due(t + FORGET_MS).is_empty());
    assert!(p.is_empty());
    assert_eq!(p.lost, 1);
}

#[test]
fn the_jobs_followed_are_bounded() {
    let t = UnixMs(1);
    let mut p = PrintJobs::default();
    for id in 0..(MAX_JOBS as u32 + 10) {
        p.announce(id, t);
        p.document(id, id, t);
    }
    assert_eq!(p.lost, 10);
    let all = p.due(t + WAIT_MS);
    assert_eq!(all.len(), MAX_JOBS);
    assert_eq!(all[0].job.id, 10, "the oldest went first");
}
