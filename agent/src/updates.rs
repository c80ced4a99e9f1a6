//! Signed updates from the collector: each is verified against the key pinned at enrollment
//! before anything is decoded, the last good policy bundle and customer set are kept on disk
//! (and verified again when loaded), and the live ones are swapped atomically. A customer set
//! arrives piece by piece into `edm.partial` (each piece checked against the signed manifest
//! before it is written, so a fetch resumes where it stopped) and is renamed to `edm.held`
//! once whole. The only module that reads or writes `policy.signed`, `edm.partial` and
//! `edm.held`.

use crate::identity::Identity;
use holdfast_io::fs::write_file_atomic;
use holdfast_shared::edm::manifest::{
    held_header, read_held_header, verified_prefix, Manifest, ManifestError, Offered, Pieces,
};
use holdfast_shared::edm::{EdmSet, Matcher};
use holdfast_shared::policy::PolicySet;
use holdfast_shared::signed::{kind, PolicyBundle, Signed, VerifyError};
use holdfast_shared::time::UnixMs;
use std::io::{BufReader, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use tracing::{info, warn};

const BUNDLE_FILE: &str = "policy.signed";
/// The customer set in force: its signed manifest, then the set.
const EDM_FILE: &str = "edm.held";
/// A customer set being fetched, in the same layout, its intact pieces first.
const EDM_PARTIAL: &str = "edm.partial";
/// Where versions before the manifest kept the set (removed once a held set is in force).
const EDM_LEGACY: &str = "edm.signed";

/// Why an update was refused. The agent keeps what it had.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// The envelope does not verify, or is not a policy bundle.
    #[error("policy update refused: {0}")]
    Verify(#[from] VerifyError),
    /// The bundle verified but its rules do not compile here.
    #[error("policy update does not compile: {0}")]
    Compile(String),
    /// The bundle could not be saved.
    #[error("saving {0}: {1}")]
    Save(PathBuf, std::io::Error),
    /// The customer set verified but does not decode.
    #[error("customer set refused: {0}")]
    Edm(#[from] holdfast_shared::edm::EdmError),
    /// The customer set's manifest does not verify, or a piece does not match it.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A customer-set file could not be read or written.
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
}

impl UpdateError {
    /// Whether the update is refused for what it is, so the same version is not fetched
    /// again (a bad signature, a set this version cannot decode); otherwise it is retried.
    pub fn is_final(&self) -> bool {
        match self {
            UpdateError::Verify(_) | UpdateError::Compile(_) | UpdateError::Edm(_) => true,
            UpdateError::Manifest(m) => !matches!(m, ManifestError::Piece { .. }),
            UpdateError::Save(..) | UpdateError::Io(..) => false,
        }
    }
}

/// The customer set in force: its version and matcher.
#[derive(Debug, Clone)]
pub struct ActiveEdm {
    pub version: String,
    pub customers: u64,
    pub issued_ms: UnixMs,
    pub matcher: Arc<Matcher>,
}

/// Shared between the pipeline (matches with it) and the uplink (swaps it).
#[derive(Debug, Clone, Default)]
pub struct LiveEdm(Arc<RwLock<Option<ActiveEdm>>>);

impl LiveEdm {
    pub fn current(&self) -> Option<ActiveEdm> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The matcher to classify with, if a set is in force.
    pub fn matcher(&self) -> Option<Arc<Matcher>> {
        self.current().map(|a| a.matcher)
    }

    fn replace(&self, a: ActiveEdm) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Some(a);
    }

    /// Puts a set loaded from disk at startup in force.
    pub fn replace_loaded(&self, a: ActiveEdm) {
        self.replace(a);
    }
}

/// Opens a root-only file of the data directory, never through a symbolic link.
fn open_private(path: &Path, write: bool) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(write)
        .create(write)
        .mode(0o600)
        .custom_flags((rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::CLOEXEC).bits() as i32)
        .open(path)
}

/// Reads a held set: its manifest (verified under `key` when given), then the set through
/// the manifest's piece hashes.
fn open_held(r: impl std::io::Read, key: Option<&[u8]>) -> Result<ActiveEdm, UpdateError> {
    let mut r = BufReader::with_capacity(256 * 1024, r);
    let (signed, _) = read_held_header(&mut r)?;
    let offered = match key {
        Some(key) => Manifest::open(&signed, key)?,
        None => Offered::decode_unverified(&signed)?,
    };
    let set = EdmSet::from_reader(&mut Pieces::new(r, &offered.manifest))?;
    Ok(ActiveEdm {
        version: offered.version,
        customers: set.customers,
        issued_ms: offered.issued_ms,
        matcher: Arc::new(set.matcher()),
    })
}

/// The last good customer set in `data_dir`, if one still verifies.
pub fn load_saved_edm(data_dir: &Path, identity: &Identity) -> Option<ActiveEdm> {
    let path = data_dir.join(EDM_FILE);
    if data_dir.join(EDM_LEGACY).exists() && !path.exists() {
        info!("the saved customer set is in an older format; the current one is fetched again");
        return None;
    }
    let file = open_private(&path, false).ok()?;
    match open_held(file, Some(&identity.signing_key())) {
        Ok(a) => Some(a),
        Err(e) => {
            warn!(path = %path.display(), error = %e, "ignoring the saved customer set");
            None
        }
    }
}

/// A held set given on the command line (`scan --edm`): the pieces are checked against its
/// manifest, whose signature is not (no pinned key offline).
pub fn read_held_file(path: &Path) -> Result<ActiveEdm, UpdateError> {
    let file = std::fs::File::open(path).map_err(|e| UpdateError::Io(path.to_path_buf(), e))?;
    open_held(file, None)
}

/// A customer set being fetched into `edm.partial`: the signed manifest at its head, then
/// each piece once it matched its hash.
#[derive(Debug)]
pub struct EdmFetch {
    file: std::fs::File,
    path: PathBuf,
    offered: Offered,
    next: u64,
    resumed: u64,
}

impl EdmFetch {
    /// Verifies the offered manifest and starts fetching it, or resumes: the pieces already in
    /// `edm.partial` for this very manifest are checked again and kept. `None` when the set
    /// in force is this one or newer.
    pub fn begin(
        data_dir: &Path,
        manifest: &Signed,
        identity: &Identity,
        live: &LiveEdm,
    ) -> Result<Option<EdmFetch>, UpdateError> {
        let offered = Manifest::open(manifest, &identity.signing_key())?;
        if live
            .current()
            .is_some_and(|c| c.version == offered.version || offered.issued_ms <= c.issued_ms)
        {
            return Ok(None);
        }
        let path = data_dir.join(EDM_PARTIAL);
        let io = |e| UpdateError::Io(path.clone(), e);
        let mut file = open_private(&path, true).map_err(io)?;
        let header = held_header(&offered.signed)
            .map_err(|e| UpdateError::Io(path.clone(), std::io::Error::other(e.to_string())))?;
        let header_len = header.len() as u64;
        let mut reader = BufReader::new(&file);
        let same = read_held_header(&mut reader).is_ok_and(|(s, _)| s == offered.signed);
        let resumed = if same {
            verified_prefix(&mut reader, &offered.manifest)
        } else {
            0
        };
        drop(reader);
        if resumed == 0 {
            file.set_len(0).map_err(io)?;
            file.seek(SeekFrom::Start(0)).map_err(io)?;
            file.write_all(&header).map_err(io)?;
        } else {
            let kept = offered
                .manifest
                .range(resumed)
                .map_or(offered.manifest.size, |(start, _)| start);
            file.set_len(header_len + kept).map_err(io)?;
            file.seek(SeekFrom::End(0)).map_err(io)?;
        }
        Ok(Some(EdmFetch {
            file,
            path,
            offered,
            next: resumed,
            resumed,
        }))
    }

    pub fn version(&self) -> &str {
        &self.offered.version
    }

    /// The set's size in bytes, as its manifest says.
    pub fn size(&self) -> u64 {
        self.offered.manifest.size
    }

    /// Pieces already held when the fetch began, and pieces in all.
    pub fn resumed(&self) -> (u64, u64) {
        (self.resumed, self.offered.manifest.pieces())
    }

    /// Pieces held now, and pieces in all.
    pub fn progress(&self) -> (u64, u64) {
        (self.next, self.offered.manifest.pieces())
    }

    /// Where the next piece to ask for starts; `None` once every piece is held.
    pub fn next_offset(&self) -> Option<u64> {
        self.offered
            .manifest
            .range(self.next)
            .map(|(start, _)| start)
    }

    /// Writes the next piece if it matches its signed hash.
    pub fn accept(&mut self, bytes: &[u8]) -> Result<(), UpdateError> {
        if !self.offered.manifest.matches(self.next, bytes) {
            return Err(ManifestError::Piece {
                index: self.next,
                pieces: self.offered.manifest.pieces(),
            }
            .into());
        }
        self.file
            .write_all(bytes)
            .map_err(|e| UpdateError::Io(self.path.clone(), e))?;
        self.next += 1;
        Ok(())
    }

    /// Reads the whole set back from disk through its piece hashes, makes it the held set
    /// (one rename) and puts it in force. A set that does not decode is removed.
    pub fn finish(mut self, data_dir: &Path, live: &LiveEdm) -> Result<String, UpdateError> {
        let io = |e| UpdateError::Io(self.path.clone(), e);
        if self.next_offset().is_some() {
            return Err(io(std::io::Error::other("the set is not complete")));
        }
        self.file.sync_all().map_err(io)?;
        self.file.seek(SeekFrom::Start(0)).map_err(io)?;
        let active = match open_held(&self.file, None) {
            Ok(a) => a,
            Err(e) => {
                let _ = std::fs::remove_file(&self.path);
                return Err(e);
            }
        };
        let held = data_dir.join(EDM_FILE);
        std::fs::rename(&self.path, &held).map_err(io)?;
        if let Ok(dir) = std::fs::File::open(data_dir) {
            let _ = dir.sync_all();
        }
        let _ = std::fs::remove_file(data_dir.join(EDM_LEGACY));
        info!(edm_version = %active.version, customers = active.customers, bytes = self.size(), "applied signed customer set");
        let v = active.version.clone();
        live.replace(active);
        Ok(v)
    }
}

/// The policies the agent applies now, where they came from, and when they were signed.
#[derive(Debug, Clone)]
pub struct Active {
    pub set: Arc<PolicySet>,
    /// `collector` for a signed bundle, `local` for the config's files or the built-in pack.
    pub source: &'static str,
    pub issued_ms: UnixMs,
}

/// Shared between the pipeline (reads on every file) and the uplink (swaps on update).
#[derive(Debug, Clone)]
pub struct LivePolicies(Arc<RwLock<Active>>);

impl LivePolicies {
    pub fn new(active: Active) -> LivePolicies {
        LivePolicies(Arc::new(RwLock::new(active)))
    }

    /// The policy set to evaluate with now.
    pub fn current(&self) -> Active {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn replace(&self, active: Active) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = active;
    }
}

fn compile(bundle: &PolicyBundle, home: &str) -> Result<PolicySet, UpdateError> {
    let refs: Vec<(&str, &str)> = bundle
        .files
        .iter()
        .map(|(n, s)| (n.as_str(), s.as_str()))
        .collect();
    PolicySet::compile(&refs, home).map_err(|e| UpdateError::Compile(e.to_string()))
}

fn open(env: &Signed, key: &[u8], home: &str) -> Result<(PolicySet, UnixMs), UpdateError> {
    let body = env.verify(key, kind::POLICY)?;
    let bundle = PolicyBundle::from_bytes(&body.payload)?;
    Ok((compile(&bundle, home)?, body.issued_ms))
}

/// The last good signed bundle in `data_dir`, if there is one that still verifies.
pub fn load_saved(data_dir: &Path, identity: &Identity, home: &str) -> Option<Active> {
    let path = data_dir.join(BUNDLE_FILE);
    let bytes = std::fs::read(&path).ok()?;
    let result = Signed::from_bytes(&bytes)
        .map_err(UpdateError::from)
        .and_then(|env| open(&env, &identity.signing_key(), home));
    match result {
        Ok((set, issued_ms)) => Some(Active {
            set: Arc::new(set),
            source: "collector",
            issued_ms,
        }),
        Err(e) => {
            warn!(path = %path.display(), error = %e, "ignoring the saved policy bundle");
            None
        }
    }
}

/// Verifies and applies a policy update. An update signed no later than the one in force is
/// ignored (no rollback by replay). Returns the new version when it changed anything.
pub fn apply(
    env: &Signed,
    identity: &Identity,
    data_dir: &Path,
    home: &str,
    live: &LivePolicies,
) -> Result<Option<String>, UpdateError> {
    let (set, issued_ms) = open(env, &identity.signing_key(), home)?;
    let current = live.current();
    if current.source == "collector" && issued_ms <= current.issued_ms {
        return Ok(None);
    }
    let path = data_dir.join(BUNDLE_FILE);
    let bytes = env
        .to_bytes()
        .map_err(|e| UpdateError::Compile(e.to_string()))?;
    write_file_atomic(&path, &bytes, 0o600).map_err(|e| UpdateError::Save(path.clone(), e))?;
    let version = set.version.clone();
    info!(policy_version = %version, rules = set.rules.len(), "applied signed policy bundle");
    live.replace(Active {
        set: Arc::new(set),
        source: "collector",
        issued_ms,
    });
    Ok(Some(version))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Enrollment;
    use holdfast_shared::signed::SignedBody;

    fn key() -> Vec<u8> {
        holdfast_shared::signed::test_key()
    }

    fn identity(pk: &[u8]) -> Identity {
        Identity {
            enrollment: Enrollment {
                device_id: "d".into(),
                user: "u".into(),
                collector: "c:1".into(),
                signing_key: hex::encode(pk),
            },
            cert_der: vec![],
            key_der: vec![],
            ca_der: vec![],
        }
    }

    fn bundle(k: &[u8], rule: &str, issued_ms: UnixMs) -> Signed {
        let b = PolicyBundle {
            files: vec![(
                "p.toml".into(),
                format!("[[rule]]\nid = \"{rule}\"\nseverity = \"low\"\n"),
            )],
        };
        Signed::sign(
            k,
            &SignedBody {
                kind: kind::POLICY.into(),
                version: rule.into(),
                issued_ms,
                payload: b.to_bytes().unwrap(),
            },
        )
        .unwrap()
    }

    fn rule_ids(live: &LivePolicies) -> Vec<String> {
        live.current()
            .set
            .rules
            .iter()
            .map(|r| r.id.clone())
            .collect()
    }

    #[test]
    fn verifies_persists_and_refuses_rollback_and_forgery() {
        let dir = tempfile::tempdir().unwrap();
        let (k, other) = (key(), key());
        let pk = holdfast_shared::signed::public_key(&k).unwrap();
        let id = identity(&pk);
        let live = LivePolicies::new(Active {
            set: Arc::new(PolicySet::default()),
            source: "local",
            issued_ms: UnixMs(0),
        });
        assert!(load_saved(dir.path(), &id, "/h").is_none());
        assert!(
            apply(&bundle(&k, "a", UnixMs(10)), &id, dir.path(), "/h", &live)
                .unwrap()
                .is_some()
        );
        assert_eq!(rule_ids(&live), ["a"]);
        // Replaying an older bundle changes nothing.
        assert_eq!(
            apply(&bundle(&k, "old", UnixMs(5)), &id, dir.path(), "/h", &live).unwrap(),
            None
        );
        // Another key's bundle is refused and the good one stays.
        assert!(matches!(
            apply(
                &bundle(&other, "evil", UnixMs(99)),
                &id,
                dir.path(),
                "/h",
                &live
            ),
            Err(UpdateError::Verify(VerifyError::BadSignature))
        ));
        assert_eq!(rule_ids(&live), ["a"]);
        // The saved bundle survives a restart, and a tampered file is not loaded.
        let saved = load_saved(dir.path(), &id, "/h").unwrap();
        assert_eq!(saved.set.rules[0].id, "a");
        let path = dir.path().join(BUNDLE_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[20] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        assert!(load_saved(dir.path(), &id, "/h").is_none());
    }

    /// A set of `n` customers cut into 4 KiB pieces, its manifest signed with `k`.
    fn customer_set(k: &[u8], n: usize, issued_ms: UnixMs) -> (Vec<u8>, Signed) {
        let mut b = holdfast_shared::edm::EdmBuilder::new(b"secret");
        for i in 0..n {
            b.add(
                holdfast_shared::ident::IdKind::Email,
                format!("c{i}@example.com").as_bytes(),
            );
            b.customer();
        }
        let payload = b.finish().to_bytes().unwrap();
        let version = holdfast_shared::edm::manifest::version_of(&payload);
        let m = Manifest::of(&payload, 4096, n as u64);
        (payload, m.sign(k, &version, issued_ms).unwrap())
    }

    /// Feeds pieces from `payload` until `stop` pieces are held or the set is whole.
    fn feed(f: &mut EdmFetch, payload: &[u8], stop: u64) {
        while let Some(at) = f.next_offset() {
            if f.progress().0 == stop {
                return;
            }
            let end = (at as usize + 4096).min(payload.len());
            f.accept(&payload[at as usize..end]).unwrap();
        }
    }

    #[test]
    fn a_customer_set_is_fetched_in_verified_pieces_resumes_and_applies_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let (k, other) = (key(), key());
        let id = identity(&holdfast_shared::signed::public_key(&k).unwrap());
        let live = LiveEdm::default();
        let (payload, manifest) = customer_set(&k, 5000, UnixMs(10));
        let mut f = EdmFetch::begin(dir.path(), &manifest, &id, &live)
            .unwrap()
            .unwrap();
        assert_eq!(f.resumed(), (0, 5));
        feed(&mut f, &payload, 2);
        // A piece that is not the next one's bytes is refused, and retried later.
        let wrong = f.accept(&payload[..4096]).unwrap_err();
        assert_eq!(
            wrong.to_string(),
            "piece 2 of 5 of the customer set does not match its signed hash"
        );
        assert!(!wrong.is_final());
        drop(f);
        // Interrupted: the next start keeps the two good pieces, and drops a torn third.
        let partial = dir.path().join(EDM_PARTIAL);
        let mut torn = std::fs::OpenOptions::new()
            .append(true)
            .open(&partial)
            .unwrap();
        torn.write_all(&payload[8192..9000]).unwrap();
        let mut f = EdmFetch::begin(dir.path(), &manifest, &id, &live)
            .unwrap()
            .unwrap();
        assert_eq!(f.resumed(), (2, 5));
        assert_eq!(f.next_offset(), Some(8192));
        feed(&mut f, &payload, u64::MAX);
        assert_eq!(
            f.finish(dir.path(), &live).unwrap(),
            manifest_version(&manifest)
        );
        assert!(!partial.exists());
        let m = live.matcher().unwrap();
        assert!(m.matches(holdfast_shared::ident::IdKind::Email, b"c42@example.com"));
        // Held: nothing to fetch again, not even an older set; a restart loads it.
        assert!(EdmFetch::begin(dir.path(), &manifest, &id, &live)
            .unwrap()
            .is_none());
        let (_, older) = customer_set(&k, 10, UnixMs(5));
        assert!(EdmFetch::begin(dir.path(), &older, &id, &live)
            .unwrap()
            .is_none());
        let saved = load_saved_edm(dir.path(), &id).unwrap();
        assert_eq!(
            (saved.version, saved.customers),
            (manifest_version(&manifest), 5000)
        );
        // Another key's manifest is refused for good.
        let (_, forged) = customer_set(&other, 10, UnixMs(99));
        let e = EdmFetch::begin(dir.path(), &forged, &id, &live).unwrap_err();
        assert!(e.is_final(), "{e}");
        // A held file changed on disk is not loaded.
        let held = dir.path().join(EDM_FILE);
        let mut bytes = std::fs::read(&held).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&held, bytes).unwrap();
        assert!(load_saved_edm(dir.path(), &id).is_none());
    }

    fn manifest_version(s: &Signed) -> String {
        s.decode_unverified().unwrap().version
    }
}
