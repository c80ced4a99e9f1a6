//! Print jobs as the print system spools them, as pure functions of bytes and a `now`: the
//! parser of CUPS's job control files (an IPP message, RFC 8010's encoding) and
//! [`PrintJobs`], the state machine that pairs each job's documents, once read, with what
//! the control file says of the job (printer, user, title, pages), and says when a job is
//! ready to report.
//!
//! CUPS keeps a job as `cNNNNN` (the job's attributes, rewritten at each change of state)
//! and `dNNNNN-DDD` (document DDD as it was sent, deleted once printed). The agent reads
//! both from the descriptors the kernel hands it as each is closed after writing; this
//! module never sees a file.

use crate::time::UnixMs;
use std::collections::{BTreeMap, VecDeque};

/// The largest control file parsed; larger ones are refused.
pub const MAX_CONTROL: usize = 1 << 20;
/// Jobs followed at once; beyond, the oldest is dropped (and counted).
pub const MAX_JOBS: usize = 1024;
/// Documents of one job kept, at most.
pub const MAX_DOCUMENTS: usize = 64;
/// A job whose documents are all read is reported once it is done printing, or after this
/// long whatever its state (a printer that is off holds its jobs for days).
pub const WAIT_MS: i64 = 30_000;
/// A job with a document announced but never read is forgotten after this long.
pub const FORGET_MS: i64 = 600_000;
/// Job ids remembered as reported, so a later rewrite of the control file is no new job.
const MAX_REPORTED: usize = 4096;

/// What a job's control file says; every field but `id` may be missing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Job {
    pub id: u32,
    /// The queue's name: the last part of `job-printer-uri` (or `printer-uri`).
    pub printer: Option<String>,
    /// `job-originating-user-name`: the account the job came from, as the print system
    /// recorded it (the client names it; CUPS checks it only where it requires log-in).
    pub user: Option<String>,
    /// `job-name`: the title (`lp -t`, or the file's name).
    pub title: Option<String>,
    /// `document-name-supplied`: the document's name as the client sent it.
    pub document: Option<String>,
    /// `job-state` (RFC 8011: 3 pending … 9 completed).
    pub state: Option<u32>,
    /// Pages printed so far: `job-impressions-completed`, else `job-media-sheets-completed`.
    pub pages: Option<u32>,
}

impl Job {
    /// Whether the job is over: canceled (7), aborted (8) or completed (9).
    pub fn is_done(&self) -> bool {
        self.state.is_some_and(|s| (7..=9).contains(&s))
    }
}

/// Why a control file could not be read as one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// Over [`MAX_CONTROL`] bytes.
    #[error("a job control file of {0} bytes (the most read is {MAX_CONTROL})")]
    TooLarge(usize),
    /// The bytes end inside an attribute, or before the end tag.
    #[error("the job control file ends early, at byte {0}")]
    Truncated(usize),
    /// No `job-id` attribute.
    #[error("the job control file names no job-id")]
    NoJobId,
}

/// The kind of spool file a name is: CUPS's `cNNNNN` (also as `cNNNNN.N` while rewritten),
/// `dNNNNN-DDD`, and the request body a document arrives in (eight hex digits), renamed to
/// its `d` name once CUPS has taken it into a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpoolFile {
    Control { job: u32 },
    Document { job: u32, document: u32 },
    Request,
}

impl SpoolFile {
    /// What the spool file named `name` is; `None` for anything else (CUPS's temporary and
    /// cache files).
    pub fn of(name: &str) -> Option<SpoolFile> {
        let digits = |s: &str| {
            (!s.is_empty() && s.len() <= 9 && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse::<u32>().ok())
                .flatten()
        };
        if let Some(rest) = name.strip_prefix('c') {
            // `c00002`, or `c00002.N` / `c00002.O` as CUPS rewrites it.
            let id = rest.split_once('.').map_or(rest, |(id, _)| id);
            if let Some(job) = digits(id) {
                return Some(SpoolFile::Control { job });
            }
        }
        // (A request id of 0xc0000000 and above would read as a control file: CUPS counts
        // requests from 1 at each start.)
        if name.len() == 8 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Some(SpoolFile::Request);
        }
        let (job, doc) = name.strip_prefix('d')?.split_once('-')?;
        Some(SpoolFile::Document {
            job: digits(job)?,
            document: digits(doc)?,
        })
    }
}

/// Reads a CUPS job control file: the job's attributes, as an IPP message.
pub fn parse_control(bytes: &[u8]) -> Result<Job, ControlError> {
    if bytes.len() > MAX_CONTROL {
        return Err(ControlError::TooLarge(bytes.len()));
    }
    // version (2), operation or status (2), request id (4).
    let mut at = 8;
    if bytes.len() < at {
        return Err(ControlError::Truncated(bytes.len()));
    }
    let mut job = Job::default();
    let mut id = None;
    let mut name: Vec<u8> = Vec::new();
    let take = |at: &mut usize, n: usize| -> Result<&[u8], ControlError> {
        let s = bytes
            .get(*at..*at + n)
            .ok_or(ControlError::Truncated(bytes.len()))?;
        *at += n;
        Ok(s)
    };
    loop {
        let tag = *take(&mut at, 1)?.first().unwrap_or(&0);
        match tag {
            // end-of-attributes
            0x03 => break,
            // a group's delimiter (operation, job, printer, unsupported, …)
            0x00..=0x0f => continue,
            _ => {}
        }
        let name_len = u16::from_be_bytes([take(&mut at, 1)?[0], take(&mut at, 1)?[0]]) as usize;
        let this = take(&mut at, name_len)?;
        // An empty name is one more value of the attribute before it.
        let first_value = name_len > 0;
        if first_value {
            name = this.to_vec();
        }
        let value_len = u16::from_be_bytes([take(&mut at, 1)?[0], take(&mut at, 1)?[0]]) as usize;
        let value = take(&mut at, value_len)?;
        if !first_value {
            continue;
        }
        let text = || Some(String::from_utf8_lossy(value).into_owned());
        let int = || {
            (value.len() == 4).then(|| u32::from_be_bytes([value[0], value[1], value[2], value[3]]))
        };
        match name.as_slice() {
            b"job-id" => id = int(),
            b"job-printer-uri" => job.printer = queue(value),
            b"printer-uri" if job.printer.is_none() => job.printer = queue(value),
            b"job-originating-user-name" => job.user = text(),
            b"job-name" => job.title = text(),
            b"document-name-supplied" => job.document = text(),
            b"job-state" => job.state = int(),
            b"job-impressions-completed" => job.pages = int().or(job.pages),
            b"job-media-sheets-completed" if job.pages.is_none_or(|p| p == 0) => {
                job.pages = int().or(job.pages)
            }
            _ => {}
        }
    }
    job.id = id.ok_or(ControlError::NoJobId)?;
    Ok(job)
}

/// The queue a printer URI names: `ipp://host/printers/NAME` → `NAME`.
fn queue(uri: &[u8]) -> Option<String> {
    let uri = String::from_utf8_lossy(uri);
    let name = uri.trim_end_matches('/').rsplit('/').next()?;
    (!name.is_empty()).then(|| name.to_string())
}

/// A job ready to report: what its control file said last, and its documents as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Printed<D> {
    pub job: Job,
    /// Whether the job was still printing (or waiting) when it was reported: its pages may
    /// be short of the whole.
    pub unfinished: bool,
    pub documents: Vec<D>,
}

#[derive(Debug)]
struct Entry<D> {
    job: Option<Job>,
    /// Documents spooled, read or being read.
    announced: usize,
    documents: Vec<D>,
    /// When the job was last heard of.
    last_ms: UnixMs,
}

/// Jobs between their first spool file and their report; bounded by [`MAX_JOBS`].
#[derive(Debug)]
pub struct PrintJobs<D> {
    jobs: BTreeMap<u32, Entry<D>>,
    reported: VecDeque<u32>,
    /// Jobs dropped for want of room, or forgotten with a document never read.
    pub lost: u64,
}

impl<D> Default for PrintJobs<D> {
    fn default() -> Self {
        PrintJobs {
            jobs: BTreeMap::new(),
            reported: VecDeque::new(),
            lost: 0,
        }
    }
}

impl<D> PrintJobs<D> {
    fn entry(&mut self, id: u32, now: UnixMs) -> Option<&mut Entry<D>> {
        if self.reported.contains(&id) {
            return None;
        }
        if !self.jobs.contains_key(&id) && self.jobs.len() >= MAX_JOBS {
            // The oldest job goes (ids grow with time).
            if let Some(oldest) = self.jobs.keys().next().copied() {
                self.jobs.remove(&oldest);
                self.lost += 1;
            }
        }
        let e = self.jobs.entry(id).or_insert(Entry {
            job: None,
            announced: 0,
            documents: Vec::new(),
            last_ms: now,
        });
        e.last_ms = now;
        Some(e)
    }

    /// A document of job `id` was spooled and is being read.
    pub fn announce(&mut self, id: u32, now: UnixMs) {
        if let Some(e) = self.entry(id, now) {
            e.announced = (e.announced + 1).min(MAX_DOCUMENTS);
        }
    }

    /// A document of job `id`, as read (after [`PrintJobs::announce`]).
    pub fn document(&mut self, id: u32, document: D, now: UnixMs) {
        if let Some(e) = self.entry(id, now) {
            if e.documents.len() < MAX_DOCUMENTS {
                e.documents.push(document);
            }
            e.announced = e.announced.max(e.documents.len());
        }
    }

    /// What the job's control file says now.
    pub fn control(&mut self, job: Job, now: UnixMs) {
        if let Some(e) = self.entry(job.id, now) {
            e.job = Some(job);
        }
    }

    /// The jobs ready to report: every document read, and done printing or waited for
    /// [`WAIT_MS`]. Each is reported once.
    pub fn due(&mut self, now: UnixMs) -> Vec<Printed<D>> {
        let mut ready = Vec::new();
        let mut forget = Vec::new();
        for (id, e) in &self.jobs {
            let all_read = !e.documents.is_empty() && e.documents.len() >= e.announced;
            let done = e.job.as_ref().is_some_and(Job::is_done);
            let waited = now.since(e.last_ms) >= WAIT_MS;
            if all_read && (done || waited) {
                ready.push(*id);
            } else if waited
                && (e.documents.is_empty() && e.job.as_ref().is_some_and(Job::is_done)
                    || now.since(e.last_ms) >= FORGET_MS)
            {
                // Done with no document seen (spooled before the agent looked), or a
                // document never read: nothing to report.
                forget.push(*id);
            }
        }
        for id in forget {
            if let Some(e) = self.jobs.remove(&id) {
                if e.announced > e.documents.len() {
                    self.lost += 1;
                }
            }
        }
        ready
            .into_iter()
            .filter_map(|id| {
                let e = self.jobs.remove(&id)?;
                if self.reported.len() >= MAX_REPORTED {
                    self.reported.pop_front();
                }
                self.reported.push_back(id);
                let job = e.job.unwrap_or(Job {
                    id,
                    ..Job::default()
                });
                Some(Printed {
                    unfinished: !job.is_done(),
                    job,
                    documents: e.documents,
                })
            })
            .collect()
    }

    /// Whether any job is waiting (the caller then looks again within a second or so).
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }
}

#[cfg(test)]
mod tests;
