//! Revocation orders on the device: verify (signature under the key pinned at enrollment,
//! kind `order`, addressed to this device), carry out once, keep the receipts, and undo on a
//! restore order. The only module that reads or writes `offboard/` in the data directory.
//!
//! - **quarantine**: customer files under the order's folders (the watched places when it
//!   names none) move into `offboard/quarantine/<order>/`, a directory only the agent's user
//!   (root, when installed as a service) can enter, each file 0600; `manifest.jsonl` records
//!   original path, SHA-256 (of what is in quarantine), size, owner, mode and time. Nothing
//!   is deleted.
//! - **strip_access**: each folder's owner and mode are recorded in `offboard/stripped.jsonl`,
//!   then it becomes root-owned 0700 (when the agent runs as root) or mode 000 (otherwise, and
//!   the receipt says so). How is the platform's business: `access.rs`, the seam where
//!   Windows ACLs and macOS plug in.
//! - **purge**: each cache folder or file is deleted; the receipt counts files and bytes.
//! - **restore**: quarantined files go back byte-identical (checked against the manifest)
//!   with their owner and mode, and stripped folders get their owner and mode back.
//!
//! Every operation on the user's files goes through `safe_fs`, by descriptor: no link is
//! followed anywhere in a path; what is classified, recorded, moved and chowned is the one
//! file opened (a name swapped meanwhile is refused and put back); a restore goes only into
//! the very folder the file came from (same device and inode, reached without a link) and
//! never replaces anything; purge removes only inside the home, only what the home's owner
//! could remove; quarantined names are numbers, unique across reruns, and the original
//! path is kept as bytes, so long and non-UTF-8 names come back byte-identical.

use crate::identity::Identity;
use crate::safe_fs::{self, FsError, Kind};
use holdfast_io::fs::write_file_atomic;
use holdfast_shared::edm::Matcher;
use holdfast_shared::order::{ActionReceipt, Order, OrderAction, OrderError};
use holdfast_shared::signed::{kind, Signed, VerifyError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::ffi::OsStr;
use std::io::{BufRead, Read, Seek, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Files looked at, at most, per quarantine folder walk.
const MAX_WALK: usize = 200_000;
/// Folder depth walked, at most.
const MAX_DEPTH: usize = 32;
/// Paths named in a receipt's detail, at most.
const DETAIL_PATHS: usize = 20;

/// Why an order was refused (nothing was done).
#[derive(Debug, thiserror::Error)]
pub enum OrderRefusal {
    /// The envelope does not verify under the pinned key, or is not an order.
    #[error("order refused: {0}")]
    Verify(#[from] VerifyError),
    /// It verified but is malformed or meant for another device.
    #[error("order refused: {0}")]
    Order(#[from] OrderError),
}

/// Verifies an order envelope for this device.
pub fn verify(env: &Signed, identity: &Identity) -> Result<Order, OrderRefusal> {
    let body = env.verify(&identity.signing_key(), kind::ORDER)?;
    Ok(Order::from_bytes(
        &body.payload,
        &identity.enrollment.device_id,
    )?)
}

/// Where orders are carried out: the agent's data dir, the user's home and watched places.
#[derive(Debug, Clone)]
pub struct Executor {
    pub data_dir: PathBuf,
    pub home: String,
    pub watch: Vec<PathBuf>,
}

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
    pub time_ms: i64,
    pub order_id: String,
    /// The folder it was taken from: a restore goes back only into that very folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<safe_fs::Identity>,
}

impl QuarantineEntry {
    fn original_path(&self) -> PathBuf {
        self.original_hex
            .as_deref()
            .and_then(|h| hex::decode(h).ok())
            .map(safe_fs::path_of_bytes)
            .unwrap_or_else(|| PathBuf::from(&self.original))
    }
}

/// One folder whose access was stripped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StrippedEntry {
    path: String,
    #[serde(flatten)]
    saved: crate::access::Saved,
    time_ms: i64,
    /// Which folder it was: a restore gives access back to that one only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ident: Option<safe_fs::Identity>,
}

fn is_root() -> bool {
    crate::access::running_as_admin()
}

fn receipt(action: &str) -> ActionReceipt {
    ActionReceipt {
        action: action.to_string(),
        ok: true,
        items: 0,
        bytes: 0,
        detail: String::new(),
    }
}

fn note(r: &mut ActionReceipt, what: impl std::fmt::Display) {
    if r.detail.len() < 4096 {
        if !r.detail.is_empty() {
            r.detail.push_str("; ");
        }
        r.detail.push_str(&what.to_string());
    }
}

fn fail(r: &mut ActionReceipt, what: impl std::fmt::Display) {
    r.ok = false;
    note(r, what);
}

/// SHA-256 of an open file, from its start.
fn sha256_of(file: &std::fs::File) -> std::io::Result<String> {
    let mut f = file.try_clone()?;
    f.rewind()?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(hex::encode(h.finalize()))
}

/// Copies an open file into a new file, syncs it, and returns the copy (for moves across
/// file systems).
fn copy_into(
    from: &std::fs::File,
    dir: BorrowedFd<'_>,
    name: &OsStr,
) -> Result<std::fs::File, FsError> {
    let mut src = from.try_clone()?;
    src.rewind()?;
    let mut out = safe_fs::create_new(dir, name, 0o600)?;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = src.read(&mut buf)?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])?;
    }
    out.sync_all()?;
    Ok(out)
}

fn is_errno(e: &FsError, errno: rustix::io::Errno) -> bool {
    matches!(e, FsError::Io(io) if io.raw_os_error() == Some(errno.raw_os_error()))
}

/// A file or folder opened for a change of access.
fn open_target(path: &Path) -> Result<(OwnedFd, safe_fs::Stat), FsError> {
    let (dir, name) = safe_fs::open_parent(path)?;
    let st = safe_fs::stat_at(dir.as_fd(), &name)?;
    let fd: OwnedFd = match st.kind {
        Kind::Directory => safe_fs::open_subdir(dir.as_fd(), &name)?,
        Kind::Regular => safe_fs::open_regular_at(dir.as_fd(), &name)?.file.into(),
        Kind::Symlink => return Err(FsError::Symlink),
        k => return Err(FsError::NotRegular(k)),
    };
    let now = safe_fs::stat(fd.as_fd())?;
    if now.identity() != st.identity() {
        return Err(FsError::Changed("another file was put under its name"));
    }
    Ok((fd, now))
}

/// Outcome of one file's quarantine.
enum Quarantined {
    Moved(Box<QuarantineEntry>),
    NotCustomer,
    Skipped(String),
}

impl Executor {
    fn root(&self) -> PathBuf {
        self.data_dir.join("offboard")
    }

    fn receipt_path(&self, order_id: &str) -> PathBuf {
        self.root()
            .join("receipts")
            .join(format!("{order_id}.json"))
    }

    /// The receipts of an order already carried out, if it was.
    pub fn done(&self, order_id: &str) -> Option<Vec<ActionReceipt>> {
        let bytes = std::fs::read(self.receipt_path(order_id)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    fn expand(&self, p: &str) -> PathBuf {
        crate::config::expand_home(p, &self.home)
    }

    /// The uid that owns the home: the user whose files these are.
    fn home_owner(&self) -> Option<u32> {
        safe_fs::stat_path(Path::new(&self.home))
            .ok()
            .filter(|s| s.kind == Kind::Directory)
            .map(|s| s.uid)
    }

    /// Carries out an order once: a second call returns the first call's receipts.
    pub fn carry_out(
        &self,
        order: &Order,
        edm: Option<Arc<Matcher>>,
        now_ms: i64,
    ) -> Vec<ActionReceipt> {
        if let Some(r) = self.done(&order.id) {
            return r;
        }
        let receipts: Vec<ActionReceipt> = order
            .actions
            .iter()
            .map(|a| match a {
                OrderAction::Quarantine { paths, min_records } => {
                    self.quarantine(&order.id, paths, *min_records, edm.clone(), now_ms)
                }
                OrderAction::StripAccess { paths } => self.strip(paths, now_ms),
                OrderAction::Purge { paths } => self.purge(paths),
                OrderAction::Restore => self.restore(),
            })
            .collect();
        let path = self.receipt_path(&order.id);
        let saved = std::fs::create_dir_all(self.root().join("receipts"))
            .and_then(|()| serde_json::to_vec(&receipts).map_err(std::io::Error::other))
            .and_then(|b| write_file_atomic(&path, &b, 0o600));
        if let Err(e) = saved {
            tracing::warn!(error = %e, path = %path.display(), "cannot keep an order's receipts; it may run again");
        }
        receipts
    }

    /// The order's quarantine folder (agent-only, 0700), created if need be, and opened.
    fn quarantine_dir(&self, order_id: &str) -> Result<(PathBuf, OwnedFd), FsError> {
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

    fn quarantine(
        &self,
        order_id: &str,
        paths: &[String],
        min_records: u64,
        edm: Option<Arc<Matcher>>,
        now_ms: i64,
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
                (order_id, now_ms),
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
    fn quarantine_one(
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
            time_ms: now_ms,
            order_id: order_id.to_string(),
            parent: Some(parent),
        })))
    }

    fn stripped_path(&self) -> PathBuf {
        self.root().join("stripped.jsonl")
    }

    fn strip(&self, paths: &[String], now_ms: i64) -> ActionReceipt {
        let mut r = receipt("strip_access");
        if let Err(e) = std::fs::create_dir_all(self.root()) {
            fail(&mut r, format!("cannot record: {e}"));
            return r;
        }
        let already: Vec<StrippedEntry> = read_jsonl(&self.stripped_path());
        let owner = self.home_owner();
        for p in paths {
            let path = self.expand(p);
            let shown = path.display().to_string();
            let (fd, st) = match open_target(&path) {
                Ok(t) => t,
                Err(e) if e.is_not_found() => {
                    note(&mut r, format!("{shown}: not present"));
                    continue;
                }
                Err(e) => {
                    note(&mut r, format!("{shown}: {e}; left alone"));
                    continue;
                }
            };
            if st.kind == Kind::Regular && st.nlink > 1 && Some(st.uid) != owner {
                note(
                    &mut r,
                    format!(
                        "{shown}: a second name of uid {}'s file; left alone",
                        st.uid
                    ),
                );
                continue;
            }
            // The first recorded state is the one to give back.
            if !already.iter().any(|e| e.path == shown) {
                let entry = StrippedEntry {
                    path: shown.clone(),
                    saved: crate::access::snapshot(&st),
                    time_ms: now_ms,
                    ident: Some(st.identity()),
                };
                if let Err(e) = append_jsonl(&self.stripped_path(), &entry) {
                    fail(
                        &mut r,
                        format!("{shown}: cannot record its access, left alone: {e}"),
                    );
                    continue;
                }
            }
            match crate::access::take_away(fd.as_fd()) {
                Ok(taken) => {
                    r.items += 1;
                    note(&mut r, format!("{shown}: {}", taken.describe()));
                }
                Err(e) => fail(&mut r, format!("{shown}: {e}")),
            }
        }
        r
    }

    fn purge(&self, paths: &[String]) -> ActionReceipt {
        let mut r = receipt("purge");
        let home = PathBuf::from(&self.home);
        let home_fd = match safe_fs::open_dir(&home) {
            Ok(fd) => fd,
            Err(e) => {
                fail(&mut r, format!("{}: {e}; nothing removed", home.display()));
                return r;
            }
        };
        let hst = match safe_fs::stat(home_fd.as_fd()) {
            Ok(s) => s,
            Err(e) => {
                fail(&mut r, format!("{}: {e}; nothing removed", home.display()));
                return r;
            }
        };
        for p in paths {
            let path = self.expand(p);
            let shown = path.display().to_string();
            let rel = match path.strip_prefix(&home) {
                Ok(rel) if rel.file_name().is_some() => rel.to_path_buf(),
                _ => {
                    fail(
                        &mut r,
                        format!("{shown}: not inside the home; nothing removed"),
                    );
                    continue;
                }
            };
            let Some(name) = rel.file_name().map(|n| n.to_os_string()) else {
                continue;
            };
            let parent_rel = rel.parent().unwrap_or(Path::new(""));
            let parent = match safe_fs::open_dir_beneath(home_fd.as_fd(), parent_rel) {
                Ok(fd) => fd,
                Err(e) if e.is_not_found() => continue,
                Err(e) => {
                    fail(&mut r, format!("{shown}: {e}; nothing removed"));
                    continue;
                }
            };
            let pst = match safe_fs::stat(parent.as_fd()) {
                Ok(s) => s,
                Err(e) => {
                    fail(&mut r, format!("{shown}: {e}; nothing removed"));
                    continue;
                }
            };
            if pst.dev != hst.dev || pst.uid != hst.uid {
                fail(
                    &mut r,
                    format!("{shown}: its folder is not the user's (uid {}, another file system or owner); nothing removed", pst.uid),
                );
                continue;
            }
            match safe_fs::stat_at(parent.as_fd(), &name) {
                Ok(_) => {}
                Err(e) if e.is_not_found() => continue,
                Err(e) => {
                    fail(&mut r, format!("{shown}: {e}"));
                    continue;
                }
            }
            let removed = safe_fs::remove_tree(parent.as_fd(), &name, hst.uid, hst.dev);
            r.items += removed.files;
            r.bytes += removed.bytes;
            note(
                &mut r,
                format!(
                    "{shown}: {} files, {} bytes removed",
                    removed.files, removed.bytes
                ),
            );
            for left in removed.left {
                fail(&mut r, left);
            }
        }
        r
    }

    fn restore(&self) -> ActionReceipt {
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
    fn restore_one(&self, qfd: BorrowedFd<'_>, e: &QuarantineEntry) -> Result<bool, FsError> {
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

fn read_jsonl<T: for<'de> Deserialize<'de>>(path: &Path) -> Vec<T> {
    let Ok(f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    std::io::BufReader::new(f)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect()
}

fn append_jsonl<T: Serialize>(path: &Path, v: &T) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let line = serde_json::to_string(v).map_err(std::io::Error::other)?;
    writeln!(f, "{line}")?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, MetadataExt};

    fn contacts(n: usize) -> String {
        let mut s = String::from("Name,Email,Phone\n");
        for i in 0..n {
            s.push_str(&format!(
                "Person {i},p{i}@example.com,+1 415 555 {:04}\n",
                i
            ));
        }
        s
    }

    /// An order to quarantine the watched places' customer files (10 records or more).
    fn quarantine_order(id: &str) -> Order {
        order(
            id,
            vec![OrderAction::Quarantine {
                paths: vec![],
                min_records: 10,
            }],
        )
    }

    fn order(id: &str, actions: Vec<OrderAction>) -> Order {
        Order {
            id: id.into(),
            device_id: "d".into(),
            user: "kim".into(),
            actions,
        }
    }

    #[test]
    fn quarantine_strip_purge_then_restore_byte_identical() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        let docs = home.join("Documents");
        let customers = home.join("Customers");
        let cache = home.join(".sfdx");
        for d in [&docs, &customers, &cache] {
            std::fs::create_dir_all(d).unwrap();
        }
        let export = contacts(40);
        std::fs::write(docs.join("export.csv"), &export).unwrap();
        std::fs::set_permissions(
            docs.join("export.csv"),
            std::fs::Permissions::from_mode(0o640),
        )
        .unwrap();
        std::fs::write(docs.join("notes.txt"), "lunch at noon").unwrap();
        std::fs::write(docs.join("few.csv"), contacts(3)).unwrap();
        std::fs::write(cache.join("token.json"), "{\"t\":\"secret\"}").unwrap();
        let x = Executor {
            data_dir: tmp.path().join("data"),
            home: home.display().to_string(),
            watch: vec![docs.clone()],
        };
        let o = order(
            "o1",
            vec![
                OrderAction::Quarantine {
                    paths: vec![],
                    min_records: 10,
                },
                OrderAction::StripAccess {
                    paths: vec!["~/Customers".into(), "~/Missing".into()],
                },
                OrderAction::Purge {
                    paths: vec!["~/.sfdx".into()],
                },
            ],
        );
        let r = x.carry_out(&o, None, 5);
        let summary: Vec<(&str, bool, u64)> = r
            .iter()
            .map(|r| (r.action.as_str(), r.ok, r.items))
            .collect();
        assert_eq!(
            summary,
            [
                ("quarantine", true, 1),
                ("strip_access", true, 1),
                ("purge", true, 1)
            ],
            "{r:?}"
        );
        assert!(!docs.join("export.csv").exists());
        assert!(docs.join("notes.txt").exists() && docs.join("few.csv").exists());
        assert!(!cache.exists());
        let manifest: Vec<QuarantineEntry> =
            read_jsonl(&x.root().join("quarantine/o1/manifest.jsonl"));
        assert_eq!(manifest.len(), 1);
        assert_eq!(
            manifest[0].sha256,
            holdfast_shared::sha256_hex(export.as_bytes())
        );
        assert_eq!(manifest[0].mode, 0o640);
        let q = x.root().join("quarantine/o1").join(&manifest[0].stored);
        assert_eq!(std::fs::metadata(&q).unwrap().mode() & 0o777, 0o600);
        assert_eq!(
            std::fs::metadata(x.root().join("quarantine"))
                .unwrap()
                .mode()
                & 0o777,
            0o700
        );
        let stripped_mode = std::fs::metadata(&customers).unwrap().mode() & 0o777;
        assert!(
            stripped_mode == 0o700 || stripped_mode == 0,
            "{stripped_mode:o}"
        );
        // Carried out once: the same order again returns the same receipts, doing nothing.
        std::fs::write(docs.join("export2.csv"), contacts(40)).unwrap();
        assert_eq!(x.carry_out(&o, None, 6), r);
        assert!(docs.join("export2.csv").exists());
        // Restore: the file is back byte-identical with its mode; the folder's access too.
        let back = x.carry_out(&order("r1", vec![OrderAction::Restore]), None, 7);
        assert_eq!((back[0].ok, back[0].items), (true, 2), "{back:?}");
        assert_eq!(
            std::fs::read_to_string(docs.join("export.csv")).unwrap(),
            export
        );
        assert_eq!(
            std::fs::metadata(docs.join("export.csv")).unwrap().mode() & 0o777,
            0o640
        );
        assert_eq!(std::fs::metadata(&customers).unwrap().mode() & 0o777, 0o755);
    }

    /// The uid that owns the home in these tests when they run as root (so the agent's
    /// files, root's, are "someone else's" as on a real laptop).
    const USER: u32 = 4242;

    /// A laptop: `home/` (Downloads with an export, Customers, .sfdx, .config/hubspot)
    /// owned by the user, and `outside/` (root's files the user must not reach through us).
    struct World {
        _tmp: tempfile::TempDir,
        base: PathBuf,
        x: Executor,
    }

    impl World {
        fn new() -> World {
            let tmp = tempfile::tempdir().unwrap();
            let base = tmp.path().to_path_buf();
            let home = base.join("home");
            for d in ["Downloads", "Customers", ".sfdx", ".config/hubspot"] {
                std::fs::create_dir_all(home.join(d)).unwrap();
            }
            std::fs::write(home.join("Downloads/export.csv"), contacts(40)).unwrap();
            std::fs::write(home.join("Customers/a.txt"), "accounts").unwrap();
            std::fs::write(home.join(".sfdx/key.json"), "{}").unwrap();
            std::fs::write(home.join(".config/hubspot/t"), "t").unwrap();
            let out = base.join("outside");
            std::fs::create_dir_all(out.join("cron.d")).unwrap();
            std::fs::create_dir_all(out.join("x/hubspot")).unwrap();
            std::fs::write(out.join("secret.csv"), contacts(50)).unwrap();
            std::fs::set_permissions(
                out.join("secret.csv"),
                std::fs::Permissions::from_mode(0o640),
            )
            .unwrap();
            std::fs::write(out.join("x/hubspot/db"), "root's").unwrap();
            if is_root() {
                chown_tree(&home, USER);
            }
            let x = Executor {
                data_dir: base.join("data"),
                home: home.display().to_string(),
                watch: vec![home.join("Downloads")],
            };
            World { _tmp: tmp, base, x }
        }

        fn home(&self, rel: &str) -> PathBuf {
            self.base.join("home").join(rel)
        }

        fn outside(&self, rel: &str) -> PathBuf {
            self.base.join("outside").join(rel)
        }

        /// Everything under `outside/`: name, kind, inode, owner, mode and content.
        fn outside_state(&self) -> Vec<String> {
            let mut out = Vec::new();
            let mut stack = vec![self.base.join("outside")];
            while let Some(p) = stack.pop() {
                let m = std::fs::symlink_metadata(&p).unwrap();
                let content = if m.is_file() {
                    holdfast_shared::sha256_hex(&std::fs::read(&p).unwrap())
                } else {
                    String::new()
                };
                out.push(format!(
                    "{} {:?} ino={} {}:{} {:o} {content}",
                    p.display(),
                    m.file_type(),
                    m.ino(),
                    m.uid(),
                    m.gid(),
                    m.mode()
                ));
                if m.is_dir() {
                    for e in std::fs::read_dir(&p).unwrap().flatten() {
                        stack.push(e.path());
                    }
                }
            }
            out.sort();
            out
        }

        /// One thing the user does to their home.
        fn attack(&self, what: u8) {
            let h = |r: &str| self.home(r);
            // The user cannot write into root's folders: no attack goes through a link.
            let through_link = |rel: &str| {
                Path::new(rel).ancestors().skip(1).any(|a| {
                    !a.as_os_str().is_empty()
                        && std::fs::symlink_metadata(h(&a.display().to_string()))
                            .is_ok_and(|m| m.file_type().is_symlink())
                })
            };
            if ["Downloads/export.csv", ".config/hubspot"]
                .iter()
                .any(|r| through_link(r))
                && matches!(what % 10, 2 | 3 | 4 | 8)
            {
                return;
            }
            let _ = match what % 10 {
                0 => replace_with_symlink(&h("Downloads"), &self.outside("cron.d")),
                1 => replace_with_symlink(&h("Customers"), &self.outside("secret.csv")),
                2 => replace_with_symlink(&h("Downloads/export.csv"), &self.outside("secret.csv")),
                3 => {
                    let _ = std::fs::remove_file(h("Downloads/export.csv"));
                    rustix::fs::mknodat(
                        rustix::fs::CWD,
                        h("Downloads/export.csv").as_path(),
                        rustix::fs::FileType::Fifo,
                        rustix::fs::Mode::from_raw_mode(0o644),
                        0,
                    )
                    .map_err(std::io::Error::from)
                }
                // A second name for root's file (as where protected_hardlinks is off).
                4 if is_root() => {
                    let _ = std::fs::remove_file(h("Downloads/export.csv"));
                    std::fs::hard_link(self.outside("secret.csv"), h("Downloads/export.csv"))
                }
                5 => replace_with_symlink(&h(".config"), &self.outside("x")),
                6 => std::fs::rename(h("Downloads"), h("Downloads.old"))
                    .and_then(|()| std::fs::create_dir(h("Downloads"))),
                7 => std::fs::rename(h("Customers"), h("Customers.old"))
                    .and_then(|()| std::fs::create_dir(h("Customers"))),
                // (As the user: never through a link to root's file, which they cannot write.)
                8 => {
                    let _ = std::fs::remove_file(h("Downloads/export.csv"));
                    std::fs::create_dir_all(h("Downloads"))
                        .and_then(|()| std::fs::write(h("Downloads/export.csv"), contacts(30)))
                }
                _ => replace_with_symlink(&h(".sfdx"), &self.outside("x")),
            };
        }

        /// One thing the agent does.
        fn act(&self, what: u8, n: usize) {
            let id = format!("o{n}");
            let actions = match what % 5 {
                0 => vec![OrderAction::Quarantine {
                    paths: vec![],
                    min_records: 10,
                }],
                1 => vec![OrderAction::StripAccess {
                    paths: vec!["~/Customers".into()],
                }],
                2 => vec![OrderAction::Purge {
                    paths: vec!["~/.sfdx".into(), "~/.config/hubspot".into()],
                }],
                3 => vec![OrderAction::Restore],
                _ => {
                    let _ = crate::scan::scan_file(&self.home("Downloads/export.csv"), None);
                    return;
                }
            };
            self.x.carry_out(&order(&id, actions), None, n as i64);
        }
    }

    fn chown_tree(p: &Path, uid: u32) {
        std::os::unix::fs::lchown(p, Some(uid), Some(uid)).unwrap();
        if std::fs::symlink_metadata(p).unwrap().is_dir() {
            for e in std::fs::read_dir(p).unwrap().flatten() {
                chown_tree(&e.path(), uid);
            }
        }
    }

    fn replace_with_symlink(p: &Path, target: &Path) -> std::io::Result<()> {
        let aside = p.with_extension("aside");
        let _ = std::fs::rename(p, &aside);
        symlink(target, p)
    }

    fn receipts_text(r: &[ActionReceipt]) -> String {
        r.iter()
            .map(|r| r.detail.clone())
            .collect::<Vec<_>>()
            .join(" | ")
    }

    #[test]
    fn restore_never_follows_a_link_planted_after_the_order() {
        // Customers stripped, then swapped for a link to root's file.
        let w = World::new();
        let before = w.outside_state();
        let r = w.x.carry_out(
            &order(
                "o1",
                vec![
                    OrderAction::Quarantine {
                        paths: vec![],
                        min_records: 10,
                    },
                    OrderAction::StripAccess {
                        paths: vec!["~/Customers".into()],
                    },
                ],
            ),
            None,
            1,
        );
        assert_eq!((r[0].items, r[1].items), (1, 1), "{r:?}");
        w.attack(1);
        w.attack(0);
        let back =
            w.x.carry_out(&order("r1", vec![OrderAction::Restore]), None, 2);
        assert!(!back[0].ok, "{back:?}");
        let text = receipts_text(&back);
        assert!(
            text.contains("Customers: a symbolic link is in the way"),
            "{text}"
        );
        assert!(
            text.contains("export.csv: a symbolic link is in the way"),
            "{text}"
        );
        assert_eq!(w.outside_state(), before);
        assert!(std::fs::read_dir(w.outside("cron.d"))
            .unwrap()
            .next()
            .is_none());
        // Put right, the next restore brings the file back into the folder it came from.
        std::fs::remove_file(w.home("Downloads")).unwrap();
        std::fs::rename(w.home("Downloads.aside"), w.home("Downloads")).unwrap();
        let again =
            w.x.carry_out(&order("r2", vec![OrderAction::Restore]), None, 3);
        assert!(
            again[0].detail.contains("Customers"),
            "still refused: {again:?}"
        );
        assert_eq!(
            std::fs::read_to_string(w.home("Downloads/export.csv")).unwrap(),
            contacts(40)
        );
        if is_root() {
            let m = std::fs::metadata(w.home("Downloads/export.csv")).unwrap();
            assert_eq!(m.uid(), USER);
        }
    }

    #[test]
    fn restore_refuses_a_folder_replaced_since_the_order() {
        let w = World::new();
        let q = OrderAction::Quarantine {
            paths: vec![],
            min_records: 10,
        };
        w.x.carry_out(&order("o1", vec![q]), None, 1);
        w.attack(6); // Downloads moved aside, a new one made
        let back =
            w.x.carry_out(&order("r1", vec![OrderAction::Restore]), None, 2);
        assert!(
            back[0].detail.contains("its folder was replaced"),
            "{back:?}"
        );
        assert!(!w.home("Downloads/export.csv").exists());
    }

    #[test]
    fn a_link_renamed_over_the_export_while_it_is_read_is_put_back_untouched() {
        let w = World::new();
        let before = w.outside_state();
        let (link, export) = (w.home("Downloads/l"), w.home("Downloads/export.csv"));
        symlink(w.outside("secret.csv"), &link).unwrap();
        let (l2, e2) = (link.clone(), export.clone());
        crate::safe_fs::race::set(move |what| {
            if what == "rename_noreplace" {
                let _ = std::fs::rename(&l2, &e2);
            }
        });
        let r = w.x.carry_out(&quarantine_order("o1"), None, 1);
        crate::safe_fs::race::clear();
        assert_eq!(r[0].items, 0, "{r:?}");
        assert!(
            r[0].detail.contains("changed while being examined"),
            "{r:?}"
        );
        // The link is back under its name, and nothing was recorded of it.
        assert!(std::fs::symlink_metadata(&export)
            .unwrap()
            .file_type()
            .is_symlink());
        let back =
            w.x.carry_out(&order("r1", vec![OrderAction::Restore]), None, 2);
        assert_eq!(back[0].items, 0, "{back:?}");
        assert_eq!(w.outside_state(), before);
    }

    #[test]
    fn purge_stops_at_a_link_anywhere_in_the_path_and_at_the_home() {
        let w = World::new();
        let before = w.outside_state();
        w.attack(5); // ~/.config -> outside/x, which holds a `hubspot`
        let x = Executor {
            watch: vec![],
            ..w.x.clone()
        };
        let r = x.carry_out(
            &order(
                "p1",
                vec![OrderAction::Purge {
                    paths: vec![
                        "~/.config/hubspot".into(),
                        "~/.sfdx".into(),
                        w.outside("x").display().to_string(),
                    ],
                }],
            ),
            None,
            1,
        );
        assert_eq!(r[0].items, 1, "only .sfdx's one file: {r:?}");
        assert!(
            r[0].detail.contains("a symbolic link is in the way"),
            "{r:?}"
        );
        assert!(r[0].detail.contains("not inside the home"), "{r:?}");
        assert_eq!(w.outside_state(), before);
        assert!(!w.home(".sfdx").exists());
    }

    #[test]
    fn quarantine_names_are_unique_across_reruns_and_keep_their_bytes() {
        use std::os::unix::ffi::OsStrExt;
        let w = World::new();
        let dl = w.home("Downloads");
        let odd = dl.join(std::ffi::OsStr::from_bytes(b"caf\xe9.csv"));
        let odd2 = dl.join(std::ffi::OsStr::from_bytes(b"caf\xe8.csv"));
        let long = dl.join(format!("{}.csv", "n".repeat(251)));
        for p in [&odd, &odd2, &long] {
            std::fs::write(p, contacts(20)).unwrap();
        }
        let q = || OrderAction::Quarantine {
            paths: vec![],
            min_records: 10,
        };
        let r = w.x.carry_out(&order("o1", vec![q()]), None, 1);
        assert_eq!((r[0].ok, r[0].items), (true, 4), "{r:?}");
        // The same order id again after a lost receipt (a crash): new names, nothing
        // overwritten.
        std::fs::remove_dir_all(w.x.root().join("receipts")).unwrap();
        std::fs::write(dl.join("late.csv"), contacts(15)).unwrap();
        let r = w.x.carry_out(&order("o1", vec![q()]), None, 2);
        assert_eq!(r[0].items, 1, "{r:?}");
        let m: Vec<QuarantineEntry> = read_jsonl(&w.x.root().join("quarantine/o1/manifest.jsonl"));
        let stored: std::collections::BTreeSet<&str> =
            m.iter().map(|e| e.stored.as_str()).collect();
        assert_eq!(stored.len(), 5, "{m:?}");
        let back =
            w.x.carry_out(&order("r1", vec![OrderAction::Restore]), None, 3);
        assert_eq!((back[0].ok, back[0].items), (true, 5), "{back:?}");
        for p in [&odd, &odd2, &long] {
            assert_eq!(std::fs::read_to_string(p).unwrap(), contacts(20));
        }
    }

    #[test]
    fn fifos_and_foreign_hard_links_are_left_unopened_and_unchanged() {
        let w = World::new();
        let before = w.outside_state();
        w.attack(3);
        if is_root() {
            std::fs::hard_link(w.outside("secret.csv"), w.home("Downloads/linked.csv")).unwrap();
        }
        let r = w.x.carry_out(&quarantine_order("o1"), None, 1);
        assert_eq!(r[0].items, 0, "{r:?}");
        assert!(r[0].detail.contains("FIFO"), "{r:?}");
        if is_root() {
            assert!(r[0].detail.contains("not the user; left in place"), "{r:?}");
        }
        assert_eq!(w.outside_state(), before);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        /// Random interleavings of the user's swaps (links, FIFOs, hard links, folders moved
        /// and remade) with the agent's operations, some of them between two of the agent's
        /// own system calls: nothing outside the home ever changes.
        #[test]
        fn no_interleaving_touches_anything_outside_the_home(
            steps in proptest::collection::vec(
                (0u8..5, proptest::option::of((0usize..6, 0u8..10)), proptest::option::of(0u8..10)),
                1..8,
            )
        ) {
            let w = std::rc::Rc::new(World::new());
            let before = w.outside_state();
            for (n, (act, racing, after)) in steps.into_iter().enumerate() {
                if let Some((at, attack)) = racing {
                    let w2 = w.clone();
                    let mut seen = 0;
                    crate::safe_fs::race::set(move |_| {
                        if seen == at {
                            w2.attack(attack);
                        }
                        seen += 1;
                    });
                }
                w.act(act, n);
                crate::safe_fs::race::clear();
                if let Some(a) = after {
                    w.attack(a);
                }
                proptest::prop_assert_eq!(&w.outside_state(), &before, "after step {}", n);
            }
        }
    }
}
