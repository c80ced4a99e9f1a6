//! Reading one file: stream it once, hashing and classifying in the same pass, with a
//! fixed-size buffer, up to [`ScanLimits`] (bytes, and a cancel flag the worker pool raises
//! at the CPU limit). Used by `holdfast-agent scan` and by the daemon.

use holdfast_shared::classify::limits::{Cancel, Limits, CPU_LIMIT};
use holdfast_shared::classify::{
    archive, detect_type, disguise, xls, xlsx, Batch, Classifier, Counts, Tallier, Tally,
    DEFAULT_BYTE_BUDGET,
};
use holdfast_shared::edm::Matcher;
use holdfast_shared::event::ContentSummary;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

/// Read buffer size.
const CHUNK: usize = 256 * 1024;
/// Files at least this large are hashed on a second thread while the first classifies: for a
/// large export SHA-256 is a seventh of the pass (BENCHMARKS.md). Smaller files are hashed
/// inline, where a thread would cost more than it saves.
const PARALLEL_HASH: u64 = 8 * 1024 * 1024;
/// Chunks queued for the hashing thread at most (2 MiB).
const HASH_QUEUE: usize = 8;

/// Reads `file` from byte `at` to `end` (or its end) by `pread`, a chunk at a time, handing
/// each to `each` until `stop` says so or `each` wants no more (returns `false`); the bytes
/// read. The descriptor's offset is not used,
/// so threads can read parts of one file at once.
fn read_span(
    file: &std::fs::File,
    mut at: u64,
    end: u64,
    stop: &dyn Fn() -> bool,
    each: &mut dyn FnMut(&[u8]) -> bool,
) -> std::io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let start = at;
    let mut buf = vec![0u8; CHUNK];
    while at < end && !stop() {
        let want = CHUNK.min(usize::try_from(end - at).unwrap_or(CHUNK));
        match file.read_at(&mut buf[..want], at) {
            Ok(0) => break,
            Ok(n) => {
                at += n as u64;
                if !each(&buf[..n]) {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(at - start)
}

/// SHA-256 of what a scan read: inline, or on its own thread for a large file; for a file
/// read in two parts, by a thread that reads the file itself, from its start.
enum FileHash {
    Inline(Sha256),
    Thread {
        chunks: std::sync::mpsc::SyncSender<Vec<u8>>,
        digest: std::thread::JoinHandle<Vec<u8>>,
    },
    Reader(std::thread::JoinHandle<std::io::Result<Vec<u8>>>),
}

impl FileHash {
    fn for_size(size: u64) -> FileHash {
        if size < PARALLEL_HASH {
            return FileHash::Inline(Sha256::new());
        }
        let (chunks, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(HASH_QUEUE);
        let spawned = std::thread::Builder::new()
            .name("scan-hash".into())
            .spawn(move || {
                let mut h = Sha256::new();
                for c in rx {
                    h.update(&c);
                }
                h.finalize().to_vec()
            });
        match spawned {
            Ok(digest) => FileHash::Thread { chunks, digest },
            // No thread to be had: hash inline, as for a small file.
            Err(_) => FileHash::Inline(Sha256::new()),
        }
    }

    /// A thread hashing `file` from its start, up to `max_bytes` (or until `cancel`); `None`
    /// when no thread or descriptor can be had.
    fn reading(file: &std::fs::File, max_bytes: u64, cancel: Option<Cancel>) -> Option<FileHash> {
        let file = file.try_clone().ok()?;
        let spawned = std::thread::Builder::new()
            .name("scan-hash".into())
            .spawn(move || {
                let mut h = Sha256::new();
                let stop = || cancel.is_some_and(Cancel::raised);
                read_span(&file, 0, max_bytes, &stop, &mut |c| {
                    h.update(c);
                    true
                })?;
                Ok(h.finalize().to_vec())
            });
        spawned.ok().map(FileHash::Reader)
    }

    fn update(&mut self, chunk: &[u8]) {
        match self {
            FileHash::Reader(_) => {}
            FileHash::Inline(h) => h.update(chunk),
            FileHash::Thread { chunks, .. } => {
                // The thread ends only when the sender is dropped, so the send cannot fail
                // unless it panicked; `finish` reports that.
                let _ = chunks.send(chunk.to_vec());
            }
        }
    }

    fn finish(self) -> Result<String, ScanError> {
        match self {
            FileHash::Inline(h) => Ok(hex::encode(h.finalize())),
            FileHash::Thread { chunks, digest } => {
                drop(chunks);
                digest
                    .join()
                    .map(hex::encode)
                    .map_err(|_| ScanError::Io(std::io::Error::other("the hashing thread failed")))
            }
            FileHash::Reader(digest) => match digest.join() {
                Ok(read) => Ok(hex::encode(read?)),
                Err(_) => Err(ScanError::Io(std::io::Error::other(
                    "the hashing thread failed",
                ))),
            },
        }
    }
}

/// Batches of lookups queued for the tally thread at most (each at most 256 KiB of
/// identifiers, `classify::matching`).
const TALLY_QUEUE: usize = 4;
/// Identifiers in one batch for the tally thread (a wake-up per batch; about 100 KiB).
const TALLY_BATCH: usize = 4096;

/// The customer-set lookups of a large file on their own thread: the classifying thread
/// queues identifiers, this one fingerprints them, looks them up and counts the rows (a
/// quarter of the pass with a million-customer set, BENCHMARKS.md).
struct TallyThread {
    batches: std::sync::mpsc::SyncSender<Batch>,
    /// Emptied batches coming back, to be filled again.
    spent: std::sync::mpsc::Receiver<Batch>,
    counts: std::thread::JoinHandle<Counts>,
}

impl TallyThread {
    /// The tally for a scan of `size` bytes: on its own thread for a large file, inline
    /// otherwise (or when no thread can be had).
    fn for_size(size: u64, matcher: &Arc<Matcher>) -> Box<dyn Tally> {
        let inline = || -> Box<dyn Tally> { Box::new(Tallier::new(Arc::clone(matcher))) };
        if size < PARALLEL_HASH {
            return inline();
        }
        let (batches, rx) = std::sync::mpsc::sync_channel::<Batch>(TALLY_QUEUE);
        let (back, spent) = std::sync::mpsc::sync_channel::<Batch>(TALLY_QUEUE);
        let mut tallier = Tallier::new(Arc::clone(matcher));
        let spawned = std::thread::Builder::new()
            .name("scan-lookups".into())
            .spawn(move || {
                for b in rx {
                    // A full return queue only means the room is not reused.
                    let _ = back.try_send(tallier.take(b));
                }
                Box::new(tallier).counts()
            });
        match spawned {
            Ok(counts) => Box::new(TallyThread {
                batches,
                spent,
                counts,
            }),
            Err(_) => inline(),
        }
    }
}

impl Tally for TallyThread {
    fn take(&mut self, batch: Batch) -> Batch {
        // The thread ends only when the sender is dropped, so the send fails only if it
        // panicked; `counts` then reports no matches rather than wrong ones.
        let _ = self.batches.send(batch);
        self.spent.try_recv().unwrap_or_default()
    }

    fn counts(self: Box<Self>) -> Counts {
        let TallyThread {
            batches, counts, ..
        } = *self;
        drop(batches);
        counts.join().unwrap_or_default()
    }

    fn batch_size(&self) -> usize {
        TALLY_BATCH
    }
}

/// Files at least this large are read in two parts on two threads (when [`ScanLimits::parts`]
/// allows it, the machine has two cores or more, and the format can be cut at a line end):
/// the classifier is the pass's critical path (BENCHMARKS.md).
/// (The unit tests use 1 MiB, to read a cut file in a debug build.)
const SPLIT: u64 = if cfg!(test) { 1 << 20 } else { 32 << 20 };
/// Bytes after the middle of a file searched for the line end where its second part starts.
const SEAM_SEARCH: usize = 64 * 1024;

/// How many threads may read one file's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parts {
    /// One thread classifies the whole file (the daemon's fast lane, whose CPU budget is
    /// that thread's).
    One,
    /// A large table may be read in two parts, the second by a thread of its own (and the
    /// hash by a third, reading the file itself).
    Two,
}

/// The second part of a file read in two: a thread classifying from `seam` to the end.
struct Rest {
    seam: u64,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<std::io::Result<(Classifier, u64)>>,
}

impl Rest {
    /// Starts reading the second part of `file` (`size` bytes) with a continuation of
    /// `first`, from the first line start after its middle; `None` when there is no line end
    /// there, the format cannot be cut, or no thread can be had.
    fn start(
        file: &std::fs::File,
        size: u64,
        first: &Classifier,
        edm: Option<&Arc<Matcher>>,
        limits: ScanLimits,
    ) -> Option<Rest> {
        use std::os::unix::fs::FileExt;
        let mid = size / 2;
        let mut probe = vec![0u8; SEAM_SEARCH];
        let n = file.read_at(&mut probe, mid).ok()?;
        let seam = mid + probe[..n].iter().position(|&b| b == b'\n')? as u64 + 1;
        let tally = edm.map(|m| TallyThread::for_size(size, m));
        let mut cont = first.continuation(seam, tally)?;
        let file = file.try_clone().ok()?;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("scan-rest".into())
            .spawn(move || {
                let stop = || {
                    stopped.load(std::sync::atomic::Ordering::Relaxed)
                        || limits.cancel.is_some_and(Cancel::raised)
                };
                let read = read_span(&file, seam, limits.max_bytes, &stop, &mut |c| {
                    cont.feed(c);
                    !cont.is_done()
                })?;
                Ok((cont, read))
            })
            .ok()?;
        Some(Rest { seam, stop, thread })
    }

    /// What the second part read (the classifier and its byte count), or `None` when its
    /// reading failed.
    fn join(self) -> Option<(Classifier, u64)> {
        self.thread.join().ok()?.ok()
    }

    /// Stops and forgets the second part: the first reads on past the seam itself.
    fn abandon(self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

/// Bytes read from one file at most, by default: an export of any realistic size is read
/// whole; a 16 GiB disk image or a 1 TiB sparse file is not.
pub const DEFAULT_MAX_BYTES: u64 = 2 << 30;

/// The finding for a file read only up to [`ScanLimits::max_bytes`].
pub const BYTE_LIMIT: &str = "byte_limit";

/// How much one file's reading may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanLimits {
    /// Bytes hashed and classified at most; beyond, the verdict is truncated (`byte_limit`)
    /// and the file's hash is not known.
    pub max_bytes: u64,
    /// Raised when the file has used its CPU time: reading stops (`cpu_limit`).
    pub cancel: Option<Cancel>,
    /// Archives inside archives read up to this depth (the file itself is 1); deeper ones are
    /// the finding `nested_too_deep`.
    pub archive_depth: u32,
    /// Whether a large table may be read by two threads. The second part's thread runs
    /// outside the caller's CPU clock: with `Two`, a CPU budget measured on the calling
    /// thread bounds each of the two.
    pub parts: Parts,
}

impl Default for ScanLimits {
    fn default() -> Self {
        ScanLimits {
            max_bytes: DEFAULT_MAX_BYTES,
            cancel: None,
            archive_depth: Limits::default().max_depth,
            parts: Parts::Two,
        }
    }
}

/// What reading a file produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileReport {
    /// The file's size (what was read, when a limit stopped the reading, is less).
    pub size: u64,
    /// SHA-256 of what was read: the whole file when `complete`.
    pub sha256: String,
    /// The whole file was read (no limit stopped it).
    pub complete: bool,
    pub summary: ContentSummary,
    /// Why the classifiers decided as they did (for `scan --explain`; never sent).
    pub reasons: Vec<String>,
    /// Column headers as header keys, for policies on the device (never sent).
    pub headers: Vec<String>,
    /// An archive's entries holding customer records: name and SHA-256 (for lineage on the
    /// device; never sent).
    pub entries: Vec<(String, String)>,
}

/// Why a file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// Opening was refused (a link in the way, not a regular file, swapped while opened) or
    /// failed (missing, permission denied).
    #[error(transparent)]
    Open(#[from] crate::safe_fs::FsError),
    /// Reading failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Hashes and classifies the file at the absolute `path`, opened through
/// [`crate::safe_fs::open_regular`] (no link followed; FIFOs, sockets and devices refused
/// unopened). The whole file is hashed; classification stops at its byte budget.
pub fn scan_file(path: &Path, edm: Option<Arc<Matcher>>) -> Result<FileReport, ScanError> {
    scan_file_with(path, edm, ScanLimits::default())
}

/// [`scan_file`] within `limits`.
pub fn scan_file_with(
    path: &Path,
    edm: Option<Arc<Matcher>>,
    limits: ScanLimits,
) -> Result<FileReport, ScanError> {
    let opened = crate::safe_fs::open_regular(path)?;
    scan_opened_with(opened.file, path, edm, limits)
}

/// Like [`scan_file`], for a file already opened through `safe_fs`: every pass reads this
/// descriptor, so what is classified is what was opened, whatever happens to its name.
pub fn scan_opened(
    file: std::fs::File,
    path: &Path,
    edm: Option<Arc<Matcher>>,
) -> Result<FileReport, ScanError> {
    scan_opened_with(file, path, edm, ScanLimits::default())
}

/// [`scan_opened`] within `limits`.
pub fn scan_opened_with(
    mut file: std::fs::File,
    path: &Path,
    edm: Option<Arc<Matcher>>,
    limits: ScanLimits,
) -> Result<FileReport, ScanError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let mut buf = vec![0u8; CHUNK];
    let expected = file.metadata().map(|m| m.len()).unwrap_or(0);
    let split = limits.parts == Parts::Two
        && (SPLIT..=limits.max_bytes.min(DEFAULT_BYTE_BUDGET)).contains(&expected)
        && std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2);
    let mut hasher = match split {
        true => FileHash::reading(&file, limits.max_bytes, limits.cancel),
        false => None,
    }
    .unwrap_or_else(|| FileHash::for_size(expected.min(limits.max_bytes)));
    let mut size = 0u64;
    let mut classifier: Option<Classifier> = None;
    let mut stopped_by: Option<&str> = None;
    // The second part, once the header is known (tried until a quarter of the file is read).
    let mut rest: Option<Rest> = None;
    let mut parts_read: Option<u64> = None;
    loop {
        if size >= limits.max_bytes {
            stopped_by = Some(BYTE_LIMIT);
            break;
        }
        if limits.cancel.is_some_and(Cancel::raised) {
            stopped_by = Some(CPU_LIMIT);
            break;
        }
        let end = rest.as_ref().map_or(limits.max_bytes, |r| r.seam);
        let want = CHUNK.min(usize::try_from(end - size).unwrap_or(CHUNK));
        let n = match file.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        let chunk = &buf[..n];
        hasher.update(chunk);
        size += n as u64;
        let c = classifier.get_or_insert_with(|| {
            let c = Classifier::new(detect_type(&name, chunk), DEFAULT_BYTE_BUDGET);
            match &edm {
                Some(m) => c.with_edm_tally(Arc::clone(m), TallyThread::for_size(expected, m)),
                None => c,
            }
        });
        if !c.is_done() {
            c.feed(chunk);
        }
        if split && rest.is_none() && size < expected / 4 {
            rest = Rest::start(&file, expected, c, edm.as_ref(), limits);
        }
        if let Some(r) = rest.take_if(|r| size == r.seam) {
            // The seam is this part's end: the second part's reading is the file's when the
            // first ends a record there (not inside a quoted field that spans the line end).
            if c.at_record_end() {
                if let Some((second, read)) = r.join() {
                    c.absorb(second);
                    parts_read = Some(size);
                    size += read;
                    if limits.cancel.is_some_and(Cancel::raised) {
                        stopped_by = Some(CPU_LIMIT);
                    }
                    break;
                }
            } else {
                r.abandon();
            }
        }
    }
    if let Some(r) = rest {
        r.abandon();
    }
    let classifier =
        classifier.unwrap_or_else(|| Classifier::new(detect_type(&name, &[]), DEFAULT_BYTE_BUDGET));
    let (mut summary, stats) = classifier.finish_explained();
    let mut reasons = stats.reasons;
    if let Some(seam) = parts_read {
        reasons.push(format!(
            "read in two parts on two threads, the second from byte {seam}"
        ));
    }
    let mut headers = stats.headers;
    let mut entries = Vec::new();
    let archive_limits = Limits {
        cancel: limits.cancel,
        max_depth: limits.archive_depth,
        ..Limits::default()
    };
    // Archives and workbooks need to seek: a second, bounded pass over the same file.
    match summary.file_type.as_str() {
        _ if stopped_by.is_some() => {}
        "zip" => match archive::classify_zip(rewound(&file)?, "zip", archive_limits, edm.clone()) {
            Ok(r) => {
                reasons = archive::stats_of(&r).reasons;
                for e in r.entries.iter().filter(|e| e.summary.records > 0) {
                    reasons.push(format!("{}: {} records", e.name, e.summary.records));
                    entries.push((e.name.clone(), e.sha256.clone()));
                }
                summary = r.summary;
            }
            Err(e) => {
                summary.findings.insert("damaged".into(), 1);
                reasons.push(e.to_string());
            }
        },
        "xlsx" | "xls" => {
            let file = rewound(&file)?;
            let limits = archive_limits;
            let read = if summary.file_type == "xlsx" {
                xlsx::classify_xlsx(file, limits, edm).map_err(|e| e.to_string())
            } else {
                xls::classify_xls(std::io::BufReader::new(file), limits, edm)
                    .map_err(|e| e.to_string())
            };
            match read {
                Ok((s, stats)) => {
                    summary = s;
                    reasons = stats.reasons;
                    headers = stats.headers;
                }
                Err(e) => {
                    summary.findings.insert("damaged".into(), 1);
                    reasons.push(e);
                }
            }
        }
        _ => {}
    }
    if let Some(why) = stopped_by {
        summary.truncated = true;
        summary.findings.insert(why.into(), 1);
        reasons.push(match why {
            BYTE_LIMIT => format!("read the first {size} bytes only: the byte limit"),
            _ => format!("stopped after {size} bytes: the CPU limit"),
        });
        // The size is the file's, not what was read.
        size = file.metadata().map(|m| m.len()).unwrap_or(size);
    }
    summary.disguised = disguise(&name, &summary.file_type);
    if let Some(d) = &summary.disguised {
        summary.findings.insert("disguised".into(), 1);
        reasons.push(format!("disguised: {d}"));
    }
    Ok(FileReport {
        size,
        sha256: hasher.finish()?,
        complete: stopped_by.is_none(),
        summary,
        reasons,
        headers,
        entries,
    })
}

/// A second handle on the same open file, at its start.
fn rewound(file: &std::fs::File) -> std::io::Result<std::fs::File> {
    use std::io::Seek;
    let mut f = file.try_clone()?;
    f.rewind()?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use holdfast_shared::ident::IdKind;

    /// A file past the parallel-hash size is hashed on the second thread to the same digest,
    /// and classified as it would be inline.
    #[test]
    fn a_large_file_is_hashed_on_a_second_thread_to_the_same_digest() {
        let (_dir, p) = holdfast_io::testing::scratch("big.csv");
        let mut body = String::from("name,email\n");
        let mut i = 0;
        while (body.len() as u64) < PARALLEL_HASH + 12_345 {
            body.push_str(&format!("n{i},user{i}@example.com\n"));
            i += 1;
        }
        std::fs::write(&p, &body).unwrap();
        assert!(matches!(
            FileHash::for_size(PARALLEL_HASH),
            FileHash::Thread { .. }
        ));
        let r = scan_file(&p, None).unwrap();
        assert_eq!(r.size, body.len() as u64);
        assert_eq!(r.sha256, holdfast_shared::sha256_hex(body.as_bytes()));
        assert_eq!(r.summary.records, i);
        // With a customer set, the lookups run on their own thread and count what inline
        // lookups count: every 100th user is a customer.
        let mut b = holdfast_shared::edm::EdmBuilder::new(b"k");
        for j in (0..i).step_by(100) {
            assert!(b.add(
                holdfast_shared::ident::IdKind::Email,
                format!("user{j}@example.com").as_bytes()
            ));
        }
        let m = Arc::new(b.finish().matcher());
        let threaded = scan_file(&p, Some(Arc::clone(&m))).unwrap();
        let mut inline = Classifier::new("csv", DEFAULT_BYTE_BUDGET).with_edm(Some(m));
        inline.feed(body.as_bytes());
        let inline = inline.finish();
        let edm = threaded.summary.findings.get("edm").copied();
        assert!(edm >= Some(i.div_ceil(100)), "{edm:?}");
        assert_eq!(edm, inline.findings.get("edm").copied());
    }

    /// `body` scanned in one part and in two (with `edm`): the same hash, size and summary;
    /// whether the two-part reading was used.
    fn check_parts(body: &[u8], edm: Option<Arc<Matcher>>) -> (ContentSummary, bool) {
        let (_dir, p) = holdfast_io::testing::scratch("parts.csv");
        std::fs::write(&p, body).unwrap();
        let read = |parts| {
            let limits = ScanLimits {
                parts,
                ..ScanLimits::default()
            };
            scan_file_with(&p, edm.clone(), limits).unwrap()
        };
        let (one, two) = (read(Parts::One), read(Parts::Two));
        assert_eq!(two.sha256, holdfast_shared::sha256_hex(body));
        assert_eq!((&two.sha256, two.size), (&one.sha256, one.size));
        assert_eq!(two.summary, one.summary);
        let cut = two
            .reasons
            .iter()
            .any(|r| r.starts_with("read in two parts"));
        assert!(!one
            .reasons
            .iter()
            .any(|r| r.starts_with("read in two parts")));
        (two.summary, cut)
    }

    #[test]
    fn a_large_table_read_in_two_parts_counts_what_one_part_counts() {
        let mut body = String::from("Name,Email,Phone\n");
        let mut i = 0u64;
        while (body.len() as u64) < SPLIT + 4321 {
            body.push_str(&format!(
                "n{i},user{i}@example.com,+44 20 7946 {:04}\n",
                i % 10_000
            ));
            i += 1;
        }
        let mut b = holdfast_shared::edm::EdmBuilder::new(b"k");
        for j in (0..i).step_by(50) {
            assert!(b.add(IdKind::Email, format!("user{j}@example.com").as_bytes()));
        }
        let m = Arc::new(b.finish().matcher());
        let (s, cut) = check_parts(body.as_bytes(), Some(m));
        assert!(cut);
        assert_eq!(s.records, i);
        assert_eq!(s.findings.get("edm").copied(), Some(i.div_ceil(50)));
        // A quoted note spanning lines across the middle: the line end after the middle is
        // inside it, so the first part reads on through the whole file.
        let half = body.len() / 2;
        let row_start = body[..half].rfind('\n').unwrap() + 1;
        let note = format!("Note,note@example.com,\"{}\"\n", "a line\n".repeat(20_000));
        let quoted = [&body[..row_start], &note, &body[row_start..]].concat();
        let (s, cut) = check_parts(quoted.as_bytes(), None);
        assert!(!cut);
        assert_eq!(s.records, i + 1);
    }

    #[test]
    fn hashes_and_classifies() {
        let (dir, p) = holdfast_io::testing::scratch("c.csv");
        let body = holdfast_shared::testkit::contacts_csv(1000);
        std::fs::write(&p, &body).unwrap();
        let r = scan_file(&p, None).unwrap();
        assert_eq!(r.size, body.len() as u64);
        assert_eq!(r.sha256, holdfast_shared::sha256_hex(body.as_bytes()));
        assert_eq!(r.summary.records, 1000);
        assert_eq!(r.summary.file_type, "csv");
        assert!(r.complete);
        // A byte limit: the first 4 KiB read, the verdict says so, the hash is not the file's.
        let limited = scan_file_with(
            &p,
            None,
            ScanLimits {
                max_bytes: 4096,
                ..ScanLimits::default()
            },
        )
        .unwrap();
        assert_eq!((limited.size, limited.complete), (body.len() as u64, false));
        assert!(limited.summary.truncated);
        assert_eq!(limited.summary.findings.get(BYTE_LIMIT), Some(&1));
        // A raised cancel flag: nothing more is read.
        static RAISED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);
        let cancelled = scan_file_with(
            &p,
            None,
            ScanLimits {
                max_bytes: u64::MAX,
                cancel: Some(Cancel(&RAISED)),
                ..ScanLimits::default()
            },
        )
        .unwrap();
        assert!(!cancelled.complete);
        assert_eq!(cancelled.summary.findings.get(CPU_LIMIT), Some(&1));
        let err = |p: &Path| scan_file(p, None).err().map(|e| e.to_string());
        assert_eq!(
            err(dir.path()).as_deref(),
            Some("not a regular file but a folder: skipped")
        );
        assert!(scan_file(&dir.path().join("missing"), None)
            .is_err_and(|e| matches!(e, ScanError::Open(ref f) if f.is_not_found())));
        std::os::unix::fs::symlink(&p, dir.path().join("link.csv")).unwrap();
        assert_eq!(
            err(&dir.path().join("link.csv")).as_deref(),
            Some("not a regular file but a symbolic link: skipped")
        );
    }
}
