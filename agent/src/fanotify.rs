//! The read-monitoring adapter: the only module that touches fanotify. It reports every read
//! of a file under the customer-data folders of the bulk-read rules, with the reader's pid,
//! uid, user name and executable, as [`WatchEvent::Read`]s on the watch channel. A read is a
//! file opened without write access and closed again (`FAN_CLOSE_NOWRITE`): saving a file is
//! not reading it. The reader is looked up when it opens the file (`FAN_OPEN`), since by the
//! close it may have exited; the last [`MAX_PROCESSES`] readers are remembered by pid. A
//! reader that exits before the agent handles its first open (within a millisecond or so)
//! is reported with its pid only.
//!
//! fanotify needs `CAP_SYS_ADMIN`. Each directory under the folders gets a mark for opens of
//! its files (an inode mark, like an inotify watch, so only these folders wake the agent, not
//! every open on the machine); the folders are walked again every [`REMARK`] for new
//! directories and for folders that appear (a share mounted later). Without the privilege,
//! [`start`] fails and the agent falls back to inotify's open events (see `daemon`).

use crate::watch::WatchEvent;
use holdfast_shared::event::Process;
use holdfast_shared::reads::Open;
use nix::fcntl::AT_FDCWD;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::fanotify::{EventFFlags, Fanotify, InitFlags, MarkFlags, MaskFlags};
use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the folders are walked again for new directories.
pub const REMARK: Duration = Duration::from_secs(30);
/// Most directories marked (a mark costs the kernel about as much as an inotify watch).
pub const MAX_MARKS: usize = 200_000;
/// Most readers remembered between their open and their close.
pub const MAX_PROCESSES: usize = 4096;

/// Why read monitoring through fanotify could not start.
#[derive(Debug, thiserror::Error)]
pub enum ReadsError {
    /// The kernel refused a fanotify group: no `CAP_SYS_ADMIN`, or no fanotify.
    #[error("fanotify is not available ({0}): it needs CAP_SYS_ADMIN (run the agent as root or grant it the capability)")]
    Unavailable(nix::Error),
    /// The reading thread could not be started.
    #[error("starting the read-monitoring thread: {0}")]
    Thread(std::io::Error),
}

/// A running monitor; dropping it stops the thread within a second.
pub struct ReadMonitor {
    stop: Arc<AtomicBool>,
    /// Opens dropped because the watch channel was full.
    pub dropped: Arc<AtomicU64>,
    /// Directories marked so far.
    pub marked: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for ReadMonitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts monitoring opens under `folders` (which need not exist yet).
pub fn start(folders: Vec<PathBuf>, tx: SyncSender<WatchEvent>) -> Result<ReadMonitor, ReadsError> {
    let fan = Fanotify::init(
        InitFlags::FAN_CLASS_NOTIF | InitFlags::FAN_CLOEXEC | InitFlags::FAN_NONBLOCK,
        EventFFlags::O_RDONLY | EventFFlags::O_CLOEXEC | EventFFlags::O_LARGEFILE,
    )
    .map_err(ReadsError::Unavailable)?;
    let stop = Arc::new(AtomicBool::new(false));
    let dropped = Arc::new(AtomicU64::new(0));
    let marked = Arc::new(AtomicU64::new(0));
    let mut m = Monitor {
        fan,
        folders,
        marked_dirs: HashSet::new(),
        users: HashMap::new(),
        processes: HashMap::new(),
        own_pid: std::process::id(),
        tx,
        dropped: dropped.clone(),
        marked: marked.clone(),
    };
    m.remark();
    let s = stop.clone();
    let thread = std::thread::Builder::new()
        .name("holdfast-reads".into())
        .spawn(move || m.run(&s))
        .map_err(ReadsError::Thread)?;
    Ok(ReadMonitor {
        stop,
        dropped,
        marked,
        thread: Some(thread),
    })
}

struct Monitor {
    fan: Fanotify,
    folders: Vec<PathBuf>,
    marked_dirs: HashSet<PathBuf>,
    /// uid → user name, as the device knows it.
    users: HashMap<u32, Option<String>>,
    /// pid → who it was when it last opened a file here.
    processes: HashMap<u32, Process>,
    own_pid: u32,
    tx: SyncSender<WatchEvent>,
    dropped: Arc<AtomicU64>,
    marked: Arc<AtomicU64>,
}

impl Monitor {
    fn run(mut self, stop: &AtomicBool) {
        let mut last_mark = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            if last_mark.elapsed() >= REMARK {
                self.remark();
                last_mark = Instant::now();
            }
            let ready = {
                let mut fds = [PollFd::new(self.fan.as_fd(), PollFlags::POLLIN)];
                poll(&mut fds, PollTimeout::from(1000u16)).unwrap_or(0)
            };
            if ready <= 0 {
                continue;
            }
            let events = match self.fan.read_events() {
                Ok(evs) => evs,
                Err(nix::errno::Errno::EAGAIN) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "reading fanotify events");
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            for ev in events {
                let pid = u32::try_from(ev.pid()).unwrap_or(0);
                if pid == self.own_pid {
                    continue;
                }
                let Some(fd) = ev.fd() else {
                    // The kernel's queue overflowed: opens were lost.
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                if ev.mask().contains(MaskFlags::FAN_OPEN) {
                    let p = self.process(pid);
                    if p.exe.is_some() {
                        if self.processes.len() >= MAX_PROCESSES {
                            self.processes.clear();
                        }
                        self.processes.insert(pid, p);
                    }
                }
                if !ev.mask().contains(MaskFlags::FAN_CLOSE_NOWRITE) {
                    continue;
                }
                let Ok(path) = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
                else {
                    continue;
                };
                let process = match self.processes.get(&pid) {
                    Some(p) => p.clone(),
                    None => self.process(pid),
                };
                let open = Open {
                    path: path.display().to_string(),
                    process,
                    time_ms: crate::clock::now_ms(),
                };
                match self.tx.try_send(WatchEvent::Read(open)) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => {
                        self.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(TrySendError::Disconnected(_)) => return,
                }
            }
        }
    }

    /// Who `pid` is: uid from `/proc/PID/status`, the executable's path, the user's name.
    fn process(&mut self, pid: u32) -> Process {
        let uid = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| real_uid(&s));
        let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
            .ok()
            .map(|p| p.display().to_string());
        let user = uid.and_then(|u| {
            self.users
                .entry(u)
                .or_insert_with(|| {
                    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(u))
                        .ok()
                        .flatten()
                        .map(|u| u.name)
                })
                .clone()
        });
        Process {
            pid,
            uid,
            user,
            exe,
        }
    }

    /// Marks every directory under the folders not marked yet.
    fn remark(&mut self) {
        let mut stack: Vec<PathBuf> = self
            .folders
            .iter()
            .filter(|f| f.is_dir())
            .cloned()
            .collect();
        while let Some(dir) = stack.pop() {
            if self.marked_dirs.len() >= MAX_MARKS {
                break;
            }
            if !self.marked_dirs.contains(&dir) {
                match self.fan.mark(
                    MarkFlags::FAN_MARK_ADD | MarkFlags::FAN_MARK_DONT_FOLLOW,
                    MaskFlags::FAN_OPEN
                        | MaskFlags::FAN_CLOSE_NOWRITE
                        | MaskFlags::FAN_EVENT_ON_CHILD,
                    AT_FDCWD,
                    Some(dir.as_path()),
                ) {
                    Ok(()) => {
                        self.marked_dirs.insert(dir.clone());
                    }
                    Err(e) => {
                        tracing::debug!(dir = %dir.display(), error = %e, "cannot mark folder");
                        continue;
                    }
                }
            }
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
        }
        // Folders that went away (a share unmounted) are marked again when they return.
        self.marked_dirs.retain(|d| Path::new(d).is_dir());
        self.marked
            .store(self.marked_dirs.len() as u64, Ordering::Relaxed);
    }
}

/// The real uid on the `Uid:` line of `/proc/PID/status`.
fn real_uid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|u| u.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As root, another process's read of a file in a marked folder arrives with its reader;
    /// without the privilege, starting says why.
    #[test]
    fn reads_arrive_with_their_reader() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("sub/a.csv");
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(&f, "email\nada@example.com\n").unwrap();
        let (tx, rx) = std::sync::mpsc::sync_channel(16);
        let m = match start(vec![dir.path().to_path_buf()], tx) {
            Ok(m) => m,
            Err(e) => {
                assert!(e.to_string().contains("CAP_SYS_ADMIN"), "{e}");
                return;
            }
        };
        assert_eq!(m.marked.load(Ordering::Relaxed), 2);
        // A reader that is still there when the agent looks it up (one that exits within
        // microseconds of its open may be reported without its executable).
        let ok = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg("read -r line < \"$0\"; sleep 1")
            .arg(&f)
            .output()
            .unwrap();
        assert!(ok.status.success());
        let ev = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        let WatchEvent::Read(open) = ev else {
            panic!("{ev:?}")
        };
        assert_eq!(open.path, f.display().to_string());
        let sh = std::fs::canonicalize("/bin/sh").unwrap();
        assert_eq!(open.process.exe.as_deref(), Some(sh.to_str().unwrap()));
        assert_eq!(open.process.uid, Some(0));
    }

    #[test]
    fn the_real_uid_is_read_from_the_status_line() {
        let status = "Name:\tcat\nUmask:\t0022\nState:\tR (running)\nUid:\t1000\t1000\t1000\t1000\nGid:\t1000\n";
        assert_eq!(real_uid(status), Some(1000));
        assert_eq!(real_uid("Name: x\n"), None);
        assert_eq!(real_uid("Uid:\tnope\n"), None);
    }
}
