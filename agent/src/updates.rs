//! Signed updates from the collector: each is verified against the key pinned at enrollment
//! before anything is decoded, the last good policy bundle and customer set are kept on disk
//! (and verified again when loaded), and the live ones are swapped atomically. The only
//! module that reads or writes `policy.signed` and `edm.signed`.

use crate::identity::{write_file_atomic, Identity};
use holdfast_shared::edm::{EdmSet, Matcher};
use holdfast_shared::policy::PolicySet;
use holdfast_shared::signed::{kind, PolicyBundle, Signed, VerifyError};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use tracing::{info, warn};

const BUNDLE_FILE: &str = "policy.signed";
const EDM_FILE: &str = "edm.signed";

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
}

/// The customer set in force: its version and matcher.
#[derive(Debug, Clone)]
pub struct ActiveEdm {
    pub version: String,
    pub customers: u64,
    pub issued_ms: i64,
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

fn open_edm(env: &Signed, key: &[u8]) -> Result<ActiveEdm, UpdateError> {
    let body = env.verify(key, kind::EDM)?;
    let set = EdmSet::from_bytes(&body.payload)?;
    Ok(ActiveEdm {
        version: body.version,
        customers: set.customers,
        issued_ms: body.issued_ms,
        matcher: Arc::new(set.matcher()),
    })
}

/// The last good customer set in `data_dir`, if one still verifies.
pub fn load_saved_edm(data_dir: &Path, identity: &Identity) -> Option<ActiveEdm> {
    let path = data_dir.join(EDM_FILE);
    let bytes = std::fs::read(&path).ok()?;
    match Signed::from_bytes(&bytes)
        .map_err(UpdateError::from)
        .and_then(|env| open_edm(&env, &identity.signing_key()))
    {
        Ok(a) => Some(a),
        Err(e) => {
            warn!(path = %path.display(), error = %e, "ignoring the saved customer set");
            None
        }
    }
}

/// Verifies and applies a customer set received as stored bytes (a [`Signed`]). An older
/// set never replaces a newer one. Returns the new version when it changed anything.
pub fn apply_edm(
    bytes: &[u8],
    identity: &Identity,
    data_dir: &Path,
    live: &LiveEdm,
) -> Result<Option<String>, UpdateError> {
    let env = Signed::from_bytes(bytes)?;
    let active = open_edm(&env, &identity.signing_key())?;
    if live
        .current()
        .is_some_and(|c| active.issued_ms <= c.issued_ms)
    {
        return Ok(None);
    }
    let path = data_dir.join(EDM_FILE);
    write_file_atomic(&path, bytes, 0o600).map_err(|e| UpdateError::Save(path.clone(), e))?;
    info!(edm_version = %active.version, customers = active.customers, "applied signed customer set");
    let v = active.version.clone();
    live.replace(active);
    Ok(Some(v))
}

/// The policies the agent applies now, where they came from, and when they were signed.
#[derive(Debug, Clone)]
pub struct Active {
    pub set: Arc<PolicySet>,
    /// `collector` for a signed bundle, `local` for the config's files or the built-in pack.
    pub source: &'static str,
    pub issued_ms: i64,
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

fn open(env: &Signed, key: &[u8], home: &str) -> Result<(PolicySet, i64), UpdateError> {
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
        let rng = ring::rand::SystemRandom::new();
        ring::signature::Ed25519KeyPair::generate_pkcs8(&rng)
            .unwrap()
            .as_ref()
            .to_vec()
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

    fn bundle(k: &[u8], rule: &str, issued_ms: i64) -> Signed {
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
            issued_ms: 0,
        });
        assert!(load_saved(dir.path(), &id, "/h").is_none());
        assert!(apply(&bundle(&k, "a", 10), &id, dir.path(), "/h", &live)
            .unwrap()
            .is_some());
        assert_eq!(rule_ids(&live), ["a"]);
        // Replaying an older bundle changes nothing.
        assert_eq!(
            apply(&bundle(&k, "old", 5), &id, dir.path(), "/h", &live).unwrap(),
            None
        );
        // Another key's bundle is refused and the good one stays.
        assert!(matches!(
            apply(&bundle(&other, "evil", 99), &id, dir.path(), "/h", &live),
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
}
