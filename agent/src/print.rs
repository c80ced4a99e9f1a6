//! Print jobs on the agent: turns the spool files read monitoring hands over
//! ([`WatchEvent::Spooled`](crate::watch::WatchEvent::Spooled)) into documents for the
//! readers and job attributes for [`holdfast_shared::print::PrintJobs`], and each job, once
//! reported, into one event per document that holds customer records: action `opened`,
//! destination kind `print` naming the queue, the user and the pages.
//!
//! Everything is read from the kernel's descriptors of the spool files (the spool is root's
//! and CUPS deletes a document once printed); nothing here opens a path.

use crate::pipeline::{FileRead, Ready, Via};
use crate::watch::Spooled;
use holdfast_shared::event::{Destination, EventBody};
use holdfast_shared::print::{parse_control, PrintJobs, SpoolFile, MAX_CONTROL};
use holdfast_shared::time::UnixMs;
use std::io::Read;
use std::path::PathBuf;

/// A request body is looked at again for this long, until CUPS renames it into a job.
const REQUEST_WAIT_MS: i64 = 10_000;
/// Request bodies waiting for their job, at most.
const MAX_REQUESTS: usize = 32;

/// The print jobs between their spool files and their events.
#[derive(Default)]
pub struct Printing {
    jobs: PrintJobs<FileRead>,
    /// Request bodies CUPS has not renamed into a job yet, with when they were written.
    requests: Vec<(std::sync::Arc<crate::watch::HeldRead>, UnixMs)>,
    /// Control files that could not be read (reported once per run in a notice).
    unreadable: u64,
    lost_reported: u64,
    unreadable_reported: u64,
}

impl Printing {
    /// A spool file closed after writing. A document comes back, to be read by the readers
    /// (its [`Ready`] names the job); a control file is read here.
    pub fn spooled(&mut self, s: Spooled, now: UnixMs) -> Option<(Ready, std::fs::File)> {
        tracing::debug!(file = %s.name, "spool file written");
        match SpoolFile::of(&s.name)? {
            SpoolFile::Document { job, .. } => self.document_spooled(&s.name, job, &s.file, now),
            SpoolFile::Request => {
                // The document as it arrived; CUPS renames it `dNNNNN-DDD` as it makes the job.
                if self.requests.len() < MAX_REQUESTS {
                    self.requests.push((s.file, now));
                } else {
                    self.jobs.lost += 1;
                }
                None
            }
            SpoolFile::Control { .. } => {
                let mut bytes = Vec::new();
                let read = s.file.file().map(|f| {
                    f.take(MAX_CONTROL as u64 + 1)
                        .read_to_end(&mut bytes)
                        .map_err(|e| e.to_string())
                });
                match read.map(|r| r.and_then(|_| parse_control(&bytes).map_err(|e| e.to_string())))
                {
                    Some(Ok(job)) => self.jobs.control(job, now),
                    Some(Err(e)) => {
                        tracing::warn!(file = %s.name, error = %e, "cannot read a print job's control file");
                        self.unreadable += 1;
                    }
                    None => self.unreadable += 1,
                }
                None
            }
        }
    }

    fn document_spooled(
        &mut self,
        name: &str,
        job: u32,
        held: &crate::watch::HeldRead,
        now: UnixMs,
    ) -> Option<(Ready, std::fs::File)> {
        let file = held.file()?;
        self.jobs.announce(job, now);
        let ready = Ready::via(
            PathBuf::from(format!("print-spool/{name}")),
            Via::Print { job, printed: None },
        );
        Some((ready, file))
    }

    /// The request bodies CUPS has renamed into jobs since: their documents, to be read. A
    /// body still unnamed after [`REQUEST_WAIT_MS`] was no print job (or CUPS refused it).
    pub fn named(&mut self, now: UnixMs) -> Vec<(Ready, std::fs::File)> {
        let mut out = Vec::new();
        for (held, at) in std::mem::take(&mut self.requests) {
            let name = held.file().and_then(|f| current_name(&f));
            match name.as_deref().and_then(SpoolFile::of) {
                Some(SpoolFile::Document { job, .. }) => {
                    let name = name.unwrap_or_default();
                    out.extend(self.document_spooled(&name, job, &held, now));
                }
                Some(SpoolFile::Request) if now.since(at) < REQUEST_WAIT_MS => {
                    self.requests.push((held, at));
                }
                _ => {}
            }
        }
        out
    }

    /// A document of print job `job`, as the readers read it.
    pub fn document(&mut self, job: u32, read: FileRead, now: UnixMs) {
        self.jobs.document(job, read, now);
    }

    /// The documents of the jobs ready to report, each with the job's destination.
    pub fn due(&mut self, now: UnixMs) -> Vec<(Ready, FileRead)> {
        let mut out = Vec::new();
        for p in self.jobs.due(now) {
            let printer = p
                .job
                .printer
                .clone()
                .unwrap_or_else(|| "unknown printer".into());
            let destination = Destination {
                kind: "print".into(),
                name: printer,
                user: p.job.user.clone(),
                pages: p.job.pages.filter(|n| *n > 0 || !p.unfinished),
                ..Destination::default()
            };
            tracing::info!(job = p.job.id, printer = %destination.name, user = ?destination.user, pages = ?destination.pages, unfinished = p.unfinished, "a print job");
            // Named for the document as it was sent, until lineage names the file.
            let name = p
                .job
                .document
                .clone()
                .or_else(|| p.job.title.clone())
                .unwrap_or_else(|| format!("print job {}", p.job.id));
            for read in p.documents {
                let ready = Ready::via(
                    PathBuf::from(&name),
                    Via::Print {
                        job: p.job.id,
                        printed: Some(Box::new(destination.clone())),
                    },
                );
                out.push((ready, read));
            }
        }
        out
    }

    /// Whether a job is waiting (the daemon then wakes at least every tick).
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty() && self.requests.is_empty()
    }

    /// Notices of print jobs not seen whole: documents never read, control files unreadable.
    pub fn take_notices(&mut self) -> Vec<EventBody> {
        let mut out = Vec::new();
        if self.jobs.lost > self.lost_reported {
            let n = self.jobs.lost - self.lost_reported;
            self.lost_reported = self.jobs.lost;
            out.push(EventBody::notice(
                "print_jobs_lost",
                format!("{n} print job(s) could not be followed to their end (too many at once, or a document never read): what they held is not known"),
                n,
            ));
        }
        if self.unreadable > self.unreadable_reported {
            let n = self.unreadable - self.unreadable_reported;
            self.unreadable_reported = self.unreadable;
            out.push(EventBody::notice(
                "print_control_unreadable",
                format!("{n} print job control file(s) could not be read: those jobs are reported without printer, user or pages"),
                n,
            ));
        }
        out
    }
}

/// The name `file` has in its folder now (the kernel follows renames; a deleted file is still
/// named, followed by ` (deleted)`).
fn current_name(file: &std::fs::File) -> Option<String> {
    use std::os::fd::AsRawFd;
    let path = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()?;
    let path = path.to_str()?.trim_end_matches(" (deleted)");
    Some(path.rsplit('/').next()?.to_string())
}
