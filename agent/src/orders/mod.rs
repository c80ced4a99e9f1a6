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

use holdfast_shared::time::UnixMs;
mod purge;
mod quarantine;
mod restore;
mod strip;

use crate::identity::Identity;
use crate::safe_fs::{self, FsError, Kind};
use holdfast_io::fs::write_file_atomic;
use holdfast_shared::edm::Matcher;
use holdfast_shared::order::{ActionReceipt, Order, OrderAction, OrderError};
use holdfast_shared::signed::{kind, Signed, VerifyError};
use quarantine::QuarantineEntry;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::ffi::OsStr;
use std::io::{BufRead, Read, Seek, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use strip::StrippedEntry;

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
        now_ms: UnixMs,
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
    use std::os::unix::fs::PermissionsExt;
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

    /// Quarantine of the watched places' customer files (10 records or more).
    fn quarantine() -> OrderAction {
        OrderAction::Quarantine {
            paths: vec![],
            min_records: 10,
        }
    }

    /// Strip the access to `paths`.
    fn strip(paths: &[&str]) -> OrderAction {
        OrderAction::StripAccess {
            paths: paths.iter().map(|p| p.to_string()).collect(),
        }
    }

    /// Purge `paths`.
    fn purge(paths: &[&str]) -> OrderAction {
        OrderAction::Purge {
            paths: paths.iter().map(|p| p.to_string()).collect(),
        }
    }

    /// An order to quarantine the watched places' customer files (10 records or more).
    fn quarantine_order(id: &str) -> Order {
        order(id, vec![quarantine()])
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
                quarantine(),
                strip(&["~/Customers", "~/Missing"]),
                purge(&["~/.sfdx"]),
            ],
        );
        let r = x.carry_out(&o, None, UnixMs(5));
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
        assert_eq!(x.carry_out(&o, None, UnixMs(6)), r);
        assert!(docs.join("export2.csv").exists());
        // Restore: the file is back byte-identical with its mode; the folder's access too.
        let back = x.carry_out(&order("r1", vec![OrderAction::Restore]), None, UnixMs(7));
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
                0 => vec![quarantine()],
                1 => vec![strip(&["~/Customers"])],
                2 => vec![purge(&["~/.sfdx", "~/.config/hubspot"])],
                3 => vec![OrderAction::Restore],
                _ => {
                    let _ = crate::scan::scan_file(&self.home("Downloads/export.csv"), None);
                    return;
                }
            };
            self.x
                .carry_out(&order(&id, actions), None, UnixMs(n as i64));
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
            &order("o1", vec![quarantine(), strip(&["~/Customers"])]),
            None,
            UnixMs(1),
        );
        assert_eq!((r[0].items, r[1].items), (1, 1), "{r:?}");
        w.attack(1);
        w.attack(0);
        let back =
            w.x.carry_out(&order("r1", vec![OrderAction::Restore]), None, UnixMs(2));
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
            w.x.carry_out(&order("r2", vec![OrderAction::Restore]), None, UnixMs(3));
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
        let q = quarantine();
        w.x.carry_out(&order("o1", vec![q]), None, UnixMs(1));
        w.attack(6); // Downloads moved aside, a new one made
        let back =
            w.x.carry_out(&order("r1", vec![OrderAction::Restore]), None, UnixMs(2));
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
        let r = w.x.carry_out(&quarantine_order("o1"), None, UnixMs(1));
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
            w.x.carry_out(&order("r1", vec![OrderAction::Restore]), None, UnixMs(2));
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
        let outside = w.outside("x").display().to_string();
        let r = x.carry_out(
            &order(
                "p1",
                vec![purge(&["~/.config/hubspot", "~/.sfdx", &outside])],
            ),
            None,
            UnixMs(1),
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
        let q = quarantine;
        let r = w.x.carry_out(&order("o1", vec![q()]), None, UnixMs(1));
        assert_eq!((r[0].ok, r[0].items), (true, 4), "{r:?}");
        // The same order id again after a lost receipt (a crash): new names, nothing
        // overwritten.
        std::fs::remove_dir_all(w.x.root().join("receipts")).unwrap();
        std::fs::write(dl.join("late.csv"), contacts(15)).unwrap();
        let r = w.x.carry_out(&order("o1", vec![q()]), None, UnixMs(2));
        assert_eq!(r[0].items, 1, "{r:?}");
        let m: Vec<QuarantineEntry> = read_jsonl(&w.x.root().join("quarantine/o1/manifest.jsonl"));
        let stored: std::collections::BTreeSet<&str> =
            m.iter().map(|e| e.stored.as_str()).collect();
        assert_eq!(stored.len(), 5, "{m:?}");
        let back =
            w.x.carry_out(&order("r1", vec![OrderAction::Restore]), None, UnixMs(3));
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
        let r = w.x.carry_out(&quarantine_order("o1"), None, UnixMs(1));
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
