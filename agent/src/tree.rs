//! Walking directory trees, bounded and without following symlinks: the one walker behind
//! the startup index, rescans after a lost event, polled roots, new folders, and the
//! offboarding quarantine and purge.

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
}

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

/// Lists the regular files under `root` (or `root` itself when it is a file), skipping
/// anything under `skip`.
pub fn walk(root: &Path, skip: &Path, limits: Limits) -> Walked {
    let mut out = Walked::default();
    let mut stack: Vec<(PathBuf, usize)> = vec![(root.to_path_buf(), 0)];
    while let Some((path, depth)) = stack.pop() {
        if path.starts_with(skip) {
            continue;
        }
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_file() {
            if out.files.len() >= limits.max_files {
                out.truncated = true;
                break;
            }
            out.files.push((path, Stamp::of(&meta)));
            continue;
        }
        if !meta.is_dir() {
            continue;
        }
        if depth >= limits.max_depth {
            out.truncated = true;
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&path) else {
            continue;
        };
        out.dirs += 1;
        let mut children: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        // Reversed onto the stack, so files come out in sorted order.
        children.sort_unstable_by(|a, b| b.cmp(a));
        stack.extend(children.into_iter().map(|c| (c, depth + 1)));
    }
    out
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
