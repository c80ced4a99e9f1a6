//! The quarantine action: each customer file the order names (or that holds enough records)
//! is copied by descriptor into the order's quarantine folder, checked by hash, and only then
//! removed from where it was; a link, FIFO or foreign hard link is left unopened.

use super::{
    copy_into, fail, is_errno, is_root, note, read_jsonl, receipt, sha256_of, Executor,
    DETAIL_PATHS, MAX_DEPTH, MAX_WALK,
};
use crate::safe_fs::{self, FsError, Kind};
use holdfast_shared::edm::Matcher;
use holdfast_shared::order::ActionReceipt;
use holdfast_shared::time::UnixMs;
use serde::{Deserialize, Serialize};
use std::ffi::OsStr;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One quarantined file, as the manifest records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineEntry {
    /// The original path, for people (not byte-exact when it is not UTF-8).
    pub original: String,
    /// The original path's bytes, hex: what a restore puts back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_hex: Option<String>,
    /// File name inside the order's quarantine folder.
    pub stored: String,
    pub sha256: String,
    pub size: u64,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub time_ms: UnixMs,
    pub order_id: String,
    /// The folder it was taken from: a restore goes back only into that very folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<safe_fs::Identity>,
}

impl QuarantineEntry {
    pub(super) fn original_path(&self) -> PathBuf {
        self.original_hex
            .as_deref()
            .and_then(|h| hex::decode(h).ok())
            .map(safe_fs::path_of_bytes)
            .unwrap_or_else(|| PathBuf::from(&self.original))
    }
}

/// Outcome of one file's quarantine.
pub(super) enum Quarantined {
    Moved(Box<QuarantineEntry>),
    NotCustomer,
    Skipped(String),
}

impl Executor {
    /// The order's quarantine folder (agent-only, 0700), created if need be, and opened.
    pub(super) fn quarantine_dir(&self, order_id: &str) -> Result<(PathBuf, OwnedFd), FsError> {
        let base = self.root().join("quarantine");
        std::fs::create_dir_all(&base)?;
        std::fs::set_permissions(self.root(), std::fs::Permissions::from_mode(0o700))?;
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o700))?;
        let dir = base.join(order_id);
        std::fs::create_dir_all(&dir)?;
        let fd = safe_fs::open_dir(&dir)?;
        safe_fs::set_mode(fd.as_fd(), 0o700)?;
        Ok((dir, fd))
    }

    pub(super) fn quarantine(
        &self,
        order_id: &str,
        paths: &[String],
        min_records: u64,
        edm: Option<Arc<Matcher>>,
        now_ms: UnixMs,
    ) -> ActionReceipt {
        let mut r = receipt("quarantine");
        let roots: Vec<PathBuf> = if paths.is_empty() {
            self.watch.clone()
        } else {
            paths.iter().map(|p| self.expand(p)).collect()
        };
        let (dir, qfd) = match self.quarantine_dir(order_id) {
            Ok(d) => d,
            Err(e) => {
                fail(&mut r, format!("cannot create the quarantine: {e}"));
                return r;
            }
        };
        let mut files = Vec::new();
        let mut special = 0u64;
        for root in &roots {
            let limits = crate::tree::Limits {
                max_files: MAX_WALK - files.len().min(MAX_WALK),
                max_depth: MAX_DEPTH,
            };
            crate::tree::visit_all(root, &self.data_dir, limits, |p, st| match st.kind {
                Kind::Regular => files.push(p),
                Kind::Symlink => {}
                _ => special += 1,
            });
        }
        if special > 0 {
            note(
                &mut r,
                format!("{special} FIFO(s), socket(s) or device(s) skipped unopened"),
            );
        }
        if files.len() >= MAX_WALK {
            fail(
                &mut r,
                format!("more than {MAX_WALK} files; the rest were not examined"),
            );
        }
        let manifest_path = dir.join("manifest.jsonl");
        let mut next = read_jsonl::<QuarantineEntry>(&manifest_path).len() as u64 + 1;
        let mut manifest = match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&manifest_path)
        {
            Ok(f) => f,
            Err(e) => {
                fail(&mut r, format!("cannot open the manifest: {e}"));
                return r;
            }
        };
        let owner = self.home_owner();
        let mut named = 0;
        for path in files {
            let got = self.quarantine_one(
                &path,
                qfd.as_fd(),
                (order_id, now_ms.ms()),
                &mut next,
                owner,
                |s| {
                    (s.customer_table && s.records >= min_records)
                        || s.findings.get("edm").copied().unwrap_or(0) >= min_records
                },
                edm.clone(),
            );
            match got {
                Ok(Quarantined::Moved(entry)) => {
                    r.items += 1;
                    r.bytes += entry.size;
                    let line = serde_json::to_string(&entry).unwrap_or_default();
                    if let Err(e) = writeln!(manifest, "{line}").and_then(|()| manifest.sync_all())
                    {
                        fail(&mut r, format!("manifest: {e}"));
                    }
                    if named < DETAIL_PATHS {
                        note(&mut r, &entry.original);
                        named += 1;
                    }
                }
                Ok(Quarantined::NotCustomer) => {}
                Ok(Quarantined::Skipped(why)) => note(&mut r, format!("{}: {why}", path.display())),
                Err(e) => fail(&mut r, format!("{}: {e}", path.display())),
            }
        }
        r
    }

    /// Classifies one file from its descriptor and, when it holds customers, moves that
    /// very file into the quarantine (0600, root's), recording what it was.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn quarantine_one(
        &self,
        path: &Path,
        qfd: BorrowedFd<'_>,
        (order_id, now_ms): (&str, i64),
        next: &mut u64,
        owner: Option<u32>,
        customer: impl Fn(&holdfast_shared::event::ContentSummary) -> bool,
        edm: Option<Arc<Matcher>>,
    ) -> Result<Quarantined, FsError> {
        let (dir, name) = safe_fs::open_parent(path)?;
        let reg = match safe_fs::open_regular_at(dir.as_fd(), &name) {
            Ok(r) => r,
            Err(FsError::NotRegular(k)) => {
                return Ok(Quarantined::Skipped(format!("{k}, skipped unopened")))
            }
            Err(e) if e.is_not_found() => return Ok(Quarantined::NotCustomer),
            Err(e) => return Err(e),
        };
        let st = reg.stat;
        // A second name of someone else's file (a hard link planted in the home) is left:
        // changing it would change their file.
        if st.nlink > 1 && Some(st.uid) != owner {
            return Ok(Quarantined::Skipped(format!(
                "has {} names and belongs to uid {}, not the user; left in place",
                st.nlink, st.uid
            )));
        }
        let report = match crate::scan::scan_opened(reg.file.try_clone()?, path, edm) {
            Ok(rep) => rep,
            Err(crate::scan::ScanError::Open(e)) => return Err(e),
            Err(crate::scan::ScanError::Io(e)) => return Err(e.into()),
        };
        if !customer(&report.summary) {
            return Ok(Quarantined::NotCustomer);
        }
        let parent = safe_fs::stat(dir.as_fd())?.identity();
        // The quarantine's own names: numbers, never reused, never replacing anything.
        let mut held: Option<std::fs::File> = None;
        let stored = loop {
            if *next > 1_000_000_000 {
                return Err(FsError::Io(std::io::Error::other(
                    "quarantine names exhausted",
                )));
            }
            let stored = format!("{:09}", *next);
            *next += 1;
            match safe_fs::rename_noreplace(dir.as_fd(), &name, qfd, OsStr::new(&stored)) {
                Ok(()) => break stored,
                Err(e) if is_errno(&e, rustix::io::Errno::EXIST) => continue,
                Err(e) if is_errno(&e, rustix::io::Errno::XDEV) => {
                    // Another file system: copy the opened file, then remove its name only
                    // if it still is that file.
                    let copy = match copy_into(&reg.file, qfd, OsStr::new(&stored)) {
                        Ok(c) => c,
                        Err(e) if is_errno(&e, rustix::io::Errno::EXIST) => continue,
                        Err(e) => return Err(e),
                    };
                    let still = safe_fs::stat_at(dir.as_fd(), &name)
                        .is_ok_and(|now| now.identity() == st.identity());
                    if !still {
                        let _ = safe_fs::unlink_at(qfd, OsStr::new(&stored));
                        return Err(FsError::Changed("another file was put under its name"));
                    }
                    safe_fs::unlink_at(dir.as_fd(), &name)?;
                    held = Some(copy);
                    break stored;
                }
                Err(e) => return Err(e),
            }
        };
        let stored_os = OsStr::new(&stored);
        let file = match held {
            Some(copy) => copy,
            None => {
                // What was renamed must be what was read: a link or another file swapped
                // in under the name goes back where it was, untouched.
                let moved = safe_fs::stat_at(qfd, stored_os)?;
                if moved.identity() != st.identity() {
                    let _ = safe_fs::rename_noreplace(qfd, stored_os, dir.as_fd(), &name);
                    return Err(FsError::Changed(
                        "another file was put under its name while it was read; left alone",
                    ));
                }
                reg.file
            }
        };
        if is_root() {
            safe_fs::set_owner_mode(file.as_fd(), 0, 0, 0o600)?;
        } else {
            safe_fs::set_mode(file.as_fd(), 0o600)?;
        }
        let sha256 = sha256_of(&file)?;
        Ok(Quarantined::Moved(Box::new(QuarantineEntry {
            original: path.display().to_string(),
            original_hex: Some(hex::encode(safe_fs::path_bytes(path))),
            stored,
            sha256,
            size: st.len,
            uid: st.uid,
            gid: st.gid,
            mode: st.mode & 0o7777,
            time_ms: UnixMs(now_ms),
            order_id: order_id.to_string(),
            parent: Some(parent),
        })))
    }
}
