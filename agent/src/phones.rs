//! Phones: MTP devices (Android) and iPhones mounted through FUSE — gvfs's `mtp:host=…`
//! mounts, jmtpfs, simple-mtpfs, go-mtpfs, aft-mtp-mount, ifuse — watched like removable
//! media. The only module that starts a process as another user.
//!
//! A FUSE mount belongs to the user who made it, and the kernel lets no one else in, root
//! included (`allow_other` is off). So for each phone mount the agent starts a watcher of
//! its own, `holdfast-agent phone-watch`, as the mount's owner: a fresh program (exec'd, so
//! it holds none of the agent's memory) with only that user's rights. It watches the phone
//! with inotify, opens each file written there, and passes the descriptor to the agent over
//! a socket pair (`SCM_RIGHTS`); the agent reads and classifies it from the descriptor (the
//! kernel checks the opener's right at the open, not at each read). Files changed after
//! the agent's previous look at the mount table are passed on at the watcher's start, so a
//! copy made while it started, or while it was being restarted, is not missed.
//!
//! The watcher runs as the user at the laptop, who can kill it or feed it lies: the agent
//! trusts it only for names (checked: relative, no `..`), never opens a path it sends, and
//! reads its descriptors within the usual limits. A watcher that exits while its phone is
//! still mounted is started again at the next look at the mount table, and the restart is
//! a notice.

use crate::watch::{HeldRead, PhoneFile, WatchEvent};
use holdfast_shared::event::EventBody;
use std::collections::HashMap;
use std::io::IoSlice;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::Duration;

/// Longest message from a watcher (a relative path and a flag).
const MAX_MESSAGE: usize = 8192;
/// Directories one watcher watches, at most.
const MAX_DIRS: usize = 10_000;
/// How deep a watcher goes into a phone's folders.
const MAX_DEPTH: usize = 32;
/// How often a watcher of gvfs's mount looks for phones plugged in.
const GVFS_RELIST: Duration = Duration::from_secs(1);

struct Watcher {
    child: Child,
    /// Set by its reader thread when the watcher's socket closed.
    ended: Arc<AtomicBool>,
}

/// The phone watchers running, by mount point.
#[derive(Default)]
pub struct Phones {
    watchers: HashMap<PathBuf, Watcher>,
    notices: Vec<EventBody>,
}

impl Phones {
    /// Follows the phone mounts of `mounts`: starts a watcher for each new one (and again
    /// for one whose watcher ended), stops those whose phone is gone. Files changed at or
    /// after `since_ns` (realtime ns) are passed on at each start.
    pub fn follow(
        &mut self,
        mounts: &crate::mounts::MountTable,
        since_ns: i64,
        tx: &SyncSender<WatchEvent>,
    ) {
        let phones: Vec<PathBuf> = mounts
            .known()
            .iter()
            .filter(|(_, d)| d.kind == "phone")
            .map(|(mp, _)| mp.clone())
            .collect();
        let notices = &mut self.notices;
        self.watchers.retain(|mp, w| {
            let mounted = phones.contains(mp);
            let keep = mounted && !w.ended.load(Ordering::Relaxed);
            if !keep {
                let _ = w.child.kill();
                let _ = w.child.wait();
            }
            if mounted && !keep {
                tracing::warn!(phone = %mp.display(), "a phone's watcher ended while the phone is mounted: started again");
                notices.push(EventBody::notice(
                    "phone_watch_restarted",
                    format!("the watcher of the phone mounted at {} ended (killed?) and was started again; files changed meanwhile are looked at again", mp.display()),
                    1,
                ));
            }
            keep
        });
        for mp in phones {
            if self.watchers.contains_key(&mp) {
                continue;
            }
            let Some((uid, gid)) = mounts.owner(&mp) else {
                continue;
            };
            let gvfs = mounts.is_gvfs(&mp);
            match start(&mp, (uid, gid, gvfs), since_ns, tx.clone()) {
                Ok(w) => {
                    tracing::info!(phone = %mp.display(), uid, "watching a phone");
                    self.watchers.insert(mp, w);
                }
                Err(e) => {
                    tracing::warn!(phone = %mp.display(), error = %e, "cannot watch a phone");
                    self.notices.push(EventBody::notice(
                        "phone_not_watched",
                        format!(
                            "the phone mounted at {} cannot be watched: {e}",
                            mp.display()
                        ),
                        1,
                    ));
                }
            }
        }
    }

    /// Notices about phones the agent could not watch.
    pub fn take_notices(&mut self) -> Vec<EventBody> {
        std::mem::take(&mut self.notices)
    }
}

impl Drop for Phones {
    fn drop(&mut self) {
        for w in self.watchers.values_mut() {
            let _ = w.child.kill();
            let _ = w.child.wait();
        }
    }
}

/// Starts the watcher of the phone at `mount` as its owner, and a thread that turns what it
/// passes on into [`WatchEvent::Phone`]s.
fn start(
    mount: &Path,
    (uid, gid, gvfs): (u32, u32, bool),
    since_ns: i64,
    tx: SyncSender<WatchEvent>,
) -> std::io::Result<Watcher> {
    use rustix::net::{socketpair, AddressFamily, SocketFlags, SocketType};
    use std::os::unix::process::CommandExt;
    let (ours, theirs) = socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?;
    let exe = std::fs::read_link("/proc/self/exe")?;
    // As root, `uid` drops the supplementary groups too.
    let child = Command::new(exe)
        .arg("phone-watch")
        .arg("--mount")
        .arg(mount)
        .arg("--since-ns")
        .arg(since_ns.to_string())
        .args(gvfs.then_some("--gvfs"))
        .env_clear()
        .env("RUST_LOG", "warn")
        .current_dir("/")
        .stdin(Stdio::from(theirs))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .gid(gid)
        .uid(uid)
        .spawn()?;
    let ended = Arc::new(AtomicBool::new(false));
    let (done, mount) = (ended.clone(), mount.to_path_buf());
    std::thread::Builder::new()
        .name("holdfast-phone".into())
        .spawn(move || {
            receive(&ours, &mount, &tx);
            done.store(true, Ordering::Relaxed);
        })?;
    Ok(Watcher { child, ended })
}

/// Receives the watcher's files until it ends (or the agent stops listening).
fn receive(socket: &OwnedFd, mount: &Path, tx: &SyncSender<WatchEvent>) {
    loop {
        let Some((name, fd)) = receive_one(socket) else {
            return;
        };
        let Some(rel) = checked_name(&name) else {
            tracing::warn!(phone = %mount.display(), "a phone watcher sent a name that is no relative path: ignored");
            continue;
        };
        if !plausible(fd.as_fd()) {
            continue;
        }
        // Held descriptors are few: wait for one rather than lose the file.
        let file = loop {
            let Ok(dup) = fd.try_clone() else { break None };
            if let Some(h) = HeldRead::hold(dup) {
                break Some(h);
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let Some(file) = file else { continue };
        let ev = WatchEvent::Phone(PhoneFile {
            path: mount.join(rel),
            file: Arc::new(file),
        });
        if tx.send(ev).is_err() {
            return;
        }
    }
}

/// Whether a descriptor the watcher sent may be a file on the phone: a regular file, or one
/// the kernel will not describe to root (a FUSE file of another user's mount).
fn plausible(fd: BorrowedFd<'_>) -> bool {
    match nix::sys::stat::fstat(fd) {
        Ok(st) => (st.st_mode & nix::libc::S_IFMT) == nix::libc::S_IFREG,
        Err(e) => e == nix::errno::Errno::EACCES,
    }
}

/// A name from the watcher, if it is a plain relative path.
fn checked_name(name: &str) -> Option<PathBuf> {
    let p = Path::new(name);
    let plain = !name.is_empty()
        && p.components().all(|c| matches!(c, Component::Normal(_)))
        && !name.contains('\0');
    plain.then(|| p.to_path_buf())
}

/// One message: a name and a descriptor. `None` when the socket closed or failed.
fn receive_one(socket: &OwnedFd) -> Option<(String, OwnedFd)> {
    use rustix::net::{recvmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    use std::mem::MaybeUninit;
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        // Room for a few descriptors: more than one in a message is refused below.
        let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(4))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let msg = match recvmsg(socket, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC) {
            Ok(m) => m,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return None,
        };
        let mut fds: Vec<OwnedFd> = Vec::new();
        for c in control.drain() {
            if let RecvAncillaryMessage::ScmRights(received) = c {
                fds.extend(received);
            }
        }
        let n = msg.bytes;
        if n == 0 && fds.is_empty() {
            return None;
        }
        let name = String::from_utf8_lossy(&buf[..n.min(MAX_MESSAGE)]).into_owned();
        // A message without exactly one descriptor is no file: skipped.
        if fds.len() == 1 {
            return fds.pop().map(|fd| (name, fd));
        }
    }
}

/// What a phone mount holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One phone (jmtpfs, ifuse, a mount named as gvfs names phones).
    Phone,
    /// gvfs's own mount: phones are the folders named as phones at its top.
    Gvfs,
}

/// `holdfast-agent phone-watch`: runs as the phone mount's owner, with the socket to the
/// agent as standard input; returns when the agent or the mount is gone. With `gvfs`, the
/// mount is gvfs's own: only its phones' folders are watched, and a phone's folder that
/// appears (a phone plugged in) holds nothing new until something is written to it.
pub fn watch_as_owner(mount: &Path, since_ns: i64, layout: Layout) -> anyhow::Result<()> {
    let gvfs = layout == Layout::Gvfs;
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
    // Standard input is the socket the agent gave this process.
    let stdin = std::io::stdin();
    let socket = stdin.as_fd();
    let ino = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)?;
    let mask = AddWatchFlags::IN_CLOSE_WRITE
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_ONLYDIR
        | AddWatchFlags::IN_DONT_FOLLOW;
    let mut dirs: HashMap<nix::sys::inotify::WatchDescriptor, PathBuf> = HashMap::new();
    let mut w = PhoneWalk {
        ino: &ino,
        mask,
        dirs: &mut dirs,
        socket,
        mount,
        gvfs,
    };
    w.walk(Path::new(""), since_ns, 0)?;
    let mut listed = std::time::Instant::now();
    loop {
        // gvfs adds a phone's folder without a write the kernel sees: its top is listed
        // again every GVFS_RELIST for folders not watched yet (a phone plugged in).
        if gvfs && listed.elapsed() >= GVFS_RELIST {
            listed = std::time::Instant::now();
            w.new_phones()?;
        }
        let mut fds = [
            PollFd::new(ino.as_fd(), PollFlags::POLLIN),
            PollFd::new(socket, PollFlags::empty()),
        ];
        poll(&mut fds, PollTimeout::from(1000u16))?;
        let hup = fds[1]
            .revents()
            .is_some_and(|r| r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR));
        if hup {
            return Ok(());
        }
        let events = match ino.read_events() {
            Ok(evs) => evs,
            Err(nix::errno::Errno::EAGAIN) => continue,
            Err(e) => return Err(e.into()),
        };
        for ev in events {
            if ev.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                // Events lost: look again at what changed in the last minute.
                let recent = realtime_ns() - 60_000_000_000;
                w.walk(Path::new(""), recent, 0)?;
                continue;
            }
            if ev.mask.contains(AddWatchFlags::IN_IGNORED)
                && w.dirs.remove(&ev.wd).is_some()
                && w.dirs.is_empty()
            {
                // The phone's top folder is gone: unmounted.
                return Ok(());
            }
            let (Some(dir), Some(name)) = (w.dirs.get(&ev.wd).cloned(), ev.name) else {
                continue;
            };
            let rel = dir.join(name);
            let top = dir.as_os_str().is_empty();
            if ev.mask.contains(AddWatchFlags::IN_ISDIR) {
                // A folder made or moved in: watched, and what it holds passed on. In gvfs's
                // mount a folder at the top is a phone (plugged in: what is on it is no
                // news), or no phone at all.
                let made = ev
                    .mask
                    .intersects(AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO);
                let phone = rel.to_str().and_then(crate::mounts::gvfs_phone).is_some();
                if made && gvfs && top && phone {
                    w.walk(&rel, realtime_ns(), 1)?;
                } else if made && !(gvfs && top) {
                    w.walk(&rel, i64::MIN, rel.components().count())?;
                }
            } else if gvfs && top {
                // A file in gvfs's mount itself is on no phone.
            } else if ev
                .mask
                .intersects(AddWatchFlags::IN_CLOSE_WRITE | AddWatchFlags::IN_MOVED_TO)
                && !w.send(&rel)?
            {
                return Ok(());
            }
        }
    }
}

fn realtime_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// The watcher's walk over the phone: watches folders, passes on files.
struct PhoneWalk<'a> {
    ino: &'a nix::sys::inotify::Inotify,
    mask: nix::sys::inotify::AddWatchFlags,
    dirs: &'a mut HashMap<nix::sys::inotify::WatchDescriptor, PathBuf>,
    socket: BorrowedFd<'a>,
    mount: &'a Path,
    /// gvfs's own mount: only the folders named as phones, at its top, are walked.
    gvfs: bool,
}

impl PhoneWalk<'_> {
    /// Watches `rel` and the folders under it; passes on the files changed at or after
    /// `since_ns`.
    fn walk(&mut self, rel: &Path, since_ns: i64, depth: usize) -> anyhow::Result<()> {
        use std::os::unix::fs::MetadataExt;
        if depth > MAX_DEPTH || self.dirs.len() >= MAX_DIRS {
            return Ok(());
        }
        let dir = self.mount.join(rel);
        // A folder gone meanwhile (or one the kernel will not watch) is passed over.
        let Ok(wd) = self.ino.add_watch(&dir, self.mask) else {
            return Ok(());
        };
        self.dirs.insert(wd, rel.to_path_buf());
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(());
        };
        let top = depth == 0;
        for e in entries.flatten() {
            let Ok(t) = e.file_type() else { continue };
            let child = rel.join(e.file_name());
            if self.gvfs && top {
                let phone = e
                    .file_name()
                    .to_str()
                    .and_then(crate::mounts::gvfs_phone)
                    .is_some();
                if t.is_dir() && phone {
                    self.walk(&child, since_ns, depth + 1)?;
                }
                continue;
            }
            if t.is_dir() {
                self.walk(&child, since_ns, depth + 1)?;
            } else if t.is_file() {
                let changed = e
                    .metadata()
                    .map(|m| m.ctime() * 1_000_000_000 + m.ctime_nsec());
                if changed.is_ok_and(|c| c >= since_ns) && !self.send(&child)? {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// In gvfs's mount: watches the phones' folders that appeared since the last look;
    /// what they hold is on the phone already, no news.
    fn new_phones(&mut self) -> anyhow::Result<()> {
        let Ok(entries) = std::fs::read_dir(self.mount) else {
            return Ok(());
        };
        let now = realtime_ns();
        for e in entries.flatten() {
            let name = e.file_name();
            let rel = PathBuf::from(&name);
            let phone = name.to_str().and_then(crate::mounts::gvfs_phone).is_some();
            if phone
                && e.file_type().is_ok_and(|t| t.is_dir())
                && !self.dirs.values().any(|d| *d == rel)
            {
                self.walk(&rel, now, 1)?;
            }
        }
        Ok(())
    }

    /// Passes the file at `rel` on to the agent, opened here; false once the agent is gone.
    fn send(&self, rel: &Path) -> anyhow::Result<bool> {
        use rustix::net::{sendmsg, SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
        use std::mem::MaybeUninit;
        use std::os::unix::fs::OpenOptionsExt;
        let Some(name) = rel.to_str() else {
            return Ok(true);
        };
        let opened = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
            .open(self.mount.join(rel));
        let Ok(file) = opened else { return Ok(true) };
        if !file.metadata().is_ok_and(|m| m.is_file()) {
            return Ok(true);
        }
        let fds = [file.as_fd()];
        let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        control.push(SendAncillaryMessage::ScmRights(&fds));
        match sendmsg(
            self.socket,
            &[IoSlice::new(name.as_bytes())],
            &mut control,
            SendFlags::NOSIGNAL,
        ) {
            Ok(_) => Ok(true),
            Err(rustix::io::Errno::PIPE | rustix::io::Errno::CONNRESET) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_names_are_taken_from_a_watcher() {
        let cases = [
            ("DCIM/contacts.csv", true),
            ("a.csv", true),
            ("", false),
            ("/etc/shadow", false),
            ("../x", false),
            ("a/../../x", false),
            ("./a", false),
        ];
        for (name, ok) in cases {
            assert_eq!(checked_name(name).is_some(), ok, "{name}");
        }
    }
}
