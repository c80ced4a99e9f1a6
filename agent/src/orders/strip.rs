//! The strip-access action: files the order names lose their permissions (mode 0) and are
//! listed so a restore can give them back exactly.

use super::{append_jsonl, fail, note, open_target, read_jsonl, receipt, Executor};
use crate::safe_fs::{self, Kind};
use holdfast_shared::order::ActionReceipt;
use holdfast_shared::time::UnixMs;
use serde::{Deserialize, Serialize};
use std::os::fd::AsFd;
use std::path::PathBuf;

/// One folder whose access was stripped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct StrippedEntry {
    pub(super) path: String,
    #[serde(flatten)]
    pub(super) saved: crate::access::Saved,
    pub(super) time_ms: UnixMs,
    /// Which folder it was: a restore gives access back to that one only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) ident: Option<safe_fs::Identity>,
}

impl Executor {
    pub(super) fn stripped_path(&self) -> PathBuf {
        self.root().join("stripped.jsonl")
    }

    pub(super) fn strip(&self, paths: &[String], now_ms: UnixMs) -> ActionReceipt {
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
}
