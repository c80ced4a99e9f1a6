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

use crate::identity::{write_file_atomic, Identity};
use holdfast_shared::edm::Matcher;
use holdfast_shared::order::{ActionReceipt, Order, OrderAction, OrderError};
use holdfast_shared::signed::{kind, Signed, VerifyError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::{BufRead, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
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
    pub original: String,
    /// File name inside the order's quarantine folder.
    pub stored: String,
    pub sha256: String,
    pub size: u64,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub time_ms: i64,
    pub order_id: String,
}

/// One folder whose access was stripped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StrippedEntry {
    path: String,
    #[serde(flatten)]
    saved: crate::access::Saved,
    time_ms: i64,
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

fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(hex::encode(h.finalize()))
}

/// Moves a file: a rename on the same file system, otherwise copy, sync, then remove.
fn move_file(from: &Path, to: &Path) -> std::io::Result<()> {
    match std::fs::rename(from, to) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(18) => {
            std::fs::copy(from, to)?;
            std::fs::File::open(to)?.sync_all()?;
            std::fs::remove_file(from)
        }
        Err(e) => Err(e),
    }
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

    fn quarantine_dir(&self, order_id: &str) -> std::io::Result<PathBuf> {
        let base = self.root().join("quarantine");
        std::fs::create_dir_all(&base)?;
        std::fs::set_permissions(self.root(), std::fs::Permissions::from_mode(0o700))?;
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o700))?;
        let dir = base.join(order_id);
        std::fs::create_dir_all(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        Ok(dir)
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
        let dir = match self.quarantine_dir(order_id) {
            Ok(d) => d,
            Err(e) => {
                fail(&mut r, format!("cannot create the quarantine: {e}"));
                return r;
            }
        };
        let mut files = Vec::new();
        for root in &roots {
            files.extend(walk(
                root,
                &self.data_dir,
                MAX_WALK - files.len().min(MAX_WALK),
            ));
        }
        if files.len() >= MAX_WALK {
            fail(
                &mut r,
                format!("more than {MAX_WALK} files; the rest were not examined"),
            );
        }
        let manifest_path = dir.join("manifest.jsonl");
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
        let mut named = 0;
        for path in files {
            let Ok(report) = crate::scan::scan_file(&path, edm.clone()) else {
                continue;
            };
            let s = &report.summary;
            let customer = (s.customer_table && s.records >= min_records)
                || s.findings.get("edm").copied().unwrap_or(0) >= min_records;
            if !customer {
                continue;
            }
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            r.items += 1;
            let stored = format!(
                "{:06}-{}",
                r.items,
                path.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            );
            let target = dir.join(&stored);
            let moved = move_file(&path, &target)
                .and_then(|()| {
                    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600))
                })
                .and_then(|()| sha256_file(&target));
            match moved {
                Ok(sha256) => {
                    if is_root() {
                        let _ = std::os::unix::fs::chown(&target, Some(0), Some(0));
                    }
                    r.bytes += meta.len();
                    let entry = QuarantineEntry {
                        original: path.display().to_string(),
                        stored,
                        sha256,
                        size: meta.len(),
                        uid: meta.uid(),
                        gid: meta.gid(),
                        mode: meta.mode() & 0o7777,
                        time_ms: now_ms,
                        order_id: order_id.to_string(),
                    };
                    let line = serde_json::to_string(&entry).unwrap_or_default();
                    if let Err(e) = writeln!(manifest, "{line}").and_then(|()| manifest.sync_all())
                    {
                        fail(&mut r, format!("manifest: {e}"));
                    }
                    if named < DETAIL_PATHS {
                        note(&mut r, entry.original);
                        named += 1;
                    }
                }
                Err(e) => fail(&mut r, format!("{}: {e}", path.display())),
            }
        }
        r
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
        for p in paths {
            let path = self.expand(p);
            let meta = match std::fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() || m.is_file() => m,
                Ok(_) => {
                    note(
                        &mut r,
                        format!("{}: not a folder or file, left alone", path.display()),
                    );
                    continue;
                }
                Err(_) => {
                    note(&mut r, format!("{}: not present", path.display()));
                    continue;
                }
            };
            let shown = path.display().to_string();
            // The first recorded state is the one to give back.
            if !already.iter().any(|e| e.path == shown) {
                let entry = StrippedEntry {
                    path: shown.clone(),
                    saved: crate::access::snapshot(&meta),
                    time_ms: now_ms,
                };
                if let Err(e) = append_jsonl(&self.stripped_path(), &entry) {
                    fail(
                        &mut r,
                        format!("{shown}: cannot record its access, left alone: {e}"),
                    );
                    continue;
                }
            }
            match crate::access::take_away(&path) {
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
        for p in paths {
            let path = self.expand(p);
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let (files, bytes) = if meta.is_dir() {
                let all = walk(&path, &self.data_dir, MAX_WALK);
                let bytes = all
                    .iter()
                    .filter_map(|f| std::fs::symlink_metadata(f).ok())
                    .map(|m| m.len())
                    .sum();
                (all.len() as u64, bytes)
            } else {
                (1, meta.len())
            };
            let removed = if meta.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            match removed {
                Ok(()) => {
                    r.items += files;
                    r.bytes += bytes;
                    note(
                        &mut r,
                        format!("{}: {files} files, {bytes} bytes removed", path.display()),
                    );
                }
                Err(e) => fail(&mut r, format!("{}: {e}", path.display())),
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
            let path = Path::new(&e.path);
            match crate::access::give_back(path, &e.saved) {
                Ok(()) => r.items += 1,
                Err(err) => {
                    all_ok = false;
                    fail(&mut r, format!("{}: {err}", e.path));
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
            let mut left = 0;
            for e in &entries {
                let stored = d.path().join(&e.stored);
                if !stored.exists() {
                    continue;
                }
                let original = Path::new(&e.original);
                if original.exists() {
                    left += 1;
                    fail(
                        &mut r,
                        format!("{}: a file is there now; kept in quarantine", e.original),
                    );
                    continue;
                }
                let res = (|| -> std::io::Result<()> {
                    if sha256_file(&stored)? != e.sha256 {
                        return Err(std::io::Error::other(
                            "quarantined copy does not match the manifest",
                        ));
                    }
                    if let Some(parent) = original.parent() {
                        std::fs::create_dir_all(parent)?;
                    }
                    move_file(&stored, original)?;
                    std::fs::set_permissions(original, std::fs::Permissions::from_mode(e.mode))?;
                    if is_root() {
                        std::os::unix::fs::chown(original, Some(e.uid), Some(e.gid))?;
                    }
                    Ok(())
                })();
                match res {
                    Ok(()) => {
                        r.items += 1;
                        r.bytes += e.size;
                    }
                    Err(err) => {
                        left += 1;
                        fail(&mut r, format!("{}: {err}", e.original));
                    }
                }
            }
            if left == 0 {
                let _ = std::fs::rename(&manifest, d.path().join("manifest.restored.jsonl"));
            }
        }
        r
    }
}

/// Regular files under `dir` (no symlinks followed, the agent's own data skipped), bounded.
/// The files under `root`, at most `max` of them.
fn walk(root: &Path, skip: &Path, max: usize) -> Vec<PathBuf> {
    let limits = crate::tree::Limits {
        max_files: max,
        max_depth: MAX_DEPTH,
    };
    crate::tree::walk(root, skip, limits)
        .files
        .into_iter()
        .map(|(p, _)| p)
        .collect()
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
}
