//! The purge action: CRM caches and synced copies the order names are removed, never through
//! a link and never above the home directory.

use super::{fail, note, receipt, Executor};
use crate::safe_fs;
use holdfast_shared::order::ActionReceipt;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

impl Executor {
    pub(super) fn purge(&self, paths: &[String]) -> ActionReceipt {
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
}
