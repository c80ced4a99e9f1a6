//! Every file operation the agent makes on the user's files, on file descriptors, so that
//! the user (who can make symlinks, FIFOs and hard links, and swap files and folders between
//! two of our system calls) cannot steer a root agent outside their own files.
//!
//! - Paths are resolved with `openat2(RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)` (plus
//!   `RESOLVE_BENEATH` below an anchor folder), or, where the kernel lacks `openat2`, one
//!   component at a time with `O_NOFOLLOW`. A symbolic link anywhere in a path is an error,
//!   [`FsError::Symlink`], never followed.
//! - Files are read only after `fstat` on the opened descriptor says they are regular files,
//!   and they are opened `O_NONBLOCK | O_NOCTTY | O_NOFOLLOW`, after an `fstatat` that did not
//!   follow links said the same: FIFOs, sockets and devices are [`FsError::NotRegular`] and
//!   are never waited on.
//! - Owners and modes change with `fchown`/`fchmod` on a descriptor, never by path; what root
//!   creates is created `O_EXCL` or renamed with `RENAME_NOREPLACE`; deletions are `unlinkat`
//!   in a folder held open, which never follows a link.
//!
//! `scan.rs`, `tree.rs`, `orders.rs` and `access.rs` reach user files only through here.

// `struct stat` field types differ between targets: the casts are for the others.
#![allow(clippy::unnecessary_cast)]

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, RenameFlags, ResolveFlags};
use serde::{Deserialize, Serialize};
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};

/// Why a file operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// A component of the path (or the file itself) is a symbolic link.
    #[error("a symbolic link is in the way (not followed)")]
    Symlink,
    /// The file is not a regular file.
    #[error("not a regular file but {0}: skipped")]
    NotRegular(Kind),
    /// What was opened is not what was looked at a moment before: the user swapped it.
    #[error("it changed while being examined ({0})")]
    Changed(&'static str),
    /// The path is not absolute, has no file name, or climbs with `..`.
    #[error("not a plain absolute path")]
    BadPath,
    /// The operating system refused or failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl FsError {
    /// Whether this is "no such file".
    pub fn is_not_found(&self) -> bool {
        matches!(self, FsError::Io(e) if e.kind() == std::io::ErrorKind::NotFound)
    }
}

impl From<rustix::io::Errno> for FsError {
    fn from(e: rustix::io::Errno) -> FsError {
        if e == rustix::io::Errno::LOOP {
            FsError::Symlink
        } else {
            FsError::Io(e.into())
        }
    }
}

/// What kind of file a name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Regular,
    Directory,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
    Unknown,
}

impl Kind {
    fn of_mode(mode: u32) -> Kind {
        match FileType::from_raw_mode(mode as _) {
            FileType::RegularFile => Kind::Regular,
            FileType::Directory => Kind::Directory,
            FileType::Symlink => Kind::Symlink,
            FileType::Fifo => Kind::Fifo,
            FileType::Socket => Kind::Socket,
            FileType::CharacterDevice => Kind::CharDevice,
            FileType::BlockDevice => Kind::BlockDevice,
            _ => Kind::Unknown,
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Regular => "a regular file",
            Kind::Directory => "a folder",
            Kind::Symlink => "a symbolic link",
            Kind::Fifo => "a FIFO",
            Kind::Socket => "a socket",
            Kind::CharDevice => "a character device",
            Kind::BlockDevice => "a block device",
            Kind::Unknown => "an unknown kind of file",
        })
    }
}

/// What `fstat` said about an opened file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub dev: u64,
    pub ino: u64,
    pub kind: Kind,
    pub uid: u32,
    pub gid: u32,
    /// Permission bits with setuid, setgid and sticky.
    pub mode: u32,
    pub nlink: u64,
    pub len: u64,
    pub mtime_ns: i64,
    /// When the kernel last changed the file or its inode (wall clock, ns): unlike the
    /// modification time, a user cannot set it.
    pub ctime_ns: i64,
}

impl Stat {
    fn of(s: &rfs::Stat) -> Stat {
        let mode = s.st_mode as u32;
        Stat {
            dev: s.st_dev as u64,
            ino: s.st_ino as u64,
            kind: Kind::of_mode(mode),
            uid: s.st_uid as u32,
            gid: s.st_gid as u32,
            mode: mode & 0o7777,
            nlink: s.st_nlink as u64,
            len: s.st_size.max(0) as u64,
            mtime_ns: (s.st_mtime as i64)
                .saturating_mul(1_000_000_000)
                .saturating_add(s.st_mtime_nsec as i64),
            ctime_ns: (s.st_ctime as i64)
                .saturating_mul(1_000_000_000)
                .saturating_add(s.st_ctime_nsec as i64),
        }
    }

    /// Which file this is (device and inode), to recognise it later.
    pub fn identity(&self) -> Identity {
        Identity {
            dev: self.dev,
            ino: self.ino,
        }
    }
}

/// A file's identity: its device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Identity {
    pub dev: u64,
    pub ino: u64,
}

/// A regular file opened for reading, with what `fstat` said of it.
#[derive(Debug)]
pub struct Regular {
    pub file: std::fs::File,
    pub stat: Stat,
}

/// How paths are resolved: `openat2` where the kernel has it, else one component at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolver {
    Openat2,
    Walk,
}

static RESOLVER: AtomicU8 = AtomicU8::new(0);

/// The resolver this kernel supports (probed once).
pub fn resolver() -> Resolver {
    match RESOLVER.load(Ordering::Relaxed) {
        1 => Resolver::Openat2,
        2 => Resolver::Walk,
        _ => {
            let probe = rfs::openat2(
                rfs::CWD,
                "/",
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::NO_SYMLINKS,
            );
            let r = match probe {
                Ok(_) => Resolver::Openat2,
                Err(_) => Resolver::Walk,
            };
            RESOLVER.store(
                if r == Resolver::Openat2 { 1 } else { 2 },
                Ordering::Relaxed,
            );
            r
        }
    }
}

/// Where a path is resolved from.
#[derive(Clone, Copy)]
enum Start<'a> {
    /// The file system root: `path` is absolute.
    Root,
    /// Beneath this folder: `path` is relative and may not leave it.
    Beneath(BorrowedFd<'a>),
}

/// A test's chance to act between two of our system calls (swap a file, plant a link).
#[cfg(test)]
pub mod race {
    use std::cell::RefCell;
    type Hook = Box<dyn FnMut(&'static str)>;
    thread_local!(static HOOK: RefCell<Option<Hook>> = const { RefCell::new(None) });

    /// Calls `f` at every race point of this thread until [`clear`].
    pub fn set(f: impl FnMut(&'static str) + 'static) {
        HOOK.with(|h| *h.borrow_mut() = Some(Box::new(f)));
    }

    pub fn clear() {
        HOOK.with(|h| *h.borrow_mut() = None);
    }

    pub(super) fn point(what: &'static str) {
        let taken = HOOK.with(|h| h.borrow_mut().take());
        if let Some(mut f) = taken {
            f(what);
            HOOK.with(|h| {
                let mut slot = h.borrow_mut();
                if slot.is_none() {
                    *slot = Some(f);
                }
            });
        }
    }
}

#[inline]
fn race_point(_what: &'static str) {
    #[cfg(test)]
    race::point(_what);
}

fn components(path: &Path, from: Start<'_>) -> Result<Vec<OsString>, FsError> {
    let mut out = Vec::new();
    for (i, c) in path.components().enumerate() {
        match c {
            Component::RootDir if i == 0 && matches!(from, Start::Root) => {}
            Component::Normal(n) => out.push(n.to_os_string()),
            Component::CurDir => {}
            _ => return Err(FsError::BadPath),
        }
    }
    if matches!(from, Start::Root) && !path.is_absolute() {
        return Err(FsError::BadPath);
    }
    Ok(out)
}

fn open_with(
    resolver: Resolver,
    from: Start<'_>,
    path: &Path,
    flags: OFlags,
    mode: Mode,
) -> Result<OwnedFd, FsError> {
    let parts = components(path, from)?;
    let flags = flags | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY;
    if resolver == Resolver::Openat2 {
        let resolve = ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
        let fd = match from {
            Start::Root => rfs::openat2(rfs::CWD, path, flags, mode, resolve),
            Start::Beneath(dir) => {
                let rel = if parts.is_empty() {
                    Path::new(".")
                } else {
                    path
                };
                rfs::openat2(dir, rel, flags, mode, resolve | ResolveFlags::BENEATH)
            }
        };
        return fd.map_err(|e| classify(e, from, path));
    }
    // One component at a time, none followed.
    let mut cur: OwnedFd = match from {
        Start::Root => rfs::openat(
            rfs::CWD,
            "/",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?,
        Start::Beneath(dir) => rfs::openat(
            dir,
            ".",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?,
    };
    let Some((last, dirs)) = parts.split_last() else {
        return Ok(rfs::openat(&cur, ".", flags, mode)?);
    };
    for d in dirs {
        cur = rfs::openat(
            &cur,
            d.as_os_str(),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| {
            if e == rustix::io::Errno::NOTDIR {
                // A symlink opened O_PATH|O_NOFOLLOW|O_DIRECTORY says ENOTDIR.
                symlink_or(&cur, d, e)
            } else {
                FsError::from(e)
            }
        })?;
    }
    rfs::openat(&cur, last.as_os_str(), flags, mode).map_err(|e| symlink_or(&cur, last, e))
}

/// `O_NOFOLLOW | O_DIRECTORY` on a link says `ENOTDIR`: say it was a link.
fn classify(e: rustix::io::Errno, from: Start<'_>, path: &Path) -> FsError {
    if e != rustix::io::Errno::NOTDIR {
        return FsError::from(e);
    }
    // Only to name the error: nothing is opened or changed through this look.
    let st = match from {
        Start::Root => rfs::statat(rfs::CWD, path, AtFlags::SYMLINK_NOFOLLOW),
        Start::Beneath(dir) => rfs::statat(dir, path, AtFlags::SYMLINK_NOFOLLOW),
    };
    match st {
        Ok(s) if Kind::of_mode(s.st_mode as u32) == Kind::Symlink => FsError::Symlink,
        _ => FsError::from(e),
    }
}

fn symlink_or(dir: &OwnedFd, name: &OsStr, e: rustix::io::Errno) -> FsError {
    if e != rustix::io::Errno::NOTDIR {
        return FsError::from(e);
    }
    match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(s) if Kind::of_mode(s.st_mode as u32) == Kind::Symlink => FsError::Symlink,
        _ => FsError::from(e),
    }
}

/// Opens the folder at an absolute `path` for listing, no link followed.
pub fn open_dir(path: &Path) -> Result<OwnedFd, FsError> {
    open_dir_with(resolver(), path)
}

/// [`open_dir`] with a chosen resolver (tests use both).
pub fn open_dir_with(resolver: Resolver, path: &Path) -> Result<OwnedFd, FsError> {
    open_with(
        resolver,
        Start::Root,
        path,
        OFlags::RDONLY | OFlags::DIRECTORY,
        Mode::empty(),
    )
}

/// Opens the folder `rel` beneath `dir` (never leaving it), no link followed.
pub fn open_dir_beneath(dir: BorrowedFd<'_>, rel: &Path) -> Result<OwnedFd, FsError> {
    open_with(
        resolver(),
        Start::Beneath(dir),
        rel,
        OFlags::RDONLY | OFlags::DIRECTORY,
        Mode::empty(),
    )
}

/// The folder holding `path` (opened, no link followed) and the file's name in it.
pub fn open_parent(path: &Path) -> Result<(OwnedFd, OsString), FsError> {
    let name = match path.components().next_back() {
        Some(Component::Normal(n)) => n.to_os_string(),
        _ => return Err(FsError::BadPath),
    };
    let parent = path.parent().ok_or(FsError::BadPath)?;
    Ok((open_dir(parent)?, name))
}

/// `fstat` of an open descriptor.
pub fn stat(fd: BorrowedFd<'_>) -> Result<Stat, FsError> {
    Ok(Stat::of(&rfs::fstat(fd)?))
}

/// `fstatat` of `name` in `dir`, not following a link.
pub fn stat_at(dir: BorrowedFd<'_>, name: &OsStr) -> Result<Stat, FsError> {
    Ok(Stat::of(&rfs::statat(
        dir,
        name,
        AtFlags::SYMLINK_NOFOLLOW,
    )?))
}

/// `lstat` of an absolute path whose folders are resolved without following links.
pub fn stat_path(path: &Path) -> Result<Stat, FsError> {
    let (dir, name) = open_parent(path)?;
    stat_at(dir.as_fd(), &name)
}

/// Opens the regular file at an absolute `path` for reading, no link followed.
pub fn open_regular(path: &Path) -> Result<Regular, FsError> {
    let (dir, name) = open_parent(path)?;
    open_regular_at(dir.as_fd(), &name)
}

/// Opens the regular file `name` in `dir` for reading. Anything else (a FIFO, a socket, a
/// device, a folder, a link) is refused without being opened; what is swapped in between
/// the look and the open is refused after `fstat`.
pub fn open_regular_at(dir: BorrowedFd<'_>, name: &OsStr) -> Result<Regular, FsError> {
    let before = stat_at(dir, name)?;
    if before.kind != Kind::Regular {
        return Err(FsError::NotRegular(before.kind));
    }
    race_point("open_regular_at: looked, not yet opened");
    let fd = rfs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(FsError::from)?;
    let st = stat(fd.as_fd())?;
    if st.kind != Kind::Regular {
        return Err(FsError::NotRegular(st.kind));
    }
    if st.identity() != before.identity() {
        return Err(FsError::Changed("another file was put under its name"));
    }
    rfs::fcntl_setfl(&fd, OFlags::empty())?;
    Ok(Regular {
        file: std::fs::File::from(fd),
        stat: st,
    })
}

/// Opens `name` in `dir` as a folder, not following a link.
pub fn open_subdir(dir: BorrowedFd<'_>, name: &OsStr) -> Result<OwnedFd, FsError> {
    rfs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| {
        if e == rustix::io::Errno::NOTDIR {
            match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(s) if Kind::of_mode(s.st_mode as u32) == Kind::Symlink => FsError::Symlink,
                _ => FsError::from(e),
            }
        } else {
            FsError::from(e)
        }
    })
}

/// The names in an open folder (without `.` and `..`), at most `max`.
pub fn list(dir: BorrowedFd<'_>, max: usize) -> Result<Vec<OsString>, FsError> {
    let mut out = Vec::new();
    for entry in rfs::Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        if out.len() >= max {
            break;
        }
        out.push(OsString::from_vec(name.to_vec()));
    }
    Ok(out)
}

/// Renames `from` in `from_dir` to `to` in `to_dir`, never replacing what is there.
pub fn rename_noreplace(
    from_dir: BorrowedFd<'_>,
    from: &OsStr,
    to_dir: BorrowedFd<'_>,
    to: &OsStr,
) -> Result<(), FsError> {
    race_point("rename_noreplace");
    Ok(rfs::renameat_with(
        from_dir,
        from,
        to_dir,
        to,
        RenameFlags::NOREPLACE,
    )?)
}

/// Creates a new file `name` in `dir` (`O_EXCL`: never an existing file or link).
pub fn create_new(dir: BorrowedFd<'_>, name: &OsStr, mode: u32) -> Result<std::fs::File, FsError> {
    let fd = rfs::openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(mode as _),
    )?;
    Ok(std::fs::File::from(fd))
}

/// Creates the folder `name` in `dir`; an existing folder is fine, anything else is not.
pub fn make_dir(dir: BorrowedFd<'_>, name: &OsStr, mode: u32) -> Result<OwnedFd, FsError> {
    match rfs::mkdirat(dir, name, Mode::from_raw_mode(mode as _)) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => open_subdir(dir, name),
        Err(e) => Err(e.into()),
    }
}

/// Removes the name `name` from `dir` (a link is removed, never followed).
pub fn unlink_at(dir: BorrowedFd<'_>, name: &OsStr) -> Result<(), FsError> {
    race_point("unlink_at");
    Ok(rfs::unlinkat(dir, name, AtFlags::empty())?)
}

/// Removes the empty folder `name` from `dir`.
pub fn rmdir_at(dir: BorrowedFd<'_>, name: &OsStr) -> Result<(), FsError> {
    Ok(rfs::unlinkat(dir, name, AtFlags::REMOVEDIR)?)
}

/// Sets the owner, then the mode (a chown clears setuid bits), of an open file.
pub fn set_owner_mode(fd: BorrowedFd<'_>, uid: u32, gid: u32, mode: u32) -> Result<(), FsError> {
    rfs::fchown(
        fd,
        Some(rfs::Uid::from_raw(uid)),
        Some(rfs::Gid::from_raw(gid)),
    )?;
    set_mode(fd, mode)
}

/// Sets the mode of an open file.
pub fn set_mode(fd: BorrowedFd<'_>, mode: u32) -> Result<(), FsError> {
    Ok(rfs::fchmod(fd, Mode::from_raw_mode((mode & 0o7777) as _))?)
}

/// What [`remove_tree`] removed and left.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Removed {
    pub files: u64,
    pub bytes: u64,
    /// What was left, and why (bounded).
    pub left: Vec<String>,
}

impl Removed {
    fn leave(&mut self, what: String) {
        if self.left.len() < 20 {
            self.left.push(what);
        }
    }
}

/// Limits of [`remove_tree`].
const REMOVE_MAX_DEPTH: usize = 64;
const REMOVE_MAX_ENTRIES: usize = 1_000_000;

/// Removes `name` in `dir` and, when it is a folder, everything under it, by descriptor:
/// nothing is followed, nothing on another file system (`dev`) is entered, and only folders
/// owned by `owner` are emptied, so nothing is removed that `owner` could not remove.
pub fn remove_tree(dir: BorrowedFd<'_>, name: &OsStr, owner: u32, dev: u64) -> Removed {
    let mut out = Removed::default();
    let mut budget = REMOVE_MAX_ENTRIES;
    remove_entry(
        dir,
        name,
        owner,
        dev,
        0,
        &mut budget,
        &mut out,
        Path::new(name),
    );
    out
}

#[allow(clippy::too_many_arguments)]
fn remove_entry(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    owner: u32,
    dev: u64,
    depth: usize,
    budget: &mut usize,
    out: &mut Removed,
    shown: &Path,
) {
    let Ok(st) = stat_at(dir, name) else {
        return;
    };
    if *budget == 0 {
        out.leave(format!("{}: too many entries", shown.display()));
        return;
    }
    *budget -= 1;
    if st.kind != Kind::Directory {
        if unlink_at(dir, name).is_ok() {
            if st.kind == Kind::Regular {
                out.files += 1;
                out.bytes += st.len;
            }
        } else {
            out.leave(format!("{}: could not be removed", shown.display()));
        }
        return;
    }
    if depth >= REMOVE_MAX_DEPTH {
        out.leave(format!("{}: nested too deep", shown.display()));
        return;
    }
    race_point("remove_entry: looked at a folder, not yet opened");
    let sub = match open_subdir(dir, name) {
        Ok(fd) => fd,
        // Swapped for a link or a file since: that name is removed, never followed.
        Err(FsError::Symlink) | Err(FsError::Io(_)) => {
            if unlink_at(dir, name).is_err() {
                out.leave(format!("{}: changed while being removed", shown.display()));
            }
            return;
        }
        Err(e) => {
            out.leave(format!("{}: {e}", shown.display()));
            return;
        }
    };
    let Ok(sst) = stat(sub.as_fd()) else {
        return;
    };
    if sst.dev != dev {
        out.leave(format!(
            "{}: another file system, not entered",
            shown.display()
        ));
        return;
    }
    if sst.uid != owner {
        out.leave(format!(
            "{}: owned by uid {}, not the user's; left",
            shown.display(),
            sst.uid
        ));
        return;
    }
    let names = list(sub.as_fd(), *budget).unwrap_or_default();
    for n in names {
        remove_entry(
            sub.as_fd(),
            &n,
            owner,
            dev,
            depth + 1,
            budget,
            out,
            &shown.join(&n),
        );
    }
    if rmdir_at(dir, name).is_err() {
        out.leave(format!("{}: not empty, kept", shown.display()));
    }
}

/// A path's bytes, for records that must give back exactly the name they took.
pub fn path_bytes(p: &Path) -> Vec<u8> {
    p.as_os_str().as_bytes().to_vec()
}

/// The path whose bytes are `b`.
pub fn path_of_bytes(b: Vec<u8>) -> PathBuf {
    PathBuf::from(OsString::from_vec(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::symlink;

    fn both(f: impl Fn(Resolver)) {
        f(Resolver::Walk);
        if resolver() == Resolver::Openat2 {
            f(Resolver::Openat2);
        }
    }

    /// Opening `rel` (under a fixture) as a folder gives `want`: "ok", "symlink" or "io".
    /// A scratch folder holding these folders.
    fn folders(paths: &[&str]) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        for p in paths {
            std::fs::create_dir_all(t.path().join(p)).unwrap();
        }
        t
    }

    fn check(r: Resolver, root: &Path, rel: &str, want: &str) {
        let got = match open_dir_with(r, &root.join(rel)) {
            Ok(_) => "ok",
            Err(FsError::Symlink) => "symlink",
            Err(FsError::BadPath) => "badpath",
            Err(FsError::Io(_)) => "io",
            Err(e) => panic!("{e}"),
        };
        assert_eq!(got, want, "{r:?} {rel}");
    }

    #[test]
    fn no_link_is_followed_anywhere_in_a_path() {
        let t = folders(&["home/docs/deep", "outside"]);
        let root = t.path();
        symlink(root.join("outside"), root.join("home/link")).unwrap();
        symlink("docs", root.join("home/rel")).unwrap();
        std::fs::write(root.join("home/file"), "x").unwrap();
        both(|r| {
            check(r, root, "home/docs/deep", "ok");
            check(r, root, "home/link", "symlink");
            check(r, root, "home/rel/deep", "symlink");
            check(r, root, "home/link/x", "symlink");
            check(r, root, "home/file", "io");
            check(r, root, "home/missing", "io");
            check(r, root, "home/docs/../docs", "badpath");
        });
        assert!(matches!(
            open_dir(Path::new("relative/path")),
            Err(FsError::BadPath)
        ));
        let home = open_dir(&root.join("home")).unwrap();
        assert!(open_dir_beneath(home.as_fd(), Path::new("docs/deep")).is_ok());
        assert!(matches!(
            open_dir_beneath(home.as_fd(), Path::new("link")),
            Err(FsError::Symlink)
        ));
        assert!(matches!(
            open_dir_beneath(home.as_fd(), Path::new("../outside")),
            Err(FsError::BadPath)
        ));
    }

    #[test]
    fn only_regular_files_are_opened_and_fifos_never_block() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        std::fs::write(d.join("f.csv"), "a,b\n").unwrap();
        std::fs::write(d.join("target"), "secret").unwrap();
        symlink(d.join("target"), d.join("link.csv")).unwrap();
        rfs::mknodat(
            rfs::CWD,
            d.join("fifo.csv").as_path(),
            FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let mut r = open_regular(&d.join("f.csv")).unwrap();
        let mut s = String::new();
        r.file.read_to_string(&mut s).unwrap();
        assert_eq!(
            (s.as_str(), r.stat.kind, r.stat.len),
            ("a,b\n", Kind::Regular, 4)
        );
        assert!(matches!(
            open_regular(&d.join("link.csv")),
            Err(FsError::NotRegular(Kind::Symlink))
        ));
        assert!(matches!(
            open_regular(&d.join("fifo.csv")),
            Err(FsError::NotRegular(Kind::Fifo))
        ));
        assert!(matches!(
            open_regular(d),
            Err(FsError::NotRegular(Kind::Directory))
        ));
        // A FIFO swapped in between the look and the open is opened without blocking, and
        // refused.
        let dir = open_dir(d).unwrap();
        let d2 = d.to_path_buf();
        race::set(move |_| {
            let _ = std::fs::rename(d2.join("fifo.csv"), d2.join("f.csv"));
        });
        let got = open_regular_at(dir.as_fd(), OsStr::new("f.csv"));
        race::clear();
        assert!(
            matches!(got, Err(FsError::NotRegular(Kind::Fifo))),
            "{got:?}"
        );
    }

    #[test]
    fn removing_a_tree_never_follows_or_leaves_the_owner() {
        let t = folders(&["home/cache/a/b", "outside"]);
        let d = t.path();
        std::fs::write(d.join("outside/keep"), "keep").unwrap();
        std::fs::write(d.join("home/cache/a/b/f"), "12345").unwrap();
        std::fs::write(d.join("home/cache/g"), "1").unwrap();
        symlink(d.join("outside"), d.join("home/cache/a/out")).unwrap();
        std::fs::hard_link(d.join("outside/keep"), d.join("home/cache/h")).unwrap();
        let home = open_dir(&d.join("home")).unwrap();
        let st = stat(home.as_fd()).unwrap();
        let r = remove_tree(home.as_fd(), OsStr::new("cache"), st.uid, st.dev);
        assert_eq!((r.files, r.bytes), (3, 10), "{r:?}");
        assert!(r.left.is_empty(), "{r:?}");
        assert!(!d.join("home/cache").exists());
        assert_eq!(
            std::fs::read_to_string(d.join("outside/keep")).unwrap(),
            "keep"
        );
        // A folder of another owner is not emptied.
        std::fs::create_dir_all(d.join("home/c2/x")).unwrap();
        std::fs::write(d.join("home/c2/x/f"), "1").unwrap();
        let r = remove_tree(home.as_fd(), OsStr::new("c2"), st.uid + 1, st.dev);
        assert_eq!(r.files, 0);
        assert!(d.join("home/c2/x/f").exists());
    }

    #[test]
    fn renames_never_replace_and_names_keep_their_bytes() {
        let t = tempfile::tempdir().unwrap();
        let d = open_dir(t.path()).unwrap();
        let odd = OsStr::from_bytes(b"caf\xe9-\xff.csv");
        let long = OsString::from("n".repeat(255));
        for name in [odd, long.as_os_str()] {
            create_new(d.as_fd(), name, 0o600).unwrap();
            assert!(matches!(
                create_new(d.as_fd(), name, 0o600),
                Err(FsError::Io(_))
            ));
        }
        std::fs::write(t.path().join("other"), "o").unwrap();
        assert!(rename_noreplace(d.as_fd(), odd, d.as_fd(), OsStr::new("other")).is_err());
        assert_eq!(
            std::fs::read_to_string(t.path().join("other")).unwrap(),
            "o"
        );
        let p = t.path().join(odd);
        assert_eq!(path_of_bytes(path_bytes(&p)), p);
        assert!(stat_path(&p).is_ok());
    }
}
