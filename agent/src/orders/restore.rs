//! Undoing an order: quarantined files go back byte-identical where they were, stripped
//! permissions are given back, and a link or folder planted since the order is refused.

use super::{
    copy_into, fail, is_errno, is_root, open_target, read_jsonl, receipt, sha256_of, Executor,
    QuarantineEntry, StrippedEntry,
};
use crate::safe_fs::{self, FsError};
use holdfast_shared::order::ActionReceipt;
use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

impl Executor {
    pub(super) fn restore(&self) -> ActionReceipt {
        let mut r = receipt("restore");
        // Access first, so restored files land in folders the user can open again.
        let stripped = self.stripped_path();
        let entries: Vec<StrippedEntry> = read_jsonl(&stripped);
        let mut all_ok = true;
        for e in entries.iter().rev() {
            let res = open_target(Path::new(&e.path)).and_then(|(fd, st)| {
                if e.ident.is_some_and(|id| id != st.identity()) {
                    return Err(FsError::Changed(
                        "another file or folder is there now than the one stripped",
                    ));
                }
                crate::access::give_back(fd.as_fd(), &e.saved)
            });
            match res {
                Ok(()) => r.items += 1,
                Err(err) => {
                    all_ok = false;
                    fail(&mut r, format!("{}: {err}; access not given back", e.path));
                }
            }
        }
        if all_ok && !entries.is_empty() {
            let _ = std::fs::rename(
                &stripped,
                self.root()
                    .join(format!("stripped.restored-{}.jsonl", r.items)),
            );
        }
        let qbase = self.root().join("quarantine");
        let Ok(dirs) = std::fs::read_dir(&qbase) else {
            return r;
        };
        for d in dirs.flatten() {
            let manifest = d.path().join("manifest.jsonl");
            let entries: Vec<QuarantineEntry> = read_jsonl(&manifest);
            if entries.is_empty() {
                continue;
            }
            let qfd = match safe_fs::open_dir(&d.path()) {
                Ok(fd) => fd,
                Err(e) => {
                    fail(&mut r, format!("{}: {e}", d.path().display()));
                    continue;
                }
            };
            let mut left = 0;
            for e in &entries {
                match self.restore_one(qfd.as_fd(), e) {
                    Ok(true) => {
                        r.items += 1;
                        r.bytes += e.size;
                    }
                    Ok(false) => {}
                    Err(err) => {
                        left += 1;
                        fail(&mut r, format!("{}: {err}; kept in quarantine", e.original));
                    }
                }
            }
            if left == 0 {
                let _ = std::fs::rename(&manifest, d.path().join("manifest.restored.jsonl"));
            }
        }
        r
    }

    /// Puts one quarantined file back: only into the folder it came from, reached without a
    /// link, never over a file, with its owner and mode set on the descriptor before the
    /// rename (the quarantine is out of the user's reach). Ok(false): nothing to restore.
    pub(super) fn restore_one(
        &self,
        qfd: BorrowedFd<'_>,
        e: &QuarantineEntry,
    ) -> Result<bool, FsError> {
        let stored = OsStr::new(&e.stored);
        let reg = match safe_fs::open_regular_at(qfd, stored) {
            Ok(reg) => reg,
            Err(err) if err.is_not_found() => return Ok(false),
            Err(err) => return Err(err),
        };
        if sha256_of(&reg.file)? != e.sha256 {
            return Err(FsError::Io(std::io::Error::other(
                "quarantined copy does not match the manifest",
            )));
        }
        let original = e.original_path();
        let (dir, name) = safe_fs::open_parent(&original).map_err(|err| match err {
            err if err.is_not_found() => FsError::Changed("its folder is gone"),
            err => err,
        })?;
        if let Some(parent) = e.parent {
            if safe_fs::stat(dir.as_fd())?.identity() != parent {
                return Err(FsError::Changed(
                    "its folder was replaced since the order (another inode)",
                ));
            }
        }
        let give = |fd: BorrowedFd<'_>| {
            if is_root() {
                safe_fs::set_owner_mode(fd, e.uid, e.gid, e.mode)
            } else {
                safe_fs::set_mode(fd, e.mode)
            }
        };
        give(reg.file.as_fd())?;
        match safe_fs::rename_noreplace(qfd, stored, dir.as_fd(), &name) {
            Ok(()) => Ok(true),
            Err(err) if is_errno(&err, rustix::io::Errno::XDEV) => {
                let copy = copy_into(&reg.file, dir.as_fd(), &name).map_err(|err| {
                    if is_errno(&err, rustix::io::Errno::EXIST) {
                        FsError::Changed("a file is there now")
                    } else {
                        err
                    }
                })?;
                give(copy.as_fd())?;
                safe_fs::unlink_at(qfd, stored)?;
                Ok(true)
            }
            Err(err) => {
                // Back to the quarantine's own owner and mode.
                let _ = if is_root() {
                    safe_fs::set_owner_mode(reg.file.as_fd(), 0, 0, 0o600)
                } else {
                    safe_fs::set_mode(reg.file.as_fd(), 0o600)
                };
                if is_errno(&err, rustix::io::Errno::EXIST) {
                    Err(FsError::Changed("a file is there now"))
                } else {
                    Err(err)
                }
            }
        }
    }
}
