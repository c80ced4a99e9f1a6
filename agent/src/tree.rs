//! Walking directory trees, bounded and without following symlinks: the one walker behind
//! the startup index, rescans after a lost event, polled roots, new folders, and the
//! offboarding quarantine. Folders are opened by descriptor (`safe_fs`): no link is ever
//! followed, not even one swapped in for a folder mid-walk.

use crate::safe_fs::{self, Kind, Stat};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// How far a walk may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_files: usize,
    pub max_depth: usize,
}

/// What a file looked like: enough to tell whether it changed since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub len: u64,
    pub mtime_ns: i64,
    pub ino: u64,
}

impl Stamp {
    pub fn of(m: &std::fs::Metadata) -> Stamp {
        Stamp {
            len: m.len(),
            mtime_ns: m.mtime().saturating_mul(1_000_000_000) + m.mtime_nsec(),
            ino: m.ino(),
        }
    }

    /// This stamp, marked as not to be trusted: it never equals a file's stamp, so the file
    /// is read again at the next look. For a file read within [`RACY`] of its last change:
    /// the kernel's file times are coarse (a few milliseconds), so a write in the same tick
    /// as the read, of the same size, would leave the stamp as it was.
    pub fn untrusted(self) -> Stamp {
        Stamp {
            mtime_ns: i64::MIN,
            ..self
        }
    }

    /// Whether a file with this stamp, looked at `now_ns` (wall clock), may still change
    /// without its stamp changing.
    pub fn is_racy(&self, now_ns: i64) -> bool {
        now_ns.saturating_sub(self.mtime_ns) < RACY.as_nanos() as i64
    }

    pub fn of_stat(s: &Stat) -> Stamp {
        Stamp {
            len: s.len,
            mtime_ns: s.mtime_ns,
            ino: s.ino,
        }
    }
}

/// A moment on the clock the kernel stamps file changes with (the coarse wall clock), so
/// that a file changed at or after it has a change time (ctime) at or after it. What a
/// first look finds changed since the watch began is news, not baseline: the watch saw it
/// happen (or should have), and the look came too late to tell it from what was there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ChangeClock(i64);

impl ChangeClock {
    /// Nanoseconds since the epoch.
    pub fn ns(self) -> i64 {
        self.0
    }

    /// Now on the kernel's coarse wall clock: it lags the fine clock by up to a tick, as the
    /// file times do, so a change after this call never carries an earlier time.
    pub fn now() -> ChangeClock {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse);
        ChangeClock(
            t.tv_sec
                .saturating_mul(1_000_000_000)
                .saturating_add(t.tv_nsec),
        )
    }

    /// Whether a file with this stat changed at or after this moment.
    pub fn changed_since(self, st: &Stat) -> bool {
        st.ctime_ns >= self.0
    }
}

/// How recent a change must be for a stamp not to be trusted (see [`Stamp::untrusted`]).
pub const RACY: std::time::Duration = std::time::Duration::from_millis(50);

/// A walk's result.
#[derive(Debug, Default)]
pub struct Walked {
    /// Regular files, in sorted order, with their stamps.
    pub files: Vec<(PathBuf, Stamp)>,
    /// Directories entered.
    pub dirs: u64,
    /// The walk stopped at a limit: more files exist than were listed.
    pub truncated: bool,
}

/// Names listed from one folder, at most.
const LIST_MAX: usize = 1_000_000;

/// Lists the regular files under `root` (or `root` itself when it is a file), skipping
/// the folder `skip` (the agent's own data: recognised by device and inode, not by name).
pub fn walk(root: &Path, skip: &Path, limits: Limits) -> Walked {
    let mut files = Vec::new();
    let (dirs, truncated) = visit(root, skip, limits, |p, s| files.push((p, s)));
    Walked {
        files,
        dirs,
        truncated,
    }
}

/// Like [`walk`], handing each file to `f` as it is found instead of listing them all, so a
/// walk of a large tree holds one directory's names at a time. Returns the directories
/// entered and whether a limit stopped the walk.
pub fn visit(
    root: &Path,
    skip: &Path,
    limits: Limits,
    mut f: impl FnMut(PathBuf, Stamp),
) -> (u64, bool) {
    visit_all(root, skip, limits, |p, st| {
        if st.kind == Kind::Regular {
            f(p, Stamp::of_stat(st));
        }
    })
}

/// Every name under `root` that is not a folder (regular files, links, FIFOs, sockets,
/// devices: `f` sees the kind), in sorted order. Each folder is opened through
/// `safe_fs::open_dir`, so a link swapped in for a folder is never followed, and a walk
/// never leaves `root` through one.
pub fn visit_all(
    root: &Path,
    skip: &Path,
    limits: Limits,
    mut f: impl FnMut(PathBuf, &Stat),
) -> (u64, bool) {
    let skip = safe_fs::stat_path(skip)
        .ok()
        .filter(|s| s.kind == Kind::Directory)
        .map(|s| s.identity());
    let (mut dirs, mut files, mut truncated) = (0u64, 0usize, false);
    let Ok(top) = safe_fs::stat_path(root) else {
        return (0, false);
    };
    // (path, depth, the stat of what is not a folder)
    let mut stack: Vec<(PathBuf, usize, Option<Stat>)> = vec![(
        root.to_path_buf(),
        0,
        (top.kind != Kind::Directory).then_some(top),
    )];
    while let Some((path, depth, leaf)) = stack.pop() {
        if let Some(st) = leaf {
            if files >= limits.max_files {
                truncated = true;
                break;
            }
            files += 1;
            f(path, &st);
            continue;
        }
        if depth >= limits.max_depth {
            truncated = true;
            continue;
        }
        let Ok(fd) = safe_fs::open_dir(&path) else {
            continue;
        };
        if skip.is_some() && safe_fs::stat(fd.as_fd()).ok().map(|s| s.identity()) == skip {
            continue;
        }
        let Ok(mut names) = safe_fs::list(fd.as_fd(), LIST_MAX) else {
            continue;
        };
        dirs += 1;
        // Reversed onto the stack, so files come out in sorted order.
        names.sort_unstable_by(|a, b| b.cmp(a));
        for name in names {
            let Ok(st) = safe_fs::stat_at(fd.as_fd(), &name) else {
                continue;
            };
            let leaf = (st.kind != Kind::Directory).then_some(st);
            stack.push((path.join(name), depth + 1, leaf));
        }
    }
    (dirs, truncated)
}

/// Whether `name` matches `pattern`, where `*` stands for any run of characters.
fn wildcard(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, rest)) => {
            let Some(tail) = name.strip_prefix(head) else {
                return false;
            };
            (0..=tail.len())
                .filter(|i| tail.is_char_boundary(*i))
                .any(|i| wildcard(rest, &tail[i..]))
        }
    }
}

/// The existing directories a folder pattern names: absolute, `*` allowed within a path
/// segment (`/home/ana/Library/CloudStorage/OneDrive-*`). At most 64 results.
pub fn existing_dirs(pattern: &Path) -> Vec<PathBuf> {
    let mut found = vec![PathBuf::from("/")];
    for seg in pattern.components().skip(1) {
        let seg = seg.as_os_str().to_string_lossy();
        let mut next = Vec::new();
        for base in &found {
            if seg.contains('*') {
                let Ok(listed) =
                    safe_fs::open_dir(base).and_then(|fd| safe_fs::list(fd.as_fd(), 4096))
                else {
                    continue;
                };
                let mut names: Vec<PathBuf> = listed
                    .into_iter()
                    .filter(|n| wildcard(&seg, &n.to_string_lossy()))
                    .map(|n| base.join(n))
                    .collect();
                names.sort();
                next.extend(names);
            } else {
                next.push(base.join(seg.as_ref()));
            }
            if next.len() >= 64 {
                break;
            }
        }
        found = next;
    }
    found.retain(|p| safe_fs::stat_path(p).is_ok_and(|s| s.kind == Kind::Directory));
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(limits: Limits, want: &[&str], truncated: bool) {
        let dir = tempfile::tempdir().unwrap();
        for p in ["a/1.csv", "a/b/2.csv", "a/b/c/3.csv", "own/x", "z.csv"] {
            let f = dir.path().join(p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(&f, p).unwrap();
        }
        std::os::unix::fs::symlink(dir.path().join("a"), dir.path().join("link")).unwrap();
        let w = walk(dir.path(), &dir.path().join("own"), limits);
        let got: Vec<String> = w
            .files
            .iter()
            .map(|(p, _)| p.strip_prefix(dir.path()).unwrap().display().to_string())
            .collect();
        assert_eq!(got, want);
        assert_eq!(w.truncated, truncated);
        if let Some((p, s)) = w.files.first() {
            assert_eq!(s.len, std::fs::metadata(p).unwrap().len());
        }
    }

    #[test]
    fn folder_patterns_find_the_existing_folders() {
        let dir = tempfile::tempdir().unwrap();
        for p in [
            "CloudStorage/OneDrive-Corp",
            "CloudStorage/OneDrive-Personal",
            "CloudStorage/Dropbox",
            "WeChat Files/wxid_1/FileStorage/File",
        ] {
            std::fs::create_dir_all(dir.path().join(p)).unwrap();
        }
        let got = |pat: &str| -> Vec<String> {
            existing_dirs(&dir.path().join(pat))
                .iter()
                .map(|p| p.strip_prefix(dir.path()).unwrap().display().to_string())
                .collect()
        };
        assert_eq!(
            got("CloudStorage/OneDrive-*"),
            [
                "CloudStorage/OneDrive-Corp",
                "CloudStorage/OneDrive-Personal"
            ]
        );
        assert_eq!(
            got("WeChat Files/*/FileStorage/File"),
            ["WeChat Files/wxid_1/FileStorage/File"]
        );
        assert_eq!(got("CloudStorage/Dropbox"), ["CloudStorage/Dropbox"]);
        assert!(got("Nowhere/*").is_empty());
        assert!(wildcard("a*b*c", "aXXbYc") && !wildcard("a*b", "ac"));
    }

    #[test]
    fn walks_sorted_bounded_skipping_own_data_and_symlinks() {
        let all = Limits {
            max_files: 100,
            max_depth: 64,
        };
        check(
            all,
            &["a/1.csv", "a/b/2.csv", "a/b/c/3.csv", "z.csv"],
            false,
        );
        check(
            Limits {
                max_files: 2,
                max_depth: 64,
            },
            &["a/1.csv", "a/b/2.csv"],
            true,
        );
        check(
            Limits {
                max_files: 100,
                max_depth: 2,
            },
            &["a/1.csv", "z.csv"],
            true,
        );
    }
}
